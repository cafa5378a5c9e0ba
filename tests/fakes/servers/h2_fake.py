#!/usr/bin/env python3
"""A hostile HTTP/2 server for tests/unit/test_h2.c, built on python3-h2 (the
connection state machine, SETTINGS, flow control of what we receive) with raw
frames where a scenario needs what h2 would refuse to send.

    h2_fake.py

Needs h2 and hpack: run with /usr/bin/python3 (it re-executes itself there when
the python3 on PATH lacks them). Listens on 127.0.0.1, port 0, prints
"PORT <n>" as its first stdout line (or "SKIP <why>") and exits when its stdin
reaches EOF or after 600 s.

Each connection plays one scenario, named by the last path segment of its
first request (POST /fake.H2/<scenario>); requests are gRPC-framed, and "the
echo" is one gRPC message carrying the request message back, then trailers
with grpc-status 0. Scenarios:
  ok             the echo, raw frames
  padding        HEADERS (PADDED|PRIORITY), DATA and trailers all padded
  continuation   response headers and trailers split over CONTINUATION frames
  hpack_update   blocks opening with size updates (0, then 4096), many indexed
                 fields that evict each other, later blocks referring to them
  hpack_over     a size update to 65536 (more than we allow): COMPRESSION_ERROR
  goaway         waits for two calls; answers stream 1 with one message, sends
                 GOAWAY(last 1, NO_ERROR, "going away"), then stream 1's trailers
  goaway_hold    response headers, GOAWAY(last 1, NO_ERROR, "draining"), one
                 message; 2 s later a second message and the trailers (a client
                 holding the first message has seen the GOAWAY)
  rst            one message, then RST_STREAM(INTERNAL_ERROR); later calls on the
                 connection get the echo
  refused        RST_STREAM(REFUSED_STREAM) at once
  window         our INITIAL_WINDOW_SIZE is 1000 (a big request must wait for
                 our WINDOW_UPDATEs); answers 64 messages of 16 KiB and the
                 first 10 request bytes through h2's flow control (so the
                 client must give window back)
  window_stuck   INITIAL_WINDOW_SIZE 1000; the echo on stream 1, then no
                 WINDOW_UPDATE ever (a later big request must time out)
  ping           100 PINGs first; answers only once all are acked, else
                 grpc-status 13
  settings       new SETTINGS (MAX_FRAME_SIZE 65536, INITIAL_WINDOW_SIZE
                 70000, HEADER_TABLE_SIZE 100); answers after the ack, else 13
  oversize       a message prefix of 5 MiB (then the connection serves on)
  compressed     a message with the compressed flag
  trailers_only  HEADERS with grpc-status 5 and a percent-encoded grpc-message
  http503        :status 503, no grpc-status
  status_long    trailers whose grpc-status is 20 digits (an int would
                 overflow reading it)
  silent         never answers (but h2 still acks PINGs while it waits)
  dead           response headers, then reads nothing and answers nothing
                 (PINGs included) for 30 s with the connection open: a peer
                 that vanished without FIN or RST
  quiet          response headers, then nothing for the request's "MS"
                 milliseconds while PINGs are acked (by h2); then one message
                 with the number of PINGs received on the connection, and OK
  late_ack       response headers; reads nothing for the request's "MS"
                 milliseconds (PINGs wait), then acks them (h2) for 0.5 s; then
                 a message with the number of PINGs, and OK
  count          the echo of the number of PINGs received on the connection
  calm           response headers; at the first PING, as grpc-go's ping
                 policy does: GOAWAY(last = this stream, ENHANCE_YOUR_CALM,
                 "too_many_pings"), then the connection closes (no trailers)
  stray_ack      two PING acks nobody asked for (opaque "notours!", and "sbxk"
                 with counter 99), then the echo
  wrong_ack      response headers; for "MS" ms every PING is answered with an
                 ack of other opaque data ("wrongack"), never its own; then a
                 message with the number of PINGs, and OK
  eof_mid        response headers and half a message, then the socket closes
  bad_frame      DATA on stream 0
  big_frame      a frame of 20000 bytes (more than our 16384)
  push           a PUSH_PROMISE
"""
import os
import socket
import struct
import sys
import threading
import time

try:
    import h2.config
    import h2.connection
    import h2.events
    import h2.settings
    import hpack
