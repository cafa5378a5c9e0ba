"""sandboxd's gRPC ProcessService in the dev cluster (grpc_server.py, h2front.py).

The cases drive a real grpcio client (and a python3-h2 client for raw frame
observations) in tests/devcluster/tests/grpc_driver.py, a /usr/bin/python3
child, because the dev cluster's own interpreter has no grpc. Everything is
skipped, saying why, when that interpreter, python3-grpcio, python3-protobuf,
python3-h2 or protoc is missing.
"""
import base64
import json
import os
import re
import select
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import unittest

from .. import harness

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import seed  # noqa: E402  (tests/devcluster/seed.py imports its siblings by plain name)

HERE = os.path.dirname(os.path.abspath(__file__))
DRIVER = os.path.join(HERE, "grpc_driver.py")
GRPC_PY = os.environ.get("DEVCLUSTER_GRPC_PYTHON", "/usr/bin/python3")
PODS = "/api/v1/namespaces/default/pods"
POD = "sbd-grpc"
OTHER = "sbd-other"
_why = []


def missing():
    """Why the gRPC cases cannot run, or None: asks the driver itself, which imports
    grpc, protobuf, h2 and hyperframe and compiles process.proto with protoc."""
    if not _why:
        why = None
        if shutil.which(GRPC_PY) is None:
            why = "%s not found (set DEVCLUSTER_GRPC_PYTHON)" % GRPC_PY
        else:
            try:
                r = subprocess.run([GRPC_PY, DRIVER], input='{"op": "hello"}\n',
                                   capture_output=True, text=True, timeout=60)
                ans = json.loads(r.stdout.splitlines()[0]) if r.stdout else {
                    "error": "no answer: %s" % r.stderr.strip()[-300:]}
            except (OSError, ValueError, subprocess.TimeoutExpired) as e:
                ans = {"error": str(e)}
            if "error" in ans:
                why = "%s (install: apt-get install -y python3-grpcio python3-protobuf " \
                      "protobuf-compiler libprotobuf-dev python3-h2 python3-hpack)" % ans["error"]
        _why.append(why)
    return _why[0]


class Driver:
    def __init__(self, target=None):
        self.p = subprocess.Popen([GRPC_PY, DRIVER], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True, bufsize=1)
        if target:
            self.connect(target)

    def do(self, _wait=60, **cmd):
        self.p.stdin.write(json.dumps(cmd) + "\n")
        self.p.stdin.flush()
        r, _, _ = select.select([self.p.stdout], [], [], _wait)
        if not r:
            raise AssertionError("driver: no answer to %s in %ss" % (cmd.get("op"), _wait))
        line = self.p.stdout.readline()
        if not line:
            raise AssertionError("driver exited")
        out = json.loads(line)
        if "error" in out:
            raise AssertionError("driver: %s" % out["error"])
        return out

    def connect(self, target):
        return self.do(op="connect", target=target)

    def unary(self, method, req, timeout=30):
        return self.do(op="unary", method=method, req=req, timeout=timeout, _wait=timeout + 30)

    def execute(self, command, timeout=30, **config):
        config["command"] = command
        return self.unary("Execute", {"config": config}, timeout)

    def start(self, sid, command, pty=None, timeout=60, **config):
        config["command"] = command
        req = {"config": config}
        if pty:
            req["pty"] = {"cols": pty[0], "rows": pty[1]}
        return self.do(op="start", sid=sid, req=req, timeout=timeout)     # answers at once

    def next(self, sid, wait=10):
        return self.do(op="next", sid=sid, wait=wait, _wait=wait + 10)

    def events(self, sid, wait=20):
        """Every event of a stream until its end -> (events, end)."""
        evs = []
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            e = self.next(sid, max(0.1, deadline - time.monotonic()))
            if "end" in e:
                return evs, e["end"]
            if "event" in e:
                evs.append(e["event"])
        raise AssertionError("stream %s did not end in %ss: %s" % (sid, wait, evs))

    def read_until(self, sid, pattern, wait=10):
        """Concatenated stdout until it matches -> (text, events)."""
        buf, evs = b"", []
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            e = self.next(sid, max(0.1, deadline - time.monotonic()))
            if "event" in e:
                evs.append(e["event"])
                if "stdout" in e["event"]:
                    buf += b64(e["event"]["stdout"])
                    if re.search(pattern, buf.decode(errors="replace")):
                        return buf.decode(errors="replace"), evs
            elif "end" in e:
                break
        raise AssertionError("no %r in stdout %r (events %s)" % (pattern, buf, evs))

    def raw(self, target, method, req, **kw):
        return self.do(op="raw", target=target, method=method, req=req, _wait=60, **kw)

    def close(self):
        try:
            self.p.stdin.close()
        except OSError:
            pass
        try:
            self.p.wait(5)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        self.p.stdout.close()


def b64(s):
    return base64.b64decode(s) if s else b""


def out_of(evs, kind="stdout"):
    return b"".join(b64(e[kind]) for e in evs if kind in e)


C = None
IPS = {}


