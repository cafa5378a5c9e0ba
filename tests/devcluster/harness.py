"""Test helpers for suites that need a running dev cluster.

    from . import harness                       # inside tests/devcluster
    c = harness.DevCluster("--warm-replicas", "2").up()
    try:
        status, obj = c.api("GET", "/api/v1/namespaces/default/pods")
        c.create_claim("my-claim", pool="python-sandbox-warmpool")
        c.wait_claim("my-claim", lambda o: harness.ready(o))
        out = c.kubectl("get", "sandboxclaims", "-A")          # CompletedProcess
    finally:
        c.down()

Every DevCluster has its own state directory (removed by down()), its own
kubectl cache dir (KUBECACHEDIR) and HOME, and is started with
`cluster.py up` / stopped with `cluster.py down`, exactly like `make
devcluster-up`. `KUBECTL` is None when kubectl is not on PATH.
"""
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
CLUSTER = os.path.join(HERE, "cluster.py")
KUBECTL = shutil.which("kubectl")
CLAIMS = "/apis/extensions.agents.x-k8s.io/%s/namespaces/%s/sandboxclaims"
SANDBOXES = "/apis/agents.x-k8s.io/%s/namespaces/%s/sandboxes"
RESET_FAULTS = {k: None for k in (
    "controller_delay_ms", "cold_start_ms", "never_ready", "delete_claim_after_ms",
    "api_error_every", "api_error_code", "api_429_every", "retry_after", "api_fault_match",
    "api_latency_ms", "watch_drop_after", "watch_end_after", "watch_expired",
    "watch_expired_every", "watch_expired_http",
    "bookmark_interval_ms", "portforward", "runtime", "create_then_fail", "create_then_drop")}


def cond(obj, ctype="Ready"):
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return c
    return None


def ready(obj):
    c = cond(obj)
    return bool(c and c.get("status") == "True")


def reason(obj):
    return (cond(obj) or {}).get("reason")


class Http:
    """A keep-alive JSON client for one base URL (http only)."""

    def __init__(self, base, timeout=30):
        u = urllib.parse.urlsplit(base)
        self.host, self.port, self.timeout = u.hostname, u.port, timeout
        self.conn = None

    def request(self, method, path, body=None, headers=None, raw=False):
        hs = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            hs["Content-Type"] = "application/json"
        hs.update(headers or {})
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, data, hs)
                resp = self.conn.getresponse()
                payload = resp.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        if resp.getheader("connection", "").lower() == "close":
            self.conn.close()
            self.conn = None
        if raw:
            return resp.status, dict(resp.getheaders()), payload
        try:
            obj = json.loads(payload) if payload else None
        except ValueError:
            obj = payload
        return resp.status, obj

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class Watch:
    """An open watch stream read on a background thread; events() / next()."""

    def __init__(self, base, path, timeout=30):
        u = urllib.parse.urlsplit(base)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
        self.conn.request("GET", path, headers={"Accept": "application/json"})
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.headers = dict(self.resp.getheaders())
        self.items = []
        self.closed = False           # clean end (last chunk seen)
        self.broken = None            # exception text when the stream was cut
        self.cv = threading.Condition()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        """Parse the chunked body by hand, so that a clean end (the last chunk) and a
        cut connection can be told apart."""
        try:
            if self.status != 200 or "chunked" not in self.headers.get(
                    "Transfer-Encoding", ""):
                self.body = self.resp.read()
                with self.cv:
                    self.closed = True
                return
            fp = self.resp.fp
            buf = b""
            while True:
                size_line = fp.readline()
                if not size_line:
                    raise EOFError("connection closed before the last chunk")
                n = int(size_line.split(b";")[0].strip(), 16)
                if n == 0:
                    fp.readline()
                    with self.cv:
                        self.closed = True
                    return
                data = fp.read(n)
                if len(data) < n:
                    raise EOFError("connection closed inside a chunk")
                fp.readline()
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        ev = json.loads(line)
                        with self.cv:
                            self.items.append(ev)
                            self.cv.notify_all()
        except Exception as e:                        # EOF / reset: the stream was cut
            with self.cv:
                self.broken = "%s: %s" % (type(e).__name__, e)
        finally:
            with self.cv:
                self.cv.notify_all()

    def wait(self, pred, timeout=10):
        """Wait until pred(list of events) is true; returns the events."""
        deadline = time.monotonic() + timeout
        with self.cv:
            while not pred(self.items):
                left = deadline - time.monotonic()
                if left <= 0 or ((self.closed or self.broken) and not pred(self.items)):
                    raise AssertionError("watch condition not met; events=%s closed=%s "
                                         "broken=%s" % (
                                             [(e["type"], e["object"].get("metadata", {}).get(
                                                 "resourceVersion")) for e in self.items],
                                             self.closed, self.broken))
                self.cv.wait(min(left, 0.1))
            return list(self.items)

    def wait_end(self, timeout=10):
        deadline = time.monotonic() + timeout
        with self.cv:
            while not (self.closed or self.broken):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("watch did not end")
                self.cv.wait(min(left, 0.1))
        return self.closed, self.broken

    def close(self):
        try:
            self.conn.sock and self.conn.sock.shutdown(2)
        except OSError:
            pass
        self.conn.close()