except ImportError:
    if sys.executable != "/usr/bin/python3" and os.path.exists("/usr/bin/python3"):
        os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
    print("SKIP python3-h2 / python3-hpack are not installed", flush=True)
    sys.exit(0)

DATA, HEADERS, PRIORITY, RST, SETTINGS, PUSH, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, END_HEADERS, PADDED, PRIO = 0x1, 0x4, 0x8, 0x20


def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


def grpc_msg(payload, flag=0):
    return bytes([flag]) + struct.pack(">I", len(payload)) + payload


RESP = [(b":status", b"200"), (b"content-type", b"application/grpc")]
OK_TRAILERS = [(b"grpc-status", b"0")]


class Conn:
    def __init__(self, sock):
        self.sock = sock
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
        self.enc = hpack.Encoder()
        self.scenario = None
        self.reqs = {}
        self.order = []
        self.ping_acks = 0
        self.pings = 0
        self.settings_acked = 0
        self.window_updates = 0
        self.closed = False

    def flush(self):
        out = self.h2.data_to_send()
        if out:
            self.sock.sendall(out)

    def raw(self, b):
        self.flush()
        self.sock.sendall(b)

    def block(self, headers):
        return self.enc.encode(headers, huffman=True)

    def headers(self, sid, headers, end=False):
        self.raw(frame(HEADERS, END_HEADERS | (END_STREAM if end else 0), sid, self.block(headers)))

    def echo(self, sid, body):
        self.headers(sid, RESP)
        m = grpc_msg(body)
        for i in range(0, len(m), 16384):  # the client's SETTINGS_MAX_FRAME_SIZE
            self.raw(frame(DATA, 0, sid, m[i:i + 16384]))
        self.headers(sid, OK_TRAILERS, end=True)

    def pump(self, until, timeout=5.0):
        """Read and dispatch until until() or the timeout."""
        end = time.time() + timeout
        while not until() and time.time() < end and not self.closed:
            self.sock.settimeout(max(0.01, end - time.time()))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                self.closed = True
                return
            if not data:
                self.closed = True
                return
            self.feed(data)
        self.sock.settimeout(None)

    def feed(self, data):
        try:
            events = self.h2.receive_data(data)
        except Exception as ex:  # the client broke a rule h2 checks: say so, end
            sys.stderr.write("h2_fake: %s: %r\n" % (self.scenario, ex))
            self.closed = True
            return
        for ev in events:
            if isinstance(ev, h2.events.RequestReceived):
                hd = dict(ev.headers)
                path = hd.get(b":path", b"/").decode()
                if self.scenario is None:
                    self.scenario = path.rsplit("/", 1)[-1]
                self.reqs[ev.stream_id] = {"path": path, "data": b"", "ended": False, "headers": hd}
            elif isinstance(ev, h2.events.DataReceived):
                r = self.reqs.get(ev.stream_id)
                if r is not None:
                    r["data"] += ev.data
                if self.scenario != "window_stuck" or ev.stream_id == 1:
                    self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                r = self.reqs.get(ev.stream_id)
                if r is not None:
                    r["ended"] = True
                    self.order.append(ev.stream_id)
            elif isinstance(ev, h2.events.PingAckReceived):
                self.ping_acks += 1
            elif isinstance(ev, h2.events.PingReceived):
                self.pings += 1
            elif isinstance(ev, h2.events.SettingsAcknowledged):
                self.settings_acked += 1
            elif isinstance(ev, h2.events.WindowUpdated):
                self.window_updates += 1
        self.flush()

    def request_body(self, sid):
        d = self.reqs[sid]["data"]
        return d[5:] if len(d) >= 5 else b""


def serve(sock):
    try:
        serve_one(sock)
    except OSError as ex:  # the client went away mid-scenario: that is its right
        sys.stderr.write("h2_fake: connection ended: %r\n" % (ex,))
    finally:
        try:
            sock.close()
        except OSError:
            pass


