"""The `pods/NAME/portforward` subresource of the dev cluster emulator.

Three transports:
  * SPDY/3.1 (a POST upgrade, used by kubectl <= 1.30, by kubectl's fallback
    path and with KUBECTL_PORT_FORWARD_WEBSOCKETS=false);
  * SPDY tunnelled in WebSocket binary messages (a GET upgrade with
    Sec-WebSocket-Protocol SPDY/3.1+portforward.k8s.io, the default of
    kubectl >= 1.31);
  * the kubelet's plain WebSocket channel protocol (a GET upgrade with
    Sec-WebSocket-Protocol v4.channel.k8s.io, v4.base64.channel.k8s.io, or
    none at all = binary), what clients without kubectl use:
    `GET .../portforward?ports=P[,Q]` (ports may also repeat). One pod-side
    TCP connection per port; for the i-th port, channel 2i carries data both
    ways and 2i+1 errors (server to client); the server first sends the port
    as 2 bytes little-endian on every channel. A pod-side connect failure is
    text on the error channel ("error forwarding port P to pod NAME_NS, uid
    UID: dial tcp ...: connect: connection refused"). When every pod-side
    connection has ended the server sends a close frame (1000). RFC 6455:
    client frames must be masked (an unmasked one gets close 1002), fragments
    and control frames between them are accepted, pings are answered, the
    close handshake is honoured both ways (our close waits CLOSE_WAIT for
    the client's), a message is at most MAX_MESSAGE bytes (close 1009), bad
    base64 gets close 1007. See /work/shared/reference/kubectl.md section 7.
Only the Python standard library and zlib are used.

Interface (the API server calls this):

    serve(conn, rfile, method, headers, resolve, pod_key, registry,
          faults=None, log=None, query=None, on_answer=None)

      conn      the accepted socket (plain or TLS)
      rfile     buffered binary reader positioned just after the request
                headers; every upgraded byte is read from it
      method    "GET" (WebSocket) or "POST" (SPDY)
      headers   request headers, names in lower case
      resolve   resolve(port) -> (host, port) for every data stream; raise
                TargetError(text) when the pod is gone or the port is not
                allowed: the text is written on the stream's error stream
      pod_key   ("namespace", "name") or ("namespace", "name", "uid")
      registry  a TunnelRegistry; the tunnel is registered while it lives
      faults    optional dict, read live (see FAULT KEYS)
      query     the request's query (string or parse_qs dict): `ports` of
                the channel protocol
      on_answer optional callable(status) called just before the HTTP answer
                (101 or the refusal) is written
      log       optional callable receiving one dict per event:
                {"event": "portforward.reject", ...},
                {"event": "portforward.open", ...} and
                {"event": "portforward.close", "frames_in": {...},
                 "frames_out": {...}, "bytes_in": N, "bytes_out": N,
                 "streams": [...], "reason": ...}
                A channel tunnel's close event has "transport": "channel",
                "protocol", "ports", "frames_in"/"frames_out" by opcode
                (BINARY, TEXT, CONT, PING, PONG, CLOSE), "bytes_in",
                "bytes_out" (channel payload, prefixes excluded),
                "pings_sent", "pongs", "pings_answered", "ignored" (client
                messages on error or unknown channels, or empty),
                "errors" [{"port", "text"}], "client_close",
                "server_close" (close codes), "split_sends", "reason"
                ("client close", "pod side closed", "no pod-side
                connection", "channel_error", "pod gone: WHY",
                "abrupt_after_bytes", "protocol error: TEXT", "no close
                answer", "killed", "eof", ...).

    serve() writes the HTTP answer itself (101, or 400 with a Kubernetes
    Status body), runs the tunnel on the calling thread and returns when the
    tunnel ends. On return the connection has been shut down and closed, every
    target socket is closed and every thread it started has been joined. The
    caller must not use the connection again (BaseHTTPRequestHandler: set
    self.close_connection = True).

FAULT KEYS (faults dict, looked up at the moment they matter):

    no_websocket      truthy: answer every WebSocket upgrade (kubectl's and
                      the channel protocol) with 400 (kubectl >= 1.31 then
                      falls back to SPDY silently)
    no_spdy           truthy: answer the SPDY upgrade with 400 (if both are
                      rejected kubectl prints "error upgrading connection")
    no_protocol_header truthy: answer 101 without the negotiated protocol
                      header (SPDY: kubectl exits "unable to negotiate
                      protocol"; WebSocket: kubectl falls back to SPDY)
    error_text        string: one-shot (popped from the dict) - the next data
                      stream gets this text on its error stream instead of a
                      connection to the target (kubectl prints it and exits 1
                      with "lost connection to pod")
    kill_after_bytes  int: close the upgraded connection once this many
                      payload bytes (both directions together) went through
    no_error_fin      truthy: when the target closes, FIN only the data
                      stream and never the error stream (kubectl then never
                      closes the local connection)

  Channel protocol (v4.channel.k8s.io and friends) only:
    refuse_channel_ws truthy: answer channel-protocol upgrades with 403 and a
                      Status body "upgrade refused (fault refuse_channel_ws)";
                      SPDY and kubectl's WebSocket keep working (a client's
                      fallback to kubectl port-forward can be tested)
    channel_error     string: after the port prefixes, send this text (as is)
                      on the error channel of the first port, then close
                      (1000); no pod-side connection is made. Not one-shot.
    split_frames      truthy: every frame to the client is written one byte
                      per send() (TCP_NODELAY), close frames included
    ping_first        truthy: a ping (payload "sbx") goes out before any data
                      frame; "pongs" in the close event counts the matching
                      pongs that came back (0 or 1)
    abrupt_after_bytes int: once this many data-channel payload bytes were
                      sent to the client (the last message is cut to fit),
                      the TCP connection is shut down without a close frame
                      (0: right after the port prefixes)
  A pod that goes away (TunnelRegistry.gone(): deleted, or its process killed
  through POST /_admin/pods/kill) ends a channel WebSocket with 'error
  forwarding port P to pod NAME_NS, uid UID: pod "NAME" is gone (deleted|
  killed)' on the error channel of every open port, then a close frame;
  TunnelRegistry.kill() (POST /_admin/kill-portforwards) cuts it abruptly.

Protocol facts relied on: /work/shared/reference/kubectl.md sections 3-6.
"""