class DevCluster:
    def __init__(self, *flags, tmp_root=None):
        self.flags = list(flags)
        self.state = tempfile.mkdtemp(prefix="devcluster-", dir=tmp_root)
        self.kcache = os.path.join(self.state, "kcache")
        self.home = os.path.join(self.state, "home")
        os.makedirs(self.home, exist_ok=True)
        self.kubeconfig = None
        self.startup_s = None
        self._http = None
        self._bg = []

    # ------------------------------------------------------------ lifecycle

    def up(self):
        t0 = time.monotonic()
        p = subprocess.run([sys.executable, CLUSTER, "up", "--state", self.state] + self.flags,
                           capture_output=True, text=True, timeout=60)
        self.startup_s = time.monotonic() - t0
        if p.returncode != 0:
            shutil.rmtree(self.state, ignore_errors=True)
            raise RuntimeError("cluster.py up failed (%d): %s%s" % (p.returncode, p.stdout,
                                                                    p.stderr))
        self.kubeconfig = p.stdout.strip().splitlines()[-1]
        self.api_url = self.file("api_url")
        self.admin_url = self.file("admin_url")
        self.info = json.loads(self.file("cluster.json"))
        self._http = Http(self.admin_url)
        return self

    def down(self, keep=False):
        for proc in self._bg:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        self._bg = []
        if self._http:
            self._http.close()
        p = subprocess.run([sys.executable, CLUSTER, "down", "--state", self.state],
                           capture_output=True, text=True, timeout=60)
        if not keep:
            shutil.rmtree(self.state, ignore_errors=True)
        return p

    def file(self, name):
        with open(os.path.join(self.state, name)) as f:
            return f.read().strip()

    def log(self):
        try:
            return self.file("cluster.log")
        except OSError:
            return ""

    # ------------------------------------------------------------ API helpers

    def api(self, method, path, body=None, headers=None, raw=False):
        """Request on the (plain) admin URL, which serves the whole API too."""
        return self._http.request(method, path, body, headers, raw)

    def admin(self, method, path, body=None):
        status, obj = self.api(method, "/_admin/" + path, body)
        if status != 200:
            raise AssertionError("admin %s %s -> %s %s" % (method, path, status, obj))
        return obj

    def faults(self, **knobs):
        return self.admin("POST", "faults", knobs)

    def reset_faults(self):
        return self.admin("POST", "faults", RESET_FAULTS)

    def state_dump(self):
        return self.admin("GET", "state")

    def requests_since(self, seq=0):
        return self.admin("GET", "requests?since=%d" % seq)["requests"]

    def last_seq(self):
        reqs = self.admin("GET", "requests?limit=1")["requests"]
        return reqs[-1]["seq"] if reqs else 0

    def watch(self, path, timeout=30):
        return Watch(self.admin_url, path, timeout)

    def create_claim(self, name, pool="python-sandbox-warmpool", ns="default", spec=None,
                     version="v1beta1", metadata=None):
        md = dict(metadata or {})
        if name.endswith("-"):
            md["generateName"] = name
        else:
            md["name"] = name
        if spec is None:
            spec = {"warmPoolRef": {"name": pool}} if version == "v1beta1" else \
                {"sandboxTemplateRef": {"name": pool}}
        body = {"apiVersion": "extensions.agents.x-k8s.io/" + version, "kind": "SandboxClaim",
                "metadata": md, "spec": spec}
        status, obj = self.api("POST", CLAIMS % (version, ns), body)
        if status != 201:
            raise AssertionError("create claim %s -> %s %s" % (name, status, obj))
        return obj

    def get(self, path):
        status, obj = self.api("GET", path)
        return obj if status == 200 else None

    def claim(self, name, ns="default", version="v1beta1"):
        return self.get(CLAIMS % (version, ns) + "/" + name)

    def sandbox(self, name, ns="default", version="v1beta1"):
        return self.get(SANDBOXES % (version, ns) + "/" + name)

    def delete(self, path, body=None):
        return self.api("DELETE", path, body)

    def wait_for(self, fn, timeout=10, interval=0.01, what="condition"):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = fn()
            if last:
                return last
            time.sleep(interval)
        raise AssertionError("timed out waiting for %s (last=%r)" % (what, last))

    def wait_claim(self, name, pred=ready, timeout=10, ns="default", version="v1beta1"):
        return self.wait_for(lambda: (lambda o: o if o is not None and pred(o) else None)(
            self.claim(name, ns, version)), timeout, what="claim %s" % name)

    def processes(self):
        return self.state_dump()["processes"]

    def wait_pool_ready(self, pool="python-sandbox-warmpool", timeout=10):
        def ok():
            for p in self.state_dump()["warmpools"]:
                if p["name"] == pool:
                    return p["readyReplicas"] >= p["replicas"]
            return False
        return self.wait_for(ok, timeout, 0.02, "pool %s ready" % pool)

    # ------------------------------------------------------------ kubectl

    def kubectl_env(self, extra=None):
        env = dict(os.environ)
        env.update({"KUBECONFIG": self.kubeconfig, "KUBECACHEDIR": self.kcache,
                    "HOME": self.home})
        env.update(extra or {})
        return env

    def kubectl(self, *args, timeout=60, env=None):
        if KUBECTL is None:
            raise RuntimeError("kubectl is not on PATH")
        return subprocess.run([KUBECTL, "--kubeconfig", self.kubeconfig] + list(args),
                              capture_output=True, text=True, timeout=timeout,
                              env=self.kubectl_env(env))

    def kubectl_bg(self, *args, env=None):
        """Start kubectl in the background; returns a BgProcess draining stdout/stderr."""
        proc = subprocess.Popen([KUBECTL, "--kubeconfig", self.kubeconfig] + list(args),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=self.kubectl_env(env),
                                start_new_session=True)
        self._bg.append(proc)
        return BgProcess(proc)


