"""The dev cluster's "kubelet": every Pod object is a real process.

Address block: each cluster takes a random free loopback block 127.A.B.0/24
(A in 16..250). "Free" means no TCP socket is bound in it (/proc/net/tcp) and
nobody holds the block's lock file (/tmp/devcluster-ipblocks/127.A.B.lock,
flock'ed for the cluster's life), so several clusters run side by side.
127.A.B.1 is the node (hostIP); pods get 127.A.B.N, N >= 2, handed out
round-robin so a re-created pod gets a new IP.

What a pod runs is decided by its first container's image name:
  * image contains "sandbox-router"  -> tests/devcluster/router.py
        (--host IP --port 8080 [--port 80] --api URL --pod-cidr BLOCK [--auth-token T]);
  * image contains "sandboxd"        -> runtime.py --flavor sandboxd (default port 8080),
        plus sandboxd's gRPC ProcessService (grpc_server.py, real grpcio under
        $DEVCLUSTER_GRPC_PYTHON or /usr/bin/python3) on the port named `grpc`,
        default 9090, at the same pod IP;
  * anything else                    -> runtime.py --flavor python (default port 8888).
The port is the first container's first `containerPort` when given. The
annotation `devcluster.agents.x-k8s.io/flavor: python|sandboxd` on the pod
(template) overrides the image rule. The container's `env` entries with a
`value` are put into the process environment (so claim `env` injection is
visible to commands run in the sandbox); SANDBOX_EXEC_TIMEOUT_SECONDS there, or
the cluster's --exec-timeout, becomes --exec-timeout.

Each pod gets a working directory STATE/pods/<ns>/<name>/ with `root/` (the
runtime's --base) and `log` (stdout+stderr); it is removed when the pod goes
(unless --keep-pod-dirs). Processes start in their own session; a pod is
Running + Ready once its process printed `listening on ...` (and the optional
cold-start delay passed, and the `never_ready` fault is off). A process starts
at the lowest CPU priority (nice 19) and is put back to normal priority when
it turns Ready: on a real cluster a pod starts on a node, not on the CPU the
API server and its clients use; here a warm pool's refill (a Python start,
~100 ms of CPU per pod) would otherwise compete with the very opens that
emptied the pool. Where normal priority cannot be restored (no CAP_SYS_NICE),
the kubelet stops lowering it. With the fault `pod_start_delay_ms` (flag
--pod-start-delay-ms; `make bench` sets it) a new Pod's process starts that
long after the Pod was created, as a real kubelet's container start takes a
while: the refill then stays out of the measured opens altogether. Deleting a pod
sends SIGTERM to its process group, SIGKILL after 2 s, reaps it, then removes
the Pod object. A process that exits on its own is restarted (restartPolicy
Always, the default) or ends the pod Succeeded / Failed.

Live processes are listed in STATE/processes.json ({"pid","pod","kind"}) so
`cluster.py down` can clean up even after a crash.
"""
import fcntl
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time

from kube import now_rfc3339
from workqueue import WorkQueue

HERE = os.path.dirname(os.path.abspath(__file__))
FLAVOR_ANNOTATION = "devcluster.agents.x-k8s.io/flavor"
LOCK_DIR = "/tmp/devcluster-ipblocks"
STARTING_NICE = 19
PYCACHE = "/tmp/devcluster-pycache"
# A pod's script runs as an imported module with its bytecode cached outside
# the source tree (PYCACHE mirrors absolute paths): compiling runtime.py on
# every pod start was about a third of the start's CPU (~160 -> ~110 ms on
# the 2-core dev machine). The script's path stays on the command line
# (`cluster.py down` looks for it there).
_LAUNCH = ("import os, sys; p = sys.argv[0] = sys.argv.pop(1); sys.dont_write_bytecode = False; "
           "sys.pycache_prefix = %r; sys.path.insert(0, os.path.dirname(p)); "
           "__import__(os.path.basename(p)[:-3]).main()" % PYCACHE)


def _python(script):
    return [sys.executable, "-S", "-c", _LAUNCH, os.path.join(HERE, script)]


