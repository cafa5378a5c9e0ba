"""Minimal HTTP/1.1 plumbing for the dev cluster's API server.

  * `read_request(rfile)` parses one request head (request line + headers,
    names lower-cased) from a buffered socket reader;
  * `Body` reads the request body lazily (Content-Length or chunked), so
    streaming handlers (pod proxy, port-forward) can take over the stream;
  * `response_head()` / `send_response()` build a whole response and write it
    with ONE sendall (with TCP_NODELAY this avoids the ~40 ms Nagle/delayed-ACK
    stall BaseHTTPRequestHandler is known for);
  * `ChunkedWriter` writes a chunked body (watch streams);
  * `relay()` forwards one request to a pod (HTTP, any method) and streams
    the answer back (pods/NAME:PORT/proxy/... and services/.../proxy/...).
"""
import email.utils
import http.client
import socket

PHRASES = {100: "Continue", 101: "Switching Protocols", 200: "OK", 201: "Created",
           202: "Accepted", 204: "No Content", 301: "Moved Permanently", 302: "Found",
           304: "Not Modified", 307: "Temporary Redirect", 400: "Bad Request",
           401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
           405: "Method Not Allowed", 406: "Not Acceptable", 409: "Conflict", 410: "Gone",
           413: "Request Entity Too Large", 415: "Unsupported Media Type",
           422: "Unprocessable Entity", 429: "Too Many Requests",
           500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
           504: "Gateway Timeout"}

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
              "trailers", "trailer", "transfer-encoding", "upgrade"}


class BadRequest(Exception):
    pass


class Request:
    def __init__(self, method, target, version, headers, raw_headers, rfile, sock):
        self.method, self.target, self.version = method, target, version
        self.headers = headers            # lower-case name -> value (last wins)
        self.raw_headers = raw_headers    # [(name, value)] as sent
        self.rfile, self.sock = rfile, sock
        path, _, query = target.partition("?")
        self.path, self.query_string = path, query
        self.body = Body(rfile, headers)

    def keep_alive(self):
        conn = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in conn
        return "close" not in conn


def read_request(rfile, sock):
    """-> Request, or None on a clean EOF before a request line."""
    line = rfile.readline(65537)
    while line in (b"\r\n", b"\n"):
        line = rfile.readline(65537)
    if not line:
        return None
    if len(line) > 65536:
        raise BadRequest("request line too long")
    parts = line.decode("latin-1").rstrip("\r\n").split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise BadRequest("malformed request line %r" % line[:100])
    method, target, version = parts
    raw = []
    total = 0
    while True:
        h = rfile.readline(65537)
        if not h:
            raise BadRequest("eof in headers")
        total += len(h)
        if total > 1 << 20:
            raise BadRequest("headers too large")
        if h in (b"\r\n", b"\n"):
            break
        name, sep, value = h.decode("latin-1").partition(":")
        if not sep:
            raise BadRequest("malformed header line")
        raw.append((name.strip(), value.strip()))
    headers = {}
    for name, value in raw:
        headers[name.lower()] = value
    return Request(method, target, version, headers, raw, rfile, sock)


class Body:
    """Lazy request body reader; `read_all(limit)` or iterate `chunks()`."""

    def __init__(self, rfile, headers):
        self.rfile = rfile
        self.chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        try:
            self.remaining = int(headers.get("content-length") or 0)
        except ValueError:
            raise BadRequest("bad content-length")
        self.done = not self.chunked and self.remaining == 0
        self.expect_continue = headers.get("expect", "").lower() == "100-continue"
        self.sock = None

    def _continue(self):
        if self.expect_continue and self.sock is not None:
            self.expect_continue = False
            try:
                self.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            except OSError:
                pass

    def chunks(self, size=65536):
        if self.done:
            return
        self._continue()
        if not self.chunked:
            while self.remaining > 0:
                data = self.rfile.read(min(size, self.remaining))
                if not data:
                    raise BadRequest("eof in body")
                self.remaining -= len(data)
                yield data
            self.done = True
            return
        while True:
            line = self.rfile.readline(1024)
            if not line:
                raise BadRequest("eof in chunked body")
            try:
                n = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise BadRequest("bad chunk size")
            if n == 0:
                while True:                         # trailers
                    t = self.rfile.readline(65537)
                    if t in (b"\r\n", b"\n", b""):
                        break
                self.done = True
                return
            while n > 0:
                data = self.rfile.read(min(size, n))
                if not data:
                    raise BadRequest("eof in chunk")
                n -= len(data)
                yield data
            self.rfile.readline(3)

    def read_all(self, limit=None):
        out = []
        total = 0
        for c in self.chunks():
            total += len(c)
            if limit is not None and total > limit:
                raise BadRequest("request body too large")
            out.append(c)
        return b"".join(out)

    def drain(self):
        for _ in self.chunks():
            pass


