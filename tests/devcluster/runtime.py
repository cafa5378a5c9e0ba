#!/usr/bin/env python3
"""In-pod sandbox runtime emulator for the sandbox.h dev cluster (stdlib only).

CLI
---
    python3 tests/devcluster/runtime.py --host IP --port PORT --base DIR
        [--flavor python|sandboxd] [--exec-timeout SECONDS] [--faults-file PATH]
        [--keep-alive-timeout SECONDS] [--spool-dir DIR] [--quiet]
        [--grpc-port PORT [--grpc-python PATH] [--grpc-gen-dir DIR] [--pod NS/NAME]]

Binds IP:PORT (PORT 0 = any free port), creates DIR if missing, prints exactly
one line `listening on IP:PORT` (the real port) on stdout, flushes, and serves
until SIGTERM/SIGINT.  On a signal it closes the listener, SIGKILLs the process
group of every command still running and exits with status 0 at once.  One
access-log line per request goes to stderr unless --quiet.

HTTP: HTTP/1.1 with keep-alive (HTTP/1.0 only with `Connection: keep-alive`),
one thread per connection, TCP_NODELAY, response head and (first) body bytes in
one send.  Request bodies may use Content-Length or `Transfer-Encoding:
chunked` (chunk extensions and trailers accepted); `Expect: 100-continue` gets
an interim `100 Continue` when the handler starts reading the body.  An idle
keep-alive connection is closed after --keep-alive-timeout seconds: default 5
for the python flavour (uvicorn's default) and 60 for sandboxd (its
--http-idle-timeout default).  A request body the handler did not read is
drained when it is small (<= 1 MiB); otherwise the response says
`connection: close` and the connection is closed.

Flavour `python` (default): the upstream python-runtime contract
(examples/python-runtime-sandbox/main.py, FastAPI on uvicorn), protocol.md 5.1
-----------------------------------------------------------------------------
Response header names are lower-case and every response carries `date` and
`server: uvicorn` like uvicorn's.  JSON is compact UTF-8 (Starlette's
renderer).  Routing is Starlette's: the URL path is percent-decoded once
before matching; unknown path -> 404 {"detail":"Not Found"}; known path with
another method -> 405 {"detail":"Method Not Allowed"} plus `allow` (FastAPI
routes do not add HEAD, so HEAD -> 405 too); a path that only matches with
the trailing slash toggled -> 307 redirect (`/list` -> `/list/`).

  GET  /                 200 {"status":"ok","message":"Sandbox Runtime is active."}
  POST /execute          body {"command": "<str>"}.  The command is shlex.split and
                         run WITHOUT a shell, cwd = base, as a new session/process
                         group, stdin /dev/null, env inherited.  Timeout
                         --exec-timeout (else $SANDBOX_EXEC_TIMEOUT_SECONDS, else
                         300; invalid/non-positive -> 300) -> SIGKILL to the group.
                         200 {"stdout","stderr","exit_code"}; a signal death gives
                         the negative signal number as exit_code (subprocess).
                         Every failure is HTTP 200 with exit_code 1, stdout "" and
                         stderr "Failed to execute command: <exception text>", e.g.
                         "Command '['sleep', '9']' timed out after 1.0 seconds",
                         "[Errno 2] No such file or directory: 'x'",
                         "No closing quotation", "list index out of range" (empty).
                         OUTPUT DECODING (as upstream, which uses
                         subprocess text=True in a UTF-8 locale): stdout then
                         stderr are decoded as STRICT UTF-8 with universal
                         newlines ("\\r\\n" and "\\r" become "\\n").  Invalid
                         UTF-8 in either stream is NOT replaced: the whole call
                         fails with exit_code 1 and stderr "Failed to execute
                         command: 'utf-8' codec can't decode byte 0xff in
                         position N: invalid start byte" (the command did run).
                         Body errors -> 422 FastAPI-style {"detail":[{type,loc,
                         msg,input[,ctx]}]}: no body (loc ["body"], "missing"),
                         bad JSON ("json_invalid", loc ["body", pos]), not an
                         object ("model_attributes_type"), no command
                         ("missing", loc ["body","command"]), non-string command
                         ("string_type").  The JSON body is parsed when
                         Content-Type is absent or application/json or */*+json.
  POST /upload           multipart/form-data, streamed through tests/fakes/wire.py to a
                         spool file (--spool-dir, default the system temp dir),
                         then copied to the destination after the whole body has
                         arrived (upstream writes the file only once the upload is
                         complete).  The last part named `file` WITH a filename
                         wins; its filename (directories kept) is the destination
                         relative to base; parents are created.
                         200 {"message":"File '<filename>' uploaded successfully."}
                         403 {"message":"Access denied"} when it escapes base
                         (also a NUL byte), 500 {"message":"File upload failed:
                         <exception>"} (e.g. an empty filename = the base dir),
                         422 {"detail":[...]} without a `file` file part (also for
                         non-multipart bodies), 400 {"detail":"There was an error
                         parsing the body"} for malformed multipart (bad/missing
                         boundary, truncated body, > 1 MiB form field).
  GET  /download/{p}     200 application/octet-stream, streamed in 64 KiB reads,
                         content-length, content-disposition `attachment;
                         filename="<p>"` (or filename*=utf-8''<pct> when p needs
                         quoting), last-modified, etag, accept-ranges: bytes; a
                         single `Range: bytes=a-b` gives 206 (416 when out of
                         range; several ranges are ignored -> 200).
                         404 {"message":"File not found"} when missing or not a
                         regular file, 403 {"message":"Access denied"}.
  GET  /list/{p}         200 [{"name","size","type":"file"|"directory","mod_time"}]
                         in os.scandir order (stat follows symlinks; a dangling
                         link gives 500 {"message":"List files failed: ..."}),
                         404 {"message":"Path is not a directory"}, 403.
  GET  /exists/{p}       200 {"path":"<decoded p>","exists":bool}, 403.

  Path rule for download/list/exists: the URL path is percent-decoded by the
  server and {p} is percent-decoded a SECOND time (so `%2F`, `/` and `%252F`
  are all separators), leading "/" stripped, joined to base, realpath'ed
  (symlinks resolved) and refused with 403 unless base is the common path.
  Upload applies the same rule to the filename (not percent-decoded).

Flavour `sandboxd`: the sandboxd Filesystem REST API (protocol.md 5.3)
---------------------------------------------------------------------
Go net/http conventions: canonical header names, `Date`, JSON bodies end with
"\\n" and escape <, >, & as \\u003c...; unknown path -> 404 "404 page not found";
wrong method -> plain 405 "Method Not Allowed" with `Allow`; GET routes also
answer HEAD without a body; like Go's ServeMux the ESCAPED path is cleaned:
literal `.`/`..` segments or `//` -> 301 to the cleaned path, whereas
`%2E%2E` or `a%2F..%2Fb` reach the handler (its SanitizePath then confines
them, 403 when they escape); `/v1/files` -> 301 `/v1/files/`; invalid
percent-escapes -> 400.  Errors are JSON
{"code","message"}.

  GET    /v1/files/{path}  file: 200 bytes (application/octet-stream, Last-Modified,
                           Accept-Ranges, single Range -> 206/416,
                           If-Modified-Since -> 304); directory: 200
                           {"path":"/<rel>","entries":[{name,size,type,
                           modified_at(RFC 3339 UTC),mode("0644")}]} sorted by
                           name, symlinks resolved, escaping/dangling links
                           omitted.  404 NOT_FOUND, 403 PERMISSION_DENIED.
  HEAD   /v1/files/{path}  same status and headers, no body.
  PUT    /v1/files/{path}[?mode=0NNN]  raw body, or multipart/form-data whose
                           first part named `file` is the content; written to
                           `.sandboxd-tmp-*` next to the target, chmod mode
                           (default 0644), fsync, rename; parents 0755 -> 204.
                           400 INVALID_ARGUMENT (bad mode, target is a directory,
                           bad multipart / no `file` part), 403, 500 INTERNAL.
  DELETE /v1/files/{path}[?recursive=BOOL]  204; 404; 400 (bad boolean, Go
                           ParseBool syntax); 409 CONFLICT (non-empty dir without
                           recursive, the root without recursive); recursive on
                           the root empties it.  Like upstream the path is
                           resolved first, so deleting a symlink deletes its
                           target.
  GET    /v1/health        200 {"status":"ok","uptime_seconds":N}
  GET    /v1/metadata      200 {"env":{SANDBOX_* variables minus names containing
                           TOKEN, SECRET, PASSWORD, PASSWD, CRED, KEY, AUTH, BEARER,
                           PRIVATE or CERT}}
  Path confinement is sandboxd's SanitizePath: clean, strip a leading copy of
  the root, join, resolve symlinks (via the nearest existing ancestor for
  missing paths), 403 PERMISSION_DENIED unless inside the root.  gRPC execute
  is not emulated here: with --grpc-port the sandboxd flavour starts
  grpc_server.py (process.v1.ProcessService, real grpcio) on the same host
  and that port under --grpc-python (default $DEVCLUSTER_GRPC_PYTHON, else
  /usr/bin/python3, the interpreter that has python3-grpcio), waits for it
  to serve before printing its own `listening on` line, restarts it if it
  dies, and stops it on exit.  When that interpreter lacks grpc/protobuf/
  protoc the REST API serves alone (stats "grpc": "unavailable: WHY").

Private endpoints (both flavours; never faulted, never counted)
---------------------------------------------------------------
  GET  /_runtime/stats   200 {"flavor", "requests": {"<METHOD> <raw path>": n},
                         "exec_count", "exec_running", "uploads",
                         "faults_injected", "fault_matches", "faults_file",
                         "grpc": "off" | "listening on IP:PORT" | "unavailable: WHY"}
                         "requests" counts every request RECEIVED (before fault
                         injection, raw path without the query), "exec_count"
                         the commands actually started by POST /execute.
  POST /_runtime/reset   zero all counters -> 200 {"reset":true}
Every POST /execute response (also 422) carries `x-runtime-exec-count: N`,
the number of commands started so far including this request's.

Faults (--faults-file PATH)
---------------------------
A JSON object, re-read whenever the file's mtime/size/inode changes (one
os.stat per request); a missing file means no faults, an unparsable one is
reported on stderr and ignored.  Re-reading resets the match counter.

Selection - which requests are faulted:
  fail_paths    list of raw-path prefixes (e.g. ["/execute"]); default: all
  fail_methods  list of methods (e.g. ["POST"]); default: all
  A request matching both increments the match counter n (1, 2, 3...).
  fail_first    K: the first K matching requests are faulted
  fail_every    N: every Nth matching request (n % N == 0) is faulted
  With neither fail_first nor fail_every every matching request is faulted;
  with both, a request is faulted when either rule selects it.
Actions on a faulted request, in this order:
  slow_ms       sleep this many ms before the request is handled (the command
                of POST /execute runs only after the delay)
  close_early   true or "body": serve normally but close the connection after
                `close_after_bytes` body bytes (default: half the body) with the
                full Content-Length announced; "headers": read the request and
                close without any response; "reset": same but with a TCP RST
  redirect      answer `redirect_status` (default 307) with Location: <value>
                and an empty body instead of serving
  status_5xx    answer this status (e.g. 503) instead of serving, with body
                `fail_body` (default {"message":"injected fault <code>"}) and an
                optional `retry_after` -> Retry-After header
  Precedence: close_early "headers"/"reset" > redirect > status_5xx >
  close_early "body" (which serves the real handler).  A config with only
  slow_ms just slows the selected requests down.
"""

