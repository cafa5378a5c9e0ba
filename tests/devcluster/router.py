#!/usr/bin/env python3
"""sandbox-router pod emulator for the sandbox.h dev cluster (stdlib only).

Behaves like the upstream Python router
(clients/python/agentic-sandbox-client/sandbox-router/sandbox_router.py, a
FastAPI app on uvicorn proxying with httpx), protocol.md 4.7.

CLI
---
    python3 tests/devcluster/router.py --host IP --port 8080 [--port 80 ...]
        --api http://127.0.0.1:APIPORT --pod-cidr 127.A.B.0/24
        [--auth-token T] [--api-token T] [--proxy-timeout 180]
        [--cluster-domain cluster.local] [--keep-alive-timeout 5] [--quiet]

Binds every --port on IP (0 = any free port) and prints one line
`listening on IP:PORT` per port, in the order given, on stdout (flushed), then
serves until SIGTERM/SIGINT (exit 0).  Without --auth-token the router runs
unauthenticated (upstream's ALLOW_UNAUTHENTICATED_ROUTER=true); with it every
proxied request needs `Authorization: Bearer <T>`.

Routes
------
  GET /healthz   200 {"status":"ok"} (never proxied, no auth).  Other methods on
                 /healthz fall through to the proxy route, HEAD gets 405.
  GET, POST, PUT, DELETE, PATCH on any other path: proxied.
  Any other method (HEAD, OPTIONS, ...): 405 {"detail":"Method Not Allowed"}
  with `allow`.  WebSocket upgrades are not emulated.

Proxy steps, in upstream order
------------------------------
1. Auth (only with --auth-token): no header, or not exactly two words
   `Bearer <t>` (case-insensitive scheme) -> 401 "Missing or invalid
   Authorization header."; wrong token -> 401 "Invalid token.".
2. Routing headers (first occurrence counts), 400 {"detail": ...}:
   X-Sandbox-ID missing/empty -> "X-Sandbox-ID header is required.";
   not a DNS-1123 label (<= 63, ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$) -> "Invalid
   sandbox ID format."; X-Sandbox-Namespace (default "default", present but
   empty is invalid) -> "Invalid namespace format."; X-Sandbox-Port (default
   8888, Python int() syntax, 1..65535) -> "Invalid port format.";
   X-Sandbox-Pod-IP (empty = absent) not an IP literal -> "Invalid target IP
   address format."; an IP outside --pod-cidr -> "Invalid target IP
   address." (EMULATOR RULE: pods live on loopback here, so instead of
   upstream's "no loopback/link-local/multicast/unspecified" check only
   addresses inside the pod CIDR are accepted; 127.0.0.1, 10.x, ::1 are not).
3. Timeout: X-Sandbox-Timeout parsed with float(); unparsable, non-finite or
   <= 0 -> --proxy-timeout (180); larger values are capped to it.  Connect
   timeout min(timeout, 5); the same timeout bounds every single read/write
   on the backend socket (httpx semantics: not a whole-request deadline).
4. Target: with a pod IP, http://<ip>:<port>; without one the emulator does
   what cluster DNS would for <id>.<ns>.svc.<domain>: if Service <id> exists
   in <ns> (GET /api/v1/namespaces/NS/services/ID on --api), the Sandbox's
   status.podIPs[0] (GET /apis/agents.x-k8s.io/v1beta1/namespaces/NS/sandboxes/
   ID); no Service, no Sandbox, no IP, or an API error -> 502.
5. Forwarded request: same method, the RAW escaped path (%2F kept, dot
   segments kept) and the raw query; all client headers except Host,
   Authorization, the five routing headers X-Sandbox-ID/-Namespace/-Port/
   -Pod-IP/-Timeout (other X-Sandbox-* names such as X-Sandbox-UID pass, as in
   upstream's code) and hop-by-hop headers (Connection, Keep-Alive,
   Proxy-Authenticate, Proxy-Authorization, TE, Trailers, Transfer-Encoding,
   Upgrade and every name listed in Connection); then, as httpx does, Host
   (<ip>:<port>, or <id>.<ns>.svc.<domain>:<port>; the port omitted when 80)
   and, when the client did not send them, accept: */*, accept-encoding:
   gzip, deflate, connection: keep-alive, user-agent: python-httpx/0.28.1.
   Body: a client Content-Length is kept and the body streamed through;
   otherwise (chunked or no body at all, e.g. a plain GET) the body is sent
   `Transfer-Encoding: chunked` - exactly what httpx does with a streamed
   request body.  Request and response bodies are relayed in 256 KiB pieces
   and never held whole.  One backend connection per request.
6. Response: status and headers passed back minus hop-by-hop ones; uvicorn's
   `date` and `server: uvicorn` come first (so they may appear twice).  The
   body is relayed raw (no content decoding); a backend Content-Length is kept,
   otherwise the client gets chunked.  A backend 101 -> 502 "Backend attempted
   a WebSocket upgrade over HTTP. Connect using the WebSocket protocol
   instead.".  If the backend stalls or dies after the head was relayed the
   client connection is closed (truncated body).
Errors: connection refused/unreachable -> 502 "Could not connect to the
backend sandbox: <id>"; connect/read/write timeout before the response head
-> 504 "Timed out waiting for the backend sandbox: <id>"; backend closed or
reset without a (valid) response -> 500 "An internal error occurred in the
proxy." (httpx RemoteProtocolError/ReadError are not ConnectError).
"""

