"""Tests for tests/devcluster/router.py.

The router runs as a real process on 127.0.0.1 (two ports, --port 0 twice);
"pods" live in a private loopback block 127.253.X.0/24 (outside the 16..250
range the dev cluster uses): a real runtime.py on .2 and an in-test recording
backend on .3.  A tiny in-test HTTP server plays the API server for the
Service/Sandbox lookups.  Run: python3 tests/pyrun.py tests/devcluster devcluster -k Router
"""
import hashlib
import http.client
import http.server
import json
import os
import random
import socket
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # tests/devcluster
if HERE not in sys.path:
    sys.path.insert(0, HERE)
from .test_runtime import raw_exchange, request, start_proc, stop_proc, vm_kb  # noqa: E402

ROUTER = os.path.join(HERE, "router.py")
RUNTIME = os.path.join(HERE, "runtime.py")


class FakeAPI:
    """GET-only stand-in for the API server: services and sandboxes by (ns, name)."""

    def __init__(self):
        self.services, self.sandboxes, self.hits = {}, {}, []
        api = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                api.hits.append(self.path)
                parts = self.path.strip("/").split("/")
                obj = None
                if parts[:3] == ["api", "v1", "namespaces"] and len(parts) == 6 and parts[4] == "services":
                    obj = api.services.get((parts[3], parts[5]))
                elif parts[:4] == ["apis", "agents.x-k8s.io", "v1beta1", "namespaces"] and \
                        len(parts) == 7 and parts[5] == "sandboxes":
                    obj = api.sandboxes.get((parts[4], parts[6]))
                code = 200 if obj is not None else 404
                if obj is None:
                    obj = {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                           "reason": "NotFound", "code": 404}
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Backend:
    """Raw HTTP/1.1 backend that records each request and answers per `behavior`."""

    def __init__(self, host):
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind((host, 0))
        self.ls.listen(64)
        self.host, self.port = host, self.ls.getsockname()[1]
        self.behavior = "ok"
        self.requests = []
        self.half = threading.Event()     # request-streaming probe
        self.release = threading.Event()  # response-streaming probe
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self.closed = True
        self.release.set()
        self.ls.close()

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(c,), daemon=True).start()

    @staticmethod
    def _read_body(f, headers, on_progress=None):
        h = {k.lower(): v for k, v in headers}
        body = bytearray()
        if "chunked" in h.get("transfer-encoding", "").lower():
            while True:
                size = int(f.readline().split(b";")[0], 16)
                if size == 0:
                    while f.readline() not in (b"\r\n", b""):
                        pass
                    return bytes(body), "chunked"
                body += f.read(size)
                f.readline()
        n = int(h.get("content-length", "0"))
        while len(body) < n:
            d = f.read1(min(65536, n - len(body)))
            if not d:
                break
            body += d
            if on_progress:
                on_progress(len(body), n)
        return bytes(body), "length"

    def _handle(self, c):
        c.settimeout(20)
        f = c.makefile("rb")
        try:
            line = f.readline()
            if not line:
                return
            headers = []
            while True:
                h = f.readline()
                if h in (b"\r\n", b"\n", b""):
                    break
                k, _, v = h.decode("latin-1").partition(":")
                headers.append((k.strip(), v.strip()))
            beh = self.behavior
            if beh == "close":
                return
            if beh == "hang":
                self.release.wait(10)
                return

            def progress(got, total):
                if got >= total // 2:
                    self.half.set()
            body, framing = self._read_body(f, headers, progress)
            self.requests.append({"line": line.decode("latin-1").rstrip("\r\n"), "headers": headers,
                                  "body": body, "framing": framing})
            if beh == "ok":
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nServer: backend\r\n\r\nok")
            elif beh == "teapot":
                c.sendall(b"HTTP/1.1 418 I'm a teapot\r\nContent-Type: text/x-tea\r\n"
                          b"X-Keep: 1\r\nConnection: close, X-Drop\r\nX-Drop: 1\r\n"
                          b"Keep-Alive: timeout=5\r\nContent-Length: 5\r\n\r\nteapo")
            elif beh == "upgrade":
                c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                          b"Connection: Upgrade\r\n\r\n")
            elif beh == "stream":
                c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                          b"6\r\nchunk1\r\n")
                self.release.wait(5)
                c.sendall(b"6\r\nchunk2\r\n0\r\n\r\n")
            elif beh == "stream_length":
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nchunk1")
                self.release.wait(5)
                c.sendall(b"chunk2")
            elif beh == "die_mid_body":
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
            elif beh == "until_close":
                c.sendall(b"HTTP/1.1 200 OK\r\n\r\nbody without length")
        except OSError:
            pass
        finally:
            try:
                f.close()
                c.close()
            except OSError:
                pass


class RouterTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        import tempfile
        cls.block = "127.253.%d" % random.randint(0, 255)
        cls.cidr = cls.block + ".0/24"
        cls.tmp = tempfile.mkdtemp(prefix="router-test-")
        cls.base = os.path.join(cls.tmp, "base")
        cls.procs = []
        cls.api = FakeAPI()
        cls.backend = Backend(cls.block + ".3")
        cls.pod_ip = cls.block + ".2"
        p, ports = start_proc([sys.executable, RUNTIME, "--host", cls.pod_ip, "--port", "0",
                               "--base", cls.base, "--quiet"])
        cls.procs.append(p)
        cls.rt_port = ports[0]
        cls.router, ports = start_proc([sys.executable, ROUTER, "--host", "127.0.0.1", "--port", "0",
                                        "--port", "0", "--api", "http://127.0.0.1:%d" % cls.api.port,
                                        "--pod-cidr", cls.cidr, "--quiet"], lines=2)
        cls.procs.append(cls.router)
        cls.port, cls.port2 = ports

    @classmethod
    def tearDownClass(cls):
        for p in cls.procs:
            stop_proc(p)
        cls.backend.close()
        cls.api.close()
        import shutil
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.backend.behavior = "ok"
        self.backend.requests.clear()
        self.backend.half.clear()
        self.backend.release.clear()

    def rt_headers(self, **extra):
        h = {"X-Sandbox-ID": "sb1", "X-Sandbox-Pod-IP": self.pod_ip, "X-Sandbox-Port": str(self.rt_port)}
        h.update(extra)
        return h

    def be_headers(self, **extra):
        h = {"X-Sandbox-ID": "rec", "X-Sandbox-Pod-IP": self.backend.host,
             "X-Sandbox-Port": str(self.backend.port)}
        h.update(extra)
        return h

    def req(self, method, path, body=None, headers=None, port=None):
        return request(port or self.port, method, path, body, headers)

    def detail(self, method, path, headers, body=None):
        st, hd, data = self.req(method, path, body, headers)
        return st, json.loads(data)["detail"] if data else None

    # ------------------------------------------------------------------
    def test_healthz_and_methods(self):
        for port in (self.port, self.port2):
            st, hd, data = self.req("GET", "/healthz", port=port)
            self.assertEqual((st, data, hd["content-type"]), (200, b'{"status":"ok"}', "application/json"))
        st, hd, _ = self.req("HEAD", "/healthz")
        self.assertEqual((st, hd["allow"]), (405, "GET"))
        self.assertEqual(self.detail("POST", "/healthz", {}), (400, "X-Sandbox-ID header is required."))
        for method in ("HEAD", "OPTIONS"):
            st, hd, _ = self.req(method, "/execute", headers=self.rt_headers())
            self.assertEqual(st, 405, method)
        self.assertEqual(self.detail("OPTIONS", "/x", {}), (405, "Method Not Allowed"))

    def test_validation_errors(self):
        cases = [
            ({}, "X-Sandbox-ID header is required."),
            ({"X-Sandbox-ID": ""}, "X-Sandbox-ID header is required."),
            ({"X-Sandbox-ID": "Upper"}, "Invalid sandbox ID format."),
            ({"X-Sandbox-ID": "a" * 64}, "Invalid sandbox ID format."),
            ({"X-Sandbox-ID": "-a"}, "Invalid sandbox ID format."),
            ({"X-Sandbox-ID": "ok", "X-Sandbox-Namespace": ""}, "Invalid namespace format."),
            ({"X-Sandbox-ID": "ok", "X-Sandbox-Namespace": "a_b"}, "Invalid namespace format."),
            ({"X-Sandbox-ID": "ok", "X-Sandbox-Port": "0"}, "Invalid port format."),
            ({"X-Sandbox-ID": "ok", "X-Sandbox-Port": "65536"}, "Invalid port format."),
            ({"X-Sandbox-ID": "ok", "X-Sandbox-Port": "http"}, "Invalid port format."),
            ({"X-Sandbox-ID": "ok", "X-Sandbox-Pod-IP": "1.2.3"}, "Invalid target IP address format."),
            ({"X-Sandbox-ID": "ok", "X-Sandbox-Pod-IP": "pod.local"}, "Invalid target IP address format."),
            ({"X-Sandbox-ID": "ok", "X-Sandbox-Pod-IP": "127.0.0.1"}, "Invalid target IP address."),
            ({"X-Sandbox-ID": "ok", "X-Sandbox-Pod-IP": "10.0.0.5"}, "Invalid target IP address."),
            ({"X-Sandbox-ID": "ok", "X-Sandbox-Pod-IP": "::1"}, "Invalid target IP address."),
        ]
        for headers, want in cases:
            self.assertEqual(self.detail("GET", "/", headers), (400, want), headers)
        # no request reached a backend
        self.assertEqual(self.backend.requests, [])

    def test_auth_token(self):
        p, ports = start_proc([sys.executable, ROUTER, "--host", "127.0.0.1", "--port", "0",
                               "--api", "http://127.0.0.1:%d" % self.api.port, "--pod-cidr", self.cidr,
                               "--auth-token", "s3cret", "--quiet"])
        try:
            port = ports[0]
            h = self.rt_headers()
            for auth, want in ((None, "Missing or invalid Authorization header."),
                               ("Basic s3cret", "Missing or invalid Authorization header."),
                               ("Bearer", "Missing or invalid Authorization header."),
                               ("Bearer wrong", "Invalid token.")):
                hh = dict(h)
                if auth:
                    hh["Authorization"] = auth
                st, _, data = request(port, "GET", "/", headers=hh)
                self.assertEqual((st, json.loads(data)["detail"]), (401, want), auth)
            # auth is checked before the routing headers
            st, _, data = request(port, "GET", "/", headers={})
            self.assertEqual(st, 401)
            st, _, data = request(port, "GET", "/", headers=dict(h, Authorization="bearer s3cret"))
            self.assertEqual((st, json.loads(data)["status"]), (200, "ok"))
            self.assertEqual(request(port, "GET", "/healthz")[0], 200)
            # the token is not forwarded
            st, _, _ = request(port, "GET", "/x", headers=dict(self.be_headers(), Authorization="Bearer s3cret"))
            self.assertEqual(st, 200)
            self.assertNotIn("authorization", [k.lower() for k, _ in self.backend.requests[-1]["headers"]])
        finally:
            stop_proc(p)

    def test_sigterm_exits_promptly(self):
        p, ports = start_proc([sys.executable, ROUTER, "--host", "127.0.0.1", "--port", "0",
                               "--api", "http://127.0.0.1:%d" % self.api.port, "--pod-cidr", self.cidr,
                               "--quiet"])
        try:
            c = http.client.HTTPConnection("127.0.0.1", ports[0], timeout=5)
            c.request("GET", "/healthz")
            c.getresponse().read()  # an open keep-alive connection must not delay the exit
            t0 = time.monotonic()
            p.terminate()
            self.assertEqual(p.wait(5), 0)
            self.assertLess(time.monotonic() - t0, 2)
            c.close()
        finally:
            stop_proc(p)

    def test_proxy_to_runtime(self):
        h = self.rt_headers()
        st, hd, data = self.req("POST", "/execute", b'{"command":"echo routed"}',
                                dict(h, **{"Content-Type": "application/json"}))
        self.assertEqual((st, json.loads(data)["stdout"]), (200, "routed\n"))
        self.assertIn("x-runtime-exec-count", hd)
        boundary = "rtb"
        body = (b'--rtb\r\nContent-Disposition: form-data; name="file"; filename="d/r.txt"\r\n\r\n'
                b"via router\r\n--rtb--\r\n")
        st, _, data = self.req("POST", "/upload", body,
                               dict(h, **{"Content-Type": "multipart/form-data; boundary=" + boundary}))
        self.assertEqual(st, 200, data)
        st, hd, data = self.req("GET", "/download/d%2Fr.txt", headers=h)
        self.assertEqual((st, data, hd["content-length"]), (200, b"via router", "10"))
        st, _, data = self.req("GET", "/download/..%2Fx", headers=h)
        self.assertEqual((st, json.loads(data)), (403, {"message": "Access denied"}))
        st, _, data = self.req("GET", "/download/none", headers=h)
        self.assertEqual((st, json.loads(data)), (404, {"message": "File not found"}))

    def test_dns_mode_via_api(self):
        api = self.api
        # no Service -> 502
        self.assertEqual(self.detail("GET", "/", {"X-Sandbox-ID": "ghost", "X-Sandbox-Port": str(self.rt_port)}),
                         (502, "Could not connect to the backend sandbox: ghost"))
        api.services[("default", "sb1")] = {"kind": "Service", "metadata": {"name": "sb1"}}
        api.sandboxes[("default", "sb1")] = {"kind": "Sandbox", "status": {"podIPs": [self.pod_ip]}}
        st, _, data = self.req("GET", "/", headers={"X-Sandbox-ID": "sb1", "X-Sandbox-Port": str(self.rt_port)})
        self.assertEqual((st, json.loads(data)["status"]), (200, "ok"))
        # Host header looks like the cluster DNS name
        api.services[("team-a", "rec")] = {"kind": "Service"}
        api.sandboxes[("team-a", "rec")] = {"kind": "Sandbox", "status": {"podIPs": [self.backend.host]}}
        st, _, _ = self.req("GET", "/p", headers={"X-Sandbox-ID": "rec", "X-Sandbox-Namespace": "team-a",
                                                  "X-Sandbox-Port": str(self.backend.port)})
        self.assertEqual(st, 200)
        hdrs = {k.lower(): v for k, v in self.backend.requests[-1]["headers"]}
        self.assertEqual(hdrs["host"], "rec.team-a.svc.cluster.local:%d" % self.backend.port)
        # Service but no pod IP -> 502
        api.services[("default", "nopod")] = {"kind": "Service"}
        api.sandboxes[("default", "nopod")] = {"kind": "Sandbox", "status": {}}
        self.assertEqual(self.detail("GET", "/", {"X-Sandbox-ID": "nopod"}),
                         (502, "Could not connect to the backend sandbox: nopod"))
        self.assertIn("/api/v1/namespaces/team-a/services/rec", api.hits)

    def test_forwarded_request_and_header_hygiene(self):
        be = self.backend
        raw = ("GET /a%%2Fb/../c?q=%%20x&y HTTP/1.1\r\nHost: router.example\r\n"
               "X-Sandbox-ID: rec\r\nX-Sandbox-Pod-IP: %s\r\nX-Sandbox-Port: %d\r\n"
               "X-Sandbox-Timeout: 30\r\nX-Sandbox-Namespace: default\r\n"
               "Authorization: Bearer t\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n"
               "Keep-Alive: timeout=5\r\nTE: trailers\r\nX-Custom: kept\r\n"
               "X-Sandbox-Extra: also-kept\r\n\r\n" % (be.host, be.port)).encode()
        st, _, data = raw_exchange(self.port, raw)
        self.assertEqual((st, data), (200, b"ok"))
        r = be.requests[-1]
        self.assertEqual(r["line"], "GET /a%2Fb/../c?q=%20x&y HTTP/1.1")
        names = [k.lower() for k, _ in r["headers"]]
        hdrs = {k.lower(): v for k, v in r["headers"]}
        self.assertEqual(hdrs["host"], "%s:%d" % (be.host, be.port))
        for gone in ("authorization", "x-hop", "keep-alive", "te", "x-sandbox-id", "x-sandbox-pod-ip",
                     "x-sandbox-port", "x-sandbox-timeout", "x-sandbox-namespace"):
            self.assertNotIn(gone, names, gone)
        self.assertEqual(names.count("host"), 1)
        self.assertEqual(hdrs["x-custom"], "kept")
        # upstream drops exactly the five routing headers; other X-Sandbox-* pass
        self.assertEqual(hdrs["x-sandbox-extra"], "also-kept")
        self.assertEqual(hdrs["user-agent"], "python-httpx/0.28.1")
        # httpx streams a body-less request as chunked
        self.assertEqual((hdrs.get("transfer-encoding"), r["framing"], r["body"]), ("chunked", "chunked", b""))
        # a client Content-Length is kept, body byte-identical, own User-Agent kept
        payload = bytes(range(256)) * 10
        st, _, _ = self.req("PUT", "/up", payload, dict(self.be_headers(), **{"User-Agent": "sandbox.h"}))
        r = be.requests[-1]
        hdrs = {k.lower(): v for k, v in r["headers"]}
        self.assertEqual((hdrs["content-length"], r["framing"], r["body"], hdrs["user-agent"]),
                         (str(len(payload)), "length", payload, "sandbox.h"))
        self.assertNotIn("transfer-encoding", hdrs)

    def test_chunked_request_passthrough(self):
        be = self.backend
        payload = os.urandom(5000)
        pieces = [payload[i:i + 777] for i in range(0, len(payload), 777)]
        body = b"".join(b"%x\r\n" % len(p) + p + b"\r\n" for p in pieces) + b"0\r\n\r\n"
        raw = ("POST /c HTTP/1.1\r\nHost: r\r\nTransfer-Encoding: chunked\r\nX-Sandbox-ID: rec\r\n"
               "X-Sandbox-Pod-IP: %s\r\nX-Sandbox-Port: %d\r\n\r\n" % (be.host, be.port)).encode() + body
        st, _, _ = raw_exchange(self.port, raw)
        self.assertEqual(st, 200)
        r = be.requests[-1]
        self.assertEqual((r["framing"], r["body"]), ("chunked", payload))

    def test_response_passthrough(self):
        self.backend.behavior = "teapot"
        st, hd, data = self.req("GET", "/t", headers=self.be_headers())
        self.assertEqual((st, data, hd["content-type"], hd["x-keep"], hd["content-length"]),
                         (418, b"teapo", "text/x-tea", "1", "5"))
        for gone in ("x-drop", "keep-alive"):
            self.assertNotIn(gone, hd)
        self.backend.behavior = "until_close"
        st, hd, data = self.req("GET", "/u", headers=self.be_headers())
        self.assertEqual((st, data, hd.get("transfer-encoding")), (200, b"body without length", "chunked"))

    def _stream_probe(self, behavior):
        """The first piece must reach the client while the backend still holds the rest."""
        be = self.backend
        be.behavior = behavior
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        try:
            s.sendall(("GET /s HTTP/1.1\r\nHost: r\r\nX-Sandbox-ID: rec\r\nX-Sandbox-Pod-IP: %s\r\n"
                       "X-Sandbox-Port: %d\r\n\r\n" % (be.host, be.port)).encode())
            got = b""
            deadline = time.monotonic() + 3
            while b"chunk1" not in got and time.monotonic() < deadline:
                s.settimeout(max(deadline - time.monotonic(), 0.01))
                try:
                    d = s.recv(4096)
                except socket.timeout:
                    break
                if not d:
                    break
                got += d
            self.assertIn(b"chunk1", got, "first piece was held back by the router")
            self.assertNotIn(b"chunk2", got)
            be.release.set()
            s.settimeout(5)
            while b"chunk2" not in got:
                d = s.recv(4096)
                if not d:
                    break
                got += d
            self.assertIn(b"chunk2", got)
            return got
        finally:
            s.close()

    def test_streaming_response(self):
        got = self._stream_probe("stream")
        self.assertIn(b"transfer-encoding: chunked", got.lower())
        self.backend.release.clear()
        got = self._stream_probe("stream_length")
        self.assertIn(b"content-length: 12", got.lower())

    def test_streaming_request(self):
        be = self.backend
        total = 4 << 20
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        try:
            s.sendall(("POST /big HTTP/1.1\r\nHost: r\r\nContent-Length: %d\r\nX-Sandbox-ID: rec\r\n"
                       "X-Sandbox-Pod-IP: %s\r\nX-Sandbox-Port: %d\r\n\r\n" % (total, be.host, be.port)).encode())
            half = b"a" * (total // 2)
            s.sendall(half)
            self.assertTrue(be.half.wait(5), "backend did not see the first half before the rest was sent")
            s.sendall(b"b" * (total - len(half)))
            r = http.client.HTTPResponse(s)
            r.begin()
            self.assertEqual((r.status, r.read()), (200, b"ok"))
        finally:
            s.close()
        self.assertEqual(len(be.requests[-1]["body"]), total)

    def test_502_504_500_101(self):
        self.assertEqual(self.detail("GET", "/", {"X-Sandbox-ID": "dead", "X-Sandbox-Pod-IP": self.block + ".9",
                                                  "X-Sandbox-Port": "1"}),
                         (502, "Could not connect to the backend sandbox: dead"))
        self.backend.behavior = "hang"
        t0 = time.monotonic()
        self.assertEqual(self.detail("GET", "/", self.be_headers(**{"X-Sandbox-Timeout": "0.5"})),
                         (504, "Timed out waiting for the backend sandbox: rec"))
        self.assertLess(time.monotonic() - t0, 3)
        self.backend.release.set()
        self.backend.behavior = "ok"
        for bad in ("abc", "-1", "inf", "nan", "0"):  # ignored, not 400
            st, _, data = self.req("GET", "/", headers=self.be_headers(**{"X-Sandbox-Timeout": bad}))
            self.assertEqual((st, data), (200, b"ok"), bad)
        self.backend.behavior = "close"
        self.assertEqual(self.detail("GET", "/", self.be_headers()),
                         (500, "An internal error occurred in the proxy."))
        self.backend.behavior = "upgrade"
        self.assertEqual(self.detail("GET", "/", self.be_headers()),
                         (502, "Backend attempted a WebSocket upgrade over HTTP. "
                               "Connect using the WebSocket protocol instead."))
        self.backend.behavior = "die_mid_body"
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        c.request("GET", "/", headers=self.be_headers())
        r = c.getresponse()
        self.assertEqual(r.status, 200)
        with self.assertRaises(http.client.IncompleteRead):
            r.read()
        c.close()

    def test_large_stream_memory(self):
        size = 64 << 20
        h = self.rt_headers()
        block = os.urandom(1 << 20)
        head = (b'--bb\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n\r\n')
        tail = b"\r\n--bb--\r\n"
        sha = hashlib.sha256()

        def gen():
            yield head
            for i in range(size >> 20):
                piece = i.to_bytes(4, "big") + block[4:]
                sha.update(piece)
                yield piece
            yield tail
        before = vm_kb(self.router.pid, "VmHWM")
        t0 = time.monotonic()
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        c.request("POST", "/upload", body=gen(), headers=dict(h, **{
            "Content-Type": "multipart/form-data; boundary=bb",
            "Content-Length": str(len(head) + size + len(tail))}))
        r = c.getresponse()
        self.assertEqual(r.status, 200, r.read())
        r.read()
        c.request("GET", "/download/big.bin", headers=h)
        r = c.getresponse()
        got, n = hashlib.sha256(), 0
        while True:
            d = r.read(1 << 20)
            if not d:
                break
            got.update(d)
            n += len(d)
        c.close()
        dt = time.monotonic() - t0
        after = vm_kb(self.router.pid, "VmHWM")
        self.assertEqual((n, got.hexdigest()), (size, sha.hexdigest()))
        print("\n  [figures] router VmHWM %d kB before, %d kB after 64 MiB up+down through it (%.2f s)"
              % (before, after, dt))
        self.assertLess(after, before + 32 * 1024, "router buffered the bodies")


if __name__ == "__main__":
    unittest.main()