import argparse
import errno
import http
import json
import math
import os
import posixpath
import re
import select
import shlex
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fakes"))
import wire  # noqa: E402  (tests/fakes/wire.py: the multipart parser)


# =====================================================================
# HTTP/1.1 server layer (shared with router.py)
# =====================================================================

RECV_SIZE = 256 * 1024
MAX_LINE = 65536
MAX_HEADERS = 100
DRAIN_LIMIT = 1 << 20


class BadRequest(Exception):
    def __init__(self, msg="Bad Request", status=400):
        Exception.__init__(self, msg)
        self.status = status


class ClientGone(Exception):
    """Peer closed or reset the connection, or an I/O timeout happened."""


class CutConnection(Exception):
    """Raised after a deliberate early close (fault injection)."""


def reason_phrase(status):
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(ts=None):
    # email.utils.formatdate(ts, usegmt=True) without importing email.utils
    # (with datetime, calendar, random: a fifth of a pod's start)
    t = time.gmtime(ts)
    return "%s, %02d %s %04d %02d:%02d:%02d GMT" % (
        _DAYS[t.tm_wday], t.tm_mday, _MONTHS[t.tm_mon - 1], t.tm_year, t.tm_hour, t.tm_min, t.tm_sec)


class Request:
    __slots__ = ("method", "target", "raw_path", "query", "version", "headers",
                 "body", "keep_alive", "expect_continue", "conn", "peer",
                 "started")

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]


class BodyReader:
    """Reads a request body framed by Content-Length, chunked, or nothing."""

    def __init__(self, conn, length=0, chunked=False):
        self.conn = conn
        self.chunked = chunked
        self.remaining = 0 if chunked else length  # bytes left in body/chunk
        self.length = None if chunked else length
        self.done = (not chunked and length == 0)
        self.received = 0
        self._chunk_left = 0
        self._eof_chunk = False

    def _maybe_continue(self):
        c = self.conn
        if c.cur_req is not None and c.cur_req.expect_continue and not c.continue_sent \
                and not c.response_started:
            c.continue_sent = True
            c.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")

    def read(self, n=RECV_SIZE):
        """Up to n bytes; b"" at the end.  Raises ClientGone/BadRequest."""
        if self.done:
            return b""
        self._maybe_continue()
        if not self.chunked:
            data = self.conn.read_some(min(n, self.remaining))
            if not data:
                raise ClientGone("body truncated")
            self.remaining -= len(data)
            self.received += len(data)
            if self.remaining == 0:
                self.done = True
            return data
        while self._chunk_left == 0:
            line = self.conn.read_line()
            if line is None:
                raise ClientGone("chunked body truncated")
            size_txt = line.split(b";", 1)[0].strip()
            try:
                size = int(size_txt, 16)
                if size < 0 or not re.fullmatch(rb"[0-9A-Fa-f]+", size_txt):
                    raise ValueError
            except ValueError:
                raise BadRequest("bad chunk size")
            if size == 0:
                # trailers up to the empty line
                count = 0
                while True:
                    t = self.conn.read_line()
                    if t is None:
                        raise ClientGone("chunked trailer truncated")
                    if t == b"":
                        break
                    count += 1
                    if count > MAX_HEADERS:
                        raise BadRequest("too many trailers")
                self.done = True
                return b""
            self._chunk_left = size
        data = self.conn.read_some(min(n, self._chunk_left))
        if not data:
            raise ClientGone("chunk truncated")
        self._chunk_left -= len(data)
        self.received += len(data)
        if self._chunk_left == 0:
            crlf = self.conn.read_line()
            if crlf is None:
                raise ClientGone("chunk truncated")
            if crlf != b"":
                raise BadRequest("missing CRLF after chunk")
        return data

    def read_all(self, limit=None):
        out = bytearray()
        while True:
            d = self.read()
            if not d:
                return bytes(out)
            out += d
            if limit is not None and len(out) > limit:
                raise BadRequest("body too large", 413)

    def drain(self, limit=None):
        n = 0
        while True:
            d = self.read()
            if not d:
                return True
            n += len(d)
            if limit is not None and n > limit:
                return False