import base64
import errno as _errno
import hashlib
import json
import os
import socket
import struct
import threading
import time
import sys
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fakes"))
from wire import SPDY3_DICTIONARY, spdy_control_frame, spdy_data_frame, spdy_header_block  # noqa: E402

__all__ = ["TargetError", "TunnelRegistry", "serve", "SPDY3_DICTIONARY"]


class TargetError(Exception):
    """The text of this exception goes on the error stream of a data stream."""


# --------------------------------------------------------------------------
# constants

SPDY_VERSION = 3
TYPE_NAMES = {1: "SYN_STREAM", 2: "SYN_REPLY", 3: "RST_STREAM", 4: "SETTINGS",
              6: "PING", 7: "GOAWAY", 8: "HEADERS", 9: "WINDOW_UPDATE"}
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = (
    1, 2, 3, 4, 6, 7, 8, 9)
FLAG_FIN = 0x01
RST_PROTOCOL_ERROR = 1
RST_INVALID_STREAM = 2
RST_REFUSED_STREAM = 3

WS_PROTOCOL = "SPDY/3.1+portforward.k8s.io"
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SPDY_PROTOCOL = "portforward.k8s.io"

MAX_DATA = 32 * 1024          # kubectl.md section 4: keep DATA frames <= 32 KiB
MAX_FRAME = 16 * 1024 * 1024  # refuse absurd frames from a broken client
CONNECT_TIMEOUT = 5.0
JOIN_TIMEOUT = 5.0
MAX_LOGGED_STREAMS = 256


# --------------------------------------------------------------------------
# registry

class TunnelRegistry:
    """Live upgraded port-forward connections, by pod. Thread-safe."""

    def __init__(self):
        self._lock = threading.Lock()
        self._tunnels = {}  # id(tunnel) -> (pod_key, tunnel)

    def add(self, pod_key, tunnel):
        with self._lock:
            self._tunnels[id(tunnel)] = (tuple(pod_key), tunnel)

    def remove(self, tunnel):
        with self._lock:
            self._tunnels.pop(id(tunnel), None)

    def _match(self, pod_key):
        with self._lock:
            items = list(self._tunnels.values())
        if pod_key is None:
            return [t for _, t in items]
        want = tuple(pod_key)[:2]
        return [t for k, t in items if k[:2] == want]

    def count(self, pod_key=None):
        """How many tunnels are open for this pod (or in total)."""
        return len(self._match(pod_key))

    def kill(self, pod_key=None):
        """Close the upgraded connections of one pod (or all); returns how many.

        kubectl sees the drop and exits 1 with `error: lost connection to pod`.
        The serve() calls owning those tunnels return shortly afterwards."""
        tunnels = self._match(pod_key)
        for t in tunnels:
            t.abort("killed")
        return len(tunnels)

    def gone(self, pod_key, why, spdy=True):
        """The pod went away (deleted, or its process killed); returns how many
        tunnels were told.

        Channel WebSockets get the error-channel text 'pod "NAME" is gone
        (WHY)' on every open port, then a close frame. SPDY tunnels are cut
        like kill() when `spdy` is true and left alone otherwise."""
        n = 0
        for t in self._match(pod_key):
            if hasattr(t, "gone"):
                t.gone(why)
                n += 1
            elif spdy:
                t.abort("killed")
                n += 1
        return n

    def wait_empty(self, pod_key=None, timeout=5.0):
        """Wait until no tunnel of this pod (or none at all) is registered."""
        deadline = time.monotonic() + timeout
        while self._match(pod_key):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True


# --------------------------------------------------------------------------
# HTTP answers

def _status_body(message, code=400, reason="BadRequest"):
    return json.dumps({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason,
        "code": code}).encode()


_PHRASES = {400: "Bad Request", 403: "Forbidden"}


def _reject(conn, message, code=400, reason="BadRequest"):
    body = _status_body(message, code, reason)
    head = ("HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
            "Content-Length: %d\r\nConnection: close\r\n\r\n"
            % (code, _PHRASES.get(code, "Error"), len(body)))
    try:
        conn.sendall(head.encode() + body)
    except OSError:
        pass


def _shutdown_close(sock):
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def _tokens(value):
    return [t.strip() for t in (value or "").split(",") if t.strip()]


def _go_dial_error(host, port, exc):
    """Render a connect failure the way Go's net package words it."""
    if isinstance(exc, socket.timeout):
        what = "i/o timeout"
    elif getattr(exc, "errno", None):
        what = "connect: " + os.strerror(exc.errno).lower()
    else:
        what = str(exc)
    h = "[%s]" % host if ":" in host else host
    return "dial tcp %s:%d: %s" % (h, port, what)


# --------------------------------------------------------------------------
# byte transports under the SPDY framer

class _SpdyIO:
    """SPDY bytes directly on the upgraded connection."""

    def __init__(self, conn, rfile):
        self.conn = conn
        self.rfile = rfile

    def read_exact(self, n):
        if n == 0:
            return b""
        data = self.rfile.read(n)
        if data is None or len(data) < n:
            raise EOFError("connection closed")
        return data

    def wrap(self, frame):
        return frame


