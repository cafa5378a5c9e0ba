"""The Python module the fakes share (standard library only):

  * multipart/form-data: an incremental (push) parser (below);
  * SPDY/3: the header dictionary and frame builders, for the dev cluster's
    port-forward endpoint, the kubectl shim and their tests;
  * HTTP/1.1: reading a response head and body by hand (the kubectl shim).

Importers put tests/fakes on sys.path (the dev cluster's runtime and
port-forward modules, the kubectl shim) and `import wire`.

Multipart
---------
Incremental (push) parser for multipart/form-data bodies.

Used by the dev-cluster runtime emulator (runtime.py) for the legacy
`POST /upload` endpoint and for multipart `PUT /v1/files/...` in the sandboxd
flavour.  The parser never holds more than one input chunk plus a delimiter's
worth of bytes (and at most `max_header_bytes` of part headers), so a 100 MB
upload is streamed to its destination with flat memory.

Usage:

    boundary = boundary_from_content_type(request_content_type)
    parser = StreamingParser(boundary, on_part_begin, on_part_data, on_part_end)
    for chunk in body_chunks:          # any chunking, down to 1 byte
        parser.feed(chunk)
    parser.close()                     # raises MultipartError when truncated

`on_part_begin(part)` receives a `Part` (headers, form `name`, `filename`);
`on_part_data(part, data)` receives body bytes in order; `on_part_end(part)`
is called once the closing delimiter of that part has been seen.  Any
malformed input raises `MultipartError` (a ValueError).

Accepted syntax (RFC 2046 / RFC 7578): optional preamble; the first delimiter
may start the body or follow a CRLF; transport padding (spaces/tabs) after a
delimiter; part headers with obs-fold continuation lines; a close delimiter
`--boundary--` followed by an ignored epilogue.  A `\\r\\n--boundary` that is
followed by anything other than `--`, blanks or CRLF is body data, not a
delimiter.

Filename handling follows what the upstream FastAPI/Starlette stack yields:
quoted strings are unescaped (backslash-quoted characters), RFC 2231/5987
`filename*=charset'lang'%xx` wins over plain `filename`, raw header bytes are
decoded as UTF-8 (falling back to Latin-1), and an old-IE style full Windows
path (`C:\\dir\\f.txt`, `\\\\host\\share\\f.txt`) is cut to its last component.
Directory parts with forward slashes are kept (`data/in.csv` stays as is).
"""

import struct
import urllib.parse
import zlib

__all__ = [
    "MultipartError",
    "Part",
    "StreamingParser",
    "boundary_from_content_type",
    "parse_options_header",
    "SPDY3_DICTIONARY",
    "spdy_control_frame",
    "spdy_data_frame",
    "spdy_header_block",
    "read_response_head",
    "read_response_body",
]


class MultipartError(ValueError):
    """Malformed multipart body or header."""


def _split_params(text):
    """Split `a; b="x;y"; c=d` at semicolons outside quoted strings."""
    items, cur, quoted, esc = [], [], False, False
    for ch in text:
        if esc:
            cur.append(ch)
            esc = False
        elif quoted and ch == "\\":
            cur.append(ch)
            esc = True
        elif ch == '"':
            cur.append(ch)
            quoted = not quoted
        elif ch == ";" and not quoted:
            items.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    items.append("".join(cur))
    return items


def _unquote_value(value):
    value = value.strip()
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        out, esc = [], False
        for ch in value[1:-1]:
            if esc:
                out.append(ch)
                esc = False
            elif ch == "\\":
                esc = True
            else:
                out.append(ch)
        return "".join(out)
    return value


