#!/usr/bin/env python3
"""Dev cluster: an offline Kubernetes API server + agent-sandbox controller
(Python stdlib only) that the real kubectl and sandbox.h talk to.

    python3 tests/devcluster/cluster.py up   --state DIR [flags]   start in the background
    python3 tests/devcluster/cluster.py down --state DIR           stop it and all its pods
    python3 tests/devcluster/cluster.py serve --state DIR [flags]  run in the foreground

`up` starts `serve` in a new session (setsid), waits until the API answers and
the seeded warm pool and router are Ready, prints the kubeconfig path and exits
0 (1 with the log tail when the cluster failed to start). `down` sends SIGTERM,
waits up to 5 s, falls back to SIGKILL of the process group and of every pod
process listed in STATE/processes.json, and verifies that none is left.

State directory files:
  kubeconfig     context `devcluster`, namespace default; http://127.0.0.1:PORT
                 (https + token + certificate-authority with --tls-cert/--tls-key/--token)
  api_url        the API server URL (as in the kubeconfig)
  admin_url      plain-HTTP URL for /_admin/*: a second, unauthenticated loopback
                 listener that also serves the API and keeps running through
                 POST /_admin/restart-api (the API listener's restart)
  pid            pid of the `serve` process (also its process group)
  cluster.json   {"api_url","admin_url","pid","pod_cidr","node_ip","kubeconfig",
                  "v1alpha1_only","started_ms"}
  ready          written last, once everything above exists
  cluster.log    log of the serve process
  processes.json live pod processes [{"pid","pod","kind"}]
  runtime-faults.json   the runtime fault file (see faults.py "runtime")
  pods/NS/NAME/  each pod's working directory (root/ = runtime base, log)

Flags (serve and up):
  --port N                API port (default: any free port)
  --tls-cert F --tls-key F  serve HTTPS; --token T requires `Authorization: Bearer T`
  --kubeconfig-insecure   with TLS: insecure-skip-tls-verify instead of the CA path
  --v1alpha1-only         serve only v1alpha1 of the agent-sandbox groups
  --no-crds               a cluster without agent-sandbox: the API groups
                          agents.x-k8s.io and extensions.agents.x-k8s.io are not
                          served (404), no controller, nothing seeded (for the
                          client's "CRDs missing" message)
  --warm-replicas N       replicas of the seeded warm pool (default 2)
  --no-router             no sandbox-router Service / pod / Gateway
  --no-seed               no seeded templates / pools / router
  --router-auth-token T   the router requires `Authorization: Bearer T`
  --exec-timeout S        runtime --exec-timeout for every sandbox pod
  --ip-block A.B          use 127.A.B.0/24 for pods (default: a random free block)
  --label-domain D        claim label allowlist domain (repeatable; sandbox.users.io)
  --watch-history N       events kept for resuming watches (default 2000)
  --keep-pod-dirs         keep pod directories after the pods are gone
  --ready-timeout S       how long `up` waits (default 30)
Fault flags (same names as the knobs in faults.py; change them at run time
with POST /_admin/faults):
  --cold-start-ms N --controller-delay-ms N --never-ready --delete-claim-after-ms N
  --api-error-every N --api-error-code C --api-429-every N --retry-after S
  --api-fault-match REGEX --api-latency-ms N --watch-drop-after N --watch-expired N
  --watch-expired-http
  --faults JSON           any knobs as one JSON object (merged last)
"""
import argparse
import collections
import json
import os
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from apiserver import ApiServer          # noqa: E402
from controller import Controller        # noqa: E402
from faults import Faults, RequestLog    # noqa: E402
from pods import IPBlock, Kubelet        # noqa: E402
from resources import AGENTS, EXT, Registry   # noqa: E402
from store import Store                  # noqa: E402
import seed as seeding                   # noqa: E402

try:
    import portforward
except ImportError:
    portforward = None