class Connection:
    """One accepted socket.  Not thread-safe; one request at a time."""

    def __init__(self, server, sock, peer):
        self.server = server
        self.sock = sock
        self.peer = peer
        self.buf = bytearray()
        self.cur_req = None
        self.continue_sent = False
        self.response_started = False
        self.response_done = False
        self.closing = False
        self.cut_after = None     # fault: close after this many body bytes
        self.cut_half = False     # fault: close after half of the body
        self.reset_on_cut = False
        self.body_sent = 0
        self.resp_status = None
        self.resp_bytes = 0

    # ---- low-level I/O ----------------------------------------------------
    def sendall(self, data):
        try:
            self.sock.sendall(data)
        except (OSError, socket.timeout) as e:
            raise ClientGone(str(e))

    def _recv(self, n=RECV_SIZE):
        try:
            return self.sock.recv(n)
        except socket.timeout:
            raise ClientGone("timeout")
        except OSError as e:
            raise ClientGone(str(e))

    def read_some(self, n):
        if self.buf:
            take = min(n, len(self.buf))
            data = bytes(self.buf[:take])
            del self.buf[:take]
            return data
        return self._recv(min(n, RECV_SIZE) if n > 0 else RECV_SIZE)

    def read_line(self, limit=MAX_LINE):
        """Line without CRLF (bare LF tolerated), None on EOF."""
        start = 0
        while True:
            idx = self.buf.find(b"\n", start)
            if idx >= 0:
                line = bytes(self.buf[:idx])
                del self.buf[:idx + 1]
                if line.endswith(b"\r"):
                    line = line[:-1]
                return line
            if len(self.buf) > limit:
                raise BadRequest("line too long", 431)
            start = len(self.buf)
            data = self._recv()
            if not data:
                return None
            self.buf += data

    # ---- request parsing ---------------------------------------------------
    def next_request(self):
        """Parse the next request head.  None on clean EOF / idle timeout."""
        self.cur_req = None
        self.continue_sent = False
        self.response_started = False
        self.response_done = False
        self.cut_after = None
        self.cut_half = False
        self.reset_on_cut = False
        self.body_sent = 0
        self.resp_status = None
        self.resp_bytes = 0
        self.sock.settimeout(self.server.keepalive_timeout)
        if not self.buf:
            try:
                data = self.sock.recv(RECV_SIZE)
            except (socket.timeout, OSError):
                return None
            if not data:
                return None
            self.buf += data
        self.sock.settimeout(self.server.io_timeout)
        line = self.read_line()
        while line == b"":           # tolerate leading empty lines
            line = self.read_line()
        if line is None:
            return None
        parts = line.split(b" ")
        if len(parts) != 3 or not parts[0] or not parts[1]:
            raise BadRequest("malformed request line")
        method, target, version = parts
        if not re.fullmatch(rb"HTTP/1\.[01]", version):
            raise BadRequest("unsupported HTTP version", 505)
        if not re.fullmatch(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+", method):
            raise BadRequest("bad method")
        try:
            target_s = target.decode("ascii")
        except UnicodeDecodeError:
            raise BadRequest("non-ASCII request target")
        if any(ord(c) < 0x21 or ord(c) == 0x7f for c in target_s):
            raise BadRequest("bad request target")
        headers = []
        total = 0
        while True:
            h = self.read_line()
            if h is None:
                raise ClientGone("headers truncated")
            if h == b"":
                break
            total += len(h)
            if total > MAX_LINE or len(headers) >= MAX_HEADERS:
                raise BadRequest("headers too large", 431)
            if h[:1] in (b" ", b"\t"):
                raise BadRequest("obsolete line folding")
            name, sep, value = h.partition(b":")
            if not sep or not name or name != name.strip() or \
                    not re.fullmatch(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
                raise BadRequest("malformed header")
            headers.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
        req = Request()
        req.method = method.decode("ascii")
        req.target = target_s
        path, _, query = target_s.partition("?")
        if path.startswith("http://") or path.startswith("https://"):
            # absolute-form: keep only the path
            rest = path.split("://", 1)[1]
            slash = rest.find("/")
            path = rest[slash:] if slash >= 0 else "/"
        req.raw_path = path
        req.query = query
        req.version = version.decode("ascii")
        req.headers = headers
        req.conn = self
        req.peer = self.peer
        req.started = time.monotonic()
        conn_tokens = set()
        for v in req.header_all("connection"):
            conn_tokens |= {t.strip().lower() for t in v.split(",")}
        if req.version == "HTTP/1.1":
            req.keep_alive = "close" not in conn_tokens
        else:
            req.keep_alive = "keep-alive" in conn_tokens
        req.expect_continue = (req.header("expect", "").lower() == "100-continue"
                               and req.version == "HTTP/1.1")
        te = req.header_all("transfer-encoding")
        cl = req.header_all("content-length")
        if te:
            codings = [t.strip().lower() for v in te for t in v.split(",") if t.strip()]
            if not codings or codings[-1] != "chunked" or codings != ["chunked"]:
                raise BadRequest("unsupported transfer-encoding", 501)
            req.body = BodyReader(self, chunked=True)
            if cl:
                req.keep_alive = False  # ambiguous framing: never reuse
        elif cl:
            vals = {v.strip() for v in cl}
            if len(vals) != 1 or not re.fullmatch(r"[0-9]{1,18}", vals.copy().pop()):
                raise BadRequest("bad content-length")
            req.body = BodyReader(self, length=int(vals.pop()))
        else:
            req.body = BodyReader(self, length=0)
        self.cur_req = req
        self.closing = not req.keep_alive
        return req

    # ---- responses ----------------------------------------------------------
    def _settle_request_body(self):
        """Before a response head: read the rest of the body or plan to close."""
        req = self.cur_req
        if req is None or req.body.done:
            return
        if req.expect_continue and not self.continue_sent:
            self.closing = True
            return
        if req.body.chunked or req.body.remaining > DRAIN_LIMIT:
            self.closing = True
            return
        try:
            req.body.drain(DRAIN_LIMIT)
        except (BadRequest, ClientGone):
            self.closing = True

    def _head(self, status, headers, framing):
        """framing: ('length', n) | ('chunked',) | ('none',)"""
        style = self.server.style
        lines = ["HTTP/1.1 %d %s" % (status, reason_phrase(status))]
        names = {k.lower() for k, _ in headers}
        out = []
        if style == "uvicorn":
            out.append(("date", http_date()))
            out.append(("server", "uvicorn"))
        out.extend(headers)
        if framing[0] == "length" and "content-length" not in names:
            out.append(("content-length" if style == "uvicorn" else "Content-Length",
                        str(framing[1])))
        elif framing[0] == "chunked":
            out.append(("transfer-encoding" if style == "uvicorn" else "Transfer-Encoding",
                        "chunked"))
        if self.closing and "connection" not in names:
            out.append(("connection" if style == "uvicorn" else "Connection", "close"))
        if style == "go":
            if "date" not in names:
                out.append(("Date", http_date()))
            out.sort(key=lambda kv: kv[0].lower())
        for k, v in out:
            lines.append("%s: %s" % (k, v))
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _cut_check(self, data):
        """Apply the close_early fault to body bytes about to be sent."""
        if self.cut_after is None:
            return data, False
        allowed = self.cut_after - self.body_sent
        if len(data) >= allowed:
            return data[:max(allowed, 0)], True
        return data, False

    def send_response(self, status, headers, body=b"", head_only=None):
        """Complete response in one send.  headers: list of (name, value)."""
        if self.response_started:
            raise RuntimeError("response already started")
        if head_only is None:
            head_only = self.cur_req is not None and self.cur_req.method == "HEAD"
        self._settle_request_body()
        self.response_started = True
        self.resp_status = status
        no_body = status < 200 or status in (204, 304)
        framing = ("none",) if no_body else ("length", len(body))
        head = self._head(status, headers, framing)
        payload = b"" if (no_body or head_only) else body
        if self.cut_half:
            self.cut_after = len(payload) // 2
        payload, cut = self._cut_check(payload)
        self.sendall(head + payload)
        self.body_sent += len(payload)
        self.resp_bytes += len(payload)
        if cut:
            raise CutConnection()
        self.response_done = True

    def start_response(self, status, headers, length=None, head_only=None):
        """Streamed response: length=None -> chunked (unless no body allowed)."""
        if self.response_started:
            raise RuntimeError("response already started")
        if head_only is None:
            head_only = self.cur_req is not None and self.cur_req.method == "HEAD"
        self._settle_request_body()
        self.response_started = True
        self.resp_status = status
        no_body = status < 200 or status in (204, 304)
        if no_body:
            framing = ("none",)
        elif length is None:
            if self.cur_req is not None and self.cur_req.version == "HTTP/1.0":
                framing = ("none",)
                self.closing = True
            else:
                framing = ("chunked",)
        else:
            framing = ("length", length)
        if self.cut_half:
            self.cut_after = (length // 2) if length is not None else 1
        head = self._head(status, headers, framing)
        return ResponseStream(self, head, framing, no_body or head_only)


class ResponseStream:
    def __init__(self, conn, head, framing, suppress):
        self.conn = conn
        self.head = head
        self.framing = framing
        self.suppress = suppress
        self.finished = False

    def _flush_head(self, extra=b""):
        if self.head is not None:
            data, self.head = self.head + extra, None
            self.conn.sendall(data)
        elif extra:
            self.conn.sendall(extra)

    def write(self, data):
        if not data or self.suppress:
            if not self.suppress:
                return
            self._flush_head()
            return
        c = self.conn
        data, cut = c._cut_check(data)
        if self.framing[0] == "chunked":
            framed = b"%x\r\n" % len(data) + data + b"\r\n" if data else b""
        else:
            framed = data
        self._flush_head(framed)
        c.body_sent += len(data)
        c.resp_bytes += len(data)
        if cut:
            raise CutConnection()

    def finish(self):
        if self.finished:
            return
        self.finished = True
        tail = b"0\r\n\r\n" if (self.framing[0] == "chunked" and not self.suppress) else b""
        self._flush_head(tail)
        if self.framing[0] == "none" and not self.suppress and \
                self.conn.resp_status is not None and not (
                    self.conn.resp_status < 200 or self.conn.resp_status in (204, 304)):
            self.conn.closing = True
        self.conn.response_done = True


class HTTPServer:
    """Threaded HTTP/1.1 server on one or more listening sockets.

    handler(req, conn) must send exactly one response through conn.
    style: "uvicorn" (lower-case headers, date+server) or "go".
    """

    def __init__(self, handler, style="uvicorn", keepalive_timeout=5.0,
                 io_timeout=300.0, log=None, name="server"):
        self.handler = handler
        self.style = style
        self.keepalive_timeout = keepalive_timeout
        self.io_timeout = io_timeout
        self.listeners = []
        self.log = log
        self.name = name
        self._lock = threading.Lock()
        self.conns = set()

    def bind(self, host, port):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        s.listen(256)
        self.listeners.append(s)
        return s.getsockname()[1]

    def serve_forever(self):
        while True:
            ready, _, _ = select.select(self.listeners, [], [])
            for ls in ready:
                try:
                    sock, peer = ls.accept()
                except OSError:
                    continue
                t = threading.Thread(target=self._serve_conn, args=(sock, peer), daemon=True)
                t.start()

    def close(self):
        for s in self.listeners:
            try:
                s.close()
            except OSError:
                pass

    def _error_response(self, conn, status, msg):
        if self.style == "uvicorn":
            body = (msg if status != 500 else "Internal Server Error").encode()
            hdrs = [("content-type", "text/plain; charset=utf-8")]
        else:
            body = ("%d %s" % (status, reason_phrase(status))).encode()
            hdrs = [("Content-Type", "text/plain; charset=utf-8")]
        conn.closing = True
        conn.send_response(status, hdrs, body, head_only=False)

    def _serve_conn(self, sock, peer):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        conn = Connection(self, sock, peer)
        with self._lock:
            self.conns.add(conn)
        reset = False
        try:
            while True:
                try:
                    req = conn.next_request()
                except BadRequest as e:
                    if not conn.response_started:
                        conn.cur_req = None
                        msg = "Invalid HTTP request received." if self.style == "uvicorn" else str(e)
                        try:
                            self._error_response(conn, e.status, msg)
                        except ClientGone:
                            pass
                    break
                if req is None:
                    break
                try:
                    self.handler(req, conn)
                    if not conn.response_started:
                        self._error_response(conn, 500, "no response")
                except CutConnection:
                    reset = conn.reset_on_cut
                    self._log(req, conn, "cut")
                    break
                except ClientGone:
                    self._log(req, conn, "client gone")
                    break
                except BadRequest as e:
                    if not conn.response_started:
                        try:
                            self._error_response(conn, e.status, str(e))
                        except ClientGone:
                            pass
                    break
                except Exception as e:  # handler bug: 500 or close
                    sys.stderr.write("%s: handler error: %r\n" % (self.name, e))
                    import traceback
                    traceback.print_exc(file=sys.stderr)
                    if not conn.response_started:
                        try:
                            self._error_response(conn, 500, "Internal Server Error")
                        except ClientGone:
                            pass
                    break
                self._log(req, conn, None)
                if conn.closing or not conn.response_done:
                    break
                # Make sure the request body is consumed before the next head.
                if not req.body.done:
                    break
        except ClientGone:
            pass
        finally:
            with self._lock:
                self.conns.discard(conn)
            try:
                if reset:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                else:
                    sock.shutdown(socket.SHUT_WR)
                    # Give the peer a moment to read; avoid RST on unread input.
                    sock.settimeout(0.2)
                    deadline = time.monotonic() + 1.0
                    try:
                        while sock.recv(65536) and time.monotonic() < deadline:
                            pass
                    except OSError:
                        pass
            except OSError:
                pass
            sock.close()

    def _log(self, req, conn, note):
        if self.log is None:
            return
        dt = (time.monotonic() - req.started) * 1000
        self.log('%s:%s - "%s %s %s" %s %s%s (%.1f ms)' % (
            conn.peer[0], conn.peer[1], req.method, req.target, req.version,
            conn.resp_status if conn.resp_status is not None else "-",
            conn.resp_bytes, " [%s]" % note if note else "", dt))


def json_bytes(obj):
    """Starlette JSONResponse rendering."""
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, indent=None,
                      separators=(",", ":")).encode("utf-8")


def go_json_bytes(obj):
    """encoding/json Encoder output: HTML-safe escapes and a trailing newline."""
    s = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    s = (s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
         .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))
    return (s + "\n").encode("utf-8", "replace")


def parse_single_range(value, size):
    """Return (start, end_inclusive) | 'unsatisfiable' | None (ignore header)."""
    if not value or not value.strip().lower().startswith("bytes="):
        return None
    spec = value.strip()[6:]
    if "," in spec:
        return None  # several ranges: not supported, serve the whole file
    spec = spec.strip()
    m = re.fullmatch(r"(\d*)-(\d*)", spec)
    if not m or (m.group(1) == "" and m.group(2) == ""):
        return None
    if m.group(1) == "":
        n = int(m.group(2))
        if n == 0:
            return "unsatisfiable"
        start = max(size - n, 0)
        end = size - 1
    else:
        start = int(m.group(1))
        end = int(m.group(2)) if m.group(2) else size - 1
        if m.group(2) and end < start:
            return None
        if start >= size:
            return "unsatisfiable"
        end = min(end, size - 1)
    if start >= size:
        return "unsatisfiable"
    return start, end


def stream_file(conn, path, status, headers, start=0, length=None, chunk=65536):
    """Stream length bytes of path from start (open before sending headers)."""
    f = open(path, "rb")
    try:
        if length is None:
            length = os.fstat(f.fileno()).st_size - start
        if start:
            f.seek(start)
        out = conn.start_response(status, headers, length=length)
        left = length
        while left > 0 and not out.suppress:
            data = f.read(min(chunk, left))
            if not data:
                # File shrank: we cannot meet Content-Length; abort connection.
                raise ClientGone("file shrank during download")
            out.write(data)
            left -= len(data)
        out.finish()
    finally:
        f.close()


# =====================================================================
# Stats and faults
# =====================================================================

class Stats:
    def __init__(self, flavor):
        self.flavor = flavor
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with self.lock:
            self.requests = {}
            self.exec_count = 0
            self.exec_running = 0
            self.uploads = 0
            self.faults_injected = 0

    def count_request(self, method, path):
        key = "%s %s" % (method, path)
        with self.lock:
            self.requests[key] = self.requests.get(key, 0) + 1

    def bump(self, field, delta=1):
        with self.lock:
            v = getattr(self, field) + delta
            setattr(self, field, v)
            return v


class Faults:
    def __init__(self, path, log):
        self.path = path
        self.log = log
        self.lock = threading.Lock()
        self.sig = None
        self.cfg = {}
        self.matches = 0

    def current(self):
        if not self.path:
            return {}
        try:
            st = os.stat(self.path)
            sig = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            sig = None
        with self.lock:
            if sig != self.sig:
                self.sig = sig
                self.matches = 0
                self.cfg = {}
                if sig is not None:
                    try:
                        with open(self.path, "rb") as f:
                            cfg = json.loads(f.read() or b"{}")
                        if not isinstance(cfg, dict):
                            raise ValueError("not a JSON object")
                        self.cfg = cfg
                        self.log("faults: loaded %s: %s" % (self.path, json.dumps(cfg)))
                    except (OSError, ValueError) as e:
                        self.log("faults: ignoring %s: %s" % (self.path, e))
            return self.cfg

    def select(self, cfg, method, path):
        """Count a matching request and return True when it is faulted."""
        paths = cfg.get("fail_paths")
        if paths and not any(path.startswith(p) for p in paths):
            return False
        methods = cfg.get("fail_methods")
        if methods and method.upper() not in [m.upper() for m in methods]:
            return False
        with self.lock:
            self.matches += 1
            n = self.matches
        first = cfg.get("fail_first")
        every = cfg.get("fail_every")
        if not first and not every:
            return True
        if first and n <= int(first):
            return True
        if every and int(every) > 0 and n % int(every) == 0:
            return True
        return False


def _fault_names_action(cfg):
    return any(k in cfg for k in ("slow_ms", "close_early", "redirect", "status_5xx"))


class RuntimeApp:
    """Common dispatch: private endpoints, stats, faults, then the flavour."""

    def __init__(self, flavor_app, stats, faults, log):
        self.app = flavor_app
        self.stats = stats
        self.faults = faults
        self.log = log

    def __call__(self, req, conn):
        path = req.raw_path
        if path.startswith("/_runtime/"):
            return self._private(req, conn)
        self.stats.count_request(req.method, path)
        cfg = self.faults.current()
        if cfg and _fault_names_action(cfg) and self.faults.select(cfg, req.method, path):
            self.stats.bump("faults_injected")
            if self._inject(cfg, req, conn):
                return
        return self.app.handle(req, conn)

    def _inject(self, cfg, req, conn):
        """Apply a fault; True when the request has been fully answered."""
        slow = cfg.get("slow_ms")
        if slow:
            time.sleep(float(slow) / 1000.0)
        close = cfg.get("close_early")
        if close in ("headers", "reset"):
            try:
                req.body.drain(DRAIN_LIMIT)
            except (BadRequest, ClientGone):
                pass
            conn.reset_on_cut = (close == "reset")
            conn.resp_status = "closed"
            raise CutConnection()
        if cfg.get("redirect") is not None:
            st = int(cfg.get("redirect_status", 307))
            hdrs = self.app.header_case([("location", str(cfg["redirect"]))])
            conn.send_response(st, hdrs, b"")
            return True
        if cfg.get("status_5xx") is not None:
            st = int(cfg["status_5xx"])
            body = cfg.get("fail_body")
            if body is None:
                body = {"message": "injected fault %d" % st}
            if isinstance(body, str):
                data = body.encode()
                ctype = "text/plain; charset=utf-8"
            else:
                data = json_bytes(body)
                ctype = "application/json"
            hdrs = [("content-type", ctype)]
            if cfg.get("retry_after") is not None:
                hdrs.append(("retry-after", str(cfg["retry_after"])))
            conn.send_response(st, self.app.header_case(hdrs), data)
            return True
        if close in (True, "body"):
            n = cfg.get("close_after_bytes")
            if n is not None:
                conn.cut_after = int(n)
            else:
                conn.cut_half = True  # half of the body, known when the response starts
        return False

    def _private(self, req, conn):
        if req.raw_path == "/_runtime/stats" and req.method in ("GET", "HEAD"):
            st = self.stats
            with st.lock:
                data = {
                    "flavor": st.flavor,
                    "requests": dict(st.requests),
                    "exec_count": st.exec_count,
                    "exec_running": st.exec_running,
                    "uploads": st.uploads,
                    "faults_injected": st.faults_injected,
                    "fault_matches": self.faults.matches,
                    "faults_file": self.faults.path,
                    "grpc": GRPC_STATE[0],
                }
            conn.send_response(200, self.app.header_case([("content-type", "application/json")]),
                               json_bytes(data))
            return
        if req.raw_path == "/_runtime/reset" and req.method == "POST":
            self.stats.reset()
            with self.faults.lock:
                self.faults.matches = 0
            conn.send_response(200, self.app.header_case([("content-type", "application/json")]),
                               json_bytes({"reset": True}))
            return
        conn.send_response(404, self.app.header_case([("content-type", "application/json")]),
                           json_bytes({"detail": "Not Found"}))


# =====================================================================
# Flavour "python": the legacy python-runtime contract
# =====================================================================

def _exec_timeout_default(cli_value):
    raw = cli_value if cli_value is not None else os.environ.get("SANDBOX_EXEC_TIMEOUT_SECONDS", "300")
    try:
        v = float(raw)
    except (TypeError, ValueError):
        v = float("nan")
    if not (math.isfinite(v) and v > 0):
        sys.stderr.write("runtime: ignoring invalid exec timeout %r; using 300 seconds\n" % (raw,))
        return 300.0
    return v


class _Missing:
    pass


class PythonFlavor:
    ROUTES = [  # (method, kind, path)
        ("GET", "exact", "/"),
        ("POST", "exact", "/execute"),
        ("POST", "exact", "/upload"),
        ("GET", "prefix", "/download/"),
        ("GET", "prefix", "/list/"),
        ("GET", "prefix", "/exists/"),
    ]

    def __init__(self, base, exec_timeout, spool_dir, stats, log):
        self.base = base
        self.exec_timeout = exec_timeout
        self.spool_dir = spool_dir
        self.stats = stats
        self.log = log
        self.procs = set()
        self.procs_lock = threading.Lock()

    @staticmethod
    def header_case(headers):
        return [(k.lower(), v) for k, v in headers]

    # ---- helpers ---------------------------------------------------------
    def _json(self, conn, status, obj, extra=()):
        conn.send_response(status, [("content-type", "application/json")] + list(extra),
                           json_bytes(obj))

    def safe_path(self, file_path):
        base_dir = os.path.realpath(self.base)
        clean = file_path.lstrip("/")
        full = os.path.realpath(os.path.join(base_dir, clean))
        if os.path.commonpath([base_dir, full]) != base_dir:
            raise ValueError("Access denied: Path must be within the sandbox base directory")
        return full

    @staticmethod
    def _match(method, path):
        """('full', route, param) | ('partial', allow) | None"""
        allow = []
        for m, kind, p in PythonFlavor.ROUTES:
            if kind == "exact":
                ok = path == p
                param = None
            else:
                ok = path.startswith(p)
                param = path[len(p):] if ok else None
            if ok:
                if m == method:
                    return ("full", (m, kind, p), param)
                allow.append(m)
        if allow:
            return ("partial", allow)
        return None

    # ---- dispatch ----------------------------------------------------------
    def handle(self, req, conn):
        path = urllib.parse.unquote(req.raw_path)
        m = self._match(req.method, path)
        if m is None and path != "/":
            toggled = path[:-1] if path.endswith("/") else path + "/"
            if self._match(req.method, toggled) is not None:
                host = req.header("host") or "%s:%d" % conn.sock.getsockname()[:2]
                loc = "http://%s%s" % (host, toggled)
                if req.query:
                    loc += "?" + req.query
                conn.send_response(307, [("location", loc)], b"")
                return
        if m is None:
            return self._json(conn, 404, {"detail": "Not Found"})
        if m[0] == "partial":
            return self._json(conn, 405, {"detail": "Method Not Allowed"},
                              [("allow", ", ".join(m[1]))])
        _, route, param = m
        p = route[2]
        if p == "/":
            return self._json(conn, 200, {"status": "ok", "message": "Sandbox Runtime is active."})
        if p == "/execute":
            return self.execute(req, conn)
        if p == "/upload":
            return self.upload(req, conn)
        if p == "/download/":
            return self.download(req, conn, param)
        if p == "/list/":
            return self.list_dir(req, conn, param)
        if p == "/exists/":
            return self.exists(req, conn, param)
        raise RuntimeError("unrouted")

    # ---- /execute -----------------------------------------------------------
    def _parse_body_model(self, req):
        """FastAPI body handling for a single pydantic-model parameter.
        Returns (obj, None) or (None, detail_list)."""
        body = req.body.read_all(limit=64 << 20)
        if not body:
            return None, [{"type": "missing", "loc": ["body"], "msg": "Field required",
                           "input": None}]
        ctype = req.header("content-type")
        use_json = False
        if not ctype:
            use_json = True
        else:
            main = ctype.split(";", 1)[0].strip().lower()
            maintype, _, sub = main.partition("/")
            if maintype == "application" and (sub == "json" or sub.endswith("+json")):
                use_json = True
        if use_json:
            try:
                value = json.loads(body)
            except json.JSONDecodeError as e:
                return None, [{"type": "json_invalid", "loc": ["body", e.pos],
                               "msg": "JSON decode error", "input": {},
                               "ctx": {"error": e.msg}}]
            except UnicodeDecodeError as e:
                return None, [{"type": "json_invalid", "loc": ["body", 0],
                               "msg": "JSON decode error", "input": {},
                               "ctx": {"error": str(e)}}]
        else:
            value = body.decode("utf-8", "replace")
        if not isinstance(value, dict):
            return None, [{"type": "model_attributes_type", "loc": ["body"],
                           "msg": "Input should be a valid dictionary or object to extract fields from",
                           "input": value}]
        return value, None

    def execute(self, req, conn):
        obj, err = self._parse_body_model(req)
        if err is None:
            cmd = obj.get("command", _Missing)
            if cmd is _Missing:
                err = [{"type": "missing", "loc": ["body", "command"], "msg": "Field required",
                        "input": obj}]
            elif not isinstance(cmd, str):
                err = [{"type": "string_type", "loc": ["body", "command"],
                        "msg": "Input should be a valid string", "input": cmd}]
        if err is not None:
            n = self.stats.exec_count
            return self._json(conn, 422, {"detail": err}, [("x-runtime-exec-count", str(n))])
        n = self.stats.bump("exec_count")
        result = self.run_command(cmd)
        self._json(conn, 200, result, [("x-runtime-exec-count", str(n))])

    @staticmethod
    def _decode(data):
        text = data.decode("utf-8")  # strict, like text=True in a UTF-8 locale
        return text.replace("\r\n", "\n").replace("\r", "\n")

    def run_command(self, command):
        self.stats.bump("exec_running")
        try:
            args = shlex.split(command)
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, cwd=self.base,
                                    start_new_session=True)
            with self.procs_lock:
                self.procs.add(proc)
            try:
                try:
                    out, err = proc.communicate(timeout=self.exec_timeout)
                except subprocess.TimeoutExpired:
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except OSError:
                        pass
                    proc.communicate()
                    raise
            finally:
                with self.procs_lock:
                    self.procs.discard(proc)
                if proc.stdout:
                    proc.stdout.close()
                if proc.stderr:
                    proc.stderr.close()
            return {"stdout": self._decode(out), "stderr": self._decode(err),
                    "exit_code": proc.returncode}
        except Exception as e:
            return {"stdout": "", "stderr": "Failed to execute command: %s" % (e,),
                    "exit_code": 1}
        finally:
            self.stats.bump("exec_running", -1)

    def kill_all(self):
        with self.procs_lock:
            procs = list(self.procs)
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass

    # ---- /upload ------------------------------------------------------------
    def upload(self, req, conn):
        ctype = req.header("content-type") or ""
        main = ctype.split(";", 1)[0].strip().lower()
        missing = [{"type": "missing", "loc": ["body", "file"], "msg": "Field required",
                    "input": None}]
        if main != "multipart/form-data":
            req.body.drain()
            return self._json(conn, 422, {"detail": missing})
        bad_body = {"detail": "There was an error parsing the body"}
        try:
            boundary = wire.boundary_from_content_type(ctype)
        except wire.MultipartError:
            req.body.drain()
            return self._json(conn, 400, bad_body)

        state = {"spool": None, "cur": None, "fields": {}, "files": 0, "fsize": 0}

        def on_begin(part):
            if part.filename is not None:
                state["files"] += 1
                if state["files"] > 1000:
                    raise wire.MultipartError("Too many files")
                if part.name == "file":
                    f = tempfile.TemporaryFile(dir=self.spool_dir, prefix="rt-upload-")
                    state["cur"] = (part, f)
                else:
                    state["cur"] = None
            else:
                state["cur"] = None
                state["fsize"] = 0
                part.user = bytearray()

        def on_data(part, data):
            cur = state["cur"]
            if cur is not None and cur[0] is part:
                cur[1].write(data)
            elif part.filename is None:
                state["fsize"] += len(data)
                if state["fsize"] > 1024 * 1024:
                    raise wire.MultipartError("Part exceeded maximum size of 1024KB.")
                if part.name == "file":
                    part.user += data

        def on_end(part):
            cur = state["cur"]
            if cur is not None and cur[0] is part:
                if state["spool"] is not None:
                    state["spool"][1].close()
                state["spool"] = cur
                state["cur"] = None
                state["fields"].pop("file", None)
            elif part.filename is None and part.name is not None:
                val = bytes(part.user or b"").decode("utf-8", "replace")
                state["fields"][part.name] = val
                if part.name == "file" and state["spool"] is not None:
                    # a later plain field named file replaces the upload
                    state["spool"][1].close()
                    state["spool"] = None

        parser = wire.StreamingParser(boundary, on_begin, on_data, on_end)
        try:
            try:
                while True:
                    data = req.body.read()
                    if not data:
                        break
                    parser.feed(data)
                parser.close()
            except wire.MultipartError as e:
                self.log("upload: bad multipart: %s" % e)
                try:
                    req.body.drain()
                except (BadRequest, ClientGone):
                    conn.closing = True
                return self._json(conn, 400, bad_body)
            spool = state["spool"]
            if spool is None:
                val = state["fields"].get("file")
                if val:
                    detail = [{"type": "value_error", "loc": ["body", "file"],
                               "msg": "Value error, Expected UploadFile, received: <class 'str'>",
                               "input": val, "ctx": {"error": {}}}]
                    return self._json(conn, 422, {"detail": detail})
                return self._json(conn, 422, {"detail": missing})
            part, f = spool
            filename = part.filename
            try:
                try:
                    file_path = self.safe_path(filename)
                except ValueError:
                    return self._json(conn, 403, {"message": "Access denied"})
                os.makedirs(os.path.dirname(file_path), exist_ok=True)
                f.seek(0)
                with open(file_path, "wb") as out:
                    shutil.copyfileobj(f, out, 1 << 20)
                self.stats.bump("uploads")
                return self._json(conn, 200,
                                  {"message": "File '%s' uploaded successfully." % filename})
            except Exception as e:
                return self._json(conn, 500, {"message": "File upload failed: %s" % (e,)})
        finally:
            if state["spool"] is not None:
                state["spool"][1].close()
            if state["cur"] is not None:
                state["cur"][1].close()

    # ---- download / list / exists -------------------------------------------
    def download(self, req, conn, param):
        decoded = urllib.parse.unquote(param)
        try:
            full = self.safe_path(decoded)
        except ValueError:
            return self._json(conn, 403, {"message": "Access denied"})
        if not os.path.isfile(full):
            return self._json(conn, 404, {"message": "File not found"})
        st = os.stat(full)
        quoted = urllib.parse.quote(decoded)
        if quoted != decoded:
            disp = "attachment; filename*=utf-8''%s" % quoted
        else:
            disp = 'attachment; filename="%s"' % decoded
        etag_base = "%s-%s" % (st.st_mtime, st.st_size)
        import hashlib  # here, not at the top: a pod's start does not pay for it
        hdrs = [("content-type", "application/octet-stream"),
                ("content-disposition", disp),
                ("last-modified", http_date(st.st_mtime)),
                ("etag", '"%s"' % hashlib.md5(etag_base.encode()).hexdigest()),
                ("accept-ranges", "bytes")]
        rng = parse_single_range(req.header("range"), st.st_size)
        if rng == "unsatisfiable":
            return conn.send_response(416, hdrs[:1] + [("content-range", "bytes */%d" % st.st_size)],
                                      b"")
        if rng is not None:
            start, end = rng
            hdrs.append(("content-range", "bytes %d-%d/%d" % (start, end, st.st_size)))
            return stream_file(conn, full, 206, hdrs, start, end - start + 1)
        stream_file(conn, full, 200, hdrs, 0, st.st_size)

    def list_dir(self, req, conn, param):
        decoded = urllib.parse.unquote(param)
        try:
            full = self.safe_path(decoded)
        except ValueError:
            return self._json(conn, 403, {"message": "Access denied"})
        if not os.path.isdir(full):
            return self._json(conn, 404, {"message": "Path is not a directory"})
        try:
            entries = []
            with os.scandir(full) as it:
                for entry in it:
                    st = entry.stat()
                    entries.append({"name": entry.name, "size": st.st_size,
                                    "type": "directory" if entry.is_dir() else "file",
                                    "mod_time": st.st_mtime})
            body = json_bytes(entries)
        except Exception as e:
            return self._json(conn, 500, {"message": "List files failed: %s" % (e,)})
        conn.send_response(200, [("content-type", "application/json")], body)

    def exists(self, req, conn, param):
        decoded = urllib.parse.unquote(param)
        try:
            full = self.safe_path(decoded)
        except ValueError:
            return self._json(conn, 403, {"message": "Access denied"})
        self._json(conn, 200, {"path": decoded, "exists": os.path.exists(full)})