def parse_options_header(value):
    """Parse `type; k=v; k2="v 2"` into (lowercased type, {lowercased key: value}).

    `value` may be str or bytes (bytes are read as Latin-1 so that every byte
    survives; callers re-decode filenames as UTF-8).  RFC 2231 extended
    parameters (`key*=charset'lang'pct`) are decoded and stored under `key`,
    taking precedence over a plain `key`.
    """
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("latin-1")
    items = _split_params(value)
    main = items[0].strip().lower()
    params, extended = {}, {}
    for item in items[1:]:
        if "=" not in item:
            continue
        key, _, val = item.partition("=")
        key = key.strip().lower()
        if not key:
            continue
        if key.endswith("*"):
            raw = _unquote_value(val)
            parts = raw.split("'", 2)
            if len(parts) == 3:
                charset, _lang, pct = parts
                data = urllib.parse.unquote_to_bytes(pct)
                try:
                    decoded = data.decode(charset or "us-ascii")
                except (LookupError, UnicodeDecodeError):
                    decoded = data.decode("latin-1")
                # keep the Latin-1 view contract: re-encode as UTF-8 bytes in latin-1 str
                extended[key[:-1]] = decoded.encode("utf-8").decode("latin-1")
            else:
                extended[key[:-1]] = raw
        else:
            params[key] = _unquote_value(val)
    params.update(extended)
    return main, params


def _user_decode(latin1_text):
    raw = latin1_text.encode("latin-1")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return latin1_text


def boundary_from_content_type(content_type):
    """Return the boundary (bytes) of a multipart Content-Type value.

    Raises MultipartError when the type is not multipart/* or the boundary is
    missing, empty, longer than 200 characters or not ASCII.
    """
    if not content_type:
        raise MultipartError("Missing Content-Type")
    main, params = parse_options_header(content_type)
    if not main.startswith("multipart/"):
        raise MultipartError("Not a multipart body: %s" % main)
    boundary = params.get("boundary")
    if not boundary:
        raise MultipartError("Missing boundary in multipart.")
    if len(boundary) > 200:
        raise MultipartError("Boundary too long")
    try:
        return boundary.encode("ascii")
    except UnicodeEncodeError:
        raise MultipartError("Non-ASCII boundary")


class Part:
    """One part's headers.  `name` and `filename` come from Content-Disposition
    (`filename` is None when the parameter is absent, i.e. a plain form
    field); `content_type` defaults to text/plain as RFC 7578 says."""

    __slots__ = ("headers", "name", "filename", "content_type", "size", "user")

    def __init__(self, headers):
        self.headers = headers  # list of (lowercased name, value str)
        self.size = 0
        self.user = None  # free slot for the caller
        disp = self.header("content-disposition")
        self.name = None
        self.filename = None
        if disp is not None:
            _, params = parse_options_header(disp)
            if "name" in params:
                self.name = _user_decode(params["name"])
            if "filename" in params:
                fn = _user_decode(params["filename"])
                if fn[1:3] == ":\\" or fn[:2] == "\\\\":
                    fn = fn.split("\\")[-1]
                self.filename = fn
        ct = self.header("content-type")
        self.content_type = ct.strip() if ct else "text/plain"

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return default


_PREAMBLE, _TAIL, _HEADERS, _BODY, _EPILOGUE = range(5)


