"""Tests for tests/devcluster/runtime.py (both flavours) and the multipart parser in tests/fakes/wire.py.

Every test starts real runtime processes on 127.0.0.1 with --port 0 and kills
them in tearDown.  Run: python3 tests/pyrun.py tests/devcluster devcluster -k Runtime
"""
import hashlib
import http.client
import json
import os
import random
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # tests/devcluster
if HERE not in sys.path:
    sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "fakes"))
import wire as multipart  # noqa: E402  (the parser's tests kept their name for it)

RUNTIME = os.path.join(HERE, "runtime.py")


# ---------------------------------------------------------------- helpers
def start_proc(argv, env=None, timeout=10.0, lines=1):
    """Start argv, wait for `lines` 'listening on IP:PORT' lines; (proc, [ports])."""
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env, start_new_session=True)
    ports, buf = [], b""
    deadline = time.monotonic() + timeout
    while len(ports) < lines:
        left = deadline - time.monotonic()
        if left <= 0:
            stop_proc(p)
            raise AssertionError("no 'listening on' line from %s" % argv)
        r, _, _ = select.select([p.stdout], [], [], left)
        if not r:
            continue
        chunk = os.read(p.stdout.fileno(), 4096)
        if not chunk:
            err = p.stderr.read().decode(errors="replace")
            stop_proc(p)
            raise AssertionError("process exited early: %s" % err)
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if line.startswith(b"listening on "):
                ports.append(int(line.rsplit(b":", 1)[1]))
    # keep stderr drained so a chatty process never blocks
    threading.Thread(target=_drain, args=(p.stderr,), daemon=True).start()
    return p, ports


def _drain(f):
    try:
        while f.read(65536):
            pass
    except (OSError, ValueError):
        pass


def stop_proc(p):
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except OSError:
            pass
    try:
        p.wait(5)
    except subprocess.TimeoutExpired:
        pass
    for f in (p.stdout, p.stderr):
        try:
            f.close()
        except OSError:
            pass


def vm_kb(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def request(port, method, path, body=None, headers=None, host="127.0.0.1", timeout=10):
    """One request on a fresh connection -> (status, headers dict lower, body bytes)."""
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        c.close()


def raw_exchange(port, data, host="127.0.0.1", timeout=10, method="GET"):
    """Send raw bytes, parse one response with http.client -> (status, headers, body)."""
    s = socket.create_connection((host, port), timeout=timeout)
    try:
        s.sendall(data)
        r = http.client.HTTPResponse(s, method=method)
        r.begin()
        body = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body
    finally:
        s.close()


def multipart_body(parts, boundary="BoUnDaRy1234"):
    """parts: list of (name, filename or None, bytes) -> (content_type, body)."""
    out = b""
    for name, filename, data in parts:
        disp = 'form-data; name="%s"' % name
        if filename is not None:
            disp += '; filename="%s"' % filename
        out += b"--" + boundary.encode() + b"\r\nContent-Disposition: " + disp.encode() + \
            b"\r\nContent-Type: application/octet-stream\r\n\r\n" + data + b"\r\n"
    out += b"--" + boundary.encode() + b"--\r\n"
    return "multipart/form-data; boundary=" + boundary, out


class RuntimeBase(unittest.TestCase):
    flavor = "python"
    extra_args = ()
    env_extra = {}

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="rt-test-")
        self.base = os.path.join(self.tmp, "base")
        os.makedirs(self.base)
        self.faults = os.path.join(self.tmp, "faults.json")
        self.procs = []
        self.proc, self.port = self.start_runtime()

    def start_runtime(self, extra=None, base=None):
        env = dict(os.environ)
        env.update(self.env_extra)
        argv = [sys.executable, RUNTIME, "--host", "127.0.0.1", "--port", "0",
                "--base", base or self.base, "--flavor", self.flavor,
                "--faults-file", self.faults, "--quiet"]
        argv += list(self.extra_args) + list(extra or ())
        p, ports = start_proc(argv, env=env)
        self.procs.append(p)
        return p, ports[0]

    def tearDown(self):
        for p in self.procs:
            stop_proc(p)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def req(self, method, path, body=None, headers=None, port=None):
        return request(port or self.port, method, path, body, headers)

    def jreq(self, method, path, obj=None, headers=None):
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        st, hd, data = self.req(method, path, json.dumps(obj).encode() if obj is not None else None, h)
        return st, hd, (json.loads(data) if data else None)

    def run_cmd(self, command):
        st, hd, obj = self.jreq("POST", "/execute", {"command": command})
        self.assertEqual(st, 200)
        return obj

    def set_faults(self, cfg):
        tmp = self.faults + ".tmp"
        with open(tmp, "w") as f:
            json.dump(cfg, f)
        os.replace(tmp, self.faults)  # new inode: the runtime notices at once

    def stats(self):
        st, _, data = self.req("GET", "/_runtime/stats")
        self.assertEqual(st, 200)
        return json.loads(data)