def http_date():
    return email.utils.formatdate(usegmt=True)


def response_head(code, headers):
    lines = ["HTTP/1.1 %d %s" % (code, PHRASES.get(code, "Unknown"))]
    for k, v in headers:
        lines.append("%s: %s" % (k, v))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def send_response(sock, code, body=b"", content_type="application/json", headers=(),
                  head_only=False, close=False):
    hs = [("Cache-Control", "no-cache, private")]
    if content_type:
        hs.append(("Content-Type", content_type))
    hs += list(headers)
    hs.append(("Date", http_date()))
    hs.append(("Content-Length", str(len(body))))
    if close:
        hs.append(("Connection", "close"))
    sock.sendall(response_head(code, hs) + (b"" if head_only else body))


class ChunkedWriter:
    def __init__(self, sock):
        self.sock = sock

    def write(self, data):
        if data:
            self.sock.sendall(b"%x\r\n%s\r\n" % (len(data), data))

    def end(self):
        self.sock.sendall(b"0\r\n\r\n")


def relay(req, host, port, path_and_query, timeout=300.0):
    """Forward `req` (its body still unread) to http://host:port/path and stream the
    answer back on req.sock. Returns (status, keep_client_alive). Raises OSError /
    http.client.HTTPException when the pod cannot be reached before the head."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.putrequest(req.method, path_and_query, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", "%s:%d" % (host, port))
        dropped = HOP_BY_HOP | {"host", "content-length"}
        for name in req.headers.get("connection", "").split(","):
            dropped.add(name.strip().lower())
        for name, value in req.raw_headers:
            if name.lower() not in dropped:
                conn.putheader(name, value)
        body = req.body
        if body.chunked:
            conn.putheader("Transfer-Encoding", "chunked")
        elif body.remaining:
            conn.putheader("Content-Length", str(body.remaining))
        conn.endheaders()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for chunk in body.chunks():
            if body.chunked:
                conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            else:
                conn.send(chunk)
        if body.chunked:
            conn.send(b"0\r\n\r\n")
        resp = conn.getresponse()
        hs = []
        for name, value in resp.getheaders():
            if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                hs.append((name, value))
        length = resp.getheader("content-length")
        no_body = req.method == "HEAD" or resp.status in (204, 304) or 100 <= resp.status < 200
        if no_body:
            if length is not None:
                hs.append(("Content-Length", length))
            req.sock.sendall(response_head(resp.status, hs))
            return resp.status, True
        if length is not None:
            hs.append(("Content-Length", length))
            req.sock.sendall(response_head(resp.status, hs))
            sent = 0
            try:
                while True:
                    data = resp.read1(262144)
                    if not data:
                        break
                    req.sock.sendall(data)
                    sent += len(data)
            except (OSError, http.client.HTTPException):
                return resp.status, False
            return resp.status, str(sent) == length.strip()
        hs.append(("Transfer-Encoding", "chunked"))
        req.sock.sendall(response_head(resp.status, hs))
        w = ChunkedWriter(req.sock)
        try:
            while True:
                data = resp.read1(262144)
                if not data:
                    break
                w.write(data)
        except (OSError, http.client.HTTPException):
            return resp.status, False       # truncated: the client sees no last chunk
        w.end()
        return resp.status, True
    finally:
        conn.close()