import argparse
import ipaddress
import json
import math
import os
import re
import secrets
import signal
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from runtime import BadRequest, ClientGone, HTTPServer, json_bytes  # noqa: E402

DNS_LABEL = re.compile(r"^[a-z0-9](?:[-a-z0-9]*[a-z0-9])?$")
ROUTER_HEADERS = {"x-sandbox-id", "x-sandbox-namespace", "x-sandbox-port",
                  "x-sandbox-pod-ip", "x-sandbox-timeout"}
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
              "te", "trailers", "transfer-encoding", "upgrade"}
PROXY_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH")
HTTPX_DEFAULTS = [("accept", "*/*"), ("accept-encoding", "gzip, deflate"),
                  ("connection", "keep-alive"), ("user-agent", "python-httpx/0.28.1")]
PIECE = 256 * 1024


class RoutingError(Exception):
    pass


class Backend502(Exception):
    pass


class Backend504(Exception):
    pass


class Backend500(Exception):
    pass


def valid_label(s):
    return bool(s) and len(s) <= 63 and bool(DNS_LABEL.match(s))


def hop_names(headers):
    names = set(HOP_BY_HOP)
    for k, v in headers:
        if k.lower() == "connection":
            for tok in v.split(","):
                tok = tok.strip().lower()
                if tok:
                    names.add(tok)
            break  # Starlette/httpx .get(): first occurrence
    return names


class BackendConn:
    """Minimal HTTP/1.1 client side of one proxied exchange."""

    def __init__(self, sock, timeout):
        self.sock = sock
        self.timeout = timeout
        self.buf = bytearray()

    def sendall(self, data):
        try:
            self.sock.sendall(data)
        except socket.timeout:
            raise Backend504()
        except OSError:
            raise Backend500()

    def _recv(self):
        try:
            return self.sock.recv(PIECE)
        except socket.timeout:
            raise Backend504()
        except OSError:
            raise Backend500()

    def read_line(self):
        while True:
            idx = self.buf.find(b"\n")
            if idx >= 0:
                line = bytes(self.buf[:idx])
                del self.buf[:idx + 1]
                return line[:-1] if line.endswith(b"\r") else line
            if len(self.buf) > 65536:
                raise Backend500()
            data = self._recv()
            if not data:
                return None
            self.buf += data

    def read_some(self, n):
        if not self.buf:
            data = self._recv()
            if not data:
                return b""
            if len(data) <= n:
                return data
            self.buf += data
        take = min(n, len(self.buf))
        data = bytes(self.buf[:take])
        del self.buf[:take]
        return data

    def read_head(self):
        """(status, headers) of the final response; 1xx interim skipped."""
        while True:
            line = self.read_line()
            if line is None:
                raise Backend500()
            m = re.match(rb"HTTP/1\.[01] (\d{3})(?: .*)?$", line)
            if not m:
                raise Backend500()
            status = int(m.group(1))
            headers = []
            while True:
                h = self.read_line()
                if h is None:
                    raise Backend500()
                if h == b"":
                    break
                k, sep, v = h.partition(b":")
                if not sep:
                    raise Backend500()
                headers.append((k.strip().decode("latin-1"), v.strip().decode("latin-1")))
            if 100 <= status < 200 and status != 101:
                continue
            return status, headers