class _WebSocketIO:
    """SPDY bytes carried as the payloads of WebSocket binary messages."""

    def __init__(self, conn, rfile, send_raw):
        self.conn = conn
        self.rfile = rfile
        self.buf = bytearray()
        self.pos = 0
        self.send_raw = send_raw  # send_raw(bytes): writes under the tunnel's lock
        self.closed = False

    def _read(self, n):
        data = self.rfile.read(n)
        if data is None or len(data) < n:
            raise EOFError("connection closed")
        return data

    def _frame(self):
        b0, b1 = self._read(2)
        opcode = b0 & 0x0F
        masked = b1 & 0x80
        length = b1 & 0x7F
        if length == 126:
            length = struct.unpack(">H", self._read(2))[0]
        elif length == 127:
            length = struct.unpack(">Q", self._read(8))[0]
        if length > MAX_FRAME:
            raise EOFError("websocket frame too large")
        mask = self._read(4) if masked else None
        payload = self._read(length) if length else b""
        if mask and payload:
            reps = (length + 3) // 4
            key = int.from_bytes(mask * reps, "little")
            val = int.from_bytes(payload, "little")
            payload = (val ^ key).to_bytes(reps * 4, "little")[:length]
        return opcode, payload

    def read_exact(self, n):
        while len(self.buf) - self.pos < n:
            if self.closed:
                raise EOFError("websocket closed")
            opcode, payload = self._frame()
            if opcode in (0x0, 0x1, 0x2):
                if self.pos > 65536:
                    del self.buf[:self.pos]
                    self.pos = 0
                self.buf += payload
            elif opcode == 0x8:  # close: answer it, then the stream ends
                self.closed = True
                try:
                    self.send_raw(self._header(0x8, len(payload[:2])) + payload[:2])
                except OSError:
                    pass
            elif opcode == 0x9:  # ping
                self.send_raw(self._header(0xA, len(payload)) + payload)
            # 0xA pong and anything else: ignored
        out = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return out

    @staticmethod
    def _header(opcode, n):
        if n < 126:
            return struct.pack(">BB", 0x80 | opcode, n)
        if n < 65536:
            return struct.pack(">BBH", 0x80 | opcode, 126, n)
        return struct.pack(">BBQ", 0x80 | opcode, 127, n)

    def wrap(self, frame):
        return self._header(0x2, len(frame)) + frame


# --------------------------------------------------------------------------
# streams

class _Stream:
    __slots__ = ("sid", "kind", "port", "requestid", "headers", "lock",
                 "sock", "pending", "remote_fin", "local_fin", "reset",
                 "target_eof", "failed", "error", "thread")

    def __init__(self, sid, headers):
        self.sid = sid
        self.headers = headers
        self.kind = headers.get("streamtype", "")
        self.port = headers.get("port", "")
        self.requestid = headers.get("requestid")
        self.lock = threading.Lock()
        self.sock = None
        self.pending = []          # client bytes that arrived before connect
        self.remote_fin = False    # client half-closed
        self.local_fin = False     # we sent FIN
        self.reset = False
        self.target_eof = False
        self.failed = False        # error text was sent instead of connecting
        self.error = None          # paired error stream
        self.thread = None