# ---------------------------------------------------------------- python flavour
class RuntimePythonBasics(RuntimeBase):
    def test_health_and_routing(self):
        st, hd, data = self.req("GET", "/")
        self.assertEqual(st, 200)
        self.assertEqual(data, b'{"status":"ok","message":"Sandbox Runtime is active."}')
        self.assertEqual(hd["content-type"], "application/json")
        self.assertEqual(hd["server"], "uvicorn")
        st, hd, _ = self.req("HEAD", "/")
        self.assertEqual((st, hd.get("allow")), (405, "GET"))
        st, _, data = self.req("GET", "/nope")
        self.assertEqual((st, json.loads(data)), (404, {"detail": "Not Found"}))
        st, hd, data = self.req("GET", "/execute")
        self.assertEqual((st, json.loads(data), hd["allow"]), (405, {"detail": "Method Not Allowed"}, "POST"))
        st, hd, _ = self.req("GET", "/list?x=1")
        self.assertEqual(st, 307)
        self.assertEqual(hd["location"], "http://127.0.0.1:%d/list/?x=1" % self.port)

    def test_keep_alive_and_idle_close(self):
        p, port = self.start_runtime(["--keep-alive-timeout", "0.5"])
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.connect()
        first_sock = c.sock
        for _ in range(3):
            c.request("GET", "/")
            r = c.getresponse()
            self.assertEqual(r.status, 200)
            r.read()
        self.assertIs(c.sock, first_sock, "connection was not reused")
        # After the idle timeout the server closes: recv sees EOF.
        first_sock.settimeout(3)
        t0 = time.monotonic()
        self.assertEqual(first_sock.recv(10), b"")
        self.assertLess(time.monotonic() - t0, 2.5)
        c.close()
        # Connection: close is honoured
        st, hd, _ = raw_exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        self.assertEqual((st, hd.get("connection")), (200, "close"))

    def test_bad_request_line(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        s.sendall(b"NOT A VALID REQUEST\r\n\r\n")
        data = s.recv(1000)
        s.close()
        self.assertTrue(data.startswith(b"HTTP/1.1 400 "), data)


class RuntimePythonExecute(RuntimeBase):
    def test_execute_success_no_shell_cwd(self):
        st, hd, obj = self.jreq("POST", "/execute", {"command": "echo hi there"})
        self.assertEqual(st, 200)
        self.assertEqual(obj, {"stdout": "hi there\n", "stderr": "", "exit_code": 0})
        self.assertEqual(hd["x-runtime-exec-count"], "1")
        # no shell: the pipe is an argument
        self.assertEqual(self.run_cmd("echo a | b")["stdout"], "a | b\n")
        self.assertEqual(self.run_cmd("pwd")["stdout"], os.path.realpath(self.base) + "\n")
        r = self.run_cmd("sh -c 'echo err >&2; exit 3'")
        self.assertEqual((r["stderr"], r["exit_code"]), ("err\n", 3))
        # universal newlines, like text=True
        self.assertEqual(self.run_cmd(r"printf 'a\r\nb\rc'")["stdout"], "a\nb\nc")
        # killed by a signal -> negative exit code
        self.assertEqual(self.run_cmd("sh -c 'kill -9 $$'")["exit_code"], -9)
        self.assertEqual(self.stats()["exec_count"], 6)

    def test_execute_failures_are_200(self):
        cases = {
            "nosuchbinary-xyz": "Failed to execute command: [Errno 2] No such file or directory: 'nosuchbinary-xyz'",
            "echo 'unterminated": "Failed to execute command: No closing quotation",
            "": "Failed to execute command: list index out of range",
            r"printf '\377abc'": "Failed to execute command: 'utf-8' codec can't decode byte 0xff in position 0: invalid start byte",
            r"sh -c 'printf ok; printf \\377 >&2'": "Failed to execute command: 'utf-8' codec can't decode byte 0xff in position 0: invalid start byte",
        }
        for cmd, err in cases.items():
            r = self.run_cmd(cmd)
            self.assertEqual(r, {"stdout": "", "stderr": err, "exit_code": 1}, cmd)

    def test_execute_validation_422(self):
        st, hd, obj = self.jreq("POST", "/execute", {"cmd": "ls"})
        self.assertEqual(st, 422)
        self.assertEqual(obj["detail"], [{"type": "missing", "loc": ["body", "command"],
                                          "msg": "Field required", "input": {"cmd": "ls"}}])
        st, _, obj = self.jreq("POST", "/execute", {"command": 5})
        self.assertEqual((st, obj["detail"][0]["type"], obj["detail"][0]["loc"]),
                         (422, "string_type", ["body", "command"]))
        st, _, data = self.req("POST", "/execute", b"", {"Content-Type": "application/json"})
        self.assertEqual((st, json.loads(data)["detail"][0]["loc"]), (422, ["body"]))
        st, _, data = self.req("POST", "/execute", b"{bad", {"Content-Type": "application/json"})
        d = json.loads(data)["detail"][0]
        self.assertEqual((st, d["type"], d["loc"]), (422, "json_invalid", ["body", 1]))
        st, _, data = self.req("POST", "/execute", b"[1]", {"Content-Type": "application/json"})
        self.assertEqual(json.loads(data)["detail"][0]["type"], "model_attributes_type")
        self.assertEqual(self.stats()["exec_count"], 0)

    def test_exec_timeout_kills_process_group(self):
        p, port = self.start_runtime(["--exec-timeout", "1"])
        t0 = time.monotonic()
        cmd = "sh -c 'sleep 30 & echo $! > child.pid; wait'"
        st, _, data = request(port, "POST", "/execute", json.dumps({"command": cmd}).encode(),
                              {"Content-Type": "application/json"})
        elapsed = time.monotonic() - t0
        r = json.loads(data)
        self.assertEqual(st, 200)
        self.assertEqual(r["exit_code"], 1)
        self.assertEqual(r["stderr"], "Failed to execute command: Command '['sh', '-c', "
                         "'sleep 30 & echo $! > child.pid; wait']' timed out after 1.0 seconds")
        self.assertLess(elapsed, 5)
        child = int(open(os.path.join(self.base, "child.pid")).read())
        self.assertFalse(_alive(child), "background child of the timed-out command survived")

    def test_sigterm_exits_and_kills_commands(self):
        p, port = self.start_runtime()
        out = {}

        def run():
            try:
                out["r"] = request(port, "POST", "/execute",
                                   json.dumps({"command": "sh -c 'echo $$ > sh.pid; exec sleep 30'"}).encode(),
                                   {"Content-Type": "application/json"}, timeout=10)
            except Exception as e:  # the connection dies with the server
                out["e"] = e
        t = threading.Thread(target=run, daemon=True)
        t.start()
        pidfile = os.path.join(self.base, "sh.pid")
        deadline = time.monotonic() + 5
        while not (os.path.exists(pidfile) and os.path.getsize(pidfile)) and time.monotonic() < deadline:
            time.sleep(0.02)
        child = int(open(pidfile).read())
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        rc = p.wait(5)
        self.assertEqual(rc, 0)
        self.assertLess(time.monotonic() - t0, 2)
        deadline = time.monotonic() + 2
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertFalse(_alive(child), "command survived the runtime's SIGTERM")
        t.join(5)


def _alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


class RuntimePythonFiles(RuntimeBase):
    def upload(self, filename, data, field="file", port=None):
        ctype, body = multipart_body([(field, filename, data)])
        return self.req("POST", "/upload", body, {"Content-Type": ctype}, port=port)

    def test_upload_download_list_exists(self):
        st, _, data = self.upload("dir/sub/a.txt", b"hello")
        self.assertEqual((st, json.loads(data)),
                         (200, {"message": "File 'dir/sub/a.txt' uploaded successfully."}))
        with open(os.path.join(self.base, "dir/sub/a.txt"), "rb") as f:
            self.assertEqual(f.read(), b"hello")
        for path in ("/download/dir%2Fsub%2Fa.txt", "/download/dir/sub/a.txt",
                     "/download/dir%252Fsub%252Fa.txt"):
            st, hd, data = self.req("GET", path)
            self.assertEqual((st, data), (200, b"hello"), path)
            self.assertEqual(hd["content-type"], "application/octet-stream")
            self.assertEqual(hd["content-length"], "5")
        self.assertEqual(hd["content-disposition"], 'attachment; filename="dir/sub/a.txt"')
        self.upload("sp ace.txt", b"x")
        st, hd, _ = self.req("GET", "/download/sp%20ace.txt")
        self.assertEqual(hd["content-disposition"], "attachment; filename*=utf-8''sp%20ace.txt")
        st, hd, data = self.req("GET", "/download/dir%2Fsub%2Fa.txt", headers={"Range": "bytes=1-3"})
        self.assertEqual((st, data, hd["content-range"]), (206, b"ell", "bytes 1-3/5"))
        st, _, data = self.req("GET", "/download/missing.txt")
        self.assertEqual((st, json.loads(data)), (404, {"message": "File not found"}))
        st, _, data = self.req("GET", "/download/dir")  # a directory is not a file
        self.assertEqual(st, 404)
        # absolute filename lands under base
        st, _, _ = self.upload("/abs/b.bin", b"\x00\xff")
        self.assertEqual(st, 200)
        self.assertTrue(os.path.isfile(os.path.join(self.base, "abs/b.bin")))
        st, _, data = self.req("GET", "/list/dir%2Fsub")
        entries = json.loads(data)
        self.assertEqual(st, 200)
        self.assertEqual([(e["name"], e["size"], e["type"]) for e in entries], [("a.txt", 5, "file")])
        self.assertIsInstance(entries[0]["mod_time"], float)
        st, _, data = self.req("GET", "/list/")
        names = {e["name"]: e["type"] for e in json.loads(data)}
        self.assertEqual(names, {"dir": "directory", "sp ace.txt": "file", "abs": "directory"})
        st, _, data = self.req("GET", "/list/dir%2Fsub%2Fa.txt")
        self.assertEqual((st, json.loads(data)), (404, {"message": "Path is not a directory"}))
        st, _, data = self.req("GET", "/exists/dir%2Fsub%2Fa.txt")
        self.assertEqual(json.loads(data), {"path": "dir/sub/a.txt", "exists": True})
        st, _, data = self.req("GET", "/exists/nope")
        self.assertEqual(json.loads(data), {"path": "nope", "exists": False})
        st, _, data = self.req("GET", "/exists/%2Fetc%2Fpasswd")  # maps to base/etc/passwd
        self.assertEqual(json.loads(data), {"path": "/etc/passwd", "exists": False})
        # dangling symlink makes the listing fail like upstream's entry.stat()
        os.symlink("nowhere", os.path.join(self.base, "dir", "dangling"))
        st, _, data = self.req("GET", "/list/dir")
        self.assertEqual(st, 500)
        self.assertTrue(json.loads(data)["message"].startswith("List files failed: [Errno 2]"))

    def test_upload_errors(self):
        st, _, data = self.upload("../escape.txt", b"x")
        self.assertEqual((st, json.loads(data)), (403, {"message": "Access denied"}))
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "escape.txt")))
        st, _, data = self.upload("a.txt", b"x", field="other")
        self.assertEqual(st, 422)
        self.assertEqual(json.loads(data)["detail"][0]["loc"], ["body", "file"])
        st, _, _ = self.req("POST", "/upload", b'{"file":1}', {"Content-Type": "application/json"})
        self.assertEqual(st, 422)
        ctype, body = multipart_body([("file", "t.txt", b"abc")])
        st, _, data = self.req("POST", "/upload", body[:-20], {"Content-Type": ctype})
        self.assertEqual((st, json.loads(data)), (400, {"detail": "There was an error parsing the body"}))
        st, _, _ = self.req("POST", "/upload", body, {"Content-Type": "multipart/form-data"})
        self.assertEqual(st, 400)  # no boundary
        st, _, data = self.upload("", b"x")
        self.assertEqual(st, 500)
        self.assertEqual(json.loads(data)["message"],
                         "File upload failed: [Errno 21] Is a directory: '%s'" % os.path.realpath(self.base))
        self.assertFalse(os.path.exists(os.path.join(self.base, "t.txt")))

    def test_path_confinement(self):
        outside = os.path.join(self.tmp, "secret.txt")
        with open(outside, "w") as f:
            f.write("s")
        os.symlink(self.tmp, os.path.join(self.base, "link"))
        os.makedirs(os.path.join(self.base, "in"))
        os.symlink("in", os.path.join(self.base, "inlink"))
        with open(os.path.join(self.base, "in", "f"), "w") as f:
            f.write("ok")
        denied = ["/download/..%2Fsecret.txt", "/download/../secret.txt",
                  "/download/%252E%252E%252Fsecret.txt",  # decoded twice -> ../secret.txt
                  "/download/link%2Fsecret.txt", "/list/link", "/exists/link%2Fsecret.txt",
                  "/list/..", "/exists/a%2500b"]
        for path in denied:
            st, _, data = raw_exchange(self.port, ("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path).encode())
            self.assertEqual((st, json.loads(data)), (403, {"message": "Access denied"}), path)
        st, _, data = self.req("GET", "/download/inlink%2Ff")
        self.assertEqual((st, data), (200, b"ok"))
        st, _, data = self.upload("link/secret.txt", b"overwrite")
        self.assertEqual(st, 403)
        with open(outside) as f:
            self.assertEqual(f.read(), "s")

    def test_chunked_and_expect_continue_upload(self):
        ctype, body = multipart_body([("file", "chunky.bin", bytes(range(256)) * 40)])
        pieces, i = [], 0
        rnd = random.Random(7)
        while i < len(body):
            n = rnd.randint(1, 700)
            pieces.append(body[i:i + n])
            i += n
        chunked = b"".join(b"%x;ext=1\r\n" % len(p) + p + b"\r\n" for p in pieces) + b"0\r\nX-T: 1\r\n\r\n"
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        s.sendall(("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\n"
                   "Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n" % ctype).encode())
        interim = s.recv(100)
        self.assertEqual(interim, b"HTTP/1.1 100 Continue\r\n\r\n")
        for p in chunked[:len(chunked) // 2], chunked[len(chunked) // 2:]:
            s.sendall(p)
        r = http.client.HTTPResponse(s)
        r.begin()
        self.assertEqual(r.status, 200, r.read())
        r.read()
        s.close()
        with open(os.path.join(self.base, "chunky.bin"), "rb") as f:
            self.assertEqual(f.read(), bytes(range(256)) * 40)

    def test_100mb_upload_download_flat_memory(self):
        size = 100 * 1024 * 1024
        boundary = "XyZbound7"
        block = os.urandom(1 << 20)
        # plant delimiter look-alikes that must stay data
        trap = b"\r\n--" + boundary[:-1].encode() + b"Q\r\n--" + boundary.encode() + b"Z"
        block = block[:1000] + trap + block[1000 + len(trap):]
        head = ('--%s\r\nContent-Disposition: form-data; name="file"; filename="big/blob.bin"\r\n'
                'Content-Type: application/octet-stream\r\n\r\n' % boundary).encode()
        tail = ("\r\n--%s--\r\n" % boundary).encode()
        sha = hashlib.sha256()

        def gen():
            yield head
            for i in range(size >> 20):
                piece = i.to_bytes(8, "big") + block[8:]
                sha.update(piece)
                yield piece
            yield tail
        hwm_before = vm_kb(self.proc.pid, "VmHWM")
        t0 = time.monotonic()
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        c.request("POST", "/upload", body=gen(), headers={
            "Content-Type": "multipart/form-data; boundary=%s" % boundary,
            "Content-Length": str(len(head) + size + len(tail))})
        r = c.getresponse()
        self.assertEqual(r.status, 200, r.read())
        r.read()
        t_up = time.monotonic() - t0
        self.assertEqual(os.path.getsize(os.path.join(self.base, "big/blob.bin")), size)
        t0 = time.monotonic()
        c.request("GET", "/download/big%2Fblob.bin")
        r = c.getresponse()
        self.assertEqual(r.status, 200)
        self.assertEqual(int(r.getheader("content-length")), size)
        got, n = hashlib.sha256(), 0
        while True:
            d = r.read(1 << 20)
            if not d:
                break
            got.update(d)
            n += len(d)
        t_down = time.monotonic() - t0
        c.close()
        self.assertEqual(n, size)
        self.assertEqual(got.hexdigest(), sha.hexdigest())
        hwm = vm_kb(self.proc.pid, "VmHWM")
        print("\n  [figures] runtime VmHWM %d kB before, %d kB after 100 MiB upload+download "
              "(upload %.2f s, download %.2f s)" % (hwm_before, hwm, t_up, t_down))
        self.assertLess(hwm, hwm_before + 40 * 1024, "runtime memory grew with the upload size")


class RuntimePythonFaults(RuntimeBase):
    def test_status_5xx_fail_first_counts_requests(self):
        self.set_faults({"status_5xx": 503, "fail_first": 2, "fail_paths": ["/execute"],
                         "retry_after": 1})
        codes = []
        for _ in range(3):
            st, hd, obj = self.jreq("POST", "/execute", {"command": "true"})
            codes.append(st)
        self.assertEqual(codes, [503, 503, 200])
        self.assertEqual(self.req("GET", "/")[0], 200)  # not in fail_paths
        s = self.stats()
        self.assertEqual(s["requests"]["POST /execute"], 3)
        self.assertEqual(s["exec_count"], 1)
        self.assertEqual(s["faults_injected"], 2)
        self.set_faults({"status_5xx": 500, "fail_every": 2, "fail_methods": ["GET"]})
        codes = [self.req("GET", "/")[0] for _ in range(4)]
        self.assertEqual(codes, [200, 500, 200, 500])
        st, hd, data = self.req("GET", "/")  # 5th: odd -> ok; check a failure body shape
        st, hd, data = self.req("GET", "/")
        self.assertEqual((st, json.loads(data)), (500, {"message": "injected fault 500"}))
        os.unlink(self.faults)
        self.assertEqual([self.req("GET", "/")[0] for _ in range(2)], [200, 200])

    def test_retry_after_header(self):
        self.set_faults({"status_5xx": 503, "retry_after": 2})
        st, hd, _ = self.req("GET", "/")
        self.assertEqual((st, hd.get("retry-after")), (503, "2"))

    def test_slow_and_redirect(self):
        self.set_faults({"slow_ms": 400, "fail_paths": ["/exists/"]})
        t0 = time.monotonic()
        self.assertEqual(self.req("GET", "/exists/x")[0], 200)
        self.assertGreaterEqual(time.monotonic() - t0, 0.39)
        t0 = time.monotonic()
        self.req("GET", "/")
        self.assertLess(time.monotonic() - t0, 0.3)
        self.set_faults({"redirect": "/elsewhere"})
        st, hd, data = self.req("POST", "/execute", b'{"command":"true"}', {"Content-Type": "application/json"})
        self.assertEqual((st, hd["location"], data), (307, "/elsewhere", b""))
        self.assertEqual(self.stats()["exec_count"], 0)

    def test_close_early_mid_body_executes_once(self):
        self.set_faults({"close_early": True, "fail_paths": ["/execute"]})
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        c.request("POST", "/execute", b'{"command":"echo 0123456789abcdef"}', {"Content-Type": "application/json"})
        r = c.getresponse()
        self.assertEqual(r.status, 200)
        with self.assertRaises(http.client.IncompleteRead):
            r.read()
        c.close()
        s = self.stats()
        self.assertEqual((s["requests"]["POST /execute"], s["exec_count"]), (1, 1))

    def test_close_early_headers_and_reset(self):
        for mode in ("headers", "reset"):
            self.set_faults({"close_early": mode})
            with self.assertRaises((http.client.RemoteDisconnected, ConnectionResetError)):
                self.req("GET", "/")
        self.set_faults({})
        self.assertEqual(self.req("GET", "/")[0], 200)

    def test_close_after_bytes_redirect_status_fail_body_inplace_reload(self):
        self.set_faults({"close_early": "body", "close_after_bytes": 10, "fail_paths": ["/"]})
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        got = b""
        while True:
            d = s.recv(4096)
            if not d:
                break
            got += d
        s.close()
        head, _, body = got.partition(b"\r\n\r\n")
        self.assertIn(b"content-length: 54", head)
        self.assertEqual(body, b'{"status":')
        # rewrite the same file in place (same inode): mtime/size change is noticed
        with open(self.faults, "w") as f:
            json.dump({"redirect": "http://elsewhere/x", "redirect_status": 302}, f)
        st, hd, _ = self.req("GET", "/")
        self.assertEqual((st, hd["location"]), (302, "http://elsewhere/x"))
        with open(self.faults, "w") as f:
            json.dump({"status_5xx": 502, "fail_body": "upstream gone"}, f)
        st, hd, data = self.req("GET", "/")
        self.assertEqual((st, data, hd["content-type"]), (502, b"upstream gone", "text/plain; charset=utf-8"))
        with open(self.faults, "w") as f:
            f.write("{not json")
        self.assertEqual(self.req("GET", "/")[0], 200)  # unparsable -> ignored

    def test_reset_endpoint(self):
        self.run_cmd("true")
        st, _, data = self.req("POST", "/_runtime/reset")
        self.assertEqual(st, 200)
        s = self.stats()
        self.assertEqual((s["exec_count"], s["requests"]), (0, {}))


# ---------------------------------------------------------------- sandboxd flavour
class RuntimeSandboxd(RuntimeBase):
    flavor = "sandboxd"
    env_extra = {"SANDBOX_VISIBLE": "yes", "SANDBOX_API_TOKEN": "hidden", "OTHER_VAR": "no"}

    def test_health_metadata_and_routing(self):
        st, hd, data = self.req("GET", "/v1/health")
        self.assertEqual(st, 200)
        obj = json.loads(data)
        self.assertEqual(obj["status"], "ok")
        self.assertIsInstance(obj["uptime_seconds"], int)
        self.assertTrue(data.endswith(b"\n"))
        st, _, data = self.req("GET", "/v1/metadata")
        env = json.loads(data)["env"]
        self.assertEqual(env.get("SANDBOX_VISIBLE"), "yes")
        self.assertNotIn("SANDBOX_API_TOKEN", env)
        self.assertNotIn("OTHER_VAR", env)
        st, hd, data = self.req("POST", "/v1/health")
        self.assertEqual((st, data, hd["allow"]), (405, b"Method Not Allowed\n", "GET, HEAD"))
        st, _, data = self.req("GET", "/v2/x")
        self.assertEqual((st, data), (404, b"404 page not found\n"))
        st, hd, _ = self.req("GET", "/v1/files")
        self.assertEqual((st, hd["location"]), (301, "/v1/files/"))

    def test_put_get_head_list_delete(self):
        st, _, data = self.req("PUT", "/v1/files/d%2Fe%2Ff.txt?mode=0600", b"payload",
                               {"Content-Type": "application/octet-stream"})
        self.assertEqual((st, data), (204, b""))
        path = os.path.join(self.base, "d/e/f.txt")
        self.assertEqual(open(path, "rb").read(), b"payload")
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
        self.assertEqual(os.stat(os.path.dirname(path)).st_mode & 0o777, 0o755)
        self.assertEqual([n for n in os.listdir(os.path.dirname(path)) if n.startswith(".sandboxd-tmp")], [])
        ctype, body = multipart_body([("other", None, b"zz"), ("file", "ignored.bin", b"multi")])
        self.assertEqual(self.req("PUT", "/v1/files/m.bin", body, {"Content-Type": ctype})[0], 204)
        self.assertEqual(open(os.path.join(self.base, "m.bin"), "rb").read(), b"multi")
        self.assertEqual(os.stat(os.path.join(self.base, "m.bin")).st_mode & 0o777, 0o644)
        st, hd, data = self.req("GET", "/v1/files/d/e/f.txt")
        self.assertEqual((st, data, hd["content-type"]), (200, b"payload", "application/octet-stream"))
        st, hd, data = self.req("GET", "/v1/files/d/e/f.txt", headers={"Range": "bytes=-3"})
        self.assertEqual((st, data), (206, b"oad"))
        st, hd, data = self.req("GET", "/v1/files/d/e/f.txt", headers={"Range": "bytes=50-"})
        self.assertEqual((st, hd["content-range"]), (416, "bytes */7"))
        st, hd, data = self.req("GET", "/v1/files/d/e/f.txt", headers={"If-Modified-Since": hd.get("date") or
                                                                            "Thu, 01 Jan 2099 00:00:00 GMT"})
        self.assertEqual(st, 304)
        self.assertEqual(self.req("HEAD", "/v1/files/d/e/f.txt")[:3:2], (200, b""))
        st, _, data = self.req("HEAD", "/v1/files/nope")
        self.assertEqual((st, data), (404, b""))
        st, _, data = self.req("GET", "/v1/files/")
        listing = json.loads(data)
        self.assertEqual(listing["path"], "/")
        self.assertEqual([(e["name"], e["type"], e["mode"]) for e in listing["entries"]],
                         [("d", "directory", "0755"), ("m.bin", "file", "0644")])
        self.assertRegex(listing["entries"][1]["modified_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        st, _, data = self.req("GET", "/v1/files/d%2Fe")
        self.assertEqual(json.loads(data)["path"], "/d/e")
        st, _, data = self.req("GET", "/v1/files/missing")
        self.assertEqual((st, json.loads(data)), (404, {"code": "NOT_FOUND",
                                                        "message": "path does not exist within the sandbox"}))
        # errors
        st, _, data = self.req("PUT", "/v1/files/x?mode=777", b"")
        self.assertEqual((st, json.loads(data)["code"]), (400, "INVALID_ARGUMENT"))
        st, _, data = self.req("PUT", "/v1/files/d", b"x")
        self.assertEqual((st, json.loads(data)["message"]), (400, "target path is a directory"))
        ctype, body = multipart_body([("nofile", "a", b"x")])
        st, _, data = self.req("PUT", "/v1/files/z", body, {"Content-Type": ctype})
        self.assertEqual((st, json.loads(data)["message"]), (400, 'multipart body is missing the required "file" part'))
        st, _, data = self.req("DELETE", "/v1/files/d")
        self.assertEqual((st, json.loads(data)["code"]), (409, "CONFLICT"))
        st, _, data = self.req("DELETE", "/v1/files/d?recursive=maybe")
        self.assertEqual(st, 400)
        self.assertEqual(self.req("DELETE", "/v1/files/d?recursive=T")[0], 204)
        self.assertFalse(os.path.exists(os.path.join(self.base, "d")))
        self.assertEqual(self.req("DELETE", "/v1/files/d")[0], 404)
        self.assertEqual(self.req("DELETE", "/v1/files/")[0], 409)
        self.assertEqual(self.req("DELETE", "/v1/files/?recursive=true")[0], 204)
        self.assertEqual(os.listdir(self.base), [])
        self.assertTrue(os.path.isdir(self.base))
        st, hd, data = self.req("POST", "/v1/files/x")
        self.assertEqual((st, hd["allow"]), (405, "DELETE, GET, HEAD, PUT"))

    def test_confinement(self):
        os.symlink(self.tmp, os.path.join(self.base, "out"))
        with open(os.path.join(self.tmp, "secret"), "w") as f:
            f.write("s")
        for method in ("GET", "PUT", "DELETE"):
            st, _, data = self.req(method, "/v1/files/out/secret", b"x" if method == "PUT" else None)
            self.assertEqual((st, json.loads(data)["code"]), (403, "PERMISSION_DENIED"), method)
        st, _, data = self.req("PUT", "/v1/files/out/newdir/new", b"x")
        self.assertEqual(st, 403)  # missing path resolved through the nearest ancestor
        self.assertEqual(open(os.path.join(self.tmp, "secret")).read(), "s")
        st, _, data = self.req("GET", "/v1/files/")
        self.assertEqual(json.loads(data)["entries"], [])  # escaping link omitted
        # literal dot segments are redirected by Go's mux; escaped ones reach SanitizePath
        st, hd, _ = raw_exchange(self.port, b"GET /v1/files/a/../../secret HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual((st, hd["location"]), (301, "/v1/secret"))
        for path in (b"/v1/files/a%2F..%2F..%2Fsecret", b"/v1/files/%2E%2E%2Fsecret", b"/v1/files/%2E%2E"):
            st, _, data = raw_exchange(self.port, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertEqual((st, json.loads(data)["code"]), (403, "PERMISSION_DENIED"), path)
        st, _, _ = raw_exchange(self.port, b"GET /v1/files/%zz HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(st, 400)
        # an absolute path that starts with the root is made relative
        with open(os.path.join(self.base, "in.txt"), "w") as f:
            f.write("in")
        root = os.path.realpath(self.base)
        st, _, data = self.req("GET", "/v1/files/" + urllib.parse.quote(root + "/in.txt", safe=""))
        self.assertEqual((st, data), (200, b"in"))


# ---------------------------------------------------------------- multipart parser
class RuntimeMultipartParser(unittest.TestCase):
    def parse(self, body, boundary, chunker):
        parts = []

        def begin(p):
            parts.append([p, bytearray(), False])

        def data(p, d):
            self.assertIs(parts[-1][0], p)
            parts[-1][1] += d

        def end(p):
            parts[-1][2] = True
        parser = multipart.StreamingParser(boundary, begin, data, end)
        for piece in chunker(body):
            parser.feed(piece)
        parser.close()
        return [(p.name, p.filename, bytes(b), done) for p, b, done in parts]

    def test_any_chunking(self):
        boundary = "b-1"
        body = (b"preamble text\r\n--b-1\r\n"
                b'Content-Disposition: form-data; name="a"\r\n\r\n'
                b"value a\r\n--b-1  \t\r\n"
                b'Content-Disposition: form-data; name="file"; filename="x/y.txt"\r\n'
                b"Content-Type: text/plain\r\n\r\n"
                b"line1\r\n--b-2 not a boundary\r\n--b-1X also not\r\n\r\n--b-1\r\n"
                b'Content-Disposition: form-data; name="empty"; filename=""\r\n\r\n'
                b"\r\n--b-1--\r\nepilogue --b-1\r\n")
        want = [("a", None, b"value a", True),
                ("file", "x/y.txt", b"line1\r\n--b-2 not a boundary\r\n--b-1X also not\r\n", True),
                ("empty", "", b"", True)]
        rnd = random.Random(1)
        chunkers = [lambda b: [b], lambda b: [b[i:i + 1] for i in range(len(b))]]
        for _ in range(30):
            def rand_chunks(b, seed=rnd.random()):
                r, i, out = random.Random(seed), 0, []
                while i < len(b):
                    n = r.randint(1, 9)
                    out.append(b[i:i + n])
                    i += n
                return out
            chunkers.append(rand_chunks)
        for ch in chunkers:
            self.assertEqual(self.parse(body, boundary, ch), want)

    def test_headers_and_errors(self):
        self.assertEqual(multipart.boundary_from_content_type('multipart/form-data; boundary="a b;c"'), b"a b;c")
        self.assertEqual(multipart.boundary_from_content_type("Multipart/Form-Data; charset=x; BOUNDARY=zz"), b"zz")
        with self.assertRaises(multipart.MultipartError):
            multipart.boundary_from_content_type("multipart/form-data")
        with self.assertRaises(multipart.MultipartError):
            multipart.boundary_from_content_type("text/plain; boundary=x")
        body = (b"--q\r\nContent-Disposition: form-data; name=file; "
                b"filename=\"C:\\\\dir\\\\win.txt\"\r\n\r\nA\r\n--q\r\n"
                b"Content-Disposition: form-data; name=\"file\"; filename=\"plain\"; "
                b"filename*=UTF-8''%E2%82%AC.txt\r\n\r\nB\r\n--q\r\n"
                b"Content-Disposition: form-data; name=\"q\\\"uote\"; filename=\"\xc3\xa9.txt\"\r\n\r\nC\r\n--q--")
        got = self.parse(body, "q", lambda b: [b])
        self.assertEqual([(n, f) for n, f, _, _ in got],
                         [("file", "win.txt"), ("file", "\u20ac.txt"), ('q"uote', "\u00e9.txt")])
        for bad in (b"--q\r\nContent-Disposition: form-data\r\n\r\nunterminated",
                    b"--q\r\nno colon here\r\n\r\nx\r\n--q--",
                    b"--qgarbage\r\n"):
            with self.assertRaises(multipart.MultipartError, msg=bad):
                self.parse(bad, "q", lambda b: [b])


if __name__ == "__main__":
    unittest.main()