# =====================================================================
# Flavour "sandboxd": Filesystem REST API
# =====================================================================

class PathEscapes(Exception):
    pass


class SanitizeError(Exception):
    pass


_GO_BOOL = {"1": True, "t": True, "T": True, "TRUE": True, "true": True, "True": True,
            "0": False, "f": False, "F": False, "FALSE": False, "false": False, "False": False}

_SENSITIVE = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "CRED", "KEY", "AUTH", "BEARER",
              "PRIVATE", "CERT")


def _go_clean(p):
    """path.Clean semantics (collapses leading '//' unlike posixpath)."""
    if p == "":
        return "."
    rooted = p.startswith("/")
    c = posixpath.normpath(p)
    if rooted:
        c = "/" + c.lstrip("/")
    return c


def _go_unescape_path(raw):
    """url.PathUnescape: error on malformed escapes (returns None)."""
    if re.search(r"%(?![0-9A-Fa-f]{2})", raw):
        return None
    return urllib.parse.unquote(raw, errors="surrogateescape")


def _go_clean_url_path(p):
    """net/http cleanPath: Clean, keep a trailing slash."""
    if p == "":
        return "/"
    if not p.startswith("/"):
        p = "/" + p
    np = _go_clean(p)
    if p.endswith("/") and np != "/":
        np += "/"
    return np