class StreamingParser:
    def __init__(self, boundary, on_part_begin=None, on_part_data=None,
                 on_part_end=None, max_header_bytes=16384, max_parts=1000):
        if isinstance(boundary, str):
            boundary = boundary.encode("ascii")
        if not boundary:
            raise MultipartError("Empty boundary")
        self._delim = b"\r\n--" + boundary
        self._on_begin = on_part_begin or (lambda part: None)
        self._on_data = on_part_data or (lambda part, data: None)
        self._on_end = on_part_end or (lambda part: None)
        self._max_header_bytes = max_header_bytes
        self._max_parts = max_parts
        # A virtual CRLF lets the very first delimiter start the body.
        self._buf = bytearray(b"\r\n")
        self._state = _PREAMBLE
        self._part = None
        self._headers = []
        self._header_bytes = 0
        self.parts = 0
        self.finished = False

    # -- public -----------------------------------------------------------
    def feed(self, data):
        if self._state == _EPILOGUE:
            return
        if data:
            self._buf += data
        while True:
            st = self._state
            if st == _PREAMBLE or st == _BODY:
                if not self._scan_delimiter():
                    return
            elif st == _TAIL:
                if not self._scan_tail():
                    return
            elif st == _HEADERS:
                if not self._scan_headers():
                    return
            else:  # epilogue: ignore everything
                self._buf.clear()
                return

    def close(self):
        if self._state != _EPILOGUE:
            raise MultipartError("Unexpected end of multipart body")

    # -- states -----------------------------------------------------------
    def _emit(self, n):
        if n <= 0:
            return
        if self._state == _BODY:
            chunk = bytes(self._buf[:n])
            self._part.size += len(chunk)
            self._on_data(self._part, chunk)
        del self._buf[:n]

    def _scan_delimiter(self):
        buf, delim = self._buf, self._delim
        dl = len(delim)
        start = 0
        while True:
            idx = buf.find(delim, start)
            if idx < 0:
                keep = dl - 1
                # Bytes that cannot begin a delimiter are released now.
                self._emit(len(buf) - keep)
                return False
            tail = idx + dl
            if len(buf) < tail + 2:
                self._emit(idx)
                return False
            t = buf[tail:tail + 2]
            if t == b"--":
                self._emit(idx)
                self._end_part()
                self._state = _EPILOGUE
                self.finished = True
                buf.clear()
                return False
            if t[0] in b" \t\r":
                self._emit(idx)          # the delimiter now starts at offset 0
                self._end_part()
                del buf[:dl]
                self._state = _TAIL
                return True
            # Not a delimiter: the boundary text is a prefix of body data.
            start = idx + 1

    def _end_part(self):
        if self._state == _BODY and self._part is not None:
            part, self._part = self._part, None
            self._on_end(part)

    def _scan_tail(self):
        buf = self._buf
        idx = buf.find(b"\r\n")
        if idx < 0:
            rest = bytes(buf).rstrip(b"\r").strip(b" \t")
            if rest:
                raise MultipartError("Garbage after multipart boundary")
            if len(buf) > 1024:
                raise MultipartError("Transport padding too long")
            return False
        if buf[:idx].strip(b" \t"):
            raise MultipartError("Garbage after multipart boundary")
        del buf[:idx + 2]
        self._state = _HEADERS
        self._headers = []
        self._header_bytes = 0
        return True

    def _scan_headers(self):
        buf = self._buf
        while True:
            idx = buf.find(b"\r\n")
            if idx < 0:
                if self._header_bytes + len(buf) > self._max_header_bytes:
                    raise MultipartError("Part headers too large")
                return False
            line = bytes(buf[:idx])
            del buf[:idx + 2]
            self._header_bytes += idx + 2
            if self._header_bytes > self._max_header_bytes:
                raise MultipartError("Part headers too large")
            if not line:
                self.parts += 1
                if self.parts > self._max_parts:
                    raise MultipartError("Too many parts")
                self._part = Part(self._headers)
                self._state = _BODY
                self._on_begin(self._part)
                # The body ends at CRLF--boundary; an empty body means the
                # buffer now starts with that delimiter.
                return True
            if line[:1] in (b" ", b"\t"):
                if not self._headers:
                    raise MultipartError("Header continuation without header")
                name, val = self._headers[-1]
                self._headers[-1] = (name, val + " " + line.decode("latin-1").strip())
                continue
            name, sep, val = line.partition(b":")
            if not sep or not name.strip():
                raise MultipartError("Malformed part header")
            self._headers.append((name.strip().decode("latin-1").lower(),
                                  val.strip().decode("latin-1")))


# ==========================================================================
# SPDY/3 framing, shared by the dev cluster's port-forward endpoint
# (tests/devcluster/portforward.py), the kubectl shim's port-forward client
# (tests/fakes/kubectl-shim/kubectl) and the port-forward tests.