def _write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _can_bind(ip, port):
    """Whether this process may listen on a privileged port (the router's port 80)."""
    import socket
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((ip, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def _cond(obj, ctype):
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return c
    return None


class Cluster:
    """All parts of one dev cluster in one process."""

    def __init__(self, args):
        self.args = args
        self.state_dir = os.path.abspath(args.state)
        os.makedirs(self.state_dir, exist_ok=True)
        self.log_lock = threading.Lock()
        self.config = {"token": args.token, "router": not args.no_router and not args.no_seed,
                       "router_auth_token": args.router_auth_token,
                       "exec_timeout": args.exec_timeout, "keep_pod_dirs": args.keep_pod_dirs,
                       "label_domains": args.label_domain or None,
                       "cluster_domain": "cluster.local"}
        self.registry = Registry(v1alpha1_only=args.v1alpha1_only, no_crds=args.no_crds)
        self.store = Store(self.registry, history=args.watch_history)
        self.faults = Faults(initial_faults(args), [self._faults_changed])
        self.reqlog = RequestLog()
        self.tunnels = portforward.TunnelRegistry() if portforward else None
        self.pf_events = collections.deque(maxlen=200)
        forced = tuple(int(x) for x in args.ip_block.split(".")) if args.ip_block else None
        self.ipblock = IPBlock(forced)
        self.kubelet = None
        self.controller = None
        self.api = ApiServer(self)
        self.started = time.monotonic()

    def log(self, msg):
        with self.log_lock:
            sys.stderr.write("%s %s\n" % (time.strftime("%H:%M:%S"), msg))
            sys.stderr.flush()

    def pf_log(self, rec):
        self.pf_events.append(dict(rec, time=round(time.time(), 6)))
        if rec.get("event") != "portforward.open":
            self.log("portforward: %s" % json.dumps(rec, sort_keys=True)[:2000])

    def pod_log(self, ns, name):
        try:
            with open(os.path.join(self.state_dir, "pods", ns, name, "log"), "rb") as f:
                return f.read()[-1 << 20:]
        except OSError:
            return b""

    def _faults_changed(self, snapshot, patch):
        if "runtime" in patch and self.kubelet is not None:
            self.kubelet.write_runtime_faults(snapshot.get("runtime") or {})
        if self.kubelet is not None:
            self.kubelet.recheck()
        if self.controller is not None and ("never_ready" in patch or
                                            "cold_start_ms" in patch):
            for c in self.store.list_refs(self.controller.claims):
                md = c["metadata"]
                self.controller.queue.add(("claim", md.get("namespace", ""), md["name"]))

    # ------------------------------------------------------------ lifecycle

    def start(self):
        a = self.args
        port = self.api.listen("127.0.0.1", a.port,
                               (a.tls_cert, a.tls_key) if a.tls_cert else None)
        scheme = "https" if a.tls_cert else "http"
        self.api_url = "%s://127.0.0.1:%d" % (scheme, port)
        # always a listener of its own, so that /_admin/* (and the test harness) stay
        # reachable while the API listener is restarted (POST /_admin/restart-api)
        self.admin_url = "http://127.0.0.1:%d" % self.api.listen("127.0.0.1", 0, role="admin")
        self.config["internal_api_url"] = self.admin_url
        self.config["router_port80"] = _can_bind(self.ipblock.node_ip, 80)
        self.kubelet = Kubelet(self.store, self.registry, self.state_dir, self.ipblock,
                               self.faults, self.config, on_pod_gone=self._pod_gone, log=self.log)
        if "runtime" in self.faults.snapshot():
            self.kubelet.write_runtime_faults(self.faults.get("runtime"))
        self.kubelet.start()
        if a.no_crds:               # agent-sandbox not installed: nothing of it runs
            self.log("api %s (admin %s), no agent-sandbox CRDs, state %s" % (
                self.api_url, self.admin_url, self.state_dir))
            return
        self.controller = Controller(self.store, self.registry, self.faults, self.config,
                                     log=self.log)
        self.controller.start()
        if not a.no_seed:
            seeding.seed(self.store, self.registry, self.ipblock.node_ip,
                         warm_replicas=a.warm_replicas, router=self.config["router"])
            self.controller.queue.add(("router",))
        self.log("api %s (admin %s), pods %s, state %s" % (self.api_url, self.admin_url,
                                                           self.ipblock.cidr, self.state_dir))

    def wait_settled(self, timeout):
        if self.args.no_seed or self.args.no_crds or self.faults.get("never_ready"):
            return True             # nothing would ever settle with never_ready
        return self.store.wait_for(lambda: seeding.settled(self.store, self.registry,
                                                           self.config["router"]), timeout)

    def _pod_gone(self, key):
        if self.tunnels is not None:
            self.tunnels.gone(key, "deleted")

    def write_files(self):
        d = self.state_dir
        a = self.args
        kc = os.path.join(d, "kubeconfig")
        cluster = "    server: %s\n" % self.api_url
        user = "  user: {}\n"
        if a.tls_cert:
            if a.kubeconfig_insecure:
                cluster += "    insecure-skip-tls-verify: true\n"
            else:
                cluster += "    certificate-authority: %s\n" % os.path.abspath(a.tls_cert)
            if a.token:
                user = "  user:\n    token: %s\n" % a.token
        _write_atomic(kc, "apiVersion: v1\nkind: Config\nclusters:\n- name: devcluster\n"
                          "  cluster:\n" + cluster +
                      "contexts:\n- name: devcluster\n  context:\n    cluster: devcluster\n"
                      "    namespace: default\n    user: devcluster\n"
                      "current-context: devcluster\nusers:\n- name: devcluster\n" + user)
        _write_atomic(os.path.join(d, "api_url"), self.api_url + "\n")
        _write_atomic(os.path.join(d, "admin_url"), self.admin_url + "\n")
        _write_atomic(os.path.join(d, "pid"), "%d\n" % os.getpid())
        info = {"api_url": self.api_url, "admin_url": self.admin_url, "pid": os.getpid(),
                "pod_cidr": self.ipblock.cidr, "node_ip": self.ipblock.node_ip,
                "kubeconfig": kc, "v1alpha1_only": bool(a.v1alpha1_only),
                "started_ms": round((time.monotonic() - self.started) * 1000, 1)}
        _write_atomic(os.path.join(d, "cluster.json"), json.dumps(info, indent=1) + "\n")
        _write_atomic(os.path.join(d, "ready"), "ok\n")

    def shutdown(self):
        self.log("shutting down")
        self.api.shutdown()
        self.store.close_all_watchers()
        if self.tunnels is not None:
            self.tunnels.kill()
        if self.controller is not None:
            self.controller.stop()
        if self.kubelet is not None:
            self.kubelet.shutdown()
        self.log("stopped")

    # ------------------------------------------------------------ admin state

    def state(self):
        r = self.registry.get
        store = self.store

        def ready(o):
            c = _cond(o, "Ready")
            return (c or {}).get("status"), (c or {}).get("reason")

        def owner(o):
            for ref in o["metadata"].get("ownerReferences") or []:
                if ref.get("controller"):
                    return "%s/%s" % (ref.get("kind"), ref.get("name"))
            return None
        with store.lock:
            claims = []
            for o in store.list_refs(r(EXT, "sandboxclaims")):
                st, reason = ready(o)
                sb = (o.get("status") or {}).get("sandbox") or {}
                claims.append({"namespace": o["metadata"]["namespace"],
                               "name": o["metadata"]["name"], "uid": o["metadata"]["uid"],
                               "ready": st, "reason": reason,
                               "sandbox": sb.get("name") or sb.get("Name"),
                               "podIPs": sb.get("podIPs") or [],
                               "deleting": bool(o["metadata"].get("deletionTimestamp"))})
            sandboxes = []
            for o in store.list_refs(r(AGENTS, "sandboxes")):
                st, reason = ready(o)
                sandboxes.append({"namespace": o["metadata"]["namespace"],
                                  "name": o["metadata"]["name"], "uid": o["metadata"]["uid"],
                                  "owner": owner(o), "ready": st, "reason": reason,
                                  "podIPs": (o.get("status") or {}).get("podIPs") or [],
                                  "deleting": bool(o["metadata"].get("deletionTimestamp"))})
            pools = [{"namespace": o["metadata"]["namespace"], "name": o["metadata"]["name"],
                      "replicas": (o.get("spec") or {}).get("replicas", 1),
                      "readyReplicas": (o.get("status") or {}).get("readyReplicas", 0)}
                     for o in store.list_refs(r(EXT, "sandboxwarmpools"))]
            pods = []
            for o in store.list_refs(r("", "pods")):
                st, _ = ready(o)
                pods.append({"namespace": o["metadata"]["namespace"],
                             "name": o["metadata"]["name"], "uid": o["metadata"]["uid"],
                             "phase": (o.get("status") or {}).get("phase"),
                             "podIP": (o.get("status") or {}).get("podIP"),
                             "ready": st == "True", "owner": owner(o),
                             "labels": o["metadata"].get("labels") or {},
                             "deleting": bool(o["metadata"].get("deletionTimestamp"))})
            rv = str(store.rv)
            watchers = len(store.watchers)
        return {"resourceVersion": rv, "api_url": self.api_url, "admin_url": self.admin_url,
                "pod_cidr": self.ipblock.cidr, "pid": os.getpid(),
                "v1alpha1_only": bool(self.args.v1alpha1_only),
                "api": self.api.api_state(),
                "claims": claims, "sandboxes": sandboxes, "warmpools": pools, "pods": pods,
                "processes": self.kubelet.snapshot() if self.kubelet else [],
                "watches": watchers,
                "portforwards": {"open": self.tunnels.count() if self.tunnels else 0,
                                 "events": list(self.pf_events)[-50:]},
                "faults": self.faults.snapshot()}


# ---------------------------------------------------------------- CLI

def add_flags(ap):
    ap.add_argument("--state", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--token")
    ap.add_argument("--kubeconfig-insecure", action="store_true")
    ap.add_argument("--v1alpha1-only", action="store_true")
    ap.add_argument("--no-crds", action="store_true")
    ap.add_argument("--warm-replicas", type=int, default=2)
    ap.add_argument("--no-router", action="store_true")
    ap.add_argument("--no-seed", action="store_true")
    ap.add_argument("--router-auth-token")
    ap.add_argument("--exec-timeout")
    ap.add_argument("--ip-block")
    ap.add_argument("--label-domain", action="append")
    ap.add_argument("--watch-history", type=int, default=2000)
    ap.add_argument("--keep-pod-dirs", action="store_true")
    ap.add_argument("--ready-timeout", type=float, default=30.0)
    ap.add_argument("--cold-start-ms", type=int)
    ap.add_argument("--pod-start-delay-ms", type=int)
    ap.add_argument("--controller-delay-ms", type=int)
    ap.add_argument("--never-ready", action="store_true")
    ap.add_argument("--delete-claim-after-ms", type=int)
    ap.add_argument("--api-error-every", type=int)
    ap.add_argument("--api-error-code", type=int)
    ap.add_argument("--api-429-every", type=int)
    ap.add_argument("--retry-after", type=int)
    ap.add_argument("--api-fault-match")
    ap.add_argument("--api-latency-ms", type=int)
    ap.add_argument("--watch-drop-after", type=int)
    ap.add_argument("--watch-expired", type=int)
    ap.add_argument("--watch-expired-http", action="store_true")
    ap.add_argument("--faults", help="JSON object of fault knobs")


FAULT_FLAGS = ("cold_start_ms", "pod_start_delay_ms", "controller_delay_ms", "delete_claim_after_ms",
               "api_error_every", "api_error_code", "api_429_every", "retry_after",
               "api_fault_match", "api_latency_ms", "watch_drop_after", "watch_expired")


def initial_faults(args):
    f = {}
    for k in FAULT_FLAGS:
        v = getattr(args, k)
        if v is not None:
            f[k] = v
    if args.never_ready:
        f["never_ready"] = True
    if args.watch_expired_http:
        f["watch_expired_http"] = True
    if args.faults:
        extra = json.loads(args.faults)
        if not isinstance(extra, dict):
            raise SystemExit("--faults must be a JSON object")
        f.update(extra)
    return f


def cmd_serve(args):
    if bool(args.tls_cert) != bool(args.tls_key):
        raise SystemExit("--tls-cert and --tls-key go together")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    cluster = Cluster(args)
    try:
        cluster.start()
        t0 = time.monotonic()
        if not cluster.wait_settled(args.ready_timeout):
            cluster.log("warning: seed objects not Ready after %.1f s" % args.ready_timeout)
        cluster.write_files()
        cluster.log("ready in %.0f ms (seed settled in %.0f ms)"
                    % ((time.monotonic() - cluster.started) * 1000,
                       (time.monotonic() - t0) * 1000))
        while not stop.wait(3600):
            pass
    finally:
        cluster.shutdown()
    return 0


def _alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _read_pid(state):
    try:
        with open(os.path.join(state, "pid")) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def cmd_up(args, argv):
    state = os.path.abspath(args.state)
    os.makedirs(state, exist_ok=True)
    pid = _read_pid(state)
    if pid and _alive(pid) and "cluster.py" in _cmdline(pid):
        print("devcluster already running in %s (pid %d)" % (state, pid), file=sys.stderr)
        return 1
    for f in ("ready", "pid", "api_url", "admin_url", "kubeconfig", "cluster.json"):
        try:
            os.unlink(os.path.join(state, f))
        except OSError:
            pass
    t0 = time.monotonic()
    logf = open(os.path.join(state, "cluster.log"), "ab")
    # -S: stdlib only, so skip site-packages (saves ~40 ms of start-up here)
    child = subprocess.Popen([sys.executable, "-S", os.path.abspath(__file__), "serve"] + argv,
                             stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                             start_new_session=True, close_fds=True)
    logf.close()
    deadline = t0 + args.ready_timeout + 5
    ready = os.path.join(state, "ready")
    while time.monotonic() < deadline:
        if os.path.exists(ready):
            print(os.path.join(state, "kubeconfig"))
            sys.stdout.flush()
            return 0
        if child.poll() is not None:
            break
        time.sleep(0.005)
    try:
        with open(os.path.join(state, "cluster.log"), "rb") as f:
            tail = f.read()[-4000:].decode(errors="replace")
    except OSError:
        tail = ""
    print("devcluster failed to start (%s); log tail:\n%s"
          % ("exit %s" % child.returncode if child.returncode is not None else "timeout", tail),
          file=sys.stderr)
    if child.poll() is None:
        os.killpg(child.pid, signal.SIGKILL)
    return 1


def cmd_down(args):
    state = os.path.abspath(args.state)
    pid = _read_pid(state)
    if pid and _alive(pid) and "cluster.py" in _cmdline(pid):
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
        deadline = time.monotonic() + 5
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        if _alive(pid):
            print("devcluster: pid %d ignored SIGTERM; killing its group" % pid, file=sys.stderr)
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
    leftovers = []
    try:
        with open(os.path.join(state, "processes.json")) as f:
            procs = json.load(f)
    except (OSError, ValueError):
        procs = []
    for p in procs:
        ppid = p.get("pid")
        if ppid and _alive(ppid) and any(s in _cmdline(ppid) for s in ("runtime.py", "router.py")):
            try:
                os.killpg(ppid, signal.SIGKILL)
            except OSError:
                pass
            leftovers.append(ppid)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and (any(_alive(p) for p in leftovers) or
                                           (pid and _alive(pid))):
        time.sleep(0.01)
    alive = [p for p in leftovers + ([pid] if pid else []) if _alive(p)]
    for f in ("ready", "pid", "api_url", "admin_url", "kubeconfig", "cluster.json"):
        try:
            os.unlink(os.path.join(state, f))
        except OSError:
            pass
    if alive:
        print("devcluster: processes still alive: %s" % alive, file=sys.stderr)
        return 1
    return 0


def main(argv):
    if len(argv) < 1 or argv[0] not in ("up", "down", "serve"):
        print(__doc__, file=sys.stderr)
        return 2
    cmd, rest = argv[0], argv[1:]
    ap = argparse.ArgumentParser(prog="cluster.py " + cmd)
    add_flags(ap)
    args = ap.parse_args(rest)
    if cmd == "serve":
        return cmd_serve(args)
    if cmd == "up":
        return cmd_up(args, rest)
    return cmd_down(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
