"""Tests of the portforward subresource (portforward.py).

Two groups:
  * PortForwardProtocol*: a small SPDY client written here speaks both
    transports to serve() directly; runs everywhere.
  * PortForwardKubectl*: the real `kubectl port-forward` against a minimal
    fake API server started inside the test; skipped (with the reason) when
    kubectl is not on PATH.

Run: python3 tests/pyrun.py tests/devcluster devcluster -k PortForward
 or: python3 -m unittest tests.devcluster.test_portforward
PF_BENCH_MB=100 makes the kubectl throughput test move 100 MB each way.
"""

import base64
import hashlib
import http.server
import json
import os
import queue
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import zlib

from .. import portforward as pf

KUBECTL = shutil.which("kubectl")
SHIM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "fakes", "kubectl-shim", "kubectl")
MB = 1024 * 1024
BIG = 10 * MB
BIG_DATA = os.urandom(BIG)
BIG_SHA = hashlib.sha256(BIG_DATA).hexdigest()
POD = ("default", "web-0")


# --------------------------------------------------------------------------
# targets on 127.0.0.1

class Target:
    """TCP server on 127.0.0.1: mode 'echo', 'source' (sends BIG_DATA then
    closes) or 'sink' (reads to EOF, answers "<n> <sha256>\\n")."""

    def __init__(self, mode):
        self.mode = mode
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.stop = False
        self.accepted = 0
        self.threads = []
        self.t = threading.Thread(target=self._accept, daemon=True)
        self.t.start()

    def _accept(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.accepted += 1
            c.settimeout(30)
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            t = threading.Thread(target=self._handle, args=(c,), daemon=True)
            self.threads.append(t)
            t.start()

    def _handle(self, c):
        try:
            if self.mode == "echo":
                while True:
                    d = c.recv(65536)
                    if not d:
                        break
                    c.sendall(d)
                c.shutdown(socket.SHUT_WR)
            elif self.mode == "source":
                c.sendall(BIG_DATA)
                c.shutdown(socket.SHUT_WR)
            elif self.mode == "sink":
                h = hashlib.sha256()
                n = 0
                while True:
                    d = c.recv(65536)
                    if not d:
                        break
                    n += len(d)
                    h.update(d)
                c.sendall(("%d %s\n" % (n, h.hexdigest())).encode())
                c.shutdown(socket.SHUT_WR)
            elif self.mode == "hold":   # answer one line, keep the conn open
                c.recv(1024)
                c.sendall(b"held\n")
                while c.recv(1024):
                    pass
        except OSError:
            pass
        finally:
            c.close()

    def close(self):
        self.stop = True
        self.t.join(2)
        self.sock.close()
        for t in self.threads:
            t.join(5)


def refused_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


# --------------------------------------------------------------------------
# minimal fake API server

POD_PORTS = {8080: "echo", 8081: "source", 8082: "sink", 8083: "refused", 8084: "hold"}


class FakeAPI:
    def __init__(self, targets):
        self.targets = targets
        self.refused = refused_port()
        self.registry = pf.TunnelRegistry()
        self.faults = {}
        self.events = []
        self.requests = []
        self.lock = threading.Lock()
        self.conns = set()
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with fake.lock:
                    fake.conns.add(self.connection)

            def finish(self):
                with fake.lock:
                    fake.conns.discard(self.connection)
                try:
                    super().finish()
                except OSError:
                    pass

            def log_message(self, *a):
                pass

            def do_GET(self):
                fake.handle(self)

            do_POST = do_GET

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = False
        self.httpd.block_on_close = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def log(self, rec):
        with self.lock:
            self.events.append(rec)

    def event(self, name, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                got = [e for e in self.events if e["event"] == name]
            if got:
                return got
            time.sleep(0.01)
        return []

    def resolve(self, port):
        mode = POD_PORTS.get(port)
        if mode is None:
            raise pf.TargetError("pod web-0 does not expose port %d" % port)
        if mode == "refused":
            return "127.0.0.1", self.refused
        return "127.0.0.1", self.targets[mode].port

    def json(self, h, code, obj):
        body = json.dumps(obj).encode()
        h.send_response(code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    POD_SPEC = {"containers": [{"name": "c", "image": "x",
                                "ports": [{"name": "echo", "containerPort": 8080}]}]}

    def pod(self, name, phase="Running"):
        return {"kind": "Pod", "apiVersion": "v1",
                "metadata": {"name": name, "namespace": "default", "uid": "u-" + name,
                             "resourceVersion": "1", "labels": {"app": "web"}},
                "spec": self.POD_SPEC, "status": {"phase": phase, "podIP": "127.0.0.1"}}

    def not_found(self, h, kind, name):
        self.json(h, 404, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                           "status": "Failure", "message": '%s "%s" not found' % (kind, name),
                           "reason": "NotFound", "details": {"name": name, "kind": kind},
                           "code": 404})

    def handle(self, h):
        path, _, query = h.path.partition("?")
        with self.lock:
            self.requests.append((h.command, path, dict(h.headers.items())))
        if path == "/stream":   # chunked, one event every 150 ms, send time inside
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            for i in range(3):
                ev = json.dumps({"i": i, "t": time.time()}).encode() + b"\n"
                h.wfile.write(b"%x\r\n%s\r\n" % (len(ev), ev))
                time.sleep(0.15)
            h.wfile.write(b"0\r\n\r\n")
            return
        if path == "/echo-headers":
            n = int(h.headers.get("Content-Length", "0"))
            body = h.rfile.read(n) if n else b""
            return self.json(h, 201 if h.command == "POST" else 200,
                             {"method": h.command, "headers": list(h.headers.items()),
                              "body": body.decode(errors="replace")})
        m = re.fullmatch(r"/api/v1/namespaces/default/(pods|services)/([^/]+)", path)
        if m and m.group(1) == "services":
            if m.group(2) != "web":
                return self.not_found(h, "services", m.group(2))
            return self.json(h, 200, {
                "kind": "Service", "apiVersion": "v1",
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {"selector": {"app": "web"},
                         "ports": [{"port": 80, "targetPort": 8080},
                                   {"name": "n", "port": 90, "targetPort": "echo"}]}})
        if m and m.group(2) == "pending-0":
            return self.json(h, 200, self.pod("pending-0", "Pending"))
        if m and m.group(2) != "web-0":
            return self.not_found(h, "pods", m.group(2))
        if path == "/api/v1/namespaces/default/pods":
            items = [self.pod("web-0")] if "app%3Dweb" in query or "app=web" in query else []
            return self.json(h, 200, {"kind": "PodList", "apiVersion": "v1",
                                      "metadata": {"resourceVersion": "5"}, "items": items})
        if path == "/version":
            return self.json(h, 200, {"major": "1", "minor": "32", "gitVersion": "v1.32.0",
                                      "platform": "linux/amd64"})
        if path == "/api":
            return self.json(h, 200, {"kind": "APIVersions", "versions": ["v1"],
                                      "serverAddressByClientCIDRs": [
                                          {"clientCIDR": "0.0.0.0/0",
                                           "serverAddress": "127.0.0.1:%d" % self.port}]})
        if path == "/apis":
            return self.json(h, 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": []})
        if path == "/api/v1":
            return self.json(h, 200, {"kind": "APIResourceList", "groupVersion": "v1", "resources": [
                {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod",
                 "verbs": ["get", "list", "watch"], "shortNames": ["po"]},
                {"name": "pods/portforward", "singularName": "", "namespaced": True,
                 "kind": "PodPortForwardOptions", "verbs": ["create", "get"]}]})
        if path == "/api/v1/namespaces/default/pods/web-0":
            return self.json(h, 200, self.pod("web-0"))
        if path == "/api/v1/namespaces/default/pods/web-0/portforward":
            headers = {k.lower(): v for k, v in h.headers.items()}
            pf.serve(h.connection, h.rfile, h.command, headers, self.resolve, POD,
                     self.registry, self.faults, self.log, query=query)
            h.close_connection = True
            return
        self.json(h, 404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                           "message": "not found", "reason": "NotFound", "code": 404})

    def close(self):
        self.registry.kill()
        self.registry.wait_empty(timeout=5)
        self.httpd.shutdown()
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.httpd.server_close()
        self.thread.join(5)


class Cluster:
    """Targets plus fake API server; shared by a test class."""

    def __init__(self):
        self.targets = {m: Target(m) for m in ("echo", "source", "sink", "hold")}
        self.api = FakeAPI(self.targets)

    def close(self):
        self.api.close()
        for t in self.targets.values():
            t.close()


# --------------------------------------------------------------------------
# the kubectl child

class Kubectl:
    def __init__(self, tmp, api_port, args, spdy=False, binary=None):
        kc = os.path.join(tmp, "kubeconfig")
        with open(kc, "w") as f:
            f.write("apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n"
                    "    server: http://127.0.0.1:%d\ncontexts:\n- name: fake\n  context:\n"
                    "    cluster: fake\ncurrent-context: fake\n" % api_port)
        env = dict(os.environ)
        env["KUBECACHEDIR"] = os.path.join(tmp, "cache")
        env["HOME"] = tmp
        env.pop("KUBECONFIG", None)
        env.pop("KUBECTL_PORT_FORWARD_WEBSOCKETS", None)
        if spdy:
            env["KUBECTL_PORT_FORWARD_WEBSOCKETS"] = "false"
        self.p = subprocess.Popen([binary or KUBECTL, "--kubeconfig", kc] + list(args),
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=env, start_new_session=True)
        self.out, self.err = [], []
        self.cond = threading.Condition()
        self.readers = [threading.Thread(target=self._read, args=(self.p.stdout, self.out),
                                         daemon=True),
                        threading.Thread(target=self._read, args=(self.p.stderr, self.err),
                                         daemon=True)]
        for t in self.readers:
            t.start()

    def _read(self, f, into):
        try:
            for line in f:
                with self.cond:
                    into.append(line.decode(errors="replace").rstrip("\n"))
                    self.cond.notify_all()
        finally:
            f.close()
            with self.cond:
                self.cond.notify_all()

    def wait_lines(self, regex, count=1, timeout=15.0):
        rx = re.compile(regex)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                got = [m for m in map(rx.match, self.out) if m]
                if len(got) >= count:
                    return got
                left = deadline - time.monotonic()
                if left <= 0 or (self.p.poll() is not None and not any(
                        t.is_alive() for t in self.readers)):
                    raise AssertionError("no %d line(s) %r; stdout=%r stderr=%r rc=%r" % (
                        count, regex, self.out, self.err, self.p.poll()))
                self.cond.wait(min(left, 0.1))

    def ports(self, count=1):
        return [int(m.group(1)) for m in
                self.wait_lines(r"^Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)$", count)]

    def wait(self, timeout=10.0):
        try:
            rc = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("kubectl did not exit; stderr=%r" % self.err)
        for t in self.readers:
            t.join(5)
        return rc

    def interrupt(self, timeout=10.0):
        self.p.send_signal(signal.SIGINT)
        return self.wait(timeout)

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(5)
        for t in self.readers:
            t.join(5)

    def stderr(self):
        with self.cond:
            return "\n".join(self.err)


# --------------------------------------------------------------------------
# local clients

def connect(port, timeout=20.0):
    c = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return c


def read_all(c, limit=64 * MB):
    chunks, n = [], 0
    while n <= limit:
        d = c.recv(1 << 20)
        if not d:
            break
        chunks.append(d)
        n += len(d)
    return b"".join(chunks)


def echo_roundtrip(port, data):
    """Send data, half-close, read everything back (concurrently)."""
    c = connect(port)
    err = []

    def send():
        try:
            c.sendall(data)
            c.shutdown(socket.SHUT_WR)
        except OSError as e:
            err.append(e)
    t = threading.Thread(target=send, daemon=True)
    t.start()
    try:
        got = read_all(c)
    finally:
        t.join(20)
        c.close()
    if err:
        raise err[0]
    return got


def download(port):
    c = connect(port)
    try:
        t0 = time.monotonic()
        got = read_all(c)
        return got, time.monotonic() - t0
    finally:
        c.close()


def upload(port, data):
    c = connect(port)
    try:
        t0 = time.monotonic()
        c.sendall(data)
        c.shutdown(socket.SHUT_WR)
        reply = read_all(c)
        return reply.decode(), time.monotonic() - t0
    finally:
        c.close()


def mbps(n, dt):
    return n / MB / max(dt, 1e-9)


# --------------------------------------------------------------------------
# protocol tests with our own SPDY client (no kubectl needed)

def _wsheader(opcode, n, fin=True, mask=b"\x01\x02\x03\x04"):
    b0 = (0x80 if fin else 0) | opcode
    if n < 126:
        h = struct.pack(">BB", b0, 0x80 | n)
    elif n < 65536:
        h = struct.pack(">BBH", b0, 0x80 | 126, n)
    else:
        h = struct.pack(">BBQ", b0, 0x80 | 127, n)
    return h + mask


def _mask(data, mask=b"\x01\x02\x03\x04"):
    return bytes(b ^ mask[i % 4] for i, b in enumerate(data))


class SpdyClient:
    """Client side of the portforward protocol, for tests."""

    def __init__(self, port, ws=False, protocol=None, method=None):
        self.ws = ws
        self.c = connect(port, timeout=10)
        path = "/api/v1/namespaces/default/pods/web-0/portforward"
        if ws:
            self.key = base64.b64encode(os.urandom(16)).decode()
            hdrs = ["GET %s HTTP/1.1" % path, "Host: 127.0.0.1:%d" % port,
                    "Connection: Upgrade", "Upgrade: websocket",
                    "Sec-WebSocket-Key: " + self.key, "Sec-WebSocket-Version: 13",
                    "Sec-WebSocket-Protocol: " + (protocol or pf.WS_PROTOCOL)]
        else:
            hdrs = ["POST %s HTTP/1.1" % path, "Host: 127.0.0.1:%d" % port,
                    "Content-Length: 0", "Connection: Upgrade", "Upgrade: SPDY/3.1",
                    "X-Stream-Protocol-Version: " + (protocol or "portforward.k8s.io")]
        if method:
            hdrs[0] = "%s %s HTTP/1.1" % (method, path)
        self.c.sendall(("\r\n".join(hdrs) + "\r\n\r\n").encode())
        self.rf = self.c.makefile("rb")
        self.status_line = self.rf.readline().decode().strip()
        self.headers = {}
        while True:
            line = self.rf.readline().decode()
            if line in ("\r\n", "\n", ""):
                break
            k, v = line.split(":", 1)
            self.headers[k.strip().lower()] = v.strip()
        self.buf = b""
        self.deflate = zlib.compressobj(9, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY,
                                        pf.SPDY3_DICTIONARY)
        self.inflate = zlib.decompressobj(zdict=pf.SPDY3_DICTIONARY)
        self.split = False
        self.max_msg = 0

    def body(self):
        n = int(self.headers.get("content-length", "0"))
        return self.rf.read(n)

    def send(self, frame):
        if not self.ws:
            self.c.sendall(frame)
            return
        if self.split and len(frame) > 3:
            # one frame spread over several messages, the middle one fragmented
            a, b = 3, len(frame) // 2 + 1
            parts = [(0x2, True, frame[:a]), (0x2, False, frame[a:b]), (0x0, True, frame[b:])]
        else:
            parts = [(0x2, True, frame)]
        out = b""
        for op, fin, p in parts:
            out += _wsheader(op, len(p), fin) + _mask(p)
        self.c.sendall(out)

    def send_ws_raw(self, opcode, payload):
        self.c.sendall(_wsheader(opcode, len(payload)) + _mask(payload))

    def block(self, headers):
        raw = struct.pack(">I", len(headers)) + b"".join(
            struct.pack(">I", len(k)) + k.encode() + struct.pack(">I", len(v)) + v.encode()
            for k, v in headers.items())
        return self.deflate.compress(raw) + self.deflate.flush(zlib.Z_SYNC_FLUSH)

    def control(self, ftype, flags, payload):
        self.send(struct.pack(">HHI", 0x8003, ftype, (flags << 24) | len(payload)) + payload)

    def syn_stream(self, sid, headers, fin=False):
        payload = struct.pack(">IIBB", sid, 0, 0, 0) + self.block(headers)
        self.control(pf.SYN_STREAM, 1 if fin else 0, payload)

    def data(self, sid, payload, fin=False):
        self.send(struct.pack(">II", sid, ((1 if fin else 0) << 24) | len(payload)) + payload)

    def open_pair(self, rid, port):
        """Like kubectl: error stream (half-closed at once), then data stream."""
        esid, dsid = 4 * rid + 1, 4 * rid + 3
        self.syn_stream(esid, {"streamtype": "error", "port": str(port), "requestid": str(rid)})
        self.data(esid, b"", fin=True)
        self.syn_stream(dsid, {"streamtype": "data", "port": str(port), "requestid": str(rid)})
        return esid, dsid

    def _fill(self, n):
        while len(self.buf) < n:
            if not self.ws:
                d = self.c.recv(1 << 16)
                if not d:
                    raise EOFError
                self.buf += d
                continue
            h = self.rf.read(2)
            if len(h) < 2:
                raise EOFError
            op, ln = h[0] & 0x0F, h[1] & 0x7F
            assert not (h[1] & 0x80), "server frames must not be masked"
            if ln == 126:
                ln = struct.unpack(">H", self.rf.read(2))[0]
            elif ln == 127:
                ln = struct.unpack(">Q", self.rf.read(8))[0]
            p = self.rf.read(ln)
            if op == 0x2:
                self.max_msg = max(self.max_msg, ln)
                self.buf += p
            elif op == 0x8:
                raise EOFError

    def read_frame(self):
        """-> ('ctl', type, flags, payload) or ('data', sid, flags, payload)."""
        if not self.ws:
            # plain SPDY reads go through rf too so nothing buffered is lost
            h = self.rf.read(8)
            if len(h) < 8:
                raise EOFError
            w0, w1 = struct.unpack(">II", h)
            p = self.rf.read(w1 & 0xFFFFFF)
        else:
            self._fill(8)
            w0, w1 = struct.unpack(">II", self.buf[:8])
            n = w1 & 0xFFFFFF
            self._fill(8 + n)
            p, self.buf = self.buf[8:8 + n], self.buf[8 + n:]
        if w0 & 0x80000000:
            ftype = w0 & 0xFFFF
            if ftype == pf.SYN_REPLY:
                raw = self.inflate.decompress(p[4:])
                assert raw[:4] == b"\0\0\0\0", raw
            return ("ctl", ftype, w1 >> 24, p)
        return ("data", w0 & 0x7FFFFFFF, w1 >> 24, p)

    def collect(self, want_fin, timeout=10.0):
        """Read frames until every stream id in want_fin has FIN'd.
        Returns (data by stream, control frames, max DATA length)."""
        self.c.settimeout(timeout)
        data, ctl, biggest = {}, [], 0
        pending = set(want_fin)
        while pending:
            kind, a, flags, p = self.read_frame()
            if kind == "data":
                data.setdefault(a, bytearray()).extend(p)
                biggest = max(biggest, len(p))
                if flags & 1:
                    pending.discard(a)
            else:
                ctl.append((a, p))
        return data, ctl, biggest

    def close(self):
        try:
            self.c.close()
        finally:
            self.rf.close()


class ProtocolBase:
    ws = False

    @classmethod
    def setUpClass(cls):
        cls.cluster = Cluster()
        cls.api = cls.cluster.api

    @classmethod
    def tearDownClass(cls):
        cls.cluster.close()

    def setUp(self):
        self.api.faults.clear()
        with self.api.lock:
            self.api.events.clear()

    def tearDown(self):
        self.api.registry.kill()
        self.assertTrue(self.api.registry.wait_empty(timeout=5))

    def client(self, **kw):
        c = SpdyClient(self.api.port, ws=self.ws, **kw)
        self.addCleanup(c.close)
        self.assertIn(" 101 ", c.status_line + " ")
        return c

    def closed_event(self):
        ev = self.api.event("portforward.close")
        self.assertTrue(ev, "no close event")
        self.assertEqual(ev[-1]["threads_alive"], 0)
        return ev[-1]

    def test_upgrade_answer(self):
        c = self.client()
        if self.ws:
            want = base64.b64encode(hashlib.sha1((c.key + pf.WS_GUID).encode()).digest()).decode()
            self.assertEqual(c.headers.get("sec-websocket-accept"), want)
            self.assertEqual(c.headers.get("sec-websocket-protocol"), pf.WS_PROTOCOL)
            self.assertEqual(c.headers.get("upgrade", "").lower(), "websocket")
        else:
            self.assertEqual(c.headers.get("x-stream-protocol-version"), "portforward.k8s.io")
            self.assertEqual(c.headers.get("upgrade"), "SPDY/3.1")
        self.assertEqual(self.api.registry.count(POD), 1)
        self.assertEqual(self.api.registry.count(("default", "other")), 0)

    def test_echo_ping_halfclose_goaway(self):
        c = self.client()
        c.split = self.ws
        esid, dsid = c.open_pair(0, 8080)
        c.control(pf.PING, 0, struct.pack(">I", 1))
        c.data(dsid, b"hello ")
        c.data(dsid, b"world", fin=True)
        data, ctl, _ = c.collect({esid, dsid})
        self.assertEqual(bytes(data[dsid]), b"hello world")
        self.assertEqual(bytes(data.get(esid, b"")), b"")
        replies = sorted(struct.unpack(">I", p[:4])[0] for t, p in ctl if t == pf.SYN_REPLY)
        self.assertEqual(replies, [esid, dsid])
        self.assertIn((pf.PING, struct.pack(">I", 1)), ctl)
        # second pair on the same connection: zlib contexts stay in step
        esid, dsid = c.open_pair(1, 8080)
        c.data(dsid, b"again", fin=True)
        data, _, _ = c.collect({esid, dsid})
        self.assertEqual(bytes(data[dsid]), b"again")
        c.control(pf.GOAWAY, 0, struct.pack(">II", 0, 0))
        c.c.shutdown(socket.SHUT_WR)
        self.assertTrue(self.api.registry.wait_empty(timeout=5))
        ev = self.closed_event()
        self.assertEqual(ev["frames_in"].get("GOAWAY"), 1)
        self.assertEqual(ev["frames_in"].get("SYN_STREAM"), 4)
        self.assertEqual(ev["frames_out"].get("SYN_REPLY"), 4)
        self.assertEqual(ev["transport"], "ws" if self.ws else "spdy")
        self.assertEqual([s["streamtype"] for s in ev["streams"]], ["error", "data"] * 2)

    def test_data_frames_at_most_32k(self):
        c = self.client()
        esid, dsid = c.open_pair(0, 8081)
        c.data(dsid, b"", fin=True)
        data, _, biggest = c.collect({esid, dsid}, timeout=20)
        self.assertEqual(hashlib.sha256(bytes(data[dsid])).hexdigest(), BIG_SHA)
        self.assertLessEqual(biggest, 32768)
        self.assertGreater(biggest, 1024)
        if self.ws:
            self.assertLessEqual(c.max_msg, 32768 + 8)

    def test_connection_refused_on_error_stream(self):
        c = self.client()
        esid, dsid = c.open_pair(0, 8083)
        data, _, _ = c.collect({esid, dsid})
        text = bytes(data[esid]).decode()
        self.assertRegex(text, r"^error forwarding port 8083 to pod web-0_default: "
                               r"dial tcp 127\.0\.0\.1:\d+: connect: connection refused$")
        self.assertEqual(bytes(data.get(dsid, b"")), b"")

    def test_target_error_and_error_text_fault(self):
        c = self.client()
        esid, dsid = c.open_pair(0, 9999)
        data, _, _ = c.collect({esid, dsid})
        self.assertEqual(bytes(data[esid]), b"pod web-0 does not expose port 9999")
        self.api.faults["error_text"] = "kubelet says no"
        esid, dsid = c.open_pair(1, 8080)
        c.data(dsid, b"dropped")
        data, _, _ = c.collect({esid, dsid})
        self.assertEqual(bytes(data[esid]), b"kubelet says no")
        self.assertNotIn("error_text", self.api.faults)  # one-shot
        esid, dsid = c.open_pair(2, 8080)
        c.data(dsid, b"ok", fin=True)
        data, _, _ = c.collect({esid, dsid})
        self.assertEqual(bytes(data[dsid]), b"ok")

    def test_rst_stream_closes_target(self):
        c = self.client()
        esid, dsid = c.open_pair(0, 8084)
        c.data(dsid, b"x")
        c.c.settimeout(10)
        while True:
            kind, a, flags, p = c.read_frame()
            if kind == "data" and a == dsid and p:
                break
        self.assertEqual(p, b"held\n")
        c.control(pf.RST_STREAM, 0, struct.pack(">II", dsid, 5))
        # the hold target sees EOF only if its connection was closed
        deadline = time.monotonic() + 5
        hold = self.cluster.targets["hold"]
        while any(t.is_alive() for t in hold.threads) and time.monotonic() < deadline:
            time.sleep(0.01)
        self.assertFalse(any(t.is_alive() for t in hold.threads))
        esid, dsid = c.open_pair(1, 8080)   # the tunnel still works
        c.data(dsid, b"after rst", fin=True)
        data, _, _ = c.collect({dsid})
        self.assertEqual(bytes(data[dsid]), b"after rst")

    def test_no_error_fin_fault(self):
        self.api.faults["no_error_fin"] = True
        c = self.client()
        esid, dsid = c.open_pair(0, 8080)
        c.data(dsid, b"q", fin=True)
        data, _, _ = c.collect({dsid})
        self.assertEqual(bytes(data[dsid]), b"q")
        c.c.settimeout(0.3)
        with self.assertRaises(socket.timeout):
            c.read_frame()

    def test_registry_kill(self):
        c = self.client()
        c2 = self.client()
        self.assertEqual(self.api.registry.count(POD), 2)
        self.assertEqual(self.api.registry.kill(("default", "nosuch")), 0)
        self.assertEqual(self.api.registry.kill(POD), 2)
        c.c.settimeout(5)
        with self.assertRaises((EOFError, ConnectionError)):
            c.read_frame()
        self.assertTrue(self.api.registry.wait_empty(POD, timeout=5))
        self.assertEqual(self.api.event("portforward.close")[-1]["reason"], "killed")

    def test_kill_after_bytes(self):
        self.api.faults["kill_after_bytes"] = 100000
        c = self.client()
        esid, dsid = c.open_pair(0, 8081)
        with self.assertRaises((EOFError, ConnectionError)):
            c.collect({dsid})
        ev = self.closed_event()
        self.assertEqual(ev["reason"], "kill_after_bytes")
        self.assertLess(ev["bytes_out"], 200000)


class PortForwardProtocolSpdyTest(ProtocolBase, unittest.TestCase):
    ws = False


class PortForwardProtocolWebSocketTest(ProtocolBase, unittest.TestCase):
    ws = True

    def test_ws_ping_and_close(self):
        c = self.client()
        c.send_ws_raw(0x9, b"pp")
        h = c.rf.read(2)
        self.assertEqual(h, b"\x8a\x02")
        self.assertEqual(c.rf.read(2), b"pp")
        c.send_ws_raw(0x8, struct.pack(">H", 1000))
        self.assertEqual(c.rf.read(4), b"\x88\x02\x03\xe8")
        self.assertTrue(self.api.registry.wait_empty(timeout=5))


class PortForwardUpgradeRejectTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = Cluster()
        cls.api = cls.cluster.api

    @classmethod
    def tearDownClass(cls):
        cls.cluster.close()

    def setUp(self):
        self.api.faults.clear()

    def status(self, c):
        body = json.loads(c.body())
        self.assertEqual(body["kind"], "Status")
        self.assertEqual(body["code"], 400)
        return body["message"]

    def test_dictionary(self):
        self.assertEqual(len(pf.SPDY3_DICTIONARY), 1423)
        self.assertEqual(zlib.adler32(pf.SPDY3_DICTIONARY), 0xE3C6A7C2)

    def test_no_upgrade_header(self):
        c = socket.create_connection(("127.0.0.1", self.api.port), timeout=5)
        self.addCleanup(c.close)
        c.sendall(b"GET /api/v1/namespaces/default/pods/web-0/portforward HTTP/1.1\r\n"
                  b"Host: x\r\n\r\n")
        reply = read_all(c)
        self.assertTrue(reply.startswith(b"HTTP/1.1 400 "), reply)
        body = json.loads(reply.split(b"\r\n\r\n", 1)[1])
        self.assertEqual((body["kind"], body["code"]), ("Status", 400))
        self.assertEqual(self.api.registry.count(), 0)

    def test_spdy_upgrade_by_get_is_accepted(self):
        c = SpdyClient(self.api.port, ws=False, method="GET")
        self.addCleanup(c.close)
        self.assertIn(" 101 ", c.status_line + " ")
        self.assertEqual(c.headers.get("x-stream-protocol-version"), "portforward.k8s.io")

    def test_faults_reject(self):
        self.api.faults["no_websocket"] = True
        c = SpdyClient(self.api.port, ws=True)
        self.addCleanup(c.close)
        self.assertIn(" 400 ", c.status_line)
        self.assertIn("no_websocket", self.status(c))
        c = SpdyClient(self.api.port, ws=False)
        self.addCleanup(c.close)
        self.assertIn(" 101 ", c.status_line)
        self.api.faults["no_spdy"] = True
        c = SpdyClient(self.api.port, ws=False)
        self.addCleanup(c.close)
        self.assertIn(" 400 ", c.status_line)
        self.assertIn("no_spdy", self.status(c))

    def test_wrong_protocols(self):
        c = SpdyClient(self.api.port, ws=True, protocol="v5.channel.k8s.io")
        self.addCleanup(c.close)
        self.assertIn(" 400 ", c.status_line)
        self.assertIn("v5.channel.k8s.io", self.status(c))
        c = SpdyClient(self.api.port, ws=False, protocol="v4.channel.k8s.io")
        self.addCleanup(c.close)
        self.assertIn(" 400 ", c.status_line)
        self.assertIn("unable to negotiate protocol", self.status(c))

    def test_no_protocol_header_fault(self):
        self.api.faults["no_protocol_header"] = True
        for ws in (True, False):
            c = SpdyClient(self.api.port, ws=ws)
            self.addCleanup(c.close)
            self.assertIn(" 101 ", c.status_line + " ")
            self.assertNotIn("sec-websocket-protocol", c.headers)
            self.assertNotIn("x-stream-protocol-version", c.headers)


# --------------------------------------------------------------------------
# the kubelet's plain WebSocket channel protocol (v4.channel.k8s.io), with a
# WebSocket client written here: masked frames, fragments, ping/pong, close

PF_PATH = "/api/v1/namespaces/default/pods/web-0/portforward"


class WsChannelClient:
    """Client side of v4.channel.k8s.io over TCP (`where` = port) or a unix socket
    (`where` = path, e.g. a `kubectl proxy --unix-socket`)."""

    def __init__(self, where, query="ports=8080", protocol=pf.CHANNEL_PROTOCOL,
                 path=PF_PATH, method="GET", extra=()):
        if isinstance(where, int):
            self.c = connect(where, timeout=10)
            host = "127.0.0.1:%d" % where
        else:
            self.c = socket.socket(socket.AF_UNIX)
            self.c.settimeout(10)
            self.c.connect(where)
            host = "localhost"
        self.b64 = protocol == pf.CHANNEL_BASE64_PROTOCOL
        self.key = base64.b64encode(os.urandom(16)).decode()
        hdrs = ["%s %s?%s HTTP/1.1" % (method, path, query) if query else
                "%s %s HTTP/1.1" % (method, path), "Host: " + host,
                "Connection: Upgrade", "Upgrade: websocket",
                "Sec-WebSocket-Key: " + self.key, "Sec-WebSocket-Version: 13"]
        if protocol:
            hdrs.append("Sec-WebSocket-Protocol: " + protocol)
        hdrs += list(extra)
        self.c.sendall(("\r\n".join(hdrs) + "\r\n\r\n").encode())
        self.rf = self.c.makefile("rb")
        self.status_line = self.rf.readline().decode().strip()
        self.status = int(self.status_line.split()[1]) if self.status_line else 0
        self.headers = {}
        while True:
            line = self.rf.readline().decode()
            if line in ("\r\n", "\n", ""):
                break
            k, v = line.split(":", 1)
            self.headers[k.strip().lower()] = v.strip()
        self.recvs = []

    def accept_ok(self):
        want = base64.b64encode(hashlib.sha1((self.key + pf.WS_GUID).encode()).digest())
        return self.headers.get("sec-websocket-accept") == want.decode()

    def body(self):
        if "content-length" in self.headers:
            return self.rf.read(int(self.headers["content-length"]))
        return self.rf.read()

    # ---- writing (masked, as RFC 6455 requires of clients)

    def frame(self, op, payload, fin=True, masked=True, mask=None):
        mask = mask or os.urandom(4)
        b0 = (0x80 if fin else 0) | op
        m = 0x80 if masked else 0
        n = len(payload)
        if n < 126:
            h = struct.pack(">BB", b0, m | n)
        elif n < 65536:
            h = struct.pack(">BBH", b0, m | 126, n)
        else:
            h = struct.pack(">BBQ", b0, m | 127, n)
        if not masked:
            return h + payload
        return h + mask + pf._unmask(mask, payload)   # XOR is its own inverse

    def send_frame(self, op, payload, **kw):
        self.c.sendall(self.frame(op, payload, **kw))

    def message(self, ch, data):
        if self.b64:
            return pf.OP_TEXT, bytes([0x30 + ch]) + base64.b64encode(data)
        return pf.OP_BINARY, bytes([ch]) + data

    def send(self, ch, data, fragments=1):
        op, payload = self.message(ch, data)
        if fragments <= 1:
            return self.send_frame(op, payload)
        step = max(1, len(payload) // fragments)
        cuts = list(range(0, len(payload), step))[:fragments]
        out = b""
        for k, start in enumerate(cuts):
            end = cuts[k + 1] if k + 1 < len(cuts) else len(payload)
            out += self.frame(op if k == 0 else pf.OP_CONT, payload[start:end],
                              fin=k == len(cuts) - 1)
        self.c.sendall(out)

    def close(self, code=1000):
        self.send_frame(pf.OP_CLOSE, struct.pack(">H", code))

    # ---- reading

    def read_frame(self):
        """-> (fin, opcode, payload); EOFError at the end of the TCP stream."""
        h = self.rf.read(2)
        if len(h) < 2:
            raise EOFError("eof")
        assert not h[1] & 0x80, "server frames must not be masked"
        n = h[1] & 0x7F
        if n == 126:
            n = struct.unpack(">H", self.rf.read(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", self.rf.read(8))[0]
        p = self.rf.read(n)
        if len(p) < n:
            raise EOFError("eof inside a frame")
        return bool(h[0] & 0x80), h[0] & 0x0F, p

    def decode(self, op, p):
        """A data message -> (channel, payload)."""
        if self.b64:
            assert op == pf.OP_TEXT, op
            return p[0] - 0x30, base64.b64decode(p[1:])
        assert op == pf.OP_BINARY, op
        return p[0], p[1:]

    def read_until(self, pred=None, answer_ping=True, answer_close=True, timeout=20.0):
        """Read messages until pred(channels) is true, or the close frame (then
        answered), or EOF. -> (channels: {ch: bytearray}, log: [(kind, ...)],
        close: code or None (no close frame), eof)."""
        self.c.settimeout(timeout)
        chans, log, close = {}, [], None
        while True:
            try:
                fin, op, p = self.read_frame()
            except EOFError:
                return chans, log, close, True
            self.recvs.append((op, len(p)))
            if op == pf.OP_PING:
                log.append(("ping", p))
                if answer_ping:
                    self.send_frame(pf.OP_PONG, p)
                continue
            if op == pf.OP_CLOSE:
                close = struct.unpack(">H", p[:2])[0] if len(p) >= 2 else 1005
                log.append(("close", close, p[2:].decode()))
                if answer_close:
                    try:
                        self.send_frame(pf.OP_CLOSE, p[:2])
                    except OSError:
                        pass
                return chans, log, close, False
            if op == pf.OP_PONG:
                log.append(("pong", p))
                continue
            assert fin, "the server sends whole messages"
            ch, data = self.decode(op, p)
            log.append(("data", ch, len(data)))
            chans.setdefault(ch, bytearray()).extend(data)
            if pred is not None and pred(chans):
                return chans, log, close, False

    def read_prefixes(self, ports):
        """The 2-byte little-endian port on every channel, data then error."""
        want = []
        for i, p in enumerate(ports):
            want += [(2 * i, struct.pack("<H", p)), (2 * i + 1, struct.pack("<H", p))]
        got = []
        for _ in want:
            fin, op, p = self.read_frame()
            got.append(self.decode(op, p))
        return got == want, got

    def eof(self, timeout=5.0):
        self.c.settimeout(timeout)
        return self.rf.read(1) == b""

    def shut(self):
        try:
            self.rf.close()
            self.c.close()
        except OSError:
            pass


class ChannelBase:
    """v4.channel.k8s.io against the fake API server, directly or through a proxy."""

    via_proxy = False

    @classmethod
    def setUpClass(cls):
        cls.cluster = Cluster()
        cls.api = cls.cluster.api
        cls.where = cls.api.port

    @classmethod
    def tearDownClass(cls):
        cls.cluster.close()

    def setUp(self):
        self.api.faults.clear()
        with self.api.lock:
            self.api.events.clear()

    def tearDown(self):
        self.api.registry.kill()
        self.assertTrue(self.api.registry.wait_empty(timeout=5))

    def ws(self, query="ports=8080", protocol=pf.CHANNEL_PROTOCOL, ok=True, **kw):
        c = WsChannelClient(self.where, query, protocol, **kw)
        self.addCleanup(c.shut)
        if ok:
            self.assertEqual(c.status, 101, c.status_line)
            self.assertTrue(c.accept_ok(), c.headers)
        return c

    def closed_event(self):
        self.assertTrue(self.api.registry.wait_empty(timeout=6))
        ev = self.api.event("portforward.close")
        self.assertTrue(ev, "no close event")
        ev = ev[-1]
        self.assertEqual(ev["transport"], "channel")
        self.assertEqual(ev["threads_alive"], 0)
        return ev

    def test_upgrade_prefixes_and_echo_close_handshake(self):
        c = self.ws()
        self.assertEqual(c.headers.get("sec-websocket-protocol"), pf.CHANNEL_PROTOCOL)
        self.assertEqual(c.headers.get("upgrade", "").lower(), "websocket")
        ok, got = c.read_prefixes([8080])
        self.assertTrue(ok, got)
        self.assertEqual(got[0], (0, b"\x90\x1f"))   # 8080 little-endian
        c.send(0, b"hello ")
        c.send(0, b"world")
        chans, _, close, eof = c.read_until(lambda ch: len(ch.get(0, b"")) >= 11)
        self.assertEqual(bytes(chans[0]), b"hello world")
        c.close(1000)
        chans, log, close, eof = c.read_until(answer_close=False)
        self.assertEqual(close, 1000, log)     # the server answers our close with its own
        self.assertTrue(c.eof())
        ev = self.closed_event()
        self.assertEqual(ev["reason"], "client close")
        self.assertEqual(ev["client_close"], 1000)
        self.assertEqual(ev["ports"], [8080])
        self.assertEqual(ev["protocol"], pf.CHANNEL_PROTOCOL)
        self.assertEqual(ev["bytes_in"], 11)
        self.assertEqual(ev["bytes_out"], 11)
        self.assertEqual(ev["frames_in"].get("BINARY"), 2)

    def test_base64_protocol(self):
        c = self.ws(protocol=pf.CHANNEL_BASE64_PROTOCOL)
        self.assertEqual(c.headers.get("sec-websocket-protocol"), pf.CHANNEL_BASE64_PROTOCOL)
        fin, op, p = c.read_frame()
        self.assertEqual((op, p), (pf.OP_TEXT, b"0" + base64.b64encode(b"\x90\x1f")))
        fin, op, p = c.read_frame()
        self.assertEqual((op, p), (pf.OP_TEXT, b"1kB8="))
        blob = os.urandom(70000)
        c.send(0, blob, fragments=3)
        chans, _, _, _ = c.read_until(lambda ch: len(ch.get(0, b"")) >= len(blob))
        self.assertEqual(bytes(chans[0]), blob)
        c.close()
        self.assertEqual(c.read_until(answer_close=False)[2], 1000)

    def test_no_subprotocol_is_binary(self):
        c = self.ws(protocol=None)
        self.assertNotIn("sec-websocket-protocol", c.headers)
        ok, got = c.read_prefixes([8080])
        self.assertTrue(ok, got)
        c.send(0, b"bin")
        self.assertEqual(bytes(c.read_until(lambda ch: len(ch.get(0, b"")) >= 3)[0][0]), b"bin")

    def test_several_ports(self):
        for query in ("ports=8080&ports=8081", "ports=8080,8081"):
            c = self.ws(query)
            ok, got = c.read_prefixes([8080, 8081])
            self.assertTrue(ok, got)
            c.send(0, b"echo me", fragments=2)
            chans, _, close, _ = c.read_until(
                lambda ch: len(ch.get(2, b"")) >= BIG and len(ch.get(0, b"")) >= 7)
            self.assertEqual(bytes(chans[0]), b"echo me")
            self.assertEqual(hashlib.sha256(bytes(chans[2])).hexdigest(), BIG_SHA)
            self.assertNotIn(1, chans)
            self.assertNotIn(3, chans)
            self.assertLessEqual(max(n for op, n in c.recvs), pf.MAX_DATA + 1)
            c.close()
            self.assertEqual(c.read_until(answer_close=False)[2], 1000)
            ev = self.closed_event()
            self.assertEqual(ev["ports"], [8080, 8081])
            c.shut()

    def test_pod_side_end_closes_websocket(self):
        c = self.ws("ports=8081")        # source: 10 MB, then the target closes
        c.read_prefixes([8081])
        chans, log, close, eof = c.read_until()
        self.assertEqual(close, 1000, log[-3:])
        self.assertEqual(hashlib.sha256(bytes(chans[0])).hexdigest(), BIG_SHA)
        self.assertTrue(c.eof())
        ev = self.closed_event()
        self.assertEqual(ev["reason"], "pod side closed")
        self.assertEqual(ev["bytes_out"], BIG)
        self.assertEqual(ev["client_close"], 1000)   # our answer was read

    def test_upload_10mb_fragmented(self):
        c = self.ws()
        c.read_prefixes([8080])
        got = bytearray()
        done = threading.Event()

        def reader():
            chans, _, _, _ = c.read_until(lambda ch: len(ch.get(0, b"")) >= BIG, timeout=30)
            got.extend(chans.get(0, b""))
            done.set()
        t = threading.Thread(target=reader, daemon=True)
        t.start()
        step = 100000
        for off in range(0, BIG, step):
            c.send(0, BIG_DATA[off:off + step], fragments=1 + off // step % 3)
            if off // step % 10 == 0:
                c.send_frame(pf.OP_PING, b"p%d" % off)
        t.join(60)
        self.assertTrue(done.is_set())
        self.assertEqual(hashlib.sha256(bytes(got)).hexdigest(), BIG_SHA)
        c.close()

    def test_ping_inside_fragmented_message(self):
        c = self.ws()
        c.read_prefixes([8080])
        c.c.sendall(c.frame(pf.OP_BINARY, b"\x00frag", fin=False)
                    + c.frame(pf.OP_PING, b"mid")
                    + c.frame(pf.OP_CONT, b"ment", fin=False)
                    + c.frame(pf.OP_CONT, b"ed", fin=True))
        chans, log, _, _ = c.read_until(lambda ch: len(ch.get(0, b"")) >= 10)
        self.assertIn(("pong", b"mid"), log)
        self.assertEqual(bytes(chans[0]), b"fragmented")
        c.send(1, b"ignored: the error channel is server to client")
        c.send(7, b"ignored: no such channel")
        c.send_frame(pf.OP_BINARY, b"")
        c.send(0, b"!")
        self.assertEqual(bytes(c.read_until(lambda ch: ch.get(0))[0][0]), b"!")
        c.close()
        c.read_until(answer_close=False)
        ev = self.closed_event()
        self.assertEqual(ev["pings_answered"], 1)
        self.assertEqual(ev["ignored"], 3)
        self.assertEqual(ev["frames_in"].get("CONT"), 2)

    def protocol_error(self, raw, code, text):
        c = self.ws()
        c.read_prefixes([8080])
        c.c.sendall(raw(c))
        chans, log, close, eof = c.read_until(answer_close=False)
        self.assertEqual(close, code, log)
        self.assertEqual(log[-1][2], text)
        self.assertNotIn(0, chans)
        self.assertTrue(c.eof(timeout=5))
        ev = self.closed_event()
        self.assertEqual(ev["reason"], "protocol error: " + text)
        self.assertEqual(ev["server_close"], code)
        self.assertEqual(ev["bytes_in"], 0)          # nothing reached the pod

    def test_unmasked_frame_rejected(self):
        self.protocol_error(lambda c: c.frame(pf.OP_BINARY, b"\x00data", masked=False),
                            1002, "client frames must be masked")

    def test_protocol_errors(self):
        self.protocol_error(lambda c: c.frame(pf.OP_CONT, b"x"), 1002,
                            "continuation frame outside a message")
        self.protocol_error(lambda c: c.frame(pf.OP_PING, b"x" * 126), 1002,
                            "control frames must be whole and at most 125 bytes")
        self.protocol_error(lambda c: c.frame(pf.OP_BINARY, b"\x00a", fin=False)
                            + c.frame(pf.OP_BINARY, b"\x00b"), 1002,
                            "new message inside a fragmented one")
        self.protocol_error(lambda c: c.frame(0x3, b""), 1002, "unknown opcode 3")
        self.protocol_error(lambda c: bytes([0xC2, 0x80]) + b"\0\0\0\0", 1002,
                            "reserved bits set")

    def test_bad_base64(self):
        c = self.ws(protocol=pf.CHANNEL_BASE64_PROTOCOL)
        c.read_prefixes([8080])
        c.send_frame(pf.OP_TEXT, b"0not base64!")
        chans, log, close, _ = c.read_until(answer_close=False)
        self.assertEqual(close, 1007, log)

    def test_connection_refused_on_error_channel(self):
        c = self.ws("ports=8083")
        c.read_prefixes([8083])
        chans, log, close, _ = c.read_until()
        self.assertRegex(bytes(chans[1]).decode(),
                         r"^error forwarding port 8083 to pod web-0_default: dial tcp "
                         r"127\.0\.0\.1:\d+: connect: connection refused$")
        self.assertEqual(close, 1000)
        self.assertNotIn(0, chans)
        ev = self.closed_event()
        self.assertEqual(ev["reason"], "no pod-side connection")
        self.assertEqual(len(ev["errors"]), 1)

    def test_one_port_refused_other_works(self):
        c = self.ws("ports=8083,8080,9999")
        c.read_prefixes([8083, 8080, 9999])
        c.send(2, b"still here")
        chans, log, close, _ = c.read_until(
            lambda ch: ch.get(1) and ch.get(5) and len(ch.get(2, b"")) >= 10)
        self.assertIn(b"connection refused", bytes(chans[1]))
        self.assertEqual(bytes(chans[5]), b"error forwarding port 9999 to pod web-0_default: "
                                          b"pod web-0 does not expose port 9999")
        self.assertEqual(bytes(chans[2]), b"still here")
        self.assertIsNone(close)
        c.close()
        self.assertEqual(c.read_until(answer_close=False)[2], 1000)

    def test_client_ping_answered(self):
        c = self.ws()
        c.read_prefixes([8080])
        c.send_frame(pf.OP_PING, b"hi")
        fin, op, p = c.read_frame()
        self.assertEqual((fin, op, p), (True, pf.OP_PONG, b"hi"))
        c.send_frame(pf.OP_PING, b"")
        self.assertEqual(c.read_frame(), (True, pf.OP_PONG, b""))
        c.close()
        c.read_until(answer_close=False)
        self.assertEqual(self.closed_event()["pings_answered"], 2)

    def test_upgrade_refusals(self):
        for query, text in (("", 'query parameter "ports" is required'),
                            ("ports=abc", 'invalid port "abc"'),
                            ("ports=8080,70000", 'invalid port "70000"'),
                            ("ports=0", 'invalid port "0"')):
            c = self.ws(query, ok=False)
            self.assertEqual(c.status, 400, c.status_line)
            body = json.loads(c.body())
            self.assertEqual((body["kind"], body["code"]), ("Status", 400))
            self.assertIn(text, body["message"])
        c = self.ws(protocol="v5.channel.k8s.io", ok=False)
        self.assertEqual(c.status, 400)
        self.assertIn("v4.channel.k8s.io", json.loads(c.body())["message"])
        c = self.ws(extra=["Sec-WebSocket-Version: 8"], ok=False)
        self.assertEqual(c.status, 400)
        self.assertEqual(self.api.registry.count(), 0)

    # ---- faults

    def test_fault_refuse_channel_ws(self):
        self.api.faults["refuse_channel_ws"] = True
        for proto in pf.CHANNEL_PROTOCOLS + (None,):
            c = self.ws(protocol=proto, ok=False)
            self.assertEqual(c.status, 403, c.status_line)
            body = json.loads(c.body())
            self.assertEqual((body["kind"], body["code"], body["reason"]),
                             ("Status", 403, "Forbidden"))
            self.assertEqual(body["message"], "upgrade refused (fault refuse_channel_ws)")
        # kubectl's own protocols keep working, so a fallback to them can be tested
        if not self.via_proxy:
            for ws in (True, False):
                s = SpdyClient(self.api.port, ws=ws)
                self.addCleanup(s.close)
                self.assertIn(" 101 ", s.status_line + " ")

    def test_fault_channel_error(self):
        self.api.faults["channel_error"] = "kubelet: something broke"
        before = self.cluster.targets["echo"].accepted
        c = self.ws("ports=8080,8081")
        ok, got = c.read_prefixes([8080, 8081])
        self.assertTrue(ok, got)
        t0 = time.monotonic()
        chans, log, close, eof = c.read_until(answer_close=False)
        self.assertEqual(bytes(chans[1]), b"kubelet: something broke")
        self.assertEqual(set(chans), {1})
        self.assertEqual(close, 1000)
        # no answer to the close: the server still ends the connection
        self.assertTrue(c.eof(timeout=pf.CLOSE_WAIT + pf.DRAIN_WAIT + 3))
        self.assertLess(time.monotonic() - t0, pf.CLOSE_WAIT + pf.DRAIN_WAIT + 3)
        self.assertEqual(self.cluster.targets["echo"].accepted, before)
        ev = self.closed_event()
        self.assertEqual(ev["reason"], "channel_error")

    def test_fault_split_frames(self):
        self.api.faults["split_frames"] = True
        c = self.ws("ports=8080")
        ok, got = c.read_prefixes([8080])
        self.assertTrue(ok, got)
        blob = os.urandom(300)
        c.send(0, blob)
        chans, _, _, _ = c.read_until(lambda ch: len(ch.get(0, b"")) >= len(blob))
        self.assertEqual(bytes(chans[0]), blob)
        c.close()
        self.assertEqual(c.read_until(answer_close=False)[2], 1000)
        ev = self.closed_event()
        # 2 prefix frames of 5 bytes, one data frame of 4 + 301, one close of 4
        self.assertEqual(ev["frames_out"], {"BINARY": 3, "CLOSE": 1})
        self.assertEqual(ev["split_sends"], 5 + 5 + 305 + 4)

    def test_fault_ping_first(self):
        self.api.faults["ping_first"] = True
        for answer in (True, False):
            with self.api.lock:
                self.api.events.clear()
            c = self.ws()
            fin, op, p = c.read_frame()
            self.assertEqual((op, p), (pf.OP_PING, b"sbx"))   # before any data frame
            if answer:
                c.send_frame(pf.OP_PONG, b"sbx")
            ok, got = c.read_prefixes([8080])
            self.assertTrue(ok, got)
            c.send(0, b"after ping")
            chans, _, _, _ = c.read_until(lambda ch: len(ch.get(0, b"")) >= 10)
            self.assertEqual(bytes(chans[0]), b"after ping")
            c.close()
            c.read_until(answer_close=False)
            ev = self.closed_event()
            self.assertEqual((ev["pings_sent"], ev["pongs"]), (1, 1 if answer else 0))
            c.shut()

    def test_fault_abrupt_after_bytes(self):
        self.api.faults["abrupt_after_bytes"] = 100000
        c = self.ws("ports=8081")
        c.read_prefixes([8081])
        chans, log, close, eof = c.read_until()
        self.assertTrue(eof)
        self.assertIsNone(close)            # no close frame
        self.assertEqual(len(chans[0]), 100000)
        self.assertEqual(bytes(chans[0]), BIG_DATA[:100000])
        ev = self.closed_event()
        self.assertEqual(ev["reason"], "abrupt_after_bytes")
        self.assertEqual(ev["bytes_out"], 100000)
        self.assertNotIn("CLOSE", ev["frames_out"])

    def test_pod_gone_mid_stream(self):
        c = self.ws("ports=8080,8084")
        c.read_prefixes([8080, 8084])
        c.send(0, b"alive?")
        c.send(2, b"x")
        c.read_until(lambda ch: ch.get(0) and ch.get(2))
        self.assertEqual(self.api.registry.gone(POD, "deleted"), 1)
        chans, log, close, _ = c.read_until()
        self.assertEqual(bytes(chans[1]), b'error forwarding port 8080 to pod web-0_default: '
                                          b'pod "web-0" is gone (deleted)')
        self.assertEqual(bytes(chans[3]), b'error forwarding port 8084 to pod web-0_default: '
                                          b'pod "web-0" is gone (deleted)')
        self.assertEqual(close, 1000)
        self.assertEqual([e[0] for e in log][-3:], ["data", "data", "close"])
        self.assertTrue(c.eof())
        ev = self.closed_event()
        self.assertEqual(ev["reason"], "pod gone: deleted")

    def test_registry_kill_is_abrupt(self):
        c = self.ws()
        c.read_prefixes([8080])
        self.assertEqual(self.api.registry.kill(POD), 1)
        chans, log, close, eof = c.read_until()
        self.assertTrue(eof)
        self.assertIsNone(close)
        self.assertEqual(self.closed_event()["reason"], "killed")

class PortForwardChannelTest(ChannelBase, unittest.TestCase):
    def test_spdy_tunnels_unaffected_by_gone_without_spdy(self):
        s = SpdyClient(self.api.port, ws=True)
        self.addCleanup(s.close)
        c = self.ws()
        self.assertEqual(self.api.registry.gone(POD, "killed", spdy=False), 1)
        self.assertEqual(c.read_until()[2], 1000)
        esid, dsid = s.open_pair(0, 8080)
        s.data(dsid, b"spdy lives", fin=True)
        data, _, _ = s.collect({esid, dsid})
        self.assertEqual(bytes(data[dsid]), b"spdy lives")


class PortForwardChannelViaKubectlProxyTest(ChannelBase, unittest.TestCase):
    """The same tests through the real `kubectl proxy --unix-socket` (it passes
    WebSocket upgrades through)."""

    via_proxy = True

    @classmethod
    def setUpClass(cls):
        _need_kubectl(cls)
        ChannelBase.setUpClass.__func__(cls)
        cls.tmp = tempfile.TemporaryDirectory(prefix="pfproxy-")
        path = os.path.join(cls.tmp.name, "proxy.sock")
        cls.proxy = Kubectl(cls.tmp.name, cls.api.port, ["proxy", "--unix-socket=" + path])
        try:
            cls.proxy.wait_lines(r"^Starting to serve on (.*)$")
        except AssertionError:
            cls.proxy.kill()
            cls.cluster.close()
            raise
        cls.where = path

    @classmethod
    def tearDownClass(cls):
        cls.proxy.kill()
        ChannelBase.tearDownClass.__func__(cls)
        cls.tmp.cleanup()

    def test_request_went_through_the_proxy(self):
        c = self.ws()
        c.read_prefixes([8080])
        with self.api.lock:
            reqs = [r for r in self.api.requests if r[1] == PF_PATH]
        self.assertTrue(reqs)
        hdrs = {k.lower(): v for k, v in reqs[-1][2].items()}
        # the proxy rewrote Host and added its User-Agent (our client sent none)
        self.assertEqual(hdrs.get("host"), "127.0.0.1:%d" % self.api.port)
        self.assertTrue(hdrs.get("user-agent", "").startswith("kubectl/"), hdrs)
        self.assertEqual(hdrs.get("sec-websocket-protocol"), pf.CHANNEL_PROTOCOL)
        c.close()
        c.read_until(answer_close=False)


class PortForwardChannelDevClusterTest(unittest.TestCase):
    """v4.channel.k8s.io through the dev cluster's API server to a real runtime pod:
    the query reaches serve(), the request log records the answer, pods killed or
    deleted end the WebSocket with an error-channel message and a close frame."""

    @classmethod
    def setUpClass(cls):
        from .. import harness
        cls.C = harness.DevCluster("--warm-replicas", "3", "--no-router").up()
        try:
            cls.C.wait_pool_ready(timeout=30)
        except Exception:
            cls.C.down()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.C.down()

    def tearDown(self):
        self.C.reset_faults()

    def runtime_pods(self):
        _, obj = self.C.api("GET", "/api/v1/namespaces/default/pods")
        return [p["metadata"]["name"] for p in obj["items"]
                if (p.get("status") or {}).get("phase") == "Running" and
                any(c.get("type") == "Ready" and c.get("status") == "True"
                    for c in p["status"].get("conditions") or []) and
                not p["metadata"].get("deletionTimestamp") and
                any(pt.get("containerPort") == 8888 for c in p["spec"]["containers"]
                    for pt in c.get("ports") or [])]

    def ws(self, pod, query="ports=8888", protocol=pf.CHANNEL_PROTOCOL):
        port = int(self.C.api_url.rsplit(":", 1)[1])
        c = WsChannelClient(port, query, protocol,
                            path="/api/v1/namespaces/default/pods/%s/portforward" % pod)
        self.addCleanup(c.shut)
        return c

    def test_get_runtime_and_request_log(self):
        pod = self.runtime_pods()[0]
        seq = self.C.last_seq()
        c = self.ws(pod)
        self.assertEqual(c.status, 101, c.status_line)
        self.assertEqual(c.headers.get("sec-websocket-protocol"), pf.CHANNEL_PROTOCOL)
        ok, got = c.read_prefixes([8888])
        self.assertTrue(ok, got)
        c.send(0, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        chans, log, close, _ = c.read_until()
        self.assertEqual(close, 1000, log)      # the runtime closed: so does the WebSocket
        self.assertTrue(bytes(chans[0]).startswith(b"HTTP/1.1 200 "), chans)
        self.assertNotIn(1, chans)
        reqs = [r for r in self.C.requests_since(seq) if "/portforward" in r["path"]]
        self.assertEqual(len(reqs), 1, reqs)
        self.assertEqual(reqs[0]["path"], "/api/v1/namespaces/default/pods/%s/portforward"
                                          "?ports=8888" % pod)
        self.assertEqual(reqs[0]["status"], 101)
        self.assertEqual(reqs[0]["headers"]["sec-websocket-protocol"], pf.CHANNEL_PROTOCOL)
        ev = self.C.wait_for(lambda: [e for e in self.C.state_dump()["portforwards"]["events"]
                                      if e["event"] == "portforward.close"], timeout=5)[-1]
        self.assertEqual((ev["transport"], ev["reason"]), ("channel", "pod side closed"))

    def test_refuse_fault_is_logged_as_refused(self):
        pod = self.runtime_pods()[0]
        self.C.faults(portforward={"refuse_channel_ws": True})
        seq = self.C.last_seq()
        c = self.ws(pod)
        self.assertEqual(c.status, 403)
        self.assertEqual(json.loads(c.body())["message"],
                         "upgrade refused (fault refuse_channel_ws)")
        reqs = [r for r in self.C.requests_since(seq) if "/portforward" in r["path"]]
        self.assertEqual([r["status"] for r in reqs], [403])

    def gone(self, end, why):
        pod = self.runtime_pods()[0]
        uid = self.C.get("/api/v1/namespaces/default/pods/" + pod)["metadata"]["uid"]
        c = self.ws(pod)
        c.read_prefixes([8888])
        c.send(0, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")   # keep-alive: stays open
        c.read_until(lambda ch: b"\r\n\r\n" in ch.get(0, b""))
        end(pod)
        chans, log, close, _ = c.read_until()
        self.assertEqual(bytes(chans.get(1, b"")).decode(),
                         'error forwarding port 8888 to pod %s_default, uid %s: '
                         'pod "%s" is gone (%s)' % (pod, uid, pod, why))
        self.assertEqual(close, 1000, log)
        c.c.settimeout(5)
        self.assertEqual(c.rf.read(), b"", log)     # then the connection ends

    def test_pod_killed_mid_stream(self):
        self.gone(lambda pod: self.C.admin("POST", "pods/kill",
                                           {"namespace": "default", "name": pod}), "killed")

    def test_pod_deleted_mid_stream(self):
        self.gone(lambda pod: self.C.delete("/api/v1/namespaces/default/pods/" + pod),
                  "deleted")


# --------------------------------------------------------------------------
# the real kubectl

def _need_kubectl(test):
    if KUBECTL is None:
        raise unittest.SkipTest("kubectl is not on PATH; the real-kubectl tests need it")


class KubectlBase:
    spdy = False

    @classmethod
    def setUpClass(cls):
        _need_kubectl(cls)
        cls.cluster = Cluster()
        cls.api = cls.cluster.api
        cls.tmp = tempfile.TemporaryDirectory(prefix="pftest-")

    @classmethod
    def tearDownClass(cls):
        cls.cluster.close()
        cls.tmp.cleanup()

    def setUp(self):
        self.api.faults.clear()
        with self.api.lock:
            self.api.events.clear()

    def tearDown(self):
        self.api.registry.kill()
        self.assertTrue(self.api.registry.wait_empty(timeout=5))

    def kubectl(self, *ports, spdy=None):
        k = Kubectl(self.tmp.name, self.api.port,
                    ["port-forward", "pod/web-0"] + ["0:%d" % p for p in ports]
                    + ["--address", "127.0.0.1"],
                    spdy=self.spdy if spdy is None else spdy)
        self.addCleanup(k.kill)
        return k

    def transport(self):
        ev = self.api.event("portforward.open")
        self.assertTrue(ev)
        return ev[-1]["transport"]

    def test_forward_transfer_sigint(self):
        k = self.kubectl(8080, 8081, 8082)
        lines = k.wait_lines(r"^Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)$", 3)
        self.assertEqual([int(m.group(2)) for m in lines], [8080, 8081, 8082])
        echo, source, sink = [int(m.group(1)) for m in lines]
        self.assertEqual(self.transport(), "spdy" if self.spdy else "ws")
        size = int(os.environ.get("PF_BENCH_MB", "10")) * MB
        data = BIG_DATA if size == BIG else os.urandom(size)
        # download (source target sends BIG_DATA)
        rounds = max(1, size // BIG)
        t_down = 0.0
        for _ in range(rounds):
            got, dt = download(source)
            self.assertEqual(len(got), BIG)
            self.assertEqual(hashlib.sha256(got).hexdigest(), BIG_SHA)
            t_down += dt
        reply, t_up = upload(sink, data)
        self.assertEqual(reply, "%d %s\n" % (len(data), hashlib.sha256(data).hexdigest()))
        # half-close echo of 10 MB
        self.assertEqual(echo_roundtrip(echo, BIG_DATA), BIG_DATA)
        sys.stderr.write("\n[%s] %d MB down %.0f MB/s, %d MB up %.0f MB/s "
                         % ("spdy" if self.spdy else "ws", rounds * 10, mbps(rounds * BIG, t_down),
                            len(data) // MB, mbps(len(data), t_up)))
        hc = k.wait_lines(r"^Handling connection for (\d+)$", rounds + 2)
        self.assertEqual(k.interrupt(), 0, k.stderr())
        self.assertEqual(k.stderr(), "")
        self.assertTrue(self.api.registry.wait_empty(timeout=5))
        ev = self.api.event("portforward.close")[-1]
        self.assertEqual(ev["frames_in"].get("GOAWAY"), 1)
        self.assertEqual(ev["frames_in"].get("SYN_STREAM"), 2 * len(hc))
        self.assertEqual(ev["threads_alive"], 0)

    def test_parallel_20(self):
        k = self.kubectl(8080)
        (port,) = k.ports()
        blobs = [os.urandom(256 * 1024 + i) for i in range(20)]
        results = [None] * 20

        def one(i):
            try:
                results[i] = echo_roundtrip(port, blobs[i])
            except Exception as e:  # reported below
                results[i] = e
        ts = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(20)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
        for i in range(20):
            self.assertEqual(results[i], blobs[i], "connection %d" % i)
        self.assertEqual(len(k.wait_lines(r"^Handling connection for %d$" % port, 20)), 20)
        self.assertEqual(k.interrupt(), 0, k.stderr())

    def test_error_text(self):
        k = self.kubectl(8080)
        (port,) = k.ports()
        self.api.faults["error_text"] = "simulated kubelet failure 42"
        c = connect(port, timeout=10)
        self.assertEqual(read_all(c), b"")
        c.close()
        self.assertEqual(k.wait(), 1)
        err = k.stderr()
        self.assertIn("simulated kubelet failure 42", err)
        self.assertIn("error: lost connection to pod", err)

    def test_connection_refused(self):
        k = self.kubectl(8083)
        (port,) = k.ports()
        c = connect(port, timeout=10)
        self.assertEqual(read_all(c), b"")
        c.close()
        self.assertEqual(k.wait(), 1)
        err = k.stderr()
        self.assertRegex(err, r"error forwarding port 8083 to pod web-0_default: dial tcp "
                              r"127\.0\.0\.1:\d+: connect: connection refused")
        self.assertIn("error: lost connection to pod", err)

    def test_registry_kill(self):
        k = self.kubectl(8080)
        (port,) = k.ports()
        self.assertEqual(echo_roundtrip(port, b"before"), b"before")
        self.assertEqual(self.api.registry.kill(POD), 1)
        self.assertEqual(k.wait(), 1)
        self.assertIn("error: lost connection to pod", k.stderr())

    def test_kill_after_bytes(self):
        self.api.faults["kill_after_bytes"] = MB
        k = self.kubectl(8081)
        (port,) = k.ports()
        got, _ = download(port)
        self.assertLess(len(got), BIG)
        self.assertEqual(k.wait(), 1)
        self.assertIn("error: lost connection to pod", k.stderr())


class PortForwardKubectlWebSocketTest(KubectlBase, unittest.TestCase):
    spdy = False

    def test_no_websocket_falls_back_to_spdy(self):
        self.api.faults["no_websocket"] = True
        k = self.kubectl(8080)
        (port,) = k.ports()
        self.assertEqual(self.transport(), "spdy")
        rej = self.api.event("portforward.reject")
        self.assertEqual([e["transport"] for e in rej], ["ws"])
        self.assertEqual(echo_roundtrip(port, BIG_DATA[:MB]), BIG_DATA[:MB])
        self.assertEqual(k.interrupt(), 0, k.stderr())

    def test_both_rejected(self):
        self.api.faults.update(no_websocket=True, no_spdy=True)
        k = self.kubectl(8080)
        self.assertEqual(k.wait(), 1)
        self.assertIn("error: error upgrading connection: unable to upgrade: SPDY is disabled",
                      k.stderr())

    def test_no_error_fin(self):
        self.api.faults["no_error_fin"] = True
        k = self.kubectl(8080)
        (port,) = k.ports()
        c = connect(port, timeout=10)
        self.addCleanup(c.close)
        c.sendall(b"ping")
        c.shutdown(socket.SHUT_WR)
        self.assertEqual(c.recv(100), b"ping")
        c.settimeout(0.5)
        with self.assertRaises(socket.timeout):
            c.recv(100)   # kubectl waits for the error stream: no EOF
        self.assertEqual(k.interrupt(), 0, k.stderr())


class PortForwardKubectlSpdyTest(KubectlBase, unittest.TestCase):
    spdy = True


# --------------------------------------------------------------------------
# the kubectl shim (tests/fakes/kubectl-shim/kubectl): needs only python3

class PortForwardShimTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = Cluster()
        cls.api = cls.cluster.api
        cls.tmp = tempfile.TemporaryDirectory(prefix="pfshim-")

    @classmethod
    def tearDownClass(cls):
        cls.cluster.close()
        cls.tmp.cleanup()

    def setUp(self):
        self.api.faults.clear()
        with self.api.lock:
            self.api.events.clear()
            self.api.requests.clear()

    def tearDown(self):
        self.api.registry.kill()
        self.assertTrue(self.api.registry.wait_empty(timeout=5))

    def shim(self, *args, api_port=None):
        k = Kubectl(self.tmp.name, api_port or self.api.port, list(args), binary=SHIM)
        self.addCleanup(k.kill)
        return k

    def assert_quiet(self, k):
        """Only the one-line shim notice on stderr."""
        self.assertEqual(len(k.err), 1, k.err)
        self.assertIn("shim", k.err[0])

    def test_yaml_subset(self):
        import importlib.machinery
        import importlib.util
        loader = importlib.machinery.SourceFileLoader("kubectl_shim", SHIM)
        spec = importlib.util.spec_from_loader("kubectl_shim", loader)
        mod = importlib.util.module_from_spec(spec)
        loader.exec_module(mod)
        doc = mod.parse_yaml(
            "apiVersion: v1\nclusters:\n- name: c\n  cluster:\n"
            "    server: http://127.0.0.1:1  # comment\n    insecure-skip-tls-verify: true\n"
            "contexts:\n- name: x\n  context: {cluster: c, user: u, namespace: \"ns 1\"}\n"
            "- context:\n    cluster: c\n  name: y\ncurrent-context: x\n"
            "users:\n- name: u\n  user: {}\n- name: v\n  user:\n    token: 'a''b'\n")
        self.assertEqual(doc["clusters"][0]["cluster"],
                         {"server": "http://127.0.0.1:1", "insecure-skip-tls-verify": True})
        self.assertEqual(doc["contexts"][0]["context"],
                         {"cluster": "c", "user": "u", "namespace": "ns 1"})
        self.assertEqual(doc["contexts"][1], {"context": {"cluster": "c"}, "name": "y"})
        self.assertEqual(doc["users"], [{"name": "u", "user": {}},
                                        {"name": "v", "user": {"token": "a'b"}}])
        self.assertEqual(doc["current-context"], "x")

    def test_port_forward_pod(self):
        k = self.shim("port-forward", "pod/web-0", "0:8080", "0:8081", "--address", "127.0.0.1")
        lines = k.wait_lines(r"^Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)$", 2)
        self.assertEqual([int(m.group(2)) for m in lines], [8080, 8081])
        echo, source = [int(m.group(1)) for m in lines]
        self.assertEqual(echo_roundtrip(echo, BIG_DATA), BIG_DATA)
        got, dt = download(source)
        self.assertEqual(hashlib.sha256(got).hexdigest(), BIG_SHA)
        sys.stderr.write("\n[shim] 10 MB down %.0f MB/s " % mbps(BIG, dt))
        self.assertEqual([m.group(1) for m in k.wait_lines(r"^Handling connection for (\d+)$", 2)],
                         [str(echo), str(source)])
        self.assertEqual(self.transport(), "spdy")
        self.assertEqual(k.interrupt(), 0)
        self.assert_quiet(k)
        self.assertTrue(self.api.registry.wait_empty(timeout=5))
        ev = self.api.event("portforward.close")[-1]
        self.assertEqual(ev["frames_in"].get("GOAWAY"), 1)

    def transport(self):
        ev = self.api.event("portforward.open")
        self.assertTrue(ev)
        return ev[-1]["transport"]

    def test_port_forward_svc(self):
        k = self.shim("port-forward", "svc/web", "0:80", "0:90", "--address=127.0.0.1")
        lines = k.wait_lines(r"^Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)$", 2)
        self.assertEqual([int(m.group(2)) for m in lines], [8080, 8080])
        self.assertEqual(echo_roundtrip(int(lines[1].group(1)), b"svc"), b"svc")
        self.assertEqual(k.interrupt(), 0)
        paths = [r[1] for r in self.api.requests]
        self.assertIn("/api/v1/namespaces/default/services/web", paths)
        self.assertIn("/api/v1/namespaces/default/pods", paths)

    def test_port_forward_errors(self):
        cases = [
            (["pod/nosuch", "0:8080"], 'Error from server (NotFound): pods "nosuch" not found'),
            (["nosuch", "0:8080"], 'Error from server (NotFound): pods "nosuch" not found'),
            (["pod/pending-0", "0:8080"],
             "error: unable to forward port because pod is not running. Current status=Pending"),
            (["svc/nosuch", "0:80"], 'Error from server (NotFound): services "nosuch" not found'),
            (["svc/web", "0:81"], "error: Service web does not have a service port 81"),
            (["deployment/web", "0:80"],
             'error: the server doesn\'t have a resource type "deployment"'),
        ]
        procs = [(self.shim("port-forward", *args, "--address", "127.0.0.1"), want)
                 for args, want in cases]
        for k, want in procs:
            self.assertEqual(k.wait(), 1)
            self.assertEqual(k.err[-1], want)
            self.assertEqual(k.out, [])
        k = self.shim("port-forward", "pod/web-0", "0:8080", api_port=refused_port())
        self.assertEqual(k.wait(), 1)
        self.assertRegex(k.err[-1], r"^The connection to the server 127\.0\.0\.1:\d+ was "
                                    r"refused - did you specify the right host or port\?$")

    def test_port_forward_busy_port(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        self.addCleanup(s.close)
        busy = s.getsockname()[1]
        k = self.shim("port-forward", "pod/web-0", "%d:8080" % busy, "--address", "127.0.0.1")
        self.assertEqual(k.wait(), 1)
        self.assertEqual(k.err[-1], "error: unable to listen on any of the requested ports: "
                                    "[{%d 8080}]" % busy)

    def test_port_forward_error_text_and_kill(self):
        k = self.shim("port-forward", "pod/web-0", "0:8080", "--address", "127.0.0.1")
        (port,) = k.ports()
        self.api.faults["error_text"] = "simulated kubelet failure 7"
        c = connect(port, timeout=10)
        self.assertEqual(read_all(c), b"")
        c.close()
        self.assertEqual(k.wait(), 1)
        self.assertIn("an error occurred forwarding %d -> 8080: simulated kubelet failure 7"
                      % port, k.stderr())
        self.assertEqual(k.err[-1], "error: lost connection to pod")
        k = self.shim("port-forward", "pod/web-0", "0:8080", "--address", "127.0.0.1")
        k.ports()
        self.assertEqual(self.api.registry.kill(POD), 1)
        self.assertEqual(k.wait(), 1)
        self.assertEqual(k.err[-1], "error: lost connection to pod")

    def test_port_forward_parallel_and_no_error_fin(self):
        k = self.shim("port-forward", "pod/web-0", "0:8080", "--address", "127.0.0.1")
        (port,) = k.ports()
        blobs = [os.urandom(100000 + i) for i in range(20)]
        results = [None] * 20

        def one(i):
            try:
                results[i] = echo_roundtrip(port, blobs[i])
            except Exception as e:
                results[i] = e
        ts = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(20)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
        self.assertEqual(results, blobs)
        self.api.faults["no_error_fin"] = True
        c = connect(port, timeout=10)
        self.addCleanup(c.close)
        c.sendall(b"ping")
        c.shutdown(socket.SHUT_WR)
        self.assertEqual(c.recv(100), b"ping")
        c.settimeout(0.5)
        with self.assertRaises(socket.timeout):
            c.recv(100)
        self.assertEqual(k.interrupt(), 0)

    def proxy(self, *extra, api_port=None):
        k = self.shim("proxy", "--port=0", *extra, api_port=api_port)
        m = k.wait_lines(r"^Starting to serve on (127\.0\.0\.1:(\d+)|(/.*))$")[0]
        return k, m

    def http(self, port, method, path, headers=(), body=b""):
        c = connect(port, timeout=10)
        try:
            req = ["%s %s HTTP/1.1" % (method, path), "Connection: close"] + list(headers)
            if body:
                req.append("Content-Length: %d" % len(body))
            c.sendall(("\r\n".join(req) + "\r\n\r\n").encode() + body)
            raw = read_all(c)
        finally:
            c.close()
        head, _, rest = raw.partition(b"\r\n\r\n")
        return int(head.split()[1]), head.decode(), rest

    def test_proxy(self):
        k, m = self.proxy()
        port = int(m.group(2))
        code, head, body = self.http(port, "POST", "/echo-headers",
                                     ["Host: 127.0.0.1:%d" % port, "X-Custom: yes",
                                      "Authorization: Bearer other"], b"payload")
        self.assertEqual(code, 201, head)
        got = json.loads(body)
        hdrs = {k.lower(): v for k, v in got["headers"]}
        self.assertEqual(hdrs["host"], "127.0.0.1:%d" % self.api.port)
        self.assertEqual(hdrs["x-forwarded-for"], "127.0.0.1")
        self.assertEqual(hdrs["x-custom"], "yes")
        self.assertEqual(hdrs["authorization"], "Bearer other")
        self.assertIn("user-agent", hdrs)
        self.assertNotIn("connection", hdrs)
        self.assertEqual(got["body"], "payload")
        code, _, body = self.http(port, "GET", "/api/v1/namespaces/default/pods/x/exec",
                                  ["Host: localhost:%d" % port])
        self.assertEqual((code, body), (403, b"Forbidden\n"))
        for host in ("example.com", "[::1]:%d" % port):
            code, _, body = self.http(port, "GET", "/version", ["Host: " + host])
            self.assertEqual((code, body), (403, b"Forbidden\n"), host)
        # keep-alive: two requests on one connection
        c = connect(port, timeout=10)
        self.addCleanup(c.close)
        for _ in range(2):
            c.sendall(b"GET /version HTTP/1.1\r\nHost: localhost\r\n\r\n")
            rf = c.makefile("rb")
            status = rf.readline()
            n = 0
            while True:
                line = rf.readline()
                if line == b"\r\n":
                    break
                if line.lower().startswith(b"content-length:"):
                    n = int(line.split(b":")[1])
            self.assertIn(b" 200 ", status)
            self.assertIn(b"v1.32", rf.read(n))
            rf.close()
        # chunked watch-like stream passes through unbuffered
        c = connect(port, timeout=10)
        self.addCleanup(c.close)
        c.sendall(b"GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        rf = c.makefile("rb")
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            head += rf.readline()
        self.assertIn(b"Transfer-Encoding: chunked", head)
        lat = []
        for i in range(3):
            size = int(rf.readline(), 16)
            ev = json.loads(rf.read(size))
            rf.readline()
            lat.append(time.time() - ev["t"])
            self.assertEqual(ev["i"], i)
        self.assertEqual(rf.readline(), b"0\r\n")
        rf.close()
        self.assertLess(max(lat), 0.1, lat)   # events are 150 ms apart
        self.assertEqual(k.p.poll(), None)
        k.p.send_signal(signal.SIGINT)
        self.assertEqual(k.wait(), -signal.SIGINT)
        self.assert_quiet(k)

    def test_proxy_unix_socket_and_api_down(self):
        path = os.path.join(self.tmp.name, "proxy.sock")
        k, m = self.proxy("--unix-socket=" + path)
        self.assertEqual(m.group(1), path)
        c = socket.socket(socket.AF_UNIX)
        c.settimeout(10)
        self.addCleanup(c.close)
        c.connect(path)
        c.sendall(b"GET /version HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        self.assertIn(b"v1.32", read_all(c))
        k.p.send_signal(signal.SIGTERM)
        self.assertEqual(k.wait(), -signal.SIGTERM)
        dead = refused_port()
        k, m = self.proxy(api_port=dead)
        code, head, body = self.http(int(m.group(2)), "GET", "/version", ["Host: localhost"])
        self.assertEqual(code, 500)
        self.assertIn("text/plain", head)
        self.assertEqual(body, b"dial tcp 127.0.0.1:%d: connect: connection refused\n" % dead)
        k.kill()
        self.assertIn("Error while proxying request: dial tcp 127.0.0.1:%d" % dead, k.stderr())


if __name__ == "__main__":
    unittest.main()