class _Tunnel:
    def __init__(self, conn, rfile, transport, resolve, pod_key, faults, log):
        self.conn = conn
        self.transport = transport
        self.resolve = resolve
        self.pod_key = tuple(pod_key)
        self.faults = faults if faults is not None else {}
        self.log = log
        self.wlock = threading.Lock()
        self.slock = threading.Lock()   # streams tables and counters
        self.streams = {}
        self.errors_by_rid = {}
        self.threads = []
        self.closing = False
        self.reason = None
        self.goaway = False
        self.frames_in = {}
        self.frames_out = {}
        self.bytes_in = 0
        self.bytes_out = 0
        self.logged_streams = []
        self.deflate = zlib.compressobj(9, zlib.DEFLATED, 15, 8,
                                        zlib.Z_DEFAULT_STRATEGY, SPDY3_DICTIONARY)
        self.inflate = zlib.decompressobj(zdict=SPDY3_DICTIONARY)
        if transport == "ws":
            self.io = _WebSocketIO(conn, rfile, self._send_raw)
        else:
            self.io = _SpdyIO(conn, rfile)

    # ---- lifetime

    def abort(self, reason):
        """Drop the upgraded connection and every target connection."""
        with self.slock:
            if self.reason is None:
                self.reason = reason
            self.closing = True
            streams = list(self.streams.values())
        try:
            self.conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        for st in streams:
            s = st.sock
            if s is not None:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _count(self, table, name):
        table[name] = table.get(name, 0) + 1

    def _payload(self, direction, n):
        limit = self.faults.get("kill_after_bytes")
        with self.slock:
            if direction == "in":
                self.bytes_in += n
            else:
                self.bytes_out += n
            total = self.bytes_in + self.bytes_out
        if limit is not None and total >= int(limit):
            self.abort("kill_after_bytes")
            return False
        return True

    # ---- writing

    def _send_raw(self, data):
        with self.wlock:
            self.conn.sendall(data)

    def _send_control(self, ftype, flags, payload):
        frame = spdy_control_frame(ftype, flags, payload)
        with self.wlock:
            self._count(self.frames_out, TYPE_NAMES[ftype])
            self.conn.sendall(self.io.wrap(frame))

    def send_syn_reply(self, sid, headers=None):
        raw = spdy_header_block(headers or {})
        with self.wlock:  # compress and write in one critical section
            block = self.deflate.compress(raw) + self.deflate.flush(zlib.Z_SYNC_FLUSH)
            payload = struct.pack(">I", sid & 0x7FFFFFFF) + block
            frame = spdy_control_frame(SYN_REPLY, 0, payload)
            self._count(self.frames_out, "SYN_REPLY")
            self.conn.sendall(self.io.wrap(frame))

    def send_data(self, st, data, fin=False):
        if st.reset:
            return
        frame = spdy_data_frame(st.sid, data, fin)
        with self.wlock:
            self._count(self.frames_out, "DATA")
            self.conn.sendall(self.io.wrap(frame))

    def send_fin(self, st):
        with st.lock:
            if st.local_fin or st.reset:
                return
            st.local_fin = True
        self.send_data(st, b"", fin=True)
        self._maybe_done(st)

    def send_rst(self, sid, status):
        self._send_control(RST_STREAM, 0, struct.pack(">II", sid & 0x7FFFFFFF, status))

    # ---- reading

    def _parse_headers(self, block):
        raw = self.inflate.decompress(block)
        (count,) = struct.unpack_from(">I", raw, 0)
        off = 4
        headers = {}
        for _ in range(count):
            (n,) = struct.unpack_from(">I", raw, off)
            off += 4
            name = raw[off:off + n].decode("latin-1").lower()
            off += n
            (n,) = struct.unpack_from(">I", raw, off)
            off += 4
            value = raw[off:off + n].decode("latin-1")
            off += n
            headers[name] = value.split("\x00")[0] if "\x00" in value else value
        return headers

    def run(self):
        read = self.io.read_exact
        while True:
            hdr = read(8)
            w0, w1 = struct.unpack(">II", hdr)
            flags = w1 >> 24
            length = w1 & 0xFFFFFF
            if w0 & 0x80000000:
                ftype = w0 & 0xFFFF
                payload = read(length)
                self._count(self.frames_in, TYPE_NAMES.get(ftype, "TYPE_%d" % ftype))
                if not self._control(ftype, flags, payload):
                    return
            else:
                payload = read(length)
                self._count(self.frames_in, "DATA")
                self._data(w0 & 0x7FFFFFFF, flags, payload)
            if self.closing:
                return

    def _control(self, ftype, flags, payload):
        if ftype == SYN_STREAM:
            sid = struct.unpack_from(">I", payload, 0)[0] & 0x7FFFFFFF
            headers = self._parse_headers(payload[10:])
            self._syn_stream(sid, flags, headers)
        elif ftype in (SYN_REPLY, HEADERS):
            self._parse_headers(payload[4:])  # keep the zlib context in step
        elif ftype == RST_STREAM:
            sid = struct.unpack_from(">I", payload, 0)[0] & 0x7FFFFFFF
            self._rst(sid)
        elif ftype == PING:
            (pid,) = struct.unpack_from(">I", payload, 0)
            if pid & 1:  # client-initiated: echo it
                self._send_control(PING, 0, payload[:4])
        elif ftype == GOAWAY:
            self.goaway = True
            with self.slock:
                if self.reason is None:
                    self.reason = "goaway"
            # kubectl closes the connection right after; keep reading to EOF
        # SETTINGS, WINDOW_UPDATE, unknown: nothing to do
        return True

    def _syn_stream(self, sid, flags, headers):
        st = _Stream(sid, headers)
        if len(self.logged_streams) < MAX_LOGGED_STREAMS:
            self.logged_streams.append(dict(headers, id=sid))
        if self.goaway:
            self.send_rst(sid, RST_REFUSED_STREAM)
            return
        with self.slock:
            self.streams[sid] = st
            if st.kind == "error" and st.requestid is not None:
                self.errors_by_rid[st.requestid] = st
            elif st.kind == "data":
                st.error = self.errors_by_rid.pop(st.requestid, None)
        if flags & FLAG_FIN:
            st.remote_fin = True
        self.send_syn_reply(sid)
        if st.kind == "data":
            t = threading.Thread(target=self._pump, args=(st,),
                                 name="pf-stream-%d" % sid, daemon=True)
            st.thread = t
            self.threads = [x for x in self.threads if x.is_alive()]
            self.threads.append(t)
            t.start()
        elif st.kind != "error":
            msg = "invalid stream type %r" % st.kind
            self.send_data(st, msg.encode())
            self.send_fin(st)

    def _data(self, sid, flags, payload):
        st = self.streams.get(sid)
        if st is None:
            return
        if payload and st.kind == "data":
            if not self._payload("in", len(payload)):
                return
            with st.lock:
                sock = st.sock
                if sock is None:
                    if not st.failed and not st.reset:
                        st.pending.append(payload)
                    sock = None
                    payload = None
            if sock is not None:
                try:
                    sock.sendall(payload)
                except OSError:
                    pass  # target went away; its EOF is reported by the pump
        if flags & FLAG_FIN:
            with st.lock:
                st.remote_fin = True
                sock = st.sock
            if sock is not None and st.kind == "data":
                try:
                    sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
            self._maybe_done(st)

    def _rst(self, sid):
        with self.slock:
            st = self.streams.pop(sid, None)
        if st is None:
            return
        with st.lock:
            st.reset = True
            st.pending = []
            sock = st.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _maybe_done(self, st):
        """Forget a stream once both sides have finished it."""
        with st.lock:
            done = st.reset or (st.remote_fin and st.local_fin)
        if done:
            with self.slock:
                if self.streams.get(st.sid) is st:
                    del self.streams[st.sid]

    # ---- per data stream

    def _fail(self, st, text):
        with st.lock:
            st.failed = True
            st.pending = []
        err = st.error
        if err is not None and not err.reset:
            try:
                self.send_data(err, text.encode("utf-8", "replace"))
            except OSError:
                return
        try:
            if err is not None:
                self.send_fin(err)
            self.send_fin(st)
        except OSError:
            pass

    def _pod_text(self):
        ns, name = self.pod_key[0], self.pod_key[1]
        text = "%s_%s" % (name, ns)
        if len(self.pod_key) > 2 and self.pod_key[2]:
            text += ", uid %s" % self.pod_key[2]
        return text

    def _pump(self, st):
        sock = None
        try:
            try:
                port = int(st.port)
            except ValueError:
                self._fail(st, "invalid port %r" % st.port)
                return
            text = None
            if self.faults.get("error_text"):
                text = self.faults.pop("error_text", None)
            if text:
                self._fail(st, str(text))
                return
            try:
                host, tport = self.resolve(port)
            except TargetError as e:
                self._fail(st, str(e))
                return
            except Exception as e:  # a bug in resolve: still tell kubectl
                self._fail(st, "error forwarding port %d to pod %s: %s"
                           % (port, self._pod_text(), e))
                return
            try:
                sock = socket.create_connection((host, tport), timeout=CONNECT_TIMEOUT)
            except OSError as e:
                self._fail(st, "error forwarding port %d to pod %s: %s"
                           % (port, self._pod_text(), _go_dial_error(host, tport, e)))
                return
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with st.lock:
                if st.reset or self.closing:
                    return
                # flush what the client sent before the connect completed;
                # holding the lock keeps later client bytes in order
                try:
                    for chunk in st.pending:
                        sock.sendall(chunk)
                    if st.remote_fin:
                        sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                st.pending = []
                st.sock = sock
            if self.closing:
                return
            recv = sock.recv
            while True:
                try:
                    data = recv(MAX_DATA)
                except OSError:
                    data = b""
                if not data:
                    break
                if st.reset or self.closing:
                    return
                if not self._payload("out", len(data)):
                    return
                self.send_data(st, data)
            with st.lock:
                st.target_eof = True
            self.send_fin(st)
            if st.error is not None and not self.faults.get("no_error_fin"):
                self.send_fin(st.error)
        except OSError:
            # the upgraded connection is gone: end the whole tunnel
            self.abort("write failed")
        finally:
            if sock is not None:
                with st.lock:
                    st.sock = None
                _shutdown_close(sock)

    # ---- teardown

    def finish(self):
        self.abort(self.reason or "eof")
        deadline = time.monotonic() + JOIN_TIMEOUT
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        with self.slock:
            streams = list(self.streams.values())
            self.streams.clear()
        for st in streams:
            with st.lock:
                sock, st.sock = st.sock, None
            _shutdown_close(sock)
        _shutdown_close(self.conn)

    def summary(self):
        return {
            "event": "portforward.close",
            "transport": self.transport,
            "pod": list(self.pod_key[:2]),
            "reason": self.reason,
            "frames_in": dict(self.frames_in),
            "frames_out": dict(self.frames_out),
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "streams": list(self.logged_streams),
            "threads_alive": sum(1 for t in self.threads if t.is_alive()),
        }


