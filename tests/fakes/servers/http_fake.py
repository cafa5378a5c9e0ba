#!/usr/bin/env python3
"""A raw-socket HTTP/1.1 server for tests/unit/test_http.c, well-behaved or hostile
depending on the request path (Python 3 standard library only).

    http_fake.py [--host 127.0.0.1 | --host ::1] [--unix PATH]

Listens on port 0 (or the unix socket PATH) and prints "PORT <n>" as its first
stdout line. It exits when its stdin reaches EOF (the test closed it or died)
or after 600 s, whichever comes first. Every path takes an optional ?t=TAG;
GET /_stats?t=TAG answers "conns=N reqs=N posts=N drops=N" for that tag (the
_stats request itself is not counted), so tests can assert connection reuse
and how often a POST reached the server.

Paths (see tests/unit/test_http.c for the expectations):
  /ok /echo /multipart /chunked /close /head /204 /304 /continue /http10
  /http10ka /connclose /idleclose /dropnext /big?n=&chunked= /ndjson?mode=
  /longline?n= /unterminated /trickle /truncated_cl /truncated_chunk /bighead
  /manyheaders /badchunk?v= /conflict_cl /same_cl /garbage /garbage2
  /earlyclose /slowbody /hang /redirect /tegzip /obsfold /te_and_cl
  /status404 /stallread /lf /pattern_upload
"""
import email.parser
import email.policy
import hashlib
import os
import socket
import sys
import threading
import time
import urllib.parse

LOCK = threading.Lock()
STATS = {}  # tag -> {"conns": set(), "reqs": 0, "posts": 0, "drops": 0}
MAX_BODY_IN_MEMORY = 64 * 1024 * 1024
PATTERN_BLOCK = bytes(i % 251 for i in range(251 * 261))  # 65511 bytes, a multiple of 251


def stat_for(tag):
    st = STATS.get(tag)
    if st is None:
        st = STATS[tag] = {"conns": set(), "reqs": 0, "posts": 0, "drops": 0}
    return st


class Closed(Exception):
    pass


class Conn:
    def __init__(self, sock, cid):
        self.s = sock
        self.cid = cid
        self.buf = b""
        self.drop_next = False

    def fill(self):
        data = self.s.recv(65536)
        if not data:
            raise Closed()
        self.buf += data

    def read_head(self):
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > 1 << 20:
                raise Closed()
            self.fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        method, target, version = lines[0].decode("latin-1").split(" ")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.decode("latin-1").partition(":")
            headers.setdefault(name.strip().lower(), []).append(value.strip())
        return method, target, version, headers

    def read_exact(self, n):
        while len(self.buf) < n:
            self.fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_line(self):
        while b"\r\n" not in self.buf:
            if len(self.buf) > 65536:
                raise Closed()
            self.fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read_body(self, headers, sink):
        """Feed the request body to sink(bytes) piece by piece."""
        te = ",".join(headers.get("transfer-encoding", [])).lower()
        if "chunked" in te:
            while True:
                size = int(self.read_line().split(b";")[0], 16)
                if size == 0:
                    while self.read_line() != b"":
                        pass
                    return
                left = size
                while left:
                    if not self.buf:
                        self.fill()
                    piece = self.buf[:left]
                    self.buf = self.buf[len(piece):]
                    left -= len(piece)
                    sink(piece)
                if self.read_exact(2) != b"\r\n":
                    raise Closed()
        n = int(headers.get("content-length", ["0"])[0])
        while n:
            if not self.buf:
                self.fill()
            piece = self.buf[:n]
            self.buf = self.buf[len(piece):]
            n -= len(piece)
            sink(piece)

    def send(self, data):
        self.s.sendall(data)


def response(status, body=b"", headers=(), reason="OK"):
    out = ["HTTP/1.1 %d %s" % (status, reason), "Content-Length: %d" % len(body)]
    out += list(headers)
    return ("\r\n".join(out) + "\r\n\r\n").encode() + body


def chunked(pieces, trailers=b""):
    out = b""
    for p in pieces:
        out += b"%x\r\n%s\r\n" % (len(p), p)
    return out + b"0\r\n" + trailers + b"\r\n"


def send_pattern(conn, n, use_chunked):
    head = "HTTP/1.1 200 OK\r\n"
    head += "Transfer-Encoding: chunked\r\n\r\n" if use_chunked else "Content-Length: %d\r\n\r\n" % n
    conn.send(head.encode())
    view = memoryview(PATTERN_BLOCK)
    left = n
    while left:
        k = min(left, len(PATTERN_BLOCK))
        if use_chunked:
            conn.send(b"%x\r\n" % k + view[:k].tobytes() + b"\r\n")
        else:
            conn.send(view[:k])
        left -= k
    if use_chunked:
        conn.send(b"0\r\n\r\n")