def _bound_loopback_prefixes():
    """Set of 'A.B' second/third octets of 127.A.B.x addresses with bound TCP sockets."""
    out = set()
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                hexip = line.split()[1].split(":")[0]
                octets = [int(hexip[i:i + 2], 16) for i in (6, 4, 2, 0)]
                if octets[0] == 127:
                    out.add((octets[1], octets[2]))
    except OSError:
        pass
    return out


class IPBlock:
    """A /24 of loopback addresses owned by one cluster."""

    def __init__(self, forced=None):
        os.makedirs(LOCK_DIR, exist_ok=True)
        busy = _bound_loopback_prefixes()
        cands = [forced] if forced else None
        for _ in range(200):
            a, b = cands.pop() if cands else (random.randint(16, 250), random.randint(0, 255))
            if (a, b) in busy and not forced:
                continue
            fd = os.open(os.path.join(LOCK_DIR, "127.%d.%d.lock" % (a, b)),
                         os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                if forced:
                    raise RuntimeError("address block 127.%d.%d.0/24 is in use" % (a, b))
                continue
            self.a, self.b, self.lock_fd = a, b, fd
            break
        else:
            raise RuntimeError("no free 127.A.B.0/24 block found")
        self.prefix = "127.%d.%d." % (self.a, self.b)
        self.cidr = self.prefix + "0/24"
        self.node_ip = self.prefix + "1"
        self.in_use = set()
        self.next = 2
        self.lock = threading.Lock()

    def allocate(self):
        with self.lock:
            for _ in range(253):
                n = self.next
                self.next = 2 if self.next >= 254 else self.next + 1
                if n not in self.in_use:
                    self.in_use.add(n)
                    return self.prefix + str(n)
        raise RuntimeError("pod address block %s exhausted" % self.cidr)

    def release(self, ip):
        with self.lock:
            self.in_use.discard(int(ip.rsplit(".", 1)[1]))

    def close(self):
        try:
            os.close(self.lock_fd)
        except OSError:
            pass


class PodProc:
    """Book-keeping for one pod's process."""

    def __init__(self, key, uid, ip, spec):
        self.key, self.uid, self.ip = key, uid, ip
        self.kind, self.flavor, self.port, self.argv, self.env = spec
        self.proc = None
        self.listening = False
        self.ready = False
        self.started = 0.0
        self.restarts = 0
        self.terminating = False
        self.exit_code = None
        self.dir = None
        self.log = None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None


class Kubelet:
    def __init__(self, store, registry, state_dir, ipblock, faults, config, on_pod_gone=None,
                 log=None):
        self.store, self.registry, self.state_dir = store, registry, state_dir
        self.ipblock, self.faults, self.config = ipblock, faults, config
        self.on_pod_gone = on_pod_gone or (lambda key: None)
        self.log = log or (lambda *a: None)
        self.pods_res = registry.get("", "pods")
        self.procs = {}                 # (ns, name) -> PodProc
        self.lock = threading.RLock()
        self.queue = WorkQueue()
        self.thread = threading.Thread(target=self._run, name="kubelet", daemon=True)
        self.faults_path = os.path.join(state_dir, "runtime-faults.json")
        self.nice_starts = True         # off once normal priority cannot be restored
        self.nice = os.getpriority(os.PRIO_PROCESS, 0)  # "normal": the cluster's own
        if not os.path.exists(self.faults_path):
            self.write_runtime_faults({})
        store.hooks.append(self._hook)
        store.terminator = self._terminate_request

    def start(self):
        self.thread.start()

    # ------------------------------------------------------------ store plumbing

    def _hook(self, type_, res, obj, old):
        if res is not self.pods_res:
            return
        md = obj["metadata"]
        key = (md.get("namespace", ""), md["name"])
        if type_ == "ADDED":
            self.queue.add(("start",) + key + (md["uid"],),
                           self.faults.get_float("pod_start_delay_ms", 0) / 1000.0)
        elif type_ == "DELETED":
            self.queue.add(("gone",) + key + (md["uid"],))

    def _terminate_request(self, pod):
        md = pod["metadata"]
        self.queue.add(("terminate", md.get("namespace", ""), md["name"], md["uid"]))

    def recheck(self):
        """Re-evaluate readiness of every pod (after a fault change)."""
        with self.lock:
            keys = list(self.procs)
        for key in keys:
            self.queue.add(("ready",) + key + (None,))

    def write_runtime_faults(self, faults):
        tmp = self.faults_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(faults or {}, f)
        os.replace(tmp, self.faults_path)

    # ------------------------------------------------------------ worker

    def _run(self):
        while True:
            item = self.queue.get()
            if item is None:
                return
            action, ns, name, uid = item
            try:
                getattr(self, "_do_" + action)((ns, name), uid)
            except Exception as e:           # keep the kubelet alive, but say why
                self.log("kubelet: %s %s/%s failed: %r" % (action, ns, name, e))

    def _spec_for(self, pod, ip):
        md, spec = pod["metadata"], pod.get("spec") or {}
        containers = spec.get("containers") or [{}]
        c = containers[0]
        image = c.get("image", "")
        ports = [p.get("containerPort") for p in c.get("ports") or [] if p.get("containerPort")]
        env = {e["name"]: str(e["value"]) for e in c.get("env") or []
               if isinstance(e, dict) and e.get("name") and e.get("value") is not None}
        flavor = (md.get("annotations") or {}).get(FLAVOR_ANNOTATION)
        if "sandbox-router" in image and not flavor:
            argv = _python("router.py") + ["--host", ip, "--port", str(ports[0] if ports else 8080)]
            if self.config.get("router_port80", True):
                argv += ["--port", "80"]
            argv += ["--api", self.config["internal_api_url"], "--pod-cidr", self.ipblock.cidr]
            if self.config.get("router_auth_token"):
                argv += ["--auth-token", self.config["router_auth_token"]]
            return ("router", None, ports[0] if ports else 8080, argv, env)
        if not flavor:
            flavor = "sandboxd" if "sandboxd" in image else "python"
        port = ports[0] if ports else (8080 if flavor == "sandboxd" else 8888)
        argv = _python("runtime.py") + ["--host", ip, "--port", str(port), "--base", "@BASE@",
                                        "--flavor", flavor, "--faults-file", self.faults_path,
                                        "--spool-dir", "@SPOOL@"]
        if flavor == "sandboxd":
            # sandboxd always listens on both; a containerPort named grpc moves the gRPC one
            grpc_port = next((p.get("containerPort") for p in c.get("ports") or []
                              if isinstance(p, dict) and p.get("name") == "grpc"
                              and p.get("containerPort")), 9090)
            if grpc_port != port:
                argv += ["--grpc-port", str(grpc_port), "--pod", "%s/%s" % (
                    md.get("namespace", ""), md["name"]),
                    "--grpc-gen-dir", os.path.join(self.state_dir, "grpc-gen")]
                if os.environ.get("DEVCLUSTER_GRPC_PYTHON"):
                    argv += ["--grpc-python", os.environ["DEVCLUSTER_GRPC_PYTHON"]]
        timeout = env.get("SANDBOX_EXEC_TIMEOUT_SECONDS") or self.config.get("exec_timeout")
        if timeout:
            argv += ["--exec-timeout", str(timeout)]
        return ("runtime", flavor, port, argv, env)

    def _do_start(self, key, uid):
        pod = self.store.get(self.pods_res, *key)
        if pod is None or pod["metadata"].get("deletionTimestamp") or \
                pod["metadata"]["uid"] != uid:
            return
        with self.lock:
            old = self.procs.get(key)
            if old is not None:
                if old.uid != uid:          # a previous pod of that name is still going away
                    self.queue.add(("start",) + key + (uid,), 0.02)
                return
            ip = self.ipblock.allocate()
            pp = PodProc(key, pod["metadata"]["uid"], ip, self._spec_for(pod, ip))
            pp.dir = os.path.join(self.state_dir, "pods", key[0], key[1])
            self.procs[key] = pp
        shutil.rmtree(pp.dir, ignore_errors=True)
        os.makedirs(os.path.join(pp.dir, "root"), exist_ok=True)
        self._set_status(pp, pod_pending=True)
        self._spawn(pp)

    def _spawn(self, pp):
        base = os.path.join(pp.dir, "root")
        spool = os.path.join(pp.dir, "spool")
        os.makedirs(spool, exist_ok=True)
        argv = [{"@BASE@": base, "@SPOOL@": spool}.get(a, a) for a in pp.argv]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": base,
               "LANG": os.environ.get("LANG", "C.UTF-8"), "PYTHONUNBUFFERED": "1",
               "PYTHONDONTWRITEBYTECODE": "1", "HOSTNAME": pp.key[1],
               "POD_NAME": pp.key[1], "POD_NAMESPACE": pp.key[0], "POD_IP": pp.ip,
               "SANDBOX_BASE_DIR": base}
        env.update(pp.env)
        pp.log = open(os.path.join(pp.dir, "log"), "ab", buffering=0)
        pp.listening = pp.ready = False
        pp.exit_code = None
        pp.started = time.monotonic()
        pp.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=pp.log, cwd=base, env=env, start_new_session=True,
                                   close_fds=True)
        if self.nice_starts:
            try:
                os.setpriority(os.PRIO_PROCESS, pp.proc.pid, max(self.nice, STARTING_NICE))
            except OSError:
                pass
        self._write_process_list()
        threading.Thread(target=self._reader, args=(pp, pp.proc), daemon=True,
                         name="pod-%s" % pp.key[1]).start()

    def _reader(self, pp, proc):
        seen = False
        try:
            for line in proc.stdout:
                if not seen and line.startswith(b"listening on"):
                    seen = True
                    pp.listening = True
                    self.queue.add(("ready",) + pp.key + (pp.uid,))
                try:
                    pp.log.write(line)
                except (OSError, ValueError):
                    pass
        finally:
            rc = proc.wait()
            pp.exit_code = rc
            self.queue.add(("exited",) + pp.key + (pp.uid,))

    def _proc(self, key, uid):
        with self.lock:
            pp = self.procs.get(key)
        return pp if pp is not None and (uid is None or pp.uid == uid) else None

    def _do_ready(self, key, uid):
        pp = self._proc(key, uid)
        if pp is None or pp.terminating or not pp.listening or not pp.alive():
            return
        if pp.kind == "runtime":
            if self.faults.get("never_ready"):
                return
            wait = self.faults.get_float("cold_start_ms", 0) / 1000.0 - \
                (time.monotonic() - pp.started)
            if wait > 0:
                self.queue.add(("ready",) + key + (uid,), wait)
                return
        if not pp.ready:
            self._normal_priority(pp)
            pp.ready = True
            self._set_status(pp)

    def _normal_priority(self, pp):
        """Every thread of a pod that turns Ready back to the cluster's priority (see the top)."""
        if not self.nice_starts:
            return
        try:
            tids = os.listdir("/proc/%d/task" % pp.proc.pid)
        except OSError:
            return
        for tid in tids:
            try:
                os.setpriority(os.PRIO_PROCESS, int(tid), self.nice)
            except ProcessLookupError:
                pass
            except OSError as e:
                self.nice_starts = False
                self.log("kubelet: pods start at normal priority from now on: %s" % e)
                return
        # the pod's other processes (sandboxd's gRPC server is the runtime's
        # child, started at the low priority it inherited): Linux applies a
        # process-group priority to every thread of the group
        try:
            os.setpriority(os.PRIO_PGRP, pp.proc.pid, self.nice)
        except OSError:
            pass

    def _do_exited(self, key, uid):
        pp = self._proc(key, uid)
        if pp is None or pp.alive():
            return
        self._write_process_list()
        if pp.terminating:
            return
        pod = self.store.get(self.pods_res, *key)
        if pod is None:
            return
        policy = (pod.get("spec") or {}).get("restartPolicy", "Always")
        pp.ready = False
        if policy == "Always" or (policy == "OnFailure" and pp.exit_code != 0):
            pp.restarts += 1
            self._set_status(pp, crashed=True)
            delay = min(2.0, 0.1 * (2 ** min(pp.restarts - 1, 5)))
            self.queue.add(("restart",) + key + (uid,), delay)
        else:
            self._set_status(pp, finished=True)

    def _do_restart(self, key, uid):
        pp = self._proc(key, uid)
        if pp is None or pp.terminating or pp.alive():
            return
        self._spawn(pp)

    def _do_terminate(self, key, uid):
        pp = self._proc(key, uid)
        if pp is not None:
            pp.terminating = True
        threading.Thread(target=self._terminate, args=(key, uid, pp), daemon=True,
                         name="kill-%s" % key[1]).start()

    def _terminate(self, key, uid, pp):
        pod = self.store.get(self.pods_res, *key)
        if pod is not None and pod["metadata"]["uid"] != uid:
            pod = None
        grace = 2.0
        if pod is not None:
            g = pod["metadata"].get("deletionGracePeriodSeconds")
            if isinstance(g, int):
                grace = min(grace, float(g))
        if pp is not None:
            self.on_pod_gone(key)
            self._kill(pp, grace)
        if pod is not None:
            self.store.remove(self.pods_res, key[0], key[1], pod["metadata"]["uid"])
        self._forget(key, pp)

    def _do_gone(self, key, uid):
        pp = self._proc(key, uid)
        if pp is None or pp.terminating:
            return                          # unknown, or a terminate thread owns it
        pp.terminating = True
        self.on_pod_gone(key)
        threading.Thread(target=lambda: (self._kill(pp, 0.5), self._forget(key, pp)),
                         daemon=True, name="kill-%s" % key[1]).start()

    def _forget(self, key, pp):
        # The directory goes while the pod still holds its name here: a new
        # pod of that name (the controller makes one as soon as the old Pod
        # object is removed) waits in _do_start until then, and its start
        # makes the same directory. Removed after the release, it could take
        # the new pod's directory between its makedirs and its process's
        # start (the start failed and the pod stayed Pending for good).
        if pp is not None and not self.config.get("keep_pod_dirs"):
            with self.lock:
                mine = self.procs.get(key) is pp
            if mine:
                shutil.rmtree(pp.dir, ignore_errors=True)
        with self.lock:
            if pp is not None and self.procs.get(key) is pp:
                del self.procs[key]
                self.ipblock.release(pp.ip)
        self._write_process_list()

    @staticmethod
    def _kill_session(sid, sig):
        """Signal what is left of a pod's session: commands its runtime put in
        process groups of their own (sandboxd's gRPC Start/Execute) are out of
        reach of killpg, and a real container takes them along when it dies."""
        for d in os.listdir("/proc"):
            if not d.isdigit() or int(d) == sid:
                continue
            try:
                with open("/proc/%s/stat" % d, "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
                if int(fields[3]) == sid:         # state ppid pgrp SESSION
                    os.kill(int(d), sig)
            except (OSError, IndexError, ValueError):
                pass

    @staticmethod
    def _kill(pp, grace):
        proc = pp.proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except OSError:
                pass
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)    # also any leftover group members
        except OSError:
            pass
        Kubelet._kill_session(proc.pid, signal.SIGKILL)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        if pp.log:
            try:
                pp.log.close()
            except OSError:
                pass

    def kill_process(self, ns, name, sig=signal.SIGKILL, before=None):
        """Simulate a crash of a pod's process (admin endpoint). -> pid or None.

        `before()` runs just before the signal when there is a process to kill."""
        with self.lock:
            pp = self.procs.get((ns, name))
        if pp is None or not pp.alive():
            return None
        if before is not None:
            before()
        try:
            os.killpg(pp.proc.pid, sig)
        except OSError:
            return None
        self._kill_session(pp.proc.pid, sig)
        return pp.proc.pid

    # ------------------------------------------------------------ pod status

    def _set_status(self, pp, pod_pending=False, crashed=False, finished=False):
        now = now_rfc3339()
        ready = pp.ready and not crashed and not finished

        def fn(pod):
            if pod["metadata"]["uid"] != pp.uid:
                return False
            st = pod.get("status") or {}
            old = {c["type"]: c for c in st.get("conditions") or []}

            def cond(t, ok, reason=None):
                c = {"type": t, "status": "True" if ok else "False"}
                prev = old.get(t)
                c["lastTransitionTime"] = prev["lastTransitionTime"] \
                    if prev and prev["status"] == c["status"] else now
                c["lastProbeTime"] = None
                if reason and not ok:
                    c["reason"] = reason
                return c
            phase = "Running"
            if pod_pending or (not pp.ready and pp.restarts == 0 and not finished):
                phase = "Pending"
            if finished:
                phase = "Succeeded" if pp.exit_code == 0 else "Failed"
            image = ((pod.get("spec") or {}).get("containers") or [{}])[0].get("image", "")
            cname = ((pod.get("spec") or {}).get("containers") or [{}])[0].get("name", "main")
            cs = {"name": cname, "image": image, "imageID": image, "ready": ready,
                  "restartCount": pp.restarts, "started": phase == "Running" and pp.alive()}
            if phase == "Pending":
                cs["state"] = {"waiting": {"reason": "ContainerCreating"}}
            elif finished:
                cs["state"] = {"terminated": {"exitCode": pp.exit_code or 0,
                                              "reason": "Completed" if pp.exit_code == 0
                                              else "Error", "finishedAt": now}}
            elif crashed:
                cs["state"] = {"waiting": {"reason": "CrashLoopBackOff"}}
                cs["lastState"] = {"terminated": {"exitCode": pp.exit_code or 0,
                                                  "finishedAt": now}}
            else:
                cs["state"] = {"running": {"startedAt": now}}
                cs["containerID"] = "devcluster://%d" % pp.proc.pid if pp.proc else ""
            new = {"phase": phase, "hostIP": self.ipblock.node_ip,
                   "hostIPs": [{"ip": self.ipblock.node_ip}],
                   "startTime": st.get("startTime", now), "qosClass": "BestEffort",
                   "conditions": [cond("PodReadyToStartContainers", phase != "Pending"),
                                  cond("Initialized", True),
                                  cond("Ready", ready, "ContainersNotReady"),
                                  cond("ContainersReady", ready, "ContainersNotReady"),
                                  cond("PodScheduled", True)],
                   "containerStatuses": [cs]}
            if phase != "Pending":
                new["podIP"] = pp.ip
                new["podIPs"] = [{"ip": pp.ip}]
            pod["status"] = new
            pod.setdefault("spec", {})["nodeName"] = "devcluster-node"

        self.store.mutate(self.pods_res, pp.key[0], pp.key[1], fn)

    # ------------------------------------------------------------ introspection, shutdown

    def snapshot(self):
        with self.lock:
            return [{"namespace": k[0], "pod": k[1], "uid": pp.uid, "ip": pp.ip,
                     "port": pp.port, "kind": pp.kind, "flavor": pp.flavor,
                     "pid": pp.proc.pid if pp.proc else None, "alive": pp.alive(),
                     "listening": pp.listening, "ready": pp.ready, "restarts": pp.restarts,
                     "terminating": pp.terminating, "dir": pp.dir}
                    for k, pp in sorted(self.procs.items())]

    def target(self, ns, name):
        """(ip, ready) of a pod's process, or None."""
        with self.lock:
            pp = self.procs.get((ns, name))
            return (pp.ip, pp.ready and pp.alive()) if pp else None

    def _write_process_list(self):
        with self.lock:
            items = [{"pid": pp.proc.pid, "pod": "%s/%s" % k, "kind": pp.kind}
                     for k, pp in self.procs.items() if pp.alive()]
        path = os.path.join(self.state_dir, "processes.json")
        tmp = path + ".tmp.%d" % threading.get_ident()
        try:
            with open(tmp, "w") as f:
                json.dump(items, f)
            os.replace(tmp, path)
        except OSError:
            pass

    def shutdown(self):
        self.queue.shutdown()
        with self.lock:
            procs = list(self.procs.values())
        for pp in procs:
            pp.terminating = True
            if pp.alive():
                try:
                    os.killpg(pp.proc.pid, signal.SIGTERM)
                except OSError:
                    pass
        deadline = time.monotonic() + 2.0
        for pp in procs:
            if pp.proc is None:
                continue
            try:
                pp.proc.wait(timeout=max(0.01, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(pp.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            self._kill_session(pp.proc.pid, signal.SIGKILL)
            try:
                pp.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
        with self.lock:
            self.procs.clear()
        self._write_process_list()
        self.ipblock.close()