class Router:
    def __init__(self, api, pod_net, auth_token, api_token, proxy_timeout, cluster_domain, log):
        self.api = api.rstrip("/")
        self.pod_net = pod_net
        self.auth_token = auth_token
        self.api_token = api_token
        self.proxy_timeout = proxy_timeout
        self.cluster_domain = cluster_domain
        self.log = log

    # ---- responses -----------------------------------------------------------
    def _detail(self, conn, status, detail, extra=()):
        conn.send_response(status, [("content-type", "application/json")] + list(extra),
                           json_bytes({"detail": detail}))

    # ---- entry --------------------------------------------------------------------
    def __call__(self, req, conn):
        path = req.raw_path
        decoded = urllib.parse.unquote(path)
        if decoded == "/healthz" and req.method == "GET":
            return conn.send_response(200, [("content-type", "application/json")],
                                      json_bytes({"status": "ok"}))
        if req.method not in PROXY_METHODS:
            allow = "GET" if decoded == "/healthz" else ", ".join(PROXY_METHODS)
            return self._detail(conn, 405, "Method Not Allowed", [("allow", allow)])
        try:
            self._check_auth(req)
        except RoutingError as e:
            return self._detail(conn, 401, str(e))
        try:
            host, port, sandbox_id, ns, pod_ip = self._resolve_headers(req)
        except RoutingError as e:
            return self._detail(conn, 400, str(e))
        timeout = self._timeout(req)
        try:
            self._proxy(req, conn, host, port, sandbox_id, ns, pod_ip, timeout)
        except Backend502:
            self._fail(conn, 502, "Could not connect to the backend sandbox: %s" % sandbox_id)
        except Backend504:
            self._fail(conn, 504, "Timed out waiting for the backend sandbox: %s" % sandbox_id)
        except Backend500:
            self._fail(conn, 500, "An internal error occurred in the proxy.")

    def _fail(self, conn, status, detail):
        if conn.response_started:
            # Head already relayed: the only way to signal failure is to close.
            raise ClientGone("backend failed mid-response")
        self._detail(conn, status, detail)

    def _check_auth(self, req):
        if not self.auth_token:
            return
        auth = req.header("authorization")
        if not auth:
            raise RoutingError("Missing or invalid Authorization header.")
        parts = auth.split()
        if len(parts) != 2 or parts[0].lower() != "bearer":
            raise RoutingError("Missing or invalid Authorization header.")
        if not secrets.compare_digest(parts[1].encode("utf-8", "surrogateescape"),
                                      self.auth_token.encode("utf-8")):
            raise RoutingError("Invalid token.")

    def _resolve_headers(self, req):
        sandbox_id = req.header("x-sandbox-id")
        if not sandbox_id:
            raise RoutingError("X-Sandbox-ID header is required.")
        if not valid_label(sandbox_id):
            raise RoutingError("Invalid sandbox ID format.")
        ns = req.header("x-sandbox-namespace", "default")
        if not valid_label(ns):
            raise RoutingError("Invalid namespace format.")
        try:
            port = int(req.header("x-sandbox-port", 8888))
            if not (1 <= port <= 65535):
                raise ValueError()
        except ValueError:
            raise RoutingError("Invalid port format.")
        pod_ip = req.header("x-sandbox-pod-ip")
        if pod_ip:
            try:
                ip = ipaddress.ip_address(pod_ip)
            except ValueError:
                raise RoutingError("Invalid target IP address format.")
            if (ip.version != self.pod_net.version or ip not in self.pod_net
                    or ip.is_link_local or ip.is_multicast or ip.is_unspecified):
                raise RoutingError("Invalid target IP address.")
            return str(ip), port, sandbox_id, ns, True
        return None, port, sandbox_id, ns, False

    def _timeout(self, req):
        raw = req.header("x-sandbox-timeout")
        if raw is None:
            return self.proxy_timeout
        try:
            v = float(raw)
        except (TypeError, ValueError):
            return self.proxy_timeout
        if not math.isfinite(v) or v <= 0:
            return self.proxy_timeout
        return min(v, self.proxy_timeout)

    # ---- "DNS" via the API server ----------------------------------------------
    def _api_get(self, path, timeout):
        r = urllib.request.Request(self.api + path, headers={"Accept": "application/json"})
        if self.api_token:
            r.add_header("Authorization", "Bearer " + self.api_token)
        try:
            with urllib.request.urlopen(r, timeout=timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as e:
            e.close()
            return None
        except (OSError, ValueError):
            return None

    def _lookup(self, sandbox_id, ns, timeout):
        t = min(timeout, 5.0)
        svc = self._api_get("/api/v1/namespaces/%s/services/%s" % (ns, sandbox_id), t)
        if not isinstance(svc, dict):
            raise Backend502()
        sb = self._api_get("/apis/agents.x-k8s.io/v1beta1/namespaces/%s/sandboxes/%s" % (ns, sandbox_id), t)
        try:
            ips = sb["status"]["podIPs"]
            ip = ips[0]
            if isinstance(ip, dict):
                ip = ip.get("ip")
            return str(ipaddress.ip_address(ip))
        except (TypeError, KeyError, IndexError, ValueError):
            raise Backend502()

    # ---- proxy --------------------------------------------------------------------
    def _proxy(self, req, conn, ip, port, sandbox_id, ns, have_ip, timeout):
        if have_ip:
            host_hdr_host = "[%s]" % ip if ":" in ip else ip
        else:
            host_hdr_host = "%s.%s.svc.%s" % (sandbox_id, ns, self.cluster_domain)
            ip = self._lookup(sandbox_id, ns, timeout)
        host_hdr = host_hdr_host if port == 80 else "%s:%d" % (host_hdr_host, port)
        self.log("proxying %s %s for sandbox '%s' to %s:%d" % (req.method, req.raw_path,
                                                               sandbox_id, ip, port))
        try:
            sock = socket.create_connection((ip, port), timeout=min(timeout, 5.0))
        except socket.timeout:
            raise Backend504()
        except OSError:
            raise Backend502()
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(timeout)
            self._exchange(req, conn, BackendConn(sock, timeout), host_hdr)
        finally:
            sock.close()

    def _exchange(self, req, conn, be, host_hdr):
        excluded = ROUTER_HEADERS | hop_names(req.headers) | {"host", "authorization"}
        if req.body.chunked:
            excluded = excluded | {"content-length"}
        fwd = [(k, v) for k, v in req.headers if k.lower() not in excluded]
        have = {k.lower() for k, _ in fwd}
        out = [("host", host_hdr)]
        out += [(k, v) for k, v in HTTPX_DEFAULTS if k not in have]
        out += fwd
        chunked = "content-length" not in have
        if chunked:
            out.append(("transfer-encoding", "chunked"))
        target = req.raw_path + ("?" + req.query if req.query else "")
        head = "%s %s HTTP/1.1\r\n" % (req.method, target)
        head += "".join("%s: %s\r\n" % (k, v) for k, v in out) + "\r\n"
        head = head.encode("latin-1")
        # request body, streamed
        first = True
        while True:
            try:
                data = req.body.read(PIECE)
            except (ClientGone, BadRequest):
                raise
            if chunked:
                piece = (b"%x\r\n" % len(data) + data + b"\r\n") if data else b"0\r\n\r\n"
            else:
                piece = data
            if first:
                piece = head + piece
                first = False
            if piece:
                be.sendall(piece)
            if not data:
                break
        status, rheaders = be.read_head()
        if status == 101:
            raise _Upgrade()
        drop = hop_names(rheaders)
        passed = [(k, v) for k, v in rheaders if k.lower() not in drop]
        length = None
        te = None
        for k, v in rheaders:
            kl = k.lower()
            if kl == "content-length" and length is None:
                try:
                    length = int(v.strip())
                except ValueError:
                    raise Backend500()
            elif kl == "transfer-encoding":
                te = v.lower()
        no_body = status < 200 or status in (204, 304) or req.method == "HEAD"
        if te and "chunked" in te:
            length = None
            passed = [(k, v) for k, v in passed if k.lower() != "content-length"]
        out_stream = conn.start_response(status, passed, length=None if no_body else length,
                                         head_only=False)
        if no_body:
            out_stream.finish()
            return
        try:
            if te and "chunked" in te:
                self._relay_chunked(be, out_stream)
            elif length is not None:
                left = length
                while left > 0:
                    data = be.read_some(min(PIECE, left))
                    if not data:
                        raise Backend500()
                    out_stream.write(data)
                    left -= len(data)
            else:
                while True:
                    data = be.read_some(PIECE)
                    if not data:
                        break
                    out_stream.write(data)
        except (Backend500, Backend504, Backend502):
            raise ClientGone("backend failed mid-body")
        out_stream.finish()

    @staticmethod
    def _relay_chunked(be, out_stream):
        while True:
            line = be.read_line()
            if line is None:
                raise Backend500()
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise Backend500()
            if size == 0:
                while True:
                    t = be.read_line()
                    if t is None or t == b"":
                        return
            left = size
            while left > 0:
                data = be.read_some(min(PIECE, left))
                if not data:
                    raise Backend500()
                out_stream.write(data)
                left -= len(data)
            if be.read_line() is None:
                raise Backend500()


class _Upgrade(Exception):
    pass


class _Shutdown(Exception):
    pass


def main(argv=None):
    ap = argparse.ArgumentParser(description="sandbox-router emulator (dev cluster)")
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, action="append", required=True)
    ap.add_argument("--api", required=True)
    ap.add_argument("--pod-cidr", required=True)
    ap.add_argument("--auth-token", default=None)
    ap.add_argument("--api-token", default=None)
    ap.add_argument("--proxy-timeout", type=float, default=180.0)
    ap.add_argument("--cluster-domain", default="cluster.local")
    ap.add_argument("--keep-alive-timeout", type=float, default=5.0)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    pod_net = ipaddress.ip_network(args.pod_cidr, strict=False)
    if not (math.isfinite(args.proxy_timeout) and args.proxy_timeout > 0):
        args.proxy_timeout = 180.0
    token = (args.auth_token or "").strip() or None

    def log(msg):
        if not args.quiet:
            sys.stderr.write("router[%s]: %s\n" % (args.host, msg))
            sys.stderr.flush()

    router = Router(args.api, pod_net, token, args.api_token, args.proxy_timeout,
                    args.cluster_domain, log)

    def handler(req, conn):
        try:
            router(req, conn)
        except _Upgrade:
            router._fail(conn, 502, "Backend attempted a WebSocket upgrade over HTTP. "
                                    "Connect using the WebSocket protocol instead.")

    server = HTTPServer(handler, style="uvicorn", keepalive_timeout=args.keep_alive_timeout,
                        log=None if args.quiet else log, name="router")
    ports = [server.bind(args.host, p) for p in args.port]

    def on_signal(signum, frame):
        raise _Shutdown()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    for p in ports:
        sys.stdout.write("listening on %s:%d\n" % (args.host, p))
    sys.stdout.flush()
    try:
        server.serve_forever()
    except _Shutdown:
        pass
    finally:
        server.close()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    main()