def parse_multipart(ctype, body):
    """Parse with the standard library's MIME parser (email.parser)."""
    raw = b"Content-Type: " + ctype.encode("latin-1") + b"\r\nMIME-Version: 1.0\r\n\r\n" + body
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    if not msg.is_multipart():
        return "error=not multipart\n"
    parts = msg.get_payload()
    out = ["parts=%d" % len(parts)]
    for part in parts[:1]:
        payload = part.get_payload(decode=True) or b""
        out.append("name=%s" % part.get_param("name", header="content-disposition"))
        out.append("filename=%s" % part.get_filename())
        out.append("ctype=%s" % part.get_content_type())
        out.append("len=%d" % len(payload))
        out.append("sha=%s" % hashlib.sha256(payload).hexdigest())
        reps = len(payload) // len(PATTERN_BLOCK) + 1
        out.append("pattern=%d" % (payload == (PATTERN_BLOCK * reps)[:len(payload)]))
        out.append("text=%s" % payload[:64].decode("latin-1").encode("unicode_escape").decode("ascii"))
    # the close delimiter must end the body exactly
    boundary = msg.get_param("boundary")
    out.append("closed=%d" % body.endswith(b"\r\n--" + boundary.encode() + b"--\r\n"))
    return "\n".join(out) + "\n"