# --------------------------------------------------------------------------
# the kubelet's plain WebSocket channel protocol (kubectl.md section 7)

CHANNEL_PROTOCOL = "v4.channel.k8s.io"
CHANNEL_BASE64_PROTOCOL = "v4.base64.channel.k8s.io"
CHANNEL_PROTOCOLS = (CHANNEL_PROTOCOL, CHANNEL_BASE64_PROTOCOL)
MAX_MESSAGE = 16 * 1024 * 1024   # one client message, all its fragments together
CLOSE_WAIT = 2.0                 # how long our close frame waits for the client's
DRAIN_WAIT = 1.0                 # reading after our close, so close() sends no RST
PING_PAYLOAD = b"sbx"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
OP_NAMES = {OP_CONT: "CONT", OP_TEXT: "TEXT", OP_BINARY: "BINARY", OP_CLOSE: "CLOSE",
            OP_PING: "PING", OP_PONG: "PONG"}
CLOSE_NORMAL, CLOSE_PROTOCOL, CLOSE_BAD_DATA, CLOSE_TOO_BIG = 1000, 1002, 1007, 1009


class _WsProtocolError(Exception):
    def __init__(self, code, text):
        Exception.__init__(self, text)
        self.code = code
        self.text = text


def _ws_header(opcode, n):
    """Server frame header: FIN set, never masked (RFC 6455 section 5.1)."""
    if n < 126:
        return struct.pack(">BB", 0x80 | opcode, n)
    if n < 65536:
        return struct.pack(">BBH", 0x80 | opcode, 126, n)
    return struct.pack(">BBQ", 0x80 | opcode, 127, n)


def _unmask(mask, payload):
    n = len(payload)
    if not n:
        return b""
    reps = (n + 3) // 4
    key = int.from_bytes(mask * reps, "little")
    return (int.from_bytes(payload, "little") ^ key).to_bytes(reps * 4, "little")[:n]


def parse_ports(query):
    """The `ports` query parameter(s) -> [int]; raises ValueError with the reason.

    `query` is a raw query string or a parse_qs() dict; ports may repeat and be
    comma-separated."""
    if isinstance(query, str):
        import urllib.parse
        query = urllib.parse.parse_qs(query, keep_blank_values=True)
    values = (query or {}).get("ports") or []
    ports = []
    for v in values:
        for tok in str(v).split(","):
            tok = tok.strip()
            if not tok.isdigit() or not 0 < int(tok) < 65536:
                raise ValueError('invalid port "%s" in query parameter "ports"' % tok)
            ports.append(int(tok))
    if not ports:
        raise ValueError('query parameter "ports" is required')
    return ports