class SandboxdFlavor:
    def __init__(self, root, spool_dir, stats, log):
        self.root = root
        self.spool_dir = spool_dir
        self.stats = stats
        self.log = log
        self.start = time.time()
        try:
            self.resolved_root = self.sanitize(".")
        except Exception:
            self.resolved_root = os.path.abspath(root)

    @staticmethod
    def header_case(headers):
        return [("-".join(w.capitalize() for w in k.split("-")), v) for k, v in headers]

    # ---- helpers -------------------------------------------------------------
    def _json(self, conn, status, obj, extra=()):
        conn.send_response(status, [("Content-Type", "application/json")] + list(extra),
                           go_json_bytes(obj))

    def _err(self, conn, status, code, message):
        self._json(conn, status, {"code": code, "message": message})

    def _plain(self, conn, status, text, extra=()):
        conn.send_response(status, [("Content-Type", "text/plain; charset=utf-8"),
                                    ("X-Content-Type-Options", "nosniff")] + list(extra),
                           text.encode())

    def sanitize(self, user_path):
        clean_root = os.path.abspath(os.path.normpath(self.root))
        try:
            clean_root = os.path.realpath(clean_root, strict=True)
        except OSError:
            pass
        uc = _go_clean(user_path)
        if uc == clean_root:
            uc = "."
        elif uc.startswith(clean_root + "/"):
            uc = uc[len(clean_root) + 1:]
        joined = _go_clean(clean_root + "/" + uc)
        try:
            resolved = os.path.realpath(joined, strict=True)
        except FileNotFoundError:
            ancestor, suffix = joined, []
            while True:
                suffix.insert(0, posixpath.basename(ancestor))
                ancestor = posixpath.dirname(ancestor)
                try:
                    ra = os.path.realpath(ancestor, strict=True)
                    resolved = _go_clean("/".join([ra] + suffix))
                    break
                except FileNotFoundError:
                    if ancestor == posixpath.dirname(ancestor):
                        raise PathEscapes()
                except OSError as e:
                    raise SanitizeError("failed to evaluate symlinks: %s" % e.strerror.lower()
                                        if e.strerror else str(e))
        except OSError as e:
            raise SanitizeError("failed to evaluate symlinks: lstat %s: %s" % (
                joined, (e.strerror or str(e)).lower()))
        if resolved != clean_root and not resolved.startswith(clean_root + "/"):
            raise PathEscapes()
        return resolved

    def _resolve(self, conn, user_path):
        try:
            return self.sanitize(user_path)
        except PathEscapes:
            self._err(conn, 403, "PERMISSION_DENIED", "path traversal outside sandbox root is forbidden")
        except (SanitizeError, ValueError) as e:
            self._err(conn, 500, "INTERNAL", str(e))
        return None

    # ---- dispatch --------------------------------------------------------------
    def handle(self, req, conn):
        raw = req.raw_path
        if _go_unescape_path(raw) is None or not raw.startswith("/"):
            conn.closing = True
            conn.send_response(400, [("Content-Type", "text/plain; charset=utf-8")],
                               b"400 Bad Request")
            return
        # Go's ServeMux cleans the ESCAPED path: literal dot segments and "//"
        # are redirected, while %2E%2E or a%2F.. reach the handler.
        cleaned = _go_clean_url_path(raw)
        if cleaned != raw:
            return self._redirect(req, conn, cleaned)
        segs = raw.split("/")[1:]
        useg = [_go_unescape_path(s) for s in segs]
        method = req.method
        if len(segs) >= 3 and useg[0] == "v1" and useg[1] == "files":
            allow = ["DELETE", "GET", "HEAD", "PUT"]
            if method not in allow:
                return self._plain(conn, 405, "Method Not Allowed\n", [("Allow", ", ".join(allow))])
            p = _go_unescape_path("/".join(segs[2:]))
            if method in ("GET", "HEAD"):
                return self.get_file(req, conn, p)
            if method == "PUT":
                return self.put_file(req, conn, p)
            return self.delete_file(req, conn, p)
        if useg == ["v1", "files"]:
            return self._redirect(req, conn, raw + "/")
        decoded = "/" + "/".join(useg)
        if decoded in ("/v1/health", "/v1/metadata"):
            if method not in ("GET", "HEAD"):
                return self._plain(conn, 405, "Method Not Allowed\n", [("Allow", "GET, HEAD")])
            if decoded == "/v1/health":
                return self._json(conn, 200, {"status": "ok",
                                              "uptime_seconds": int(time.time() - self.start)})
            env = {}
            for k, v in os.environ.items():
                if k.startswith("SANDBOX_") and not any(s in k.upper() for s in _SENSITIVE):
                    env[k] = v
            return self._json(conn, 200, {"env": dict(sorted(env.items()))})
        return self._plain(conn, 404, "404 page not found\n")

    def _redirect(self, req, conn, path):
        loc = urllib.parse.quote(path, safe="/:@!$&'()*+,;=-._~",
                                 errors="surrogateescape")
        if req.query:
            loc += "?" + req.query
        if req.method in ("GET", "HEAD"):
            body = ('<a href="%s">Moved Permanently</a>.\n\n' % loc).encode()
            conn.send_response(301, [("Location", loc),
                                     ("Content-Type", "text/html; charset=utf-8")], body)
        else:
            conn.send_response(301, [("Location", loc)], b"")

    # ---- GET / HEAD ------------------------------------------------------------
    def get_file(self, req, conn, p):
        target = self._resolve(conn, p)
        if target is None:
            return
        try:
            st = os.stat(target)
        except FileNotFoundError:
            return self._err(conn, 404, "NOT_FOUND", "path does not exist within the sandbox")
        except PermissionError:
            return self._err(conn, 403, "PERMISSION_DENIED", "permission denied")
        except OSError as e:
            return self._err(conn, 500, "INTERNAL", str(e))
        if stat.S_ISDIR(st.st_mode):
            return self._listing(req, conn, target, p)
        try:
            f = open(target, "rb")
            f.close()
        except PermissionError:
            return self._err(conn, 403, "PERMISSION_DENIED", "permission denied")
        except OSError as e:
            return self._err(conn, 500, "INTERNAL", str(e))
        size = st.st_size
        lm = http_date(int(st.st_mtime))
        hdrs = [("Content-Type", "application/octet-stream"), ("Last-Modified", lm),
                ("Accept-Ranges", "bytes")]
        ims = req.header("if-modified-since")
        if ims and not req.header("range"):
            try:
                import email.utils  # not at the top: a pod's start does not pay for it
                t = email.utils.parsedate_to_datetime(ims).timestamp()
                if int(st.st_mtime) <= t:
                    return conn.send_response(304, [("Last-Modified", lm)], b"")
            except (TypeError, ValueError, IndexError, OverflowError):
                pass
        rng = parse_single_range(req.header("range"), size)
        if rng == "unsatisfiable":
            return conn.send_response(416, [("Content-Type", "text/plain; charset=utf-8"),
                                            ("Content-Range", "bytes */%d" % size),
                                            ("X-Content-Type-Options", "nosniff")],
                                      b"invalid range: failed to overlap\n")
        if rng is not None:
            start, end = rng
            hdrs.append(("Content-Range", "bytes %d-%d/%d" % (start, end, size)))
            return stream_file(conn, target, 206, hdrs, start, end - start + 1)
        stream_file(conn, target, 200, hdrs, 0, size)

    def _listing(self, req, conn, target, p):
        try:
            names = sorted(os.listdir(target), key=lambda n: os.fsencode(n))
        except OSError as e:
            return self._err(conn, 500, "INTERNAL", str(e))
        entries = []
        for name in names:
            full = os.path.join(target, name)
            try:
                st = os.lstat(full)
            except OSError:
                continue
            if stat.S_ISLNK(st.st_mode):
                try:
                    resolved = self.sanitize(posixpath.join(p, name))
                    st = os.stat(resolved)
                except (PathEscapes, SanitizeError, OSError, ValueError):
                    continue
            safe_name = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            entries.append({
                "name": safe_name,
                "size": st.st_size,
                "type": "directory" if stat.S_ISDIR(st.st_mode) else "file",
                "modified_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(st.st_mtime)),
                "mode": "%04o" % stat.S_IMODE(st.st_mode & 0o777),
            })
        rel = p if p.startswith("/") else "/" + p
        rel = rel.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        self._json(conn, 200, {"path": rel, "entries": entries})

    # ---- PUT ---------------------------------------------------------------------
    def _query(self, req):
        out = {}
        for item in req.query.split("&") if req.query else []:
            if not item or ";" in item:
                continue
            k, _, v = item.partition("=")
            try:
                k = urllib.parse.unquote_plus(k, errors="strict")
                v = urllib.parse.unquote_plus(v, errors="strict")
            except UnicodeDecodeError:
                continue
            out.setdefault(k, v)
        return out

    def put_file(self, req, conn, p):
        q = self._query(req)
        mode = 0o644
        mp = q.get("mode", "")
        if mp != "":
            if not re.fullmatch(r"0[0-7]{3}", mp):
                return self._err(conn, 400, "INVALID_ARGUMENT",
                                 "mode %s must match ^0[0-7]{3}$" % json.dumps(mp))
            mode = int(mp, 8)
        target = self._resolve(conn, p)
        if target is None:
            return
        if os.path.isdir(target):
            return self._err(conn, 400, "INVALID_ARGUMENT", "target path is a directory")
        ctype = req.header("content-type") or ""
        main = ctype.split(";", 1)[0].strip().lower()
        if main == "multipart/form-data":
            return self._put_multipart(req, conn, target, mode, ctype)
        tmp = None
        try:
            tmp, tmp_name = self._open_temp(target, mode)
            while True:
                data = req.body.read()
                if not data:
                    break
                tmp.write(data)
            self._commit(tmp, tmp_name, target)
            tmp = None
        except _WriteError as e:
            return self._err(conn, 500, "INTERNAL", str(e))
        finally:
            if tmp is not None:
                self._abort(tmp)
        conn.send_response(204, [], b"")

    def _open_temp(self, target, mode):
        d = os.path.dirname(target)
        try:
            os.makedirs(d, 0o755, exist_ok=True)
        except OSError as e:
            raise _WriteError("failed to create parent directory: %s" % _go_err(e))
        try:
            fd, name = tempfile.mkstemp(prefix=".sandboxd-tmp-", dir=d)
        except OSError as e:
            raise _WriteError("failed to create temp file: %s" % _go_err(e))
        f = os.fdopen(fd, "wb")
        try:
            os.fchmod(fd, mode)
        except OSError as e:
            f.close()
            os.unlink(name)
            raise _WriteError("failed to set file mode: %s" % _go_err(e))
        return _TempFile(f, name), name

    def _commit(self, tmp, name, target):
        try:
            tmp.f.flush()
            os.fsync(tmp.f.fileno())
        except OSError as e:
            raise _WriteError("failed to sync file: %s" % _go_err(e))
        tmp.f.close()
        try:
            os.rename(name, target)
        except OSError as e:
            raise _WriteError("failed to move file into place: %s" % _go_err(e))

    @staticmethod
    def _abort(tmp):
        try:
            tmp.f.close()
        except OSError:
            pass
        try:
            os.unlink(tmp.name)
        except OSError:
            pass

    def _put_multipart(self, req, conn, target, mode, ctype):
        try:
            boundary = wire.boundary_from_content_type(ctype)
        except wire.MultipartError:
            return self._err(conn, 400, "INVALID_ARGUMENT",
                             "invalid multipart body: no multipart boundary param in Content-Type")
        st = {"tmp": None, "part": None, "done": False, "err": None}

        def on_begin(part):
            if st["done"] or st["part"] is not None:
                return
            if part.name == "file":
                disp = (part.header("content-disposition") or "").split(";", 1)[0].strip().lower()
                if disp == "form-data":
                    st["tmp"], _ = self._open_temp(target, mode)
                    st["part"] = part

        def on_data(part, data):
            if part is st["part"] and not st["done"]:
                st["tmp"].write(data)

        def on_end(part):
            if part is st["part"]:
                st["done"] = True

        parser = wire.StreamingParser(boundary, on_begin, on_data, on_end)
        try:
            try:
                while not st["done"]:
                    data = req.body.read()
                    if not data:
                        break
                    parser.feed(data)
                if not st["done"]:
                    parser.close()
            except _WriteError as e:
                return self._err(conn, 500, "INTERNAL", str(e))
            except wire.MultipartError as e:
                if st["part"] is not None:
                    return self._err(conn, 500, "INTERNAL",
                                     "failed to write file contents: multipart: %s" % e)
                return self._err(conn, 400, "INVALID_ARGUMENT",
                                 "invalid multipart body: multipart: NextPart: %s" % e)
            if not st["done"]:
                return self._err(conn, 400, "INVALID_ARGUMENT",
                                 'multipart body is missing the required "file" part')
            try:
                self._commit(st["tmp"], st["tmp"].name, target)
                st["tmp"] = None
            except _WriteError as e:
                return self._err(conn, 500, "INTERNAL", str(e))
            conn.send_response(204, [], b"")
        finally:
            if st["tmp"] is not None:
                self._abort(st["tmp"])

    # ---- DELETE ------------------------------------------------------------------
    def delete_file(self, req, conn, p):
        target = self._resolve(conn, p)
        if target is None:
            return
        try:
            os.lstat(target)
        except FileNotFoundError:
            return self._err(conn, 404, "NOT_FOUND", "path does not exist within the sandbox")
        except OSError as e:
            return self._err(conn, 500, "INTERNAL", str(e))
        recursive = False
        rp = self._query(req).get("recursive", "")
        if rp != "":
            if rp not in _GO_BOOL:
                return self._err(conn, 400, "INVALID_ARGUMENT",
                                 "recursive %s must be a boolean" % json.dumps(rp))
            recursive = _GO_BOOL[rp]
        if target == self.resolved_root:
            if not recursive:
                return self._err(conn, 409, "CONFLICT",
                                 "cannot delete the sandbox root; pass recursive=true to clear its contents")
            try:
                for name in os.listdir(target):
                    _remove_all(os.path.join(target, name))
            except OSError as e:
                return self._err(conn, 500, "INTERNAL", str(e))
            return conn.send_response(204, [], b"")
        try:
            if recursive:
                _remove_all(target)
            else:
                st = os.lstat(target)
                if stat.S_ISDIR(st.st_mode):
                    os.rmdir(target)
                else:
                    os.unlink(target)
        except OSError as e:
            if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                return self._err(conn, 409, "CONFLICT",
                                 "directory is not empty; pass recursive=true to remove it")
            if isinstance(e, PermissionError):
                return self._err(conn, 403, "PERMISSION_DENIED", "permission denied")
            return self._err(conn, 500, "INTERNAL", str(e))
        conn.send_response(204, [], b"")

    def kill_all(self):
        pass