def handle(conn, method, target, version, headers):
    """Serve one request. Returns False when the connection must end."""
    url = urllib.parse.urlsplit(target)
    q = dict(urllib.parse.parse_qsl(url.query))
    path = url.path
    if path.startswith("/pre/fix/"):  # an endpoint prefix (test endpoint_prefix)
        path = path[len("/pre/fix"):]
    tag = q.get("t", "")
    if path == "/_stats":
        conn.read_body(headers, lambda b: None)
        with LOCK:
            st = stat_for(tag)
            text = "conns=%d reqs=%d posts=%d drops=%d\n" % (len(st["conns"]), st["reqs"], st["posts"], st["drops"])
        conn.send(response(200, text.encode()))
        return True
    with LOCK:
        st = stat_for(tag)
        st["conns"].add(conn.cid)
        st["reqs"] += 1
        if method == "POST":
            st["posts"] += 1
        if conn.drop_next:
            st["drops"] += 1
    if conn.drop_next:
        # a kept-alive connection the server gives up on after reading a request
        conn.read_body(headers, lambda b: None)
        return False
    if path == "/stallread":
        # never read the body; wait until the client gives up
        conn.s.settimeout(20)
        try:
            time.sleep(20)
        finally:
            return False
    if path in ("/echo", "/pattern_upload"):
        h = hashlib.sha256()
        count = [0]
        bad = [0]
        first = bytearray()

        def sink(b):
            if path == "/pattern_upload":
                for j, x in enumerate(b):
                    if x != (count[0] + j) % 251:
                        bad[0] += 1
                        break
            h.update(b)
            if len(first) < 256:
                first.extend(b[:256 - len(first)])
            count[0] += len(b)

        conn.read_body(headers, sink)
        lines = [
            "method=%s" % method,
            "target=%s" % target,
            "version=%s" % version,
            "host=%s" % ",".join(headers.get("host", [])),
            "ua=%s" % ",".join(headers.get("user-agent", [])),
            "ctype=%s" % ",".join(headers.get("content-type", [])),
            "cl=%s" % ",".join(headers.get("content-length", [])),
            "te=%s" % ",".join(headers.get("transfer-encoding", [])),
            "x=%s" % ",".join(headers.get("x-test", [])),
            "len=%d" % count[0],
            "sha=%s" % h.hexdigest(),
            "bad=%d" % bad[0],
            "body=%s" % bytes(first).decode("latin-1").replace("\n", "\\n"),
        ]
        conn.send(response(200, ("\n".join(lines) + "\n").encode()))
        return True
    body = bytearray()

    def keep(b):
        if len(body) + len(b) > MAX_BODY_IN_MEMORY:
            raise Closed()
        body.extend(b)

    conn.read_body(headers, keep)
    body = bytes(body)
    if path == "/ok":
        conn.send(response(200, b"hello"))
    elif path == "/multipart":
        text = parse_multipart(",".join(headers.get("content-type", [])), body)
        text = "cl=%s\nte=%s\n" % (",".join(headers.get("content-length", [])),
                                    ",".join(headers.get("transfer-encoding", []))) + text
        conn.send(response(200, text.encode("utf-8", "surrogateescape")))
    elif path == "/chunked":
        conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"5;ext=1;q=\"a b\"\r\nhello\r\n1 \r\n,\r\n6 ; x\r\n world\r\n"
                  b"0;last\r\nX-Trailer: yes\r\nY: z\r\n\r\n")
    elif path == "/close":
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the server closes")
        return False
    elif path == "/head":
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
    elif path == "/204":
        conn.send(b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n")
    elif path == "/304":
        conn.send(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\nETag: \"x\"\r\n\r\n")
    elif path == "/continue":
        conn.send(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"
                  + response(200, b"final"))
    elif path == "/http10":
        conn.send(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
        return False
    elif path == "/http10ka":
        conn.send(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok")
    elif path == "/connclose":
        conn.send(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
        return False
    elif path == "/idleclose":
        conn.send(response(200, b"ok"))  # says nothing, then closes while idle
        return False
    elif path == "/dropnext":
        conn.send(response(200, b"ok"))
        conn.drop_next = True
    elif path == "/big":
        send_pattern(conn, int(q.get("n", "0")), q.get("chunked") == "1")
    elif path == "/ndjson":
        events = [b'{"type":"ADDED","object":{"n":%d,"pad":"%s"}}\n' % (i, b"x" * (i * 37 % 300))
                  for i in range(12)]
        data = b"".join(events)
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        if q.get("mode") == "bytewise":
            for i in range(len(data)):
                conn.send(b"1\r\n" + data[i:i + 1] + b"\r\n")
        else:
            step = 7
            for i in range(0, len(data), step):
                conn.send(b"%x;n=%d\r\n%s\r\n" % (len(data[i:i + step]), i, data[i:i + step]))
        conn.send(b"0\r\n\r\n")
    elif path == "/longline":
        n = int(q.get("n", "100"))
        conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                  + chunked([b"short\n", b"y" * n + b"\n", b"after\n"]))
    elif path == "/unterminated":
        conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                  + chunked([b"a\r\nb", b"\n\nlast-no-newline"]))
    elif path == "/trickle":
        data = (b"HTTP/1.1 200 OK\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
                + chunked([b"trickled", b" body"], b"T: 1\r\n"))
        for i in range(len(data)):
            conn.send(data[i:i + 1])
            time.sleep(0.002)
    elif path == "/truncated_cl":
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
        return False
    elif path == "/truncated_chunk":
        conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel")
        return False
    elif path == "/bighead":
        conn.send(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70000 + b"\r\nContent-Length: 0\r\n\r\n")
    elif path == "/manyheaders":
        conn.send(b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(100))
                  + b"Content-Length: 0\r\n\r\n")
    elif path == "/badchunk":
        conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                  + q.get("v", "").encode() + b"\r\nxxxx\r\n0\r\n\r\n")
    elif path == "/conflict_cl":
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!")
    elif path == "/same_cl":
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\nhello")
    elif path == "/garbage":
        conn.send(b"FOO/1.1 200 OK\r\n\r\n")
        time.sleep(2)
        return False
    elif path == "/garbage2":
        conn.send(b"HTTP/1.1 2x0 OK\r\n\r\n")
        time.sleep(2)
        return False
    elif path == "/earlyclose":
        return False
    elif path == "/slowbody":
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        try:
            for _ in range(100):
                conn.send(b"x")
                time.sleep(0.1)
        except OSError:
            pass
        return False
    elif path == "/hang":
        conn.s.settimeout(30)
        try:
            conn.s.recv(1)  # until the client closes
        except OSError:
            pass
        return False
    elif path == "/redirect":
        conn.send(b"HTTP/1.1 302 Found\r\nLocation: /ok\r\nContent-Length: 4\r\n\r\nmove")
    elif path == "/tegzip":
        conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n")
    elif path == "/obsfold":
        conn.send(b"HTTP/1.1 200 OK\r\nX-A: b\r\n c\r\nContent-Length: 0\r\n\r\n")
    elif path == "/te_and_cl":
        conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n")
    elif path == "/status404":
        conn.send(response(404, b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
                                b'"message":"pods \\"x\\" not found","reason":"NotFound",'
                                b'"details":{"name":"x","kind":"pods"},"code":404}\n',
                           ["Content-Type: application/json"], "Not Found"))
    elif path == "/lf":
        conn.send(b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok")
    else:
        conn.send(response(404, b"no such path\n", reason="Not Found"))
    return True


def serve(sock, cid):
    conn = Conn(sock, cid)
    try:
        while True:
            method, target, version, headers = conn.read_head()
            if not handle(conn, method, target, version, headers):
                break
            if "close" in ",".join(headers.get("connection", [])).lower():
                break
    except (Closed, OSError, ValueError):
        pass
    finally:
        try:
            sock.close()
        except OSError:
            pass


def main():
    host, unix = "127.0.0.1", None
    args = sys.argv[1:]
    while args:
        a = args.pop(0)
        if a == "--host":
            host = args.pop(0)
        elif a == "--unix":
            unix = args.pop(0)
    if unix:
        ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        ls.bind(unix)
        port = 0
    else:
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        ls = socket.socket(fam, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((host, 0))
        port = ls.getsockname()[1]
    ls.listen(64)
    print("PORT %d" % port, flush=True)

    def acceptor():
        cid = 0
        while True:
            s, _ = ls.accept()
            if not unix:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            cid += 1
            threading.Thread(target=serve, args=(s, cid), daemon=True).start()

    threading.Thread(target=acceptor, daemon=True).start()
    threading.Timer(600, lambda: os._exit(2)).start()
    try:
        while sys.stdin.buffer.read(4096):
            pass
    finally:
        if unix:
            try:
                os.unlink(unix)
            except OSError:
                pass
        os._exit(0)


if __name__ == "__main__":
    main()