def sandboxd_pod(name):
    tmpl = seed.sandboxd_template_obj()["spec"]["podTemplate"]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": dict(tmpl["metadata"], name=name), "spec": tmpl["spec"]}


def setUpModule():
    global C
    if missing():
        return
    C = harness.DevCluster("--warm-replicas", "0").up()
    for name in (POD, OTHER):
        status, obj = C.api("POST", PODS, sandboxd_pod(name))
        assert status == 201, (status, obj)
    for name in (POD, OTHER):
        pod = C.wait_for(lambda: (lambda o: o if o and harness.ready(o) else None)(
            C.get(PODS + "/" + name)), 30, 0.05, "pod %s ready" % name)
        IPS[name] = pod["status"]["podIP"]


def tearDownModule():
    if C is not None:
        C.down()


def grpc_server_pid(pod):
    """pid of the pod's grpc_server.py (a child of its runtime.py)."""
    rt = [p for p in C.processes() if p["pod"] == pod][0]["pid"]
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open("/proc/%s/cmdline" % d, "rb") as f:
                cmd = f.read()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == rt and b"grpc_server.py" in cmd:
            return int(d)
    return None


def children(ppid):
    """[(pid, state)] of ppid's children."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    st = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(st[1]) == ppid:
                out.append((int(d), st[0]))
    return out


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class GrpcBase:
    # skipped test by test (not the class) so every case is counted and says why
    @classmethod
    def setUpClass(cls):
        cls.why = missing()
        if cls.why:
            return
        cls.target = "%s:9090" % IPS[POD]
        cls.d = Driver(cls.target)

    @classmethod
    def tearDownClass(cls):
        if not cls.why:
            cls.d.close()

    def setUp(self):
        if self.why:
            self.skipTest(self.why)

    def root(self, pod=POD):
        return os.path.realpath(os.path.join(C.state, "pods", "default", pod, "root"))

    def set_faults(self, knobs, pod=POD):
        C.faults(runtime={"grpc": {"default/" + pod: knobs}})

    def tearDown(self):
        if not self.why:
            C.faults(runtime={"grpc": None})


# ---------------------------------------------------------------- the RPCs

class GrpcProcessServiceTest(GrpcBase, unittest.TestCase):
    def test_execute_binary_output_and_exit_code(self):
        r = self.d.execute(["/bin/sh", "-c", r"printf 'a\000b\377'; printf err >&2; exit 7"])
        self.assertEqual(r["code"], "OK", r)
        self.assertEqual((r["resp"]["exit_code"], b64(r["resp"]["stdout"]),
                          b64(r["resp"]["stderr"])), (7, b"a\x00b\xff", b"err"))

    def test_execute_cwd_defaults_to_root_and_is_confined(self):
        os.makedirs(os.path.join(self.root(), "sub", "deeper"), exist_ok=True)
        r = self.d.execute(["pwd"])
        self.assertEqual(b64(r["resp"]["stdout"]).decode().strip(), self.root())
        for cwd in ("sub/deeper", "/sub/deeper", self.root() + "/sub/deeper"):
            r = self.d.execute(["pwd"], cwd=cwd)
            self.assertEqual((r["code"], b64(r["resp"]["stdout"]).decode().strip()),
                             ("OK", self.root() + "/sub/deeper"), cwd)
        link = os.path.join(self.root(), "out")
        if not os.path.islink(link):
            os.symlink("/", link)
        for cwd in ("..", "../..", "sub/../../x", "out", "out/tmp"):
            r = self.d.execute(["pwd"], cwd=cwd)
            self.assertEqual(r["code"], "PERMISSION_DENIED", (cwd, r))
            self.assertIn("outside", r["details"])
        r = self.d.execute(["pwd"], cwd="no/such/dir")
        self.assertEqual(r["code"], "NOT_FOUND", r)

    def test_execute_env_vars_appended_to_the_daemon_environment(self):
        r = self.d.execute(["/bin/sh", "-c", 'echo "$GREETING|$POD_NAME|$SANDBOX_BASE_DIR"'],
                           env_vars={"GREETING": "hello world"})
        self.assertEqual(b64(r["resp"]["stdout"]).decode().strip(),
                         "hello world|%s|%s" % (POD, os.path.join(C.state, "pods", "default",
                                                                    POD, "root")))

    def test_execute_errors(self):
        r = self.d.execute(["no-such-binary-xyz"])
        self.assertEqual(r["code"], "NOT_FOUND", r)
        self.assertIn("no-such-binary-xyz", r["details"])
        r = self.d.unary("Execute", {"config": {"command": []}})
        self.assertEqual((r["code"], r["details"]), ("INVALID_ARGUMENT", "command is required"))
        r = self.d.unary("Execute", {})
        self.assertEqual(r["code"], "INVALID_ARGUMENT", r)
        for bad in ({"command": ["ec\u0000ho"]}, {"command": ["true"], "env_vars": {"A=B": "c"}},
                    {"command": ["true"], "env_vars": {"A": "x\u0000"}},
                    {"command": ["true"], "cwd": "a\u0000b"}):
            r = self.d.unary("Execute", {"config": bad})
            self.assertEqual(r["code"], "INVALID_ARGUMENT", (bad, r))
        os.chmod(os.path.join(self.root()), 0o755)
        path = os.path.join(self.root(), "not-executable.sh")
        with open(path, "w") as f:
            f.write("#!/bin/sh\necho no\n")
        os.chmod(path, 0o644)
        r = self.d.execute(["./not-executable.sh"])
        self.assertEqual(r["code"], "PERMISSION_DENIED", r)

    def test_execute_deadline_kills_the_process_group(self):
        t0 = time.monotonic()
        r = self.d.execute(["/bin/sh", "-c", "sleep 30 & echo $! > bg.pid; wait"], timeout=0.7)
        dt = time.monotonic() - t0
        self.assertEqual(r["code"], "DEADLINE_EXCEEDED", r)
        self.assertLess(dt, 5)
        with open(os.path.join(self.root(), "bg.pid")) as f:
            bg = int(f.read())
        deadline = time.monotonic() + 5
        while pid_alive(bg) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertFalse(pid_alive(bg), "the background sleep of the group survived")

    def test_start_init_output_exit_in_order(self):
        self.d.start("order", ["/bin/sh", "-c", "echo out; sleep 0.2; echo err >&2; exit 3"])
        evs, end = self.d.events("order")
        self.assertEqual(end["code"], "OK", end)
        self.assertIn("init", evs[0])
        self.assertGreater(evs[0]["init"]["process_id"], 0)
        self.assertEqual(evs[-1], {"exit": {"exit_code": 3}})
        self.assertEqual((out_of(evs), out_of(evs, "stderr")), (b"out\n", b"err\n"))
        kinds = [next(iter(e)) for e in evs]
        self.assertEqual(kinds.count("init") + kinds.count("exit"), 2)

    def test_start_chunks_are_at_most_4096_bytes(self):
        self.d.start("big", ["head", "-c", "300000", "/dev/urandom"])
        evs, end = self.d.events("big")
        sizes = [len(b64(e["stdout"])) for e in evs if "stdout" in e]
        self.assertEqual(sum(sizes), 300000)
        self.assertLessEqual(max(sizes), 4096)
        self.assertIn(4096, sizes)
        self.assertEqual(evs[-1], {"exit": {"exit_code": 0}})

    def test_start_exit_minus_one_when_killed_by_a_signal(self):
        self.d.start("selfkill", ["/bin/sh", "-c", "kill -9 $$"])
        evs, _ = self.d.events("selfkill")
        self.assertEqual(evs[-1], {"exit": {"exit_code": -1}})

    def test_start_errors_before_init(self):
        for cmd, code in (([], "INVALID_ARGUMENT"), (["no-such-binary-xyz"], "NOT_FOUND")):
            self.d.start("bad", cmd)
            evs, end = self.d.events("bad")
            self.assertEqual((evs, end["code"]), ([], code), cmd)
        self.d.start("bad", ["pwd"], cwd="../../..")
        self.assertEqual(self.d.events("bad")[1]["code"], "PERMISSION_DENIED")

    def test_write_stdin_input_and_eof(self):
        self.d.start("cat", ["/bin/sh", "-c", "cat; echo done; sleep 30"])
        pid = self.d.next("cat")["event"]["init"]["process_id"]
        r = self.d.unary("WriteStdin", {"process_id": pid, "input": base64.b64encode(
            b"hello\x00\xff\n").decode()})
        self.assertEqual(r["code"], "OK", r)
        text, _ = self.d.read_until("cat", "hello")
        r = self.d.unary("WriteStdin", {"process_id": pid, "eof": {}})
        self.assertEqual(r["code"], "OK", r)
        self.d.read_until("cat", "done")
        r = self.d.unary("WriteStdin", {"process_id": pid, "input": "eA=="})
        self.assertEqual(r["code"], "FAILED_PRECONDITION", r)
        self.assertEqual(self.d.unary("SendSignal", {"process_id": pid, "signal": 9})["code"], "OK")
        evs, end = self.d.events("cat")
        self.assertEqual((evs[-1], end["code"]), ({"exit": {"exit_code": -1}}, "OK"))
        # once Start has ended, the id is gone
        r = self.d.unary("WriteStdin", {"process_id": pid, "input": "eA=="})
        self.assertEqual(r["code"], "NOT_FOUND", r)

    def test_stdin_nobody_reads_does_not_block_signals(self):
        self.d.start("full", ["sleep", "30"])
        pid = self.d.next("full")["event"]["init"]["process_id"]
        t0 = time.monotonic()
        r = self.d.unary("WriteStdin", {"process_id": pid, "input": base64.b64encode(
            b"z" * (1 << 20)).decode()}, timeout=1.0)
        self.assertEqual(r["code"], "DEADLINE_EXCEEDED", r)
        self.assertLess(time.monotonic() - t0, 5)
        r = self.d.unary("SendSignal", {"process_id": pid, "signal": 9}, timeout=5)
        self.assertEqual(r["code"], "OK", r)
        evs, end = self.d.events("full")
        self.assertEqual(evs[-1], {"exit": {"exit_code": -1}})

    def test_execute_returns_when_the_process_exits(self):
        # a background child that keeps its own output elsewhere does not hold the call
        t0 = time.monotonic()
        r = self.d.execute(["/bin/sh", "-c", "sleep 5 >/dev/null 2>&1 & echo $!; echo bye >&2"])
        self.assertLess(time.monotonic() - t0, 3)
        self.assertEqual((r["code"], b64(r["resp"]["stderr"])), ("OK", b"bye\n"))
        os.kill(int(b64(r["resp"]["stdout"])), 9)
        r = self.d.execute(["/bin/sh", "-c", "exec >&- 2>&-; sleep 0.5; exit 6"])
        self.assertEqual((r["code"], r["resp"]["exit_code"]), ("OK", 6))

    def test_request_over_4_mib_is_resource_exhausted(self):
        r = self.d.unary("WriteStdin", {"process_id": 987654, "input": base64.b64encode(
            b"q" * (5 << 20)).decode()})
        self.assertEqual(r["code"], "RESOURCE_EXHAUSTED", r)

    def test_unknown_process_id_is_not_found(self):
        for m, req in (("WriteStdin", {"process_id": 987654, "input": "eA=="}),
                       ("WriteStdin", {"process_id": 987654, "eof": {}}),
                       ("SendSignal", {"process_id": 987654, "signal": 15}),
                       ("ResizeTTY", {"process_id": 987654, "cols": 80, "rows": 24})):
            r = self.d.unary(m, req)
            self.assertEqual((r["code"], r["details"]), ("NOT_FOUND", "process 987654 not found"),
                             m)

    def test_send_signal_reaches_the_group_and_rejects_others(self):
        script = ('trap "echo got-int; exit 5" INT; echo ready; '
                  'while :; do sleep 0.05; done')
        self.d.start("sig", ["/bin/sh", "-c", script])
        pid = self.d.next("sig")["event"]["init"]["process_id"]
        self.d.read_until("sig", "ready")
        for bad in (0, 1, 3, 19, 64):
            r = self.d.unary("SendSignal", {"process_id": pid, "signal": bad})
            self.assertEqual(r["code"], "INVALID_ARGUMENT", (bad, r))
        self.assertEqual(self.d.unary("SendSignal", {"process_id": pid, "signal": 2})["code"],
                         "OK")
        evs, end = self.d.events("sig")
        self.assertIn(b"got-int", out_of(evs))
        self.assertEqual(evs[-1], {"exit": {"exit_code": 5}})
        for sig in (15, 9):
            self.d.start("sig2", ["sleep", "30"])
            pid = self.d.next("sig2")["event"]["init"]["process_id"]
            self.assertEqual(self.d.unary("SendSignal", {"process_id": pid, "signal": sig})[
                "code"], "OK")
            evs, _ = self.d.events("sig2")
            self.assertEqual(evs[-1], {"exit": {"exit_code": -1}}, sig)

    def test_resize_without_pty_is_failed_precondition(self):
        self.d.start("nopty", ["sleep", "30"])
        pid = self.d.next("nopty")["event"]["init"]["process_id"]
        r = self.d.unary("ResizeTTY", {"process_id": pid, "cols": 100, "rows": 30})
        self.assertEqual(r["code"], "FAILED_PRECONDITION", r)
        self.d.unary("SendSignal", {"process_id": pid, "signal": 9})
        self.d.events("nopty")

    def test_pty_size_echo_resize_and_sigint(self):
        # ends in `exec cat`, and the SIGINT goes only once cat has copied a
        # line: `sh -c` (dash) catches SIGINT, and one that lands between its
        # fork and the exec of a child is lost, so `...; sleep 30` could
        # outlive the signal (half the time under load)
        script = 'stty size; read line; echo "got:$line"; stty size; exec cat'
        self.d.start("pty", ["/bin/sh", "-c", script], pty=(91, 27))
        pid = self.d.next("pty")["event"]["init"]["process_id"]
        self.d.read_until("pty", r"27 91\r\n")
        r = self.d.unary("ResizeTTY", {"process_id": pid, "cols": 120, "rows": 40})
        self.assertEqual(r["code"], "OK", r)
        self.d.unary("WriteStdin", {"process_id": pid,
                                    "input": base64.b64encode(b"hi there\n").decode()})
        text, evs = self.d.read_until("pty", r"40 120\r\n")
        self.assertIn("hi there\r\n", text)           # the terminal's echo
        self.assertIn("got:hi there\r\n", text)
        self.assertFalse([e for e in evs if "stderr" in e], "a PTY has no stderr")
        self.d.unary("WriteStdin", {"process_id": pid,
                                    "input": base64.b64encode(b"cat-up\n").decode()})
        self.d.read_until("pty", r"cat-up\r\n(.|\n)*cat-up\r\n")   # echo, then cat's copy
        self.assertEqual(self.d.unary("SendSignal", {"process_id": pid, "signal": 2})["code"],
                         "OK")
        evs, end = self.d.events("pty")
        self.assertEqual((evs[-1], end["code"]), ({"exit": {"exit_code": -1}}, "OK"))

    def test_pty_is_the_controlling_terminal(self):
        # ^C typed into the terminal interrupts the foreground group; ^D after eof
        self.d.start("ctty", ["/bin/sh", "-c", 'trap "echo INTR; exit 9" INT; echo up; '
                              'while :; do sleep 0.05; done'], pty=(80, 24))
        pid = self.d.next("ctty")["event"]["init"]["process_id"]
        self.d.read_until("ctty", "up")
        self.d.unary("WriteStdin", {"process_id": pid, "input": base64.b64encode(b"\x03").decode()})
        evs, _ = self.d.events("ctty")
        self.assertIn(b"INTR", out_of(evs))
        self.assertEqual(evs[-1], {"exit": {"exit_code": 9}})
        self.d.start("eof", ["cat"], pty=(80, 24))
        pid = self.d.next("eof")["event"]["init"]["process_id"]
        self.d.unary("WriteStdin", {"process_id": pid, "input": base64.b64encode(b"abc\n").decode()})
        self.d.read_until("eof", "abc\r\nabc\r\n")
        self.assertEqual(self.d.unary("WriteStdin", {"process_id": pid, "eof": {}})["code"], "OK")
        evs, _ = self.d.events("eof")
        self.assertEqual(evs[-1], {"exit": {"exit_code": 0}})
        r = self.d.unary("ResizeTTY", {"process_id": pid, "cols": 1, "rows": 1})
        self.assertEqual(r["code"], "NOT_FOUND", r)

    def test_sixteen_concurrent_processes(self):
        t0 = time.monotonic()
        for i in range(16):
            self.d.start("c%d" % i, ["/bin/sh", "-c", "echo start %d; sleep 1; echo end %d" % (i, i)])
        ids = set()
        for i in range(16):
            evs, end = self.d.events("c%d" % i)
            ids.add(evs[0]["init"]["process_id"])
            self.assertEqual(out_of(evs), ("start %d\nend %d\n" % (i, i)).encode())
            self.assertEqual(evs[-1], {"exit": {"exit_code": 0}})
        self.assertEqual(len(ids), 16)
        self.assertLess(time.monotonic() - t0, 8, "the 16 one-second processes ran one by one")

    def test_cancelled_stream_kills_its_process(self):
        self.d.start("cancel", ["/bin/sh", "-c", "echo $$ > cancel.pid; sleep 30"])
        self.d.next("cancel")
        deadline = time.monotonic() + 5
        path = os.path.join(self.root(), "cancel.pid")
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.05)
        with open(path) as f:
            pid = int(f.read())
        self.d.do(op="cancel", sid="cancel")
        self.assertEqual(self.d.events("cancel")[1]["code"], "CANCELLED")
        deadline = time.monotonic() + 5
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertFalse(pid_alive(pid))
        # a stream cancelled while output flows too; and the server reaps both children
        self.d.start("cancel2", ["/bin/sh", "-c", "while :; do echo x; sleep 0.01; done"])
        self.d.read_until("cancel2", "x")
        self.d.do(op="cancel", sid="cancel2")
        self.assertEqual(self.d.events("cancel2")[1]["code"], "CANCELLED")
        gpid = grpc_server_pid(POD)
        deadline = time.monotonic() + 5
        while children(gpid) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(children(gpid), [], "children left (zombies?) under the server")

    def test_killed_pod_takes_its_commands_along(self):
        """A crash (POST /_admin/pods/kill, SIGKILL to the pod's group) leaves no command
        behind: pipe children via the kubelet's session sweep, PTY ones by PDEATHSIG."""
        d = Driver("%s:9090" % IPS[OTHER])
        try:
            pids = []
            for sid, pty in (("k1", None), ("k2", (80, 24))):
                d.start(sid, ["/bin/sh", "-c", "echo pid=$$; sleep 60"], pty=pty)
                text, _ = d.read_until(sid, r"pid=\d+")
                pids.append(int(re.search(r"pid=(\d+)", text).group(1)))
            self.assertTrue(all(pid_alive(p) for p in pids))
            C.admin("POST", "pods/kill", {"name": OTHER})
            deadline = time.monotonic() + 5
            while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
                time.sleep(0.05)
            self.assertEqual([p for p in pids if pid_alive(p)], [])
        finally:
            d.close()
        # the pod restarts and serves again
        def serving():
            pod = C.get(PODS + "/" + OTHER)
            if not (pod and harness.ready(pod)):
                return None
            d2 = Driver("%s:9090" % pod["status"]["podIP"])
            try:
                return d2.execute(["true"], timeout=5)["code"] == "OK"
            finally:
                d2.close()
        C.wait_for(serving, 30, 0.2, "pod %s serving gRPC again" % OTHER)

    def test_runtime_reports_and_restarts_its_grpc_server(self):
        ip = IPS[OTHER]
        h = harness.Http("http://%s:8080" % ip)
        try:
            status, st = h.request("GET", "/_runtime/stats")
            self.assertEqual((status, st["grpc"]), (200, "listening on %s:9090" % ip))
        finally:
            h.close()
        old = grpc_server_pid(OTHER)
        os.kill(old, 9)                     # a crash of the gRPC server alone
        def serving():
            new = grpc_server_pid(OTHER)
            if not new or new == old:
                return None
            d = Driver("%s:9090" % ip)
            try:
                return d.execute(["echo", "back"], timeout=5)["code"] == "OK"
            finally:
                d.close()
        C.wait_for(serving, 20, 0.2, "the gRPC server restarted by runtime.py")

    def test_slow_reader_keeps_server_memory_flat(self):
        """A client that never opens its window: the child blocks, the server does not buffer."""
        gpid = grpc_server_pid(POD)
        self.assertIsNotNone(gpid)
        before = rss_kb(gpid)
        r = self.d.raw(self.target, "Start",
                       {"config": {"command": ["/bin/sh", "-c",
                                               "echo $$ > flood.pid; head -c 200000000 /dev/zero"]}},
                       read=3, no_ack=True)
        self.assertLess(sum(r["message_bytes"]), 1 << 20)
        grown = rss_kb(gpid) - before
        self.assertLess(grown, 40 * 1024, "server RSS grew by %d KiB" % grown)


# ---------------------------------------------------------------- faults

class GrpcFaultsTest(GrpcBase, unittest.TestCase):
    def test_fault_switch_is_per_pod(self):
        self.set_faults({"grpc_deadline": True}, pod=OTHER)
        d = Driver(self.target)
        try:
            self.assertEqual(d.execute(["true"], timeout=2)["code"], "OK")
            self.set_faults({"grpc_deadline": True}, pod=OTHER)
            C.faults(runtime={"grpc": {"*": {"grpc_deadline": True}}})
            d.connect(self.target)
            self.assertEqual(d.execute(["true"], timeout=0.5)["code"], "DEADLINE_EXCEEDED")
            C.faults(runtime={"grpc": {"*": None}})
            d.connect(self.target)
            self.assertEqual(d.execute(["true"], timeout=2)["code"], "OK")
        finally:
            d.close()

    def test_slow_stream(self):
        cmd = ["/bin/sh", "-c", "for i in 1 2 3 4 5 6; do head -c 5000 /dev/zero; sleep 0.01; done"]
        t0 = time.monotonic()
        self.d.start("fast", cmd)
        evs, _ = self.d.events("fast")
        fast = time.monotonic() - t0
        self.set_faults({"grpc_slow_stream": 250})
        t0 = time.monotonic()
        self.d.start("slow", cmd)
        evs, _ = self.d.events("slow")
        slow = time.monotonic() - t0
        n = len([e for e in evs if "stdout" in e])
        self.assertEqual(len(out_of(evs)), 30000)
        self.assertGreaterEqual(slow, n * 0.25 - 0.05, (slow, n))
        self.assertGreater(slow, fast + 1.0)

    def test_goaway_mid_stream(self):
        self.set_faults({"grpc_goaway_mid_stream": {"after_messages": 1, "grace_ms": 3000}})
        r = self.d.raw(self.target, "Start", {"config": {"command": [
            "/bin/sh", "-c", "echo one; sleep 0.5; echo two"]}}, read=6)
        types = [f["type"] for f in r["frames"]]
        self.assertIn("GOAWAY", types, types)
        ga = [f for f in r["frames"] if f["type"] == "GOAWAY"]
        self.assertEqual(ga[0]["error_code"], 0)
        # the live stream goes on within the grace period: "two" and the exit come after GOAWAY
        first = types.index("GOAWAY")
        self.assertIn("DATA", types[first:])
        # init, "one", "two", exit{} (exit_code 0 is proto3's default: 2 bytes)
        self.assertEqual(r["message_bytes"], [4, 6, 6, 2])
        C.faults(runtime={"grpc": None})
        d = Driver(self.target)                                   # new connections work
        try:
            self.assertEqual(d.execute(["echo", "after"])["code"], "OK")
        finally:
            d.close()

    def test_goaway_seen_by_grpc_client(self):
        self.set_faults({"grpc_goaway_mid_stream": {"grace_ms": 200}})
        d = Driver(self.target)
        try:
            d.start("g", ["/bin/sh", "-c", "echo one; sleep 5; echo two"])
            evs, end = d.events("g")
            self.assertEqual(out_of(evs), b"one\n")
            self.assertIn(end["code"], ("UNAVAILABLE", "CANCELLED"), end)
            C.faults(runtime={"grpc": None})
            self.assertEqual(d.execute(["echo", "again"])["code"], "OK")   # reconnects
        finally:
            d.close()

    def test_rst_stream(self):
        self.set_faults({"grpc_rst_stream": True})
        r = self.d.raw(self.target, "Execute", {"config": {"command": ["echo", "hi"]}})
        rst = [f for f in r["frames"] if f["type"] == "RSTSTREAM"]
        self.assertEqual([(f["stream"], f["error_code"]) for f in rst], [(1, 8)])
        self.assertEqual(r["trailers"], [])
        self.set_faults({"grpc_rst_stream": {"code": 2, "after_messages": 2}})
        r = self.d.raw(self.target, "Start", {"config": {"command": [
            "/bin/sh", "-c", "echo a; sleep 0.2; echo b; sleep 0.2; echo c"]}})
        self.assertEqual(r["messages"], 2)                        # init + "a", then the reset
        self.assertEqual([f["error_code"] for f in r["frames"] if f["type"] == "RSTSTREAM"], [2])
        d = Driver(self.target)
        try:
            self.assertEqual(d.execute(["echo", "x"])["code"], "INTERNAL")
            self.set_faults({"grpc_rst_stream": 8})
            d.connect(self.target)
            self.assertEqual(d.execute(["echo", "x"])["code"], "CANCELLED")
        finally:
            d.close()

    def test_deadline_ignored_by_server(self):
        self.set_faults({"grpc_deadline": {"extra_ms": 3000}})
        d = Driver(self.target)
        try:
            t0 = time.monotonic()
            r = d.execute(["echo", "quick"], timeout=0.5)
            dt = time.monotonic() - t0
            self.assertEqual(r["code"], "DEADLINE_EXCEEDED", r)
            self.assertGreaterEqual(dt, 0.45)
            self.assertLess(dt, 3.0, "the client's deadline fired only with the server's answer")
        finally:
            d.close()
        self.set_faults({"grpc_deadline": {"extra_ms": 1500}})
        # raw: the server's answer comes only after timeout + extra, with status OK
        t0 = time.monotonic()
        r = self.d.raw(self.target, "Execute", {"config": {"command": ["echo", "quick"]}},
                       headers=[["grpc-timeout", "300m"]], read=5)
        self.assertGreaterEqual(time.monotonic() - t0, 1.7)
        self.assertEqual(r["trailers"], [[["grpc-status", "0"]]])
        C.faults(runtime={"grpc": None})
        d = Driver(self.target)
        try:
            r = d.execute(["sleep", "5"], timeout=0.5)           # without the fault: the server's
            self.assertEqual(r["code"], "DEADLINE_EXCEEDED")      # deadline kills it as well
        finally:
            d.close()

    def test_oversized_message(self):
        self.set_faults({"grpc_oversized": True})
        r = self.d.raw(self.target, "Execute", {"config": {"command": ["echo", "hi"]}},
                       window=16 << 20, read=30)
        self.assertEqual(len(r["message_bytes"]), 1)
        self.assertGreater(r["message_bytes"][0], 4 << 20)
        r = self.d.execute(["echo", "hi"])
        self.assertEqual(r["code"], "RESOURCE_EXHAUSTED", r)
        self.set_faults({"grpc_oversized": 5000000})
        self.d.start("os", ["echo", "hi"])
        evs, end = self.d.events("os")
        self.assertEqual(end["code"], "RESOURCE_EXHAUSTED", end)

    def test_hpack_dynamic_table_updates(self):
        self.set_faults({"grpc_hpack_updates": True})
        r = self.d.raw(self.target, "Execute", {"config": {"command": ["echo", "hpack"]}},
                       settings={"header_table_size": 65536})
        hs = [f for f in r["frames"] if f["type"] == "HEADERS"]
        self.assertEqual(hs[0]["size_updates"], [0, 65536])
        self.assertEqual(hs[1]["size_updates"], [32768])
        self.assertGreater(hs[0]["length"], 3000)
        self.assertEqual(len([k for k, v in r["headers"][0] if k.startswith("x-devcluster-fill")]),
                         24)
        self.assertEqual(r["trailers"][0][0], ["grpc-status", "0"])
        # the default table size, and grpcio's own HPACK decoder accepts all of it
        r = self.d.raw(self.target, "Execute", {"config": {"command": ["echo", "hpack"]}})
        self.assertEqual([f["size_updates"] for f in r["frames"] if f["type"] == "HEADERS"],
                         [[0, 4096], [2048]])
        d = Driver(self.target)
        try:
            for _ in range(5):
                r = d.execute(["echo", "hpack"])
                self.assertEqual((r["code"], b64(r["resp"]["stdout"])), ("OK", b"hpack\n"))
            d.start("h", ["/bin/sh", "-c", "echo s; exit 2"])
            evs, end = d.events("h")
            self.assertEqual((evs[-1], end["code"]), ({"exit": {"exit_code": 2}}, "OK"))
            r = d.execute([])
            self.assertEqual((r["code"], r["details"]), ("INVALID_ARGUMENT", "command is required"))
        finally:
            d.close()


# ---------------------------------------------------------------- through port-forward

class WsBridge:
    """Local TCP port -> the kubelet WebSocket port-forward (v4.channel.k8s.io) of
    POD:PORT through a `kubectl proxy` on proxy_port. Stdlib only."""

    def __init__(self, proxy_port, pod, port):
        self.proxy_port, self.pod, self.port = proxy_port, pod, port
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.local = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        w = socket.create_connection(("127.0.0.1", self.proxy_port))
        key = base64.b64encode(os.urandom(16)).decode()
        w.sendall(("GET /api/v1/namespaces/default/pods/%s/portforward?ports=%d HTTP/1.1\r\n"
                   "Host: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                   "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
                   "Sec-WebSocket-Protocol: v4.channel.k8s.io\r\n\r\n"
                   % (self.pod, self.port, key)).encode())
        rf = w.makefile("rb")
        status = rf.readline()
        while rf.readline() not in (b"\r\n", b""):
            pass
        if b" 101 " not in status:
            c.close()
            w.close()
            return
        seen = set()

        def up():
            try:
                while True:
                    data = c.recv(65536)
                    if not data:
                        break
                    payload = b"\x00" + data
                    mask = os.urandom(4)
                    n = len(payload)
                    h = bytes([0x82]) + (bytes([0x80 | n]) if n < 126 else
                                         bytes([0x80 | 126]) + struct.pack(">H", n)
                                         if n < 65536 else bytes([0x80 | 127]) +
                                         struct.pack(">Q", n))
                    w.sendall(h + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
            except OSError:
                pass
            try:
                w.sendall(bytes([0x88, 0x82]) + b"\0\0\0\0" + struct.pack(">H", 1000))
            except OSError:
                pass
        threading.Thread(target=up, daemon=True).start()
        try:
            while True:
                h = rf.read(2)
                if len(h) < 2:
                    break
                n = h[1] & 0x7F
                if n == 126:
                    n = struct.unpack(">H", rf.read(2))[0]
                elif n == 127:
                    n = struct.unpack(">Q", rf.read(8))[0]
                p = rf.read(n)
                op = h[0] & 0x0F
                if op == 0x8:
                    break
                if op not in (0x1, 0x2) or not p:
                    continue
                ch, data = p[0], p[1:]
                if ch not in seen:                      # first frame: the port, 2 bytes LE
                    seen.add(ch)
                    data = data[2:]
                if ch == 0 and data:
                    c.sendall(data)
        except OSError:
            pass
        for s in (c, w):
            try:
                s.close()
            except OSError:
                pass

    def close(self):
        self.sock.close()


class GrpcPortForwardTest(GrpcBase, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        GrpcBase.setUpClass.__func__(cls)
        if harness.KUBECTL is None and not cls.why:
            cls.d.close()
            cls.why = "kubectl is not on PATH"

    def session(self, target):
        d = Driver(target)
        try:
            r = d.execute(["/bin/sh", "-c", "echo via; echo err >&2; exit 4"])
            self.assertEqual((r["code"], b64(r["resp"]["stdout"]), b64(r["resp"]["stderr"]),
                              r["resp"]["exit_code"]), ("OK", b"via\n", b"err\n", 4))
            self.assertEqual(d.execute([])["code"], "INVALID_ARGUMENT")
            d.start("s", ["cat"])
            pid = d.next("s")["event"]["init"]["process_id"]
            d.unary("WriteStdin", {"process_id": pid, "input": base64.b64encode(b"x" * 70000).decode()})
            d.unary("WriteStdin", {"process_id": pid, "eof": {}})
            evs, end = d.events("s")
            self.assertEqual((len(out_of(evs)), evs[-1]), (70000, {"exit": {"exit_code": 0}}))
            d.start("p", ["/bin/sh", "-c", "stty size; sleep 30"], pty=(70, 20))
            pid = d.next("p")["event"]["init"]["process_id"]
            d.read_until("p", "20 70")
            d.unary("SendSignal", {"process_id": pid, "signal": 15})
            self.assertEqual(d.events("p")[0][-1], {"exit": {"exit_code": -1}})
        finally:
            d.close()

    def test_kubectl_port_forward(self):
        k = C.kubectl_bg("port-forward", "pod/" + POD, "0:9090", "0:8080")
        try:
            m = k.wait_line(r"^Forwarding from 127\.0\.0\.1:(\d+) -> 9090$")
            self.session("127.0.0.1:%s" % m.group(1))
        finally:
            k.stop()

    def test_websocket_port_forward_through_kubectl_proxy(self):
        k = C.kubectl_bg("proxy", "--port=0")
        try:
            port = int(k.wait_line(r"^Starting to serve on 127\.0\.0\.1:(\d+)$").group(1))
            bridge = WsBridge(port, POD, 9090)
            try:
                self.session("127.0.0.1:%d" % bridge.local)
            finally:
                bridge.close()
            seq = [r for r in C.requests_since(0)
                   if "/pods/%s/portforward" % POD in r["path"]]
            self.assertTrue(any(r["headers"].get("sec-websocket-protocol") ==
                                "v4.channel.k8s.io" and r["status"] == 101 for r in seq), seq)
        finally:
            k.stop()


if __name__ == "__main__":
    unittest.main()