class _ChannelTunnel:
    """One v4.channel.k8s.io WebSocket: one pod-side TCP connection per port."""

    transport = "channel"

    def __init__(self, conn, rfile, protocol, ports, resolve, pod_key, faults, log):
        self.conn = conn
        self.rfile = rfile
        self.protocol = protocol
        self.b64 = protocol == CHANNEL_BASE64_PROTOCOL
        self.ports = ports
        self.resolve = resolve
        self.pod_key = tuple(pod_key)
        self.faults = faults if faults is not None else {}
        self.log = log
        self.wlock = threading.Lock()
        self.slock = threading.Lock()
        self.targets = [None] * len(ports)
        self.live = 0
        self.threads = []
        self.closing = False        # aborted: the TCP connection is being torn down
        self.close_sent = False     # our close frame is out: no more data frames
        self.close_ack = threading.Event()
        self.reason = None
        self.frames_in = {}
        self.frames_out = {}
        self.bytes_in = 0
        self.bytes_out = 0
        self.pings_sent = 0
        self.pongs = 0
        self.pings_answered = 0
        self.ignored = 0
        self.errors = []
        self.client_close = None
        self.server_close = None
        self.split_sends = 0

    # ---- lifetime

    def _set_reason(self, reason):
        with self.slock:
            if self.reason is None:
                self.reason = reason

    def abort(self, reason):
        """Drop the TCP connection (no close frame) and every target connection."""
        with self.slock:
            if self.reason is None:
                self.reason = reason
            self.closing = True
            socks = [s for s in self.targets if s is not None]
        self.close_ack.set()
        try:
            self.conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def gone(self, why):
        """The pod went away: every open port's error channel says so, then close."""
        with self.slock:
            open_ports = [i for i, s in enumerate(self.targets) if s is not None]
            socks = [s for s in self.targets if s is not None]
        for i in open_ports:
            self._send_error(i, 'pod "%s" is gone (%s)' % (self.pod_key[1], why), prefix=True)
        self._set_reason("pod gone: %s" % why)
        self._close(CLOSE_NORMAL, "pod gone")
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # ---- writing

    def _sendall(self, data):
        """Under wlock. Fault split_frames: one byte per send() (TCP_NODELAY is on),
        so the client sees every frame cut at every byte boundary."""
        if self.faults.get("split_frames"):
            for k in range(len(data)):
                self.conn.sendall(data[k:k + 1])
            self.split_sends += len(data)
        else:
            self.conn.sendall(data)

    def _write(self, data, name, control=False):
        """-> False when the frame was not sent because our close frame is out."""
        with self.wlock:
            if self.close_sent and not control:
                return False
            self.frames_out[name] = self.frames_out.get(name, 0) + 1
            self._sendall(data)
        return True

    def _send_channel(self, ch, data):
        if self.b64:
            payload = bytes([0x30 + ch]) + base64.b64encode(data)
            op = OP_TEXT
        else:
            payload = bytes([ch]) + data
            op = OP_BINARY
        return self._write(_ws_header(op, len(payload)) + payload, OP_NAMES[op])

    def _error_text(self, port, detail):
        text = "%s_%s" % (self.pod_key[1], self.pod_key[0])
        if len(self.pod_key) > 2 and self.pod_key[2]:
            text += ", uid %s" % self.pod_key[2]
        return "error forwarding port %d to pod %s: %s" % (port, text, detail)

    def _send_error(self, i, text, prefix=False):
        if prefix:
            text = self._error_text(self.ports[i], text)
        with self.slock:
            if len(self.errors) < MAX_LOGGED_STREAMS:
                self.errors.append({"port": self.ports[i], "text": text})
        try:
            self._send_channel(2 * i + 1, text.encode("utf-8", "replace"))
        except OSError:
            self.abort("write failed")

    def _send_data(self, i, data):
        """-> False when the tunnel must stop sending."""
        limit = self.faults.get("abrupt_after_bytes")
        cut = False
        with self.slock:
            if limit is not None:
                left = int(limit) - self.bytes_out
                if len(data) >= left:
                    data, cut = data[:max(left, 0)], True
            self.bytes_out += len(data)
        ok = True
        if data:
            ok = self._send_channel(2 * i, data)
        if cut:
            self.abort("abrupt_after_bytes")
            return False
        return ok

    def _close(self, code, text=""):
        """Send our close frame once; the client's answer (or CLOSE_WAIT) ends the tunnel."""
        payload = struct.pack(">H", code) + text.encode("utf-8", "replace")[:123]
        with self.wlock:
            if self.close_sent or self.closing:
                return
            self.close_sent = True
            self.server_close = code
            self.frames_out["CLOSE"] = self.frames_out.get("CLOSE", 0) + 1
            try:
                self._sendall(_ws_header(OP_CLOSE, len(payload)) + payload)
            except OSError:
                failed = True
            else:
                failed = False
        if failed:
            self.abort("write failed")
            return
        t = threading.Thread(target=self._close_watchdog, name="pf-ws-close", daemon=True)
        with self.slock:   # started before finish() can see it, or it could not be joined
            t.start()
            self.threads.append(t)

    def _close_watchdog(self):
        if not self.close_ack.wait(CLOSE_WAIT):
            self.abort("no close answer")

    # ---- start: prefixes, faults, pod-side connections

    def start(self):
        if self.faults.get("ping_first"):
            self.pings_sent += 1
            self._write(_ws_header(OP_PING, len(PING_PAYLOAD)) + PING_PAYLOAD, "PING",
                        control=True)
        for i, port in enumerate(self.ports):
            prefix = struct.pack("<H", port)
            self._send_channel(2 * i, prefix)
            self._send_channel(2 * i + 1, prefix)
        text = self.faults.get("channel_error")
        if text:
            self._send_error(0, str(text))
            self._set_reason("channel_error")
            self._close(CLOSE_NORMAL)
            return
        limit = self.faults.get("abrupt_after_bytes")
        if limit is not None and int(limit) <= 0:
            self.abort("abrupt_after_bytes")
            return
        for i, port in enumerate(self.ports):
            try:
                host, tport = self.resolve(port)
            except TargetError as e:
                self._send_error(i, str(e), prefix=True)
                continue
            except Exception as e:  # a bug in resolve: still tell the client
                self._send_error(i, "%s: %s" % (type(e).__name__, e), prefix=True)
                continue
            try:
                sock = socket.create_connection((host, tport), timeout=CONNECT_TIMEOUT)
            except OSError as e:
                self._send_error(i, _go_dial_error(host, tport, e), prefix=True)
                continue
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            t = threading.Thread(target=self._pump, args=(i, sock),
                                 name="pf-ws-port-%d" % port, daemon=True)
            with self.slock:
                if self.closing:
                    _shutdown_close(sock)
                    return
                self.targets[i] = sock
                self.live += 1
                t.start()
                self.threads.append(t)
        with self.slock:
            nothing = self.live == 0
        if nothing:
            self._set_reason("no pod-side connection")
            self._close(CLOSE_NORMAL)

    def _pump(self, i, sock):
        try:
            while True:
                try:
                    data = sock.recv(MAX_DATA)
                except OSError:
                    data = b""
                if not data or self.closing:
                    break
                if not self._send_data(i, data):
                    break
        except OSError:
            self.abort("write failed")
        finally:
            with self.slock:
                self.targets[i] = None
                self.live -= 1
                last = self.live == 0
            _shutdown_close(sock)
            if last:
                self._set_reason("pod side closed")
                self._close(CLOSE_NORMAL)

    # ---- reading client frames

    def _read(self, n):
        data = self.rfile.read(n)
        if data is None or len(data) < n:
            raise EOFError("connection closed")
        return data

    def _frame(self):
        b0, b1 = self._read(2)
        if b0 & 0x70:
            raise _WsProtocolError(CLOSE_PROTOCOL, "reserved bits set")
        if not b1 & 0x80:
            raise _WsProtocolError(CLOSE_PROTOCOL, "client frames must be masked")
        length = b1 & 0x7F
        if length == 126:
            length = struct.unpack(">H", self._read(2))[0]
        elif length == 127:
            length = struct.unpack(">Q", self._read(8))[0]
        if length > MAX_MESSAGE:
            raise _WsProtocolError(CLOSE_TOO_BIG, "frame too large")
        mask = self._read(4)
        payload = _unmask(mask, self._read(length)) if length else b""
        op = b0 & 0x0F
        self.frames_in[OP_NAMES.get(op, "OP_%d" % op)] = \
            self.frames_in.get(OP_NAMES.get(op, "OP_%d" % op), 0) + 1
        return bool(b0 & 0x80), op, payload

    def run(self):
        msg_op, parts, size = None, [], 0
        while True:
            fin, op, payload = self._frame()
            if op & 0x8:
                if not fin or len(payload) > 125:
                    raise _WsProtocolError(CLOSE_PROTOCOL, "control frames must be whole "
                                                           "and at most 125 bytes")
                if op == OP_CLOSE:
                    return self._client_closed(payload)
                if op == OP_PING:
                    self.pings_answered += 1
                    self._write(_ws_header(OP_PONG, len(payload)) + payload, "PONG",
                                control=True)
                elif op == OP_PONG:
                    if payload == PING_PAYLOAD and self.pongs < self.pings_sent:
                        self.pongs += 1
                else:
                    raise _WsProtocolError(CLOSE_PROTOCOL, "unknown opcode %d" % op)
                if self.closing:
                    return
                continue
            if op == OP_CONT:
                if msg_op is None:
                    raise _WsProtocolError(CLOSE_PROTOCOL, "continuation frame outside "
                                                           "a message")
            elif op in (OP_TEXT, OP_BINARY):
                if msg_op is not None:
                    raise _WsProtocolError(CLOSE_PROTOCOL, "new message inside a "
                                                           "fragmented one")
                msg_op, parts, size = op, [], 0
            else:
                raise _WsProtocolError(CLOSE_PROTOCOL, "unknown opcode %d" % op)
            size += len(payload)
            if size > MAX_MESSAGE:
                raise _WsProtocolError(CLOSE_TOO_BIG, "message too large")
            parts.append(payload)
            if fin:
                data = parts[0] if len(parts) == 1 else b"".join(parts)
                msg_op, parts = None, []
                self._client_message(data)
            if self.closing:
                return

    def _client_closed(self, payload):
        if len(payload) == 1:
            raise _WsProtocolError(CLOSE_PROTOCOL, "close payload of 1 byte")
        code = struct.unpack(">H", payload[:2])[0] if payload else None
        self.client_close = code
        if self.close_sent:           # the answer to ours
            self.close_ack.set()
            return
        self._set_reason("client close")
        self._close(code if code is not None and code not in (1005, 1006, 1015)
                    else CLOSE_NORMAL)
        self.close_ack.set()

    def _client_message(self, data):
        if not data:
            self.ignored += 1
            return
        ch = data[0] - 0x30 if self.b64 else data[0]
        payload = data[1:]
        if self.b64:
            try:
                payload = base64.b64decode(payload, validate=True)
            except ValueError:
                raise _WsProtocolError(CLOSE_BAD_DATA, "channel payload is not base64")
        i = ch // 2
        if ch < 0 or ch % 2 or i >= len(self.ports):
            self.ignored += 1      # error channels and unknown ones are server-to-client
            return
        with self.slock:
            self.bytes_in += len(payload)
            sock = self.targets[i]
        if sock is None or not payload:
            return
        try:
            sock.sendall(payload)
        except OSError:
            pass  # the pod side went away; its pump reports it

    # ---- teardown

    def protocol_error(self, e):
        self._set_reason("protocol error: %s" % e.text)
        self._close(e.code, e.text)

    def finish(self):
        acked = self.close_ack.is_set()
        with self.slock:
            socks = [s for s in self.targets if s is not None]
            self.closing = True
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.close_ack.set()
        deadline = time.monotonic() + JOIN_TIMEOUT
        joined = 0
        while joined < len(self.threads):   # a close watchdog may start meanwhile
            self.threads[joined].join(max(0.0, deadline - time.monotonic()))
            joined += 1
        if self.close_sent and not acked:
            # the client may still be writing: read until its FIN so that our
            # close() does not turn into a RST that could eat our close frame
            try:
                self.conn.shutdown(socket.SHUT_WR)
                self.conn.settimeout(DRAIN_WAIT)
                end = time.monotonic() + DRAIN_WAIT
                while time.monotonic() < end and self.conn.recv(65536):
                    pass
            except OSError:
                pass
        _shutdown_close(self.conn)

    def summary(self):
        return {
            "event": "portforward.close",
            "transport": self.transport,
            "protocol": self.protocol,
            "pod": list(self.pod_key[:2]),
            "ports": list(self.ports),
            "reason": self.reason,
            "frames_in": dict(self.frames_in),
            "frames_out": dict(self.frames_out),
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "pings_sent": self.pings_sent,
            "pongs": self.pongs,
            "pings_answered": self.pings_answered,
            "ignored": self.ignored,
            "errors": list(self.errors),
            "client_close": self.client_close,
            "server_close": self.server_close,
            "split_sends": self.split_sends,
            "threads_alive": sum(1 for t in self.threads if t.is_alive()),
        }


