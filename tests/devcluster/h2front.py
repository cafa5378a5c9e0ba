"""python3-h2 front for the gRPC faults grpcio cannot be made to commit.

grpc_server.py hands a connection to FaultFront.serve when one of the
connection-level knobs (grpc_rst_stream, grpc_deadline, grpc_hpack_updates)
is on for the pod as the connection is accepted. The HTTP/2 side is
python3-h2 (with python3-hpack); every call is relayed to the real grpcio
server through a grpcio client channel, so statuses, messages and process
semantics are grpcio's and only the framing/HPACK/timing are the fault's.

Why not grpcio: its server answers an expired deadline itself (so a client's
deadline never has to fire), ends calls with trailers rather than
RST_STREAM, and chooses its own HPACK encoding.
"""
import random
import string
import threading
import time
import urllib.parse

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions

from grpc_server import knob_dict

STREAMING = {"/process.v1.ProcessService/Start"}
TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


def _parse_timeout(v):
    try:
        return int(v[:-1]) * TIMEOUT_UNITS[v[-1]]
    except (KeyError, ValueError, IndexError):
        return None


def _pct(s):
    return urllib.parse.quote(s, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~")


class _Conn:
    def __init__(self, front, sock, knobs):
        self.front, self.sock, self.knobs = front, sock, knobs
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=False, header_encoding=None))
        self.lock = threading.Condition()
        self.closed = False
        self.reqs = {}                      # stream id -> {"headers", "body"}
        self.calls = {}                     # stream id -> grpcio call (to cancel)
        self.channel = front.grpc.insecure_channel(front.upstream.target)
        self.fill_seq = 0
        self.last_fill = []

    # ---- output (h2 is not thread-safe: every use is under self.lock)
    def _flush(self):
        data = self.h2.data_to_send()
        if data:
            try:
                self.sock.sendall(data)
            except OSError:
                self.closed = True

    def _fill_headers(self, n, size, repeat=()):
        out = list(repeat)
        for _ in range(n):
            self.fill_seq += 1
            val = "".join(random.choice(string.ascii_letters) for _ in range(size))
            out.append(("x-devcluster-fill-%d" % self.fill_seq, val))
        return out

    def _headers(self, sid, headers, end_stream=False, trailers=False):
        hp = self.knobs.get("grpc_hpack_updates")
        if hp:
            hp = knob_dict(hp, headers=24, value_bytes=180)
            enc = self.h2.encoder
            peer = self.h2.remote_settings.header_table_size
            # RFC 7541 4.2: at most two updates (the smallest, then the final size);
            # h2 may have queued one for the peer's SETTINGS, which ours supersede
            enc.table_size_changes = []
            if not trailers:
                enc.header_table_size = 0           # two updates: flush, then the maximum
                enc.header_table_size = peer
                fill = self._fill_headers(int(hp["headers"]), int(hp["value_bytes"]))
                self.last_fill = fill
            else:
                enc.header_table_size = peer // 2   # shrink (evicts), then reuse what is left
                fill = self._fill_headers(int(hp["headers"]) // 4, int(hp["value_bytes"]),
                                          self.last_fill[-4:])
            headers = headers + fill
        with self.lock:
            if self.closed:
                return False
            try:
                self.h2.send_headers(sid, headers, end_stream=end_stream)
            except h2.exceptions.ProtocolError:
                return False
            self._flush()
            return not self.closed

    def _data(self, sid, data, end_stream=False):
        view = memoryview(data)
        with self.lock:
            while True:
                if self.closed:
                    return False
                try:
                    w = min(self.h2.local_flow_control_window(sid), self.h2.max_outbound_frame_size)
                except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                    return False
                if w <= 0 and len(view):
                    self.lock.wait(1.0)
                    continue
                chunk, view = view[:w], view[w:]
                try:
                    self.h2.send_data(sid, chunk.tobytes(), end_stream=end_stream and not len(view))
                except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                    return False
                self._flush()
                if not len(view):
                    return True

    def _reset(self, sid, code):
        with self.lock:
            try:
                self.h2.reset_stream(sid, error_code=code)
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                pass
            self._flush()

    # ---- input
    def run(self):
        self.h2.initiate_connection()
        with self.lock:
            self._flush()
        try:
            while not self.closed:
                try:
                    data = self.sock.recv(65536)
                except OSError:
                    break
                if not data:
                    break
                with self.lock:
                    try:
                        events = self.h2.receive_data(data)
                    except h2.exceptions.ProtocolError:
                        self._flush()
                        break
                    self._flush()
                    self.lock.notify_all()      # a WINDOW_UPDATE / SETTINGS may have arrived
                for ev in events:
                    self._event(ev)
        finally:
            with self.lock:
                self.closed = True
                self.lock.notify_all()
                calls = list(self.calls.values())
            for c in calls:
                c.cancel()
            try:
                self.sock.close()
            except OSError:
                pass
            self.channel.close()

    def _event(self, ev):
        if isinstance(ev, h2.events.RequestReceived):
            self.reqs[ev.stream_id] = {"headers": dict(ev.headers), "body": b"",
                                       "t0": time.monotonic()}
        elif isinstance(ev, h2.events.DataReceived):
            r = self.reqs.get(ev.stream_id)
            if r is not None:
                r["body"] += ev.data
            with self.lock:
                try:
                    self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                    pass
                self._flush()
        elif isinstance(ev, h2.events.StreamEnded):
            r = self.reqs.pop(ev.stream_id, None)
            if r is not None:
                threading.Thread(target=self._call, args=(ev.stream_id, r), daemon=True,
                                 name="h2call-%d" % ev.stream_id).start()
        elif isinstance(ev, h2.events.StreamReset):
            self.reqs.pop(ev.stream_id, None)
            with self.lock:
                c = self.calls.get(ev.stream_id)
            if c is not None:
                c.cancel()

    # ---- one call, relayed to grpcio
    def _call(self, sid, r):
        grpc = self.front.grpc
        hdr = {k.decode(errors="replace"): v.decode(errors="replace")
               for k, v in r["headers"].items()}
        path = hdr.get(":path", "")
        body = r["body"]
        msg = body[5:5 + int.from_bytes(body[1:5], "big")] if len(body) >= 5 else b""
        timeout = _parse_timeout(hdr.get("grpc-timeout", "")) if hdr.get("grpc-timeout") else None
        dl = self.knobs.get("grpc_deadline")
        hold_until = None
        if dl:
            dl = knob_dict(dl, extra_ms=1000)
            if timeout is not None:
                hold_until = r["t0"] + timeout + float(dl["extra_ms"]) / 1000.0
            timeout = None                  # the server ignores the deadline
        rst = self.knobs.get("grpc_rst_stream")
        if rst:
            rst = knob_dict(rst if isinstance(rst, dict) else
                            {"code": rst if isinstance(rst, int) and rst is not True else 8},
                            code=8, after_messages=0)
        ident = (lambda b: b)
        if path in STREAMING:
            call = self.channel.unary_stream(path, request_serializer=ident,
                                             response_deserializer=ident)(msg, timeout=timeout)
        else:
            call = self.channel.unary_unary(path, request_serializer=ident,
                                            response_deserializer=ident).future(msg,
                                                                                timeout=timeout)
        with self.lock:
            self.calls[sid] = call
        sent_headers = False
        n = 0
        status, details = 0, ""
        try:
            try:
                it = call if path in STREAMING else iter([call.result()])
                for m in it:
                    if not sent_headers:
                        if not self._headers(sid, [(":status", "200"),
                                                   ("content-type", "application/grpc")]):
                            return
                        sent_headers = True
                    if rst and n >= int(rst["after_messages"]):
                        break
                    if not self._data(sid, b"\x00" + len(m).to_bytes(4, "big") + m):
                        return
                    n += 1
            except grpc.RpcError as e:
                status, details = e.code().value[0], e.details() or ""
            if rst:
                if not sent_headers:
                    self._headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
                self._reset(sid, int(rst["code"]))
                self.front.log("h2front: RST_STREAM(%d) on stream %d after %d messages"
                               % (int(rst["code"]), sid, n))
                return
            if hold_until is not None:
                while time.monotonic() < hold_until and not self.closed:
                    time.sleep(min(0.05, max(0.0, hold_until - time.monotonic())))
            trailers = [("grpc-status", str(status))]
            if details:
                trailers.append(("grpc-message", _pct(details)))
            if not sent_headers:                # Trailers-Only
                self._headers(sid, [(":status", "200"), ("content-type", "application/grpc")]
                              + trailers, end_stream=True)
            else:
                self._headers(sid, trailers, end_stream=True, trailers=True)
        finally:
            call.cancel()
            with self.lock:
                self.calls.pop(sid, None)


class FaultFront:
    def __init__(self, grpc, upstream, log):
        self.grpc, self.upstream, self.log = grpc, upstream, log

    def serve(self, sock, knobs):
        self.log("h2front: connection with %s" % sorted(k for k in knobs if k.startswith("grpc_")))
        _Conn(self, sock, knobs).run()