class BgProcess:
    """A child whose stdout/stderr lines are drained for its whole life."""

    def __init__(self, proc):
        self.proc = proc
        self.out, self.err = [], []
        self.cv = threading.Condition()
        self.threads = [threading.Thread(target=self._drain, args=(proc.stdout, self.out),
                                         daemon=True),
                        threading.Thread(target=self._drain, args=(proc.stderr, self.err),
                                         daemon=True)]
        for t in self.threads:
            t.start()

    def _drain(self, f, sink):
        for line in f:
            with self.cv:
                sink.append(line.decode(errors="replace").rstrip("\n"))
                self.cv.notify_all()
        with self.cv:
            self.cv.notify_all()
        f.close()

    def wait_line(self, pattern, timeout=15):
        import re
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cv:
            while True:
                for line in self.out:
                    m = rx.search(line)
                    if m:
                        return m
                if self.proc.poll() is not None and all(not t.is_alive() for t in self.threads):
                    raise AssertionError("process exited %s before %r; stderr=%s"
                                         % (self.proc.returncode, pattern, self.err))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("no line %r in %s; stderr=%s"
                                         % (pattern, self.out, self.err))
                self.cv.wait(min(left, 0.1))

    def stop(self, sig=2, timeout=5):
        import signal as _s
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except OSError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, _s.SIGKILL)
                self.proc.wait()
        for t in self.threads:
            t.join(2)
        return self.proc.returncode