# --------------------------------------------------------------------------
# entry point

def serve(conn, rfile, method, headers, resolve, pod_key, registry,
          faults=None, log=None, query=None, on_answer=None):
    """Answer a portforward upgrade on `conn` and run the tunnel until it ends.

    See the module docstring for the arguments and the fault keys."""
    faults = faults if faults is not None else {}
    h = {k.lower(): v for k, v in headers.items()}
    upgrade = _tokens(h.get("upgrade", "").lower())
    emit = log if log is not None else (lambda rec: None)
    answered = on_answer if on_answer is not None else (lambda code: None)
    pod = list(tuple(pod_key)[:2])

    def reject(message, transport, code=400, reason="BadRequest"):
        emit({"event": "portforward.reject", "transport": transport,
              "method": method, "pod": pod, "message": message, "code": code})
        answered(code)          # before the answer, so a client that saw it finds it logged
        _reject(conn, message, code, reason)
        _shutdown_close(conn)

    protocol = None
    ports = None
    if "websocket" in upgrade:
        offered = _tokens(h.get("sec-websocket-protocol", ""))
        key = h.get("sec-websocket-key", "")
        if method != "GET":
            return reject("websocket upgrade requires GET", "ws")
        if faults.get("no_websocket"):
            return reject("unable to upgrade: websocket is disabled (fault no_websocket)", "ws")
        if WS_PROTOCOL not in offered:
            # the kubelet's own channel protocol; no subprotocol at all is binary
            protocol = next((p for p in offered if p in CHANNEL_PROTOCOLS), None)
            if offered and protocol is None:
                return reject("unable to upgrade: requested protocols %s not supported, "
                              "want one of %s" % (offered, [WS_PROTOCOL] +
                                                  list(CHANNEL_PROTOCOLS)), "ws")
            protocol = protocol or ""
        if not key:
            return reject("unable to upgrade: missing Sec-WebSocket-Key", "ws")
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        lines = ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket",
                 "Connection: Upgrade", "Sec-WebSocket-Accept: " + accept]
        if protocol is None:
            if not faults.get("no_protocol_header"):
                lines.append("Sec-WebSocket-Protocol: " + WS_PROTOCOL)
            transport = "ws"
        else:
            transport = "channel"
            if h.get("sec-websocket-version", "13").strip() != "13":
                return reject("unable to upgrade: Sec-WebSocket-Version must be 13",
                              transport)
            if faults.get("refuse_channel_ws"):
                return reject("upgrade refused (fault refuse_channel_ws)", transport,
                              403, "Forbidden")
            try:
                ports = parse_ports(query)
            except ValueError as e:
                return reject("unable to upgrade: %s" % e, transport)
            if protocol:
                lines.append("Sec-WebSocket-Protocol: " + protocol)
    elif "spdy/3.1" in upgrade:
        protos = _tokens(h.get("x-stream-protocol-version", ""))
        if faults.get("no_spdy"):
            return reject("unable to upgrade: SPDY is disabled (fault no_spdy)", "spdy")
        if SPDY_PROTOCOL not in protos:
            return reject("unable to upgrade: unable to negotiate protocol: client "
                          "supports %s, server accepts %s" % (protos, [SPDY_PROTOCOL]),
                          "spdy")
        lines = ["HTTP/1.1 101 Switching Protocols", "Connection: Upgrade",
                 "Upgrade: SPDY/3.1"]
        if not faults.get("no_protocol_header"):
            lines.append("X-Stream-Protocol-Version: " + SPDY_PROTOCOL)
        transport = "spdy"
    else:
        return reject("Upgrade request required", "none")

    try:
        conn.settimeout(None)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass
    if transport == "channel":
        tunnel = _ChannelTunnel(conn, rfile, protocol, ports, resolve, pod_key, faults, log)
    else:
        tunnel = _Tunnel(conn, rfile, transport, resolve, pod_key, faults, log)
    if registry is None:
        registry = TunnelRegistry()   # a private one: nobody can kill this tunnel
    registry.add(pod_key, tunnel)
    try:
        answered(101)
        try:
            conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        except OSError:
            tunnel.reason = "write failed"
            return
        opened = {"event": "portforward.open", "transport": transport, "pod": pod,
                  "session": h.get("kubectl-session")}
        if transport == "channel":
            opened.update(protocol=protocol, ports=ports)
        emit(opened)
        try:
            if transport == "channel":
                try:
                    tunnel.start()
                    tunnel.run()
                except _WsProtocolError as e:
                    tunnel.protocol_error(e)
            else:
                tunnel.run()
        except (EOFError, OSError, ValueError, struct.error, zlib.error) as e:
            with tunnel.slock:
                if tunnel.reason is None:
                    tunnel.reason = "eof" if isinstance(e, EOFError) else "%s: %s" % (
                        type(e).__name__, e)
    finally:
        try:
            tunnel.finish()
        finally:
            _shutdown_close(conn)     # even when finish() broke: never leave it open
            registry.remove(tunnel)
            emit(tunnel.summary())