def serve_one(sock):
    c = Conn(sock)
    first_settings = {h2.settings.SettingCodes.ENABLE_PUSH: 0}
    peek = b""
    # the scenario decides our first SETTINGS, so read the request first
    sock.settimeout(10)
    name = None
    try:
        while name is None:
            d = sock.recv(65536)
            if not d:
                return
            peek += d
            if len(peek) > 1 << 20:
                return
            name = scenario_of(peek)
    except OSError:
        return
    if name in ("window", "window_stuck"):
        first_settings[h2.settings.SettingCodes.INITIAL_WINDOW_SIZE] = 1000
    c.h2.local_settings = h2.settings.Settings(client=False, initial_values=first_settings)
    c.h2.initiate_connection()
    c.flush()
    c.feed(peek)
    handled = set()
    while not c.closed:
        c.pump(lambda: any(s not in handled for s in c.order), timeout=30)
        todo = [s for s in c.order if s not in handled]
        if not todo:
            if c.closed:
                break
            continue
        for sid in todo:
            handled.add(sid)
            if not scenario(c, sid, handled):
                try:
                    time.sleep(0.2)
                    sock.close()
                except OSError:
                    pass
                return
    sock.close()


def scenario_of(peek):
    """The last path segment of the first request in the client's bytes."""
    i = peek.find(b"\r\n\r\nSM\r\n\r\n")
    if i < 0:
        return None
    i += 10
    dec = hpack.Decoder()
    while i + 9 <= len(peek):
        ln = int.from_bytes(peek[i:i + 3], "big")
        ftype = peek[i + 3]
        if ftype == HEADERS:
            try:
                hd = dict(dec.decode(peek[i + 9:i + 9 + ln], raw=True))
                return hd.get(b":path", b"/").decode().rsplit("/", 1)[-1]
            except Exception:
                return ""
        i += 9 + ln
    return None