def _spdy3_dictionary():
    # SPDY/3 draft, section 2.6.10.1: length-prefixed header names and common
    # values, then a run of plain text.
    words = (
        "options head post put delete trace accept accept-charset "
        "accept-encoding accept-language accept-ranges age allow "
        "authorization cache-control connection content-base "
        "content-encoding content-language content-length content-location "
        "content-md5 content-range content-type date etag expect expires "
        "from host if-match if-modified-since if-none-match if-range "
        "if-unmodified-since last-modified location max-forwards pragma "
        "proxy-authenticate proxy-authorization range referer retry-after "
        "server te trailer transfer-encoding upgrade user-agent vary via "
        "warning www-authenticate method get status"
    ).split() + ["200 OK"] + "version HTTP/1.1 url public set-cookie keep-alive origin".split()
    text = (
        "100101201202205206300302303304305306307402405406407408409410411412"
        "413414415416417502504505"
        "203 Non-Authoritative Information204 No Content"
        "301 Moved Permanently400 Bad Request401 Unauthorized403 Forbidden"
        "404 Not Found500 Internal Server Error501 Not Implemented"
        "503 Service Unavailable"
        "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 "
        "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
        "chunked,text/html,image/png,image/jpg,image/gif,application/xml,"
        "application/xhtml+xml,text/plain,text/javascript,"
        "publicprivatemax-age=gzip,deflate,sdch"
        "charset=utf-8charset=iso-8859-1,utf-,*,enq=0."
    )
    parts = [struct.pack(">I", len(w)) + w.encode("ascii") for w in words]
    return b"".join(parts) + text.encode("ascii")


SPDY3_DICTIONARY = _spdy3_dictionary()
assert len(SPDY3_DICTIONARY) == 1423, len(SPDY3_DICTIONARY)
assert zlib.adler32(SPDY3_DICTIONARY) == 0xE3C6A7C2, hex(zlib.adler32(SPDY3_DICTIONARY))

SPDY_VERSION = 3
SPDY_FLAG_FIN = 0x01


def spdy_header_block(headers):
    """The uncompressed name/value block of a SYN_STREAM or SYN_REPLY
    (names lower-cased, as SPDY/3 requires)."""
    out = [struct.pack(">I", len(headers))]
    for k, v in headers.items():
        k = k.lower().encode()
        v = v.encode()
        out.append(struct.pack(">I", len(k)) + k + struct.pack(">I", len(v)) + v)
    return b"".join(out)


def spdy_control_frame(ftype, flags, payload):
    return struct.pack(">HHI", 0x8000 | SPDY_VERSION, ftype, (flags << 24) | len(payload)) + payload


def spdy_data_frame(sid, payload, fin=False):
    return struct.pack(">II", sid & 0x7FFFFFFF,
                       ((SPDY_FLAG_FIN if fin else 0) << 24) | len(payload)) + payload


# ==========================================================================
# HTTP/1.1 responses read by hand (the kubectl shim, which must not depend on
# http.client's buffering once a connection is upgraded).

def read_response_head(rfile):
    """-> (status code, reason, {lower-name: value}) of an HTTP response."""
    line = rfile.readline(65537).decode("latin-1")
    if not line:
        raise EOFError("connection closed")
    parts = line.split(" ", 2)
    code = int(parts[1])
    headers = {}
    while True:
        h = rfile.readline(65537).decode("latin-1")
        if h in ("\r\n", "\n", ""):
            break
        k, _, v = h.partition(":")
        headers[k.strip().lower()] = v.strip()
    return code, (parts[2].strip() if len(parts) > 2 else ""), headers


def read_response_body(rfile, headers):
    """The whole body (Content-Length or chunked, trailers skipped)."""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int(rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return body
            body += rfile.read(size)
            rfile.readline()
    n = int(headers.get("content-length", "0") or 0)
    return rfile.read(n) if n else b""