class _WriteError(Exception):
    pass


class _TempFile:
    def __init__(self, f, name):
        self.f = f
        self.name = name

    def write(self, data):
        try:
            self.f.write(data)
        except OSError as e:
            raise _WriteError("failed to write file contents: %s" % _go_err(e))


def _go_err(e):
    if isinstance(e, OSError) and e.strerror:
        if e.filename:
            return "%s: %s" % (e.filename, e.strerror.lower())
        return e.strerror.lower()
    return str(e)


def _remove_all(path):
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


# =====================================================================
# main
# =====================================================================

class _Shutdown(Exception):
    pass


GRPC_STATE = ["off"]


class GrpcSupervisor:
    """Keeps grpc_server.py (another interpreter: the one with python3-grpcio) running
    beside the REST API. It stays in this process group, so the kubelet's killpg
    reaches it too; its own children die with it (PR_SET_PDEATHSIG)."""

    def __init__(self, argv, log):
        self.argv, self.log = argv, log
        self.proc = None
        self.stopping = False
        self.lock = threading.Lock()

    def start(self, timeout=30.0):
        """Start and wait for its first line; False when grpc is unavailable."""
        try:
            p = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 close_fds=True)
        except OSError as e:
            GRPC_STATE[0] = "unavailable: %s: %s" % (self.argv[0], e)
            self.log("grpc: %s" % GRPC_STATE[0])
            return False
        with self.lock:
            self.proc = p
        line = b""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            r, _, _ = select.select([p.stdout], [], [], max(0.0, end - time.monotonic()))
            if not r:
                break
            line = p.stdout.readline()
            break
        text = line.decode(errors="replace").strip()
        if text.startswith("grpc listening on "):
            GRPC_STATE[0] = text[len("grpc "):]
            threading.Thread(target=self._watch, args=(p,), daemon=True,
                             name="grpc-supervisor").start()
            return True
        GRPC_STATE[0] = "unavailable: %s" % (text[len("grpc unavailable: "):] if text.startswith(
            "grpc unavailable: ") else "no answer from %s (%r)" % (" ".join(self.argv[:2]), text))
        self.log("grpc: %s" % GRPC_STATE[0])
        self._reap(p)
        return False

    def _watch(self, p):
        for line in p.stdout:               # nothing more is expected; keep the pipe drained
            self.log("grpc: %s" % line.decode(errors="replace").rstrip())
        rc = p.wait()
        if self.stopping or rc == 0:        # 0: it was told to stop (the pod's SIGTERM)
            return
        self.log("grpc: server exited with status %s; restarting" % rc)
        time.sleep(0.2)
        if not self.stopping:
            self.start()

    @staticmethod
    def _reap(p):
        try:
            p.kill()
        except OSError:
            pass
        p.wait()

    def stop(self):
        self.stopping = True
        with self.lock:
            p = self.proc
        if p is None or p.poll() is not None:
            return
        p.terminate()
        try:
            p.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self._reap(p)