def scenario(c, sid, handled):
    """Answer stream sid; False ends the connection."""
    name = c.scenario
    body = c.request_body(sid)
    if name == "ok" or c.reqs[sid]["path"].endswith("/ok"):
        c.echo(sid, body)
    elif name == "padding":
        blk = c.block(RESP)
        c.raw(frame(HEADERS, END_HEADERS | PADDED | PRIO, sid, bytes([7]) + b"\x00\x00\x00\x00\x10" + blk + b"\0" * 7))
        m = grpc_msg(body)
        third = max(1, len(m) // 3)
        parts = [m[:third], m[third:2 * third], m[2 * third:]]
        for k, p in enumerate(parts):
            c.raw(frame(DATA, PADDED, sid, bytes([k * 50]) + p + b"\0" * (k * 50)))
        c.raw(frame(DATA, PADDED, sid, bytes([0])))  # padding only, empty
        blk = c.block(OK_TRAILERS)
        c.raw(frame(HEADERS, END_HEADERS | END_STREAM | PADDED, sid, bytes([255]) + blk + b"\0" * 255))
    elif name == "continuation":
        hd = RESP + [(b"x-long-%d" % i, b"v" * 500) for i in range(20)]
        blk = c.block(hd)
        step = len(blk) // 4 + 1
        chunks = [blk[i:i + step] for i in range(0, len(blk), step)]
        c.raw(frame(HEADERS, 0, sid, chunks[0]))
        for k, ch in enumerate(chunks[1:]):
            c.raw(frame(CONTINUATION, END_HEADERS if k == len(chunks) - 2 else 0, sid, ch))
        c.raw(frame(DATA, 0, sid, grpc_msg(body)))
        blk = c.block(OK_TRAILERS + [(b"x-trailer", b"t" * 100)])
        c.raw(frame(HEADERS, END_STREAM, sid, blk[:3]))
        c.raw(frame(CONTINUATION, 0, sid, blk[3:5]))
        c.raw(frame(CONTINUATION, 0, sid, b""))
        c.raw(frame(CONTINUATION, END_HEADERS, sid, blk[5:]))
    elif name == "hpack_update":
        c.enc.header_table_size = 0
        c.enc.header_table_size = 4096
        hd = RESP + [(b"x-fill-%d" % i, (b"%d" % i) * 300) for i in range(30)]
        blk = b"\x20" + c.block(hd)  # size 0, then the encoder's own 4096
        c.raw(frame(HEADERS, END_HEADERS, sid, blk))
        c.raw(frame(DATA, 0, sid, grpc_msg(body)))
        # the same fields again: the encoder refers to what survived in the table
        c.raw(frame(HEADERS, END_HEADERS | END_STREAM, sid,
                    c.block(OK_TRAILERS + [(b"x-fill-%d" % i, (b"%d" % i) * 300) for i in range(25, 30)])))
    elif name == "hpack_over":
        c.raw(frame(HEADERS, END_HEADERS, sid, b"\x3f\xe1\xff\x03" + c.block(RESP)))  # 31 + 65505 = 65536
        c.pump(lambda: False, timeout=1.0)
        return False
    elif name == "goaway":
        if len(handled) < 2:
            return True  # wait for the second call
        first = min(handled)
        c.headers(first, RESP)
        c.raw(frame(DATA, 0, first, grpc_msg(c.request_body(first))))
        c.raw(frame(GOAWAY, 0, 0, struct.pack(">II", first, 0) + b"going away"))
        c.headers(first, OK_TRAILERS, end=True)
        c.pump(lambda: False, timeout=0.5)
        return False
    elif name == "goaway_hold":
        c.headers(sid, RESP)
        c.raw(frame(GOAWAY, 0, 0, struct.pack(">II", sid, 0) + b"draining"))
        c.raw(frame(DATA, 0, sid, grpc_msg(body)))
        c.pump(lambda: False, timeout=2.0)
        c.raw(frame(DATA, 0, sid, grpc_msg(body)))
        c.headers(sid, OK_TRAILERS, end=True)
        c.pump(lambda: False, timeout=0.5)
        return False
    elif name == "rst":
        if sid == 1:
            c.headers(sid, RESP)
            c.raw(frame(DATA, 0, sid, grpc_msg(body)))
            c.raw(frame(RST, 0, sid, struct.pack(">I", 2)))
        else:
            c.echo(sid, body)
    elif name == "refused":
        c.raw(frame(RST, 0, sid, struct.pack(">I", 7)))
    elif name == "window":
        c.h2.send_headers(sid, RESP)
        c.flush()
        out = b"".join(grpc_msg(bytes([i % 251]) * 16384) for i in range(64)) + grpc_msg(body[:10])
        while out and not c.closed:
            room = min(c.h2.local_flow_control_window(sid), c.h2.max_outbound_frame_size, len(out))
            if room <= 0:
                seen = c.window_updates
                c.pump(lambda: c.window_updates > seen, timeout=5)
                if c.window_updates == seen:
                    return False
                continue
            c.h2.send_data(sid, out[:room])
            out = out[room:]
            c.flush()
        c.h2.send_headers(sid, OK_TRAILERS, end_stream=True)
        c.flush()
    elif name == "window_stuck":
        if sid == 1:
            c.echo(sid, body)
        else:
            c.pump(lambda: False, timeout=3)
            return False
    elif name == "ping":
        for i in range(100):
            c.raw(frame(PING, 0, 0, struct.pack(">Q", i)))
        c.pump(lambda: c.ping_acks >= 100, timeout=5)
        if c.ping_acks >= 100:
            c.echo(sid, body)
        else:
            c.headers(sid, RESP + [(b"grpc-status", b"13"), (b"grpc-message", b"%d ping acks" % c.ping_acks)], end=True)
    elif name == "settings":
        if sid == 1:
            c.h2.update_settings({h2.settings.SettingCodes.MAX_FRAME_SIZE: 65536,
                                  h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 70000,
                                  h2.settings.SettingCodes.HEADER_TABLE_SIZE: 100})
            c.flush()
            c.pump(lambda: c.settings_acked >= 2, timeout=5)
        if c.settings_acked >= 2:
            c.echo(sid, body)
        else:
            c.headers(sid, RESP + [(b"grpc-status", b"13"), (b"grpc-message", b"settings not acked")], end=True)
    elif name == "oversize":
        if sid == 1:
            c.headers(sid, RESP)
            c.raw(frame(DATA, 0, sid, b"\0" + struct.pack(">I", 5 << 20) + b"x" * 1000))
        else:
            c.echo(sid, body)
    elif name == "compressed":
        c.headers(sid, RESP)
        c.raw(frame(DATA, 0, sid, grpc_msg(body, flag=1)))
        c.headers(sid, OK_TRAILERS, end=True)
    elif name == "trailers_only":
        c.headers(sid, RESP + [(b"grpc-status", b"5"),
                               (b"grpc-message", b"no%20such%20thing%3A%20%E2%9C%93%2E")], end=True)
    elif name == "status_long":
        c.headers(sid, RESP)
        c.raw(frame(DATA, 0, sid, grpc_msg(body)))
        c.headers(sid, [(b"grpc-status", b"9" * 20)], end=True)
    elif name == "http503":
        c.headers(sid, [(b":status", b"503"), (b"content-type", b"text/plain")], end=True)
    elif name == "silent":
        c.pump(lambda: False, timeout=10)
        return False
    elif name == "dead":
        c.headers(sid, RESP)
        time.sleep(30)  # no recv: the client's PINGs sit unread in our socket
        return False
    elif name == "quiet":
        c.headers(sid, RESP)
        c.pump(lambda: False, timeout=int(body) / 1000.0)
        c.raw(frame(DATA, 0, sid, grpc_msg(b"%d" % c.pings)))
        c.headers(sid, OK_TRAILERS, end=True)
    elif name == "late_ack":
        c.headers(sid, RESP)
        time.sleep(int(body) / 1000.0)
        c.pump(lambda: False, timeout=0.5)
        c.raw(frame(DATA, 0, sid, grpc_msg(b"%d" % c.pings)))
        c.headers(sid, OK_TRAILERS, end=True)
    elif name == "count":
        c.echo(sid, b"%d" % c.pings)
    elif name == "calm":
        c.headers(sid, RESP)
        c.pump(lambda: c.pings > 0, timeout=10)
        c.raw(frame(GOAWAY, 0, 0, struct.pack(">II", sid, 11) + b"too_many_pings"))
        time.sleep(0.1)
        return False
    elif name == "stray_ack":
        c.raw(frame(PING, 1, 0, b"notours!"))
        c.raw(frame(PING, 1, 0, b"sbxk" + struct.pack(">I", 99)))
        c.echo(sid, body)
    elif name == "wrong_ack":
        # past h2 from here on (it would ack with the right data): raw frames
        c.headers(sid, RESP)
        buf, pings, end = b"", 0, time.time() + int(body) / 1000.0
        while time.time() < end:
            c.sock.settimeout(max(0.01, end - time.time()))
            try:
                d = c.sock.recv(65536)
            except socket.timeout:
                continue
            if not d:
                return False
            buf += d
            while len(buf) >= 9 and len(buf) >= 9 + int.from_bytes(buf[:3], "big"):
                ln = int.from_bytes(buf[:3], "big")
                if buf[3] == PING and not buf[4] & 1:
                    pings += 1
                    c.sock.sendall(frame(PING, 1, 0, b"wrongack"))
                buf = buf[9 + ln:]
        c.sock.settimeout(None)
        c.raw(frame(DATA, 0, sid, grpc_msg(b"%d" % pings)))
        c.headers(sid, OK_TRAILERS, end=True)
        c.pump(lambda: False, timeout=0.3)
        return False
    elif name == "eof_mid":
        c.headers(sid, RESP)
        c.raw(frame(DATA, 0, sid, grpc_msg(b"y" * 100)[:50]))
        return False
    elif name == "bad_frame":
        c.raw(frame(DATA, 0, 0, b"zzz"))
        c.pump(lambda: False, timeout=1.0)
        return False
    elif name == "big_frame":
        c.raw(frame(DATA, 0, sid, b"\0" * 20000))
        c.pump(lambda: False, timeout=1.0)
        return False
    elif name == "push":
        c.raw(frame(PUSH, END_HEADERS, sid, struct.pack(">I", 2) + c.block([(b":method", b"GET")])))
        c.pump(lambda: False, timeout=1.0)
        return False
    else:
        c.headers(sid, RESP + [(b"grpc-status", b"12"), (b"grpc-message", b"no scenario " + name.encode())], end=True)
    return True


def main():
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(64)
    print("PORT %d" % ls.getsockname()[1], flush=True)

    def watch_stdin():
        try:
            while sys.stdin.buffer.read(4096):
                pass
        finally:
            os._exit(0)

    threading.Thread(target=watch_stdin, daemon=True).start()
    deadline = time.time() + 600
    while time.time() < deadline:
        s, _ = ls.accept()
        threading.Thread(target=serve, args=(s,), daemon=True).start()
    os._exit(0)


if __name__ == "__main__":
    main()