def main(argv=None):
    ap = argparse.ArgumentParser(description="sandbox runtime emulator (dev cluster)")
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--base", required=True)
    ap.add_argument("--flavor", choices=("python", "sandboxd"), default="python")
    ap.add_argument("--exec-timeout", default=None)
    ap.add_argument("--faults-file", default=None)
    ap.add_argument("--keep-alive-timeout", type=float, default=None)
    ap.add_argument("--spool-dir", default=None)
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--grpc-port", type=int, default=None)
    ap.add_argument("--grpc-python", default=None)
    ap.add_argument("--grpc-gen-dir", default=None)
    ap.add_argument("--pod", default="")
    args = ap.parse_args(argv)

    def log(msg):
        sys.stderr.write("runtime[%s:%d]: %s\n" % (args.host, port_holder[0], msg))
        sys.stderr.flush()

    port_holder = [args.port]
    os.makedirs(args.base, exist_ok=True)
    base = os.path.abspath(args.base)
    spool = args.spool_dir or tempfile.gettempdir()
    os.makedirs(spool, exist_ok=True)
    stats = Stats(args.flavor)
    faults = Faults(args.faults_file, log)
    if args.flavor == "python":
        flavor = PythonFlavor(base, _exec_timeout_default(args.exec_timeout), spool, stats, log)
        style, ka = "uvicorn", 5.0
    else:
        flavor = SandboxdFlavor(base, spool, stats, log)
        style, ka = "go", 60.0
    if args.keep_alive_timeout is not None:
        ka = args.keep_alive_timeout
    app = RuntimeApp(flavor, stats, faults, log)
    server = HTTPServer(app, style=style, keepalive_timeout=ka,
                        log=None if args.quiet else log, name="runtime")
    port = server.bind(args.host, args.port)
    port_holder[0] = port
    grpc_sup = None
    if args.flavor == "sandboxd" and args.grpc_port is not None:
        gargv = [args.grpc_python or os.environ.get("DEVCLUSTER_GRPC_PYTHON") or "/usr/bin/python3",
                 "-I", "-u", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                          "grpc_server.py"),
                 "--host", args.host, "--port", str(args.grpc_port), "--root", base]
        if args.grpc_gen_dir:
            gargv += ["--gen-dir", args.grpc_gen_dir]
        if args.faults_file:
            gargv += ["--faults-file", args.faults_file]
        if args.pod:
            gargv += ["--pod", args.pod]
        grpc_sup = GrpcSupervisor(gargv, log)
        grpc_sup.start()

    def on_signal(signum, frame):
        raise _Shutdown()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sys.stdout.write("listening on %s:%d\n" % (args.host, port))
    sys.stdout.flush()
    try:
        server.serve_forever()
    except _Shutdown:
        pass
    finally:
        server.close()
        flavor.kill_all()
        if grpc_sup is not None:
            grpc_sup.stop()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    main()
