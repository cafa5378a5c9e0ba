#!/usr/bin/python3
"""A gRPC client for the dev cluster's tests, driven over stdin/stdout.

The tests run on the stdlib-only interpreter; this runs under Debian's
/usr/bin/python3 with python3-grpcio (and python3-h2 for the raw HTTP/2
observations). One JSON object per line in, one per line out.

  {"op": "hello"}                                -> {"ok": true} or {"error": "..."}
  {"op": "connect", "target": "IP:PORT"}         new channel (the old one is closed)
  {"op": "unary", "method": M, "req": {...}, "timeout": S}
        -> {"code": "OK", "details": "", "resp": {...}}  (bytes fields base64)
  {"op": "start", "sid": NAME, "req": {...}, "timeout": S}  server stream in background
  {"op": "next", "sid": NAME, "wait": S}
        -> {"event": {...}} | {"end": {"code", "details"}} | {"idle": true}
  {"op": "cancel", "sid": NAME}
  {"op": "raw", "target": "IP:PORT", "method": M, "req": {...}, "headers": [[k, v]...],
   "settings": {"header_table_size": N}, "read": S, "window": N, "no_ack": bool}
        one call over a fresh TCP connection driven by python3-h2, recording what
        the server sent (frames are recorded even after h2 gave up on the
        connection, e.g. at a PING after GOAWAY); "no_ack": never open the
        flow-control window (a reader that stalls): {"frames": [{"type", "stream", "flags", "length",
        "size_updates": [...], "error_code", "last_stream_id"}...],
        "events": [...], "headers": [...], "trailers": [...], "messages": N,
        "message_bytes": [sizes]}
"""
import base64
import json
import os
import queue
import socket
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main():
    try:
        import grpc
        from google.protobuf import json_format
        import h2.connection                    # noqa: F401  (raw calls; fail early)
        import hyperframe.frame                 # noqa: F401
        import grpc_server
        pb = grpc_server.load_messages(os.environ.get(
            "DEVCLUSTER_GRPC_GEN", grpc_server.default_gen_dir()))
    except Exception as e:
        for line in sys.stdin:
            out({"error": "grpc unavailable: %s: %s" % (type(e).__name__, e)})
        return
    types = {"Execute": (pb.ExecuteRequest, pb.ExecuteResponse),
             "Start": (pb.StartRequest, pb.StartResponse),
             "WriteStdin": (pb.WriteStdinRequest, pb.WriteStdinResponse),
             "SendSignal": (pb.SendSignalRequest, pb.SendSignalResponse),
             "ResizeTTY": (pb.ResizeTTYRequest, pb.ResizeTTYResponse)}
    state = {"channel": None}
    streams = {}

    def to_dict(m):
        return json_format.MessageToDict(m, preserving_proto_field_name=True,
                                         including_default_value_fields=True)

    def call(method, kind):
        req_t, resp_t = types[method]
        mk = getattr(state["channel"], kind)
        return req_t, mk("/process.v1.ProcessService/" + method,
                         request_serializer=req_t.SerializeToString,
                         response_deserializer=resp_t.FromString)

    def pump(sid, it, q):
        try:
            for m in it:
                q.put({"event": to_dict(m)})
            q.put({"end": {"code": "OK", "details": ""}})
        except grpc.RpcError as e:
            q.put({"end": {"code": e.code().name, "details": e.details() or ""}})

    for line in sys.stdin:
        try:
            cmd = json.loads(line)
            op = cmd["op"]
            if op == "hello":
                out({"ok": True})
            elif op == "connect":
                if state["channel"] is not None:
                    state["channel"].close()
                state["channel"] = grpc.insecure_channel(cmd["target"], options=[
                    ("grpc.enable_retries", 0)])
                out({"ok": True})
            elif op == "unary":
                req_t, fn = call(cmd["method"], "unary_unary")
                req = json_format.ParseDict(cmd.get("req") or {}, req_t())
                try:
                    resp = fn(req, timeout=cmd.get("timeout", 30))
                    out({"code": "OK", "details": "", "resp": to_dict(resp)})
                except grpc.RpcError as e:
                    out({"code": e.code().name, "details": e.details() or ""})
            elif op == "start":
                req_t, fn = call("Start", "unary_stream")
                req = json_format.ParseDict(cmd.get("req") or {}, req_t())
                it = fn(req, timeout=cmd.get("timeout", 60))
                q = queue.Queue()
                streams[cmd["sid"]] = (it, q)
                threading.Thread(target=pump, args=(cmd["sid"], it, q), daemon=True).start()
                out({"ok": True})
            elif op == "next":
                it, q = streams[cmd["sid"]]
                try:
                    out(q.get(timeout=cmd.get("wait", 10)))
                except queue.Empty:
                    out({"idle": True})
            elif op == "cancel":
                it, q = streams[cmd["sid"]]
                it.cancel()
                out({"ok": True})
            elif op == "raw":
                out(raw_call(cmd, types, json_format))
            else:
                out({"error": "unknown op %r" % op})
        except Exception as e:          # report, keep serving
            out({"error": "%s: %s" % (type(e).__name__, e)})


def raw_call(cmd, types, json_format):
    """One call over a fresh connection with python3-h2, recording every frame."""
    import h2.config
    import h2.connection
    import h2.events
    import h2.settings
    from hyperframe.frame import Frame
    req_t, _ = types[cmd["method"]]
    body = json_format.ParseDict(cmd.get("req") or {}, req_t()).SerializeToString()
    host, port = cmd["target"].rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                               header_encoding=None))
    settings = {}
    if cmd.get("settings", {}).get("header_table_size") is not None:
        settings[h2.settings.SettingCodes.HEADER_TABLE_SIZE] = \
            cmd["settings"]["header_table_size"]
    conn.initiate_connection()
    if cmd.get("window"):                   # connection and stream windows
        settings[h2.settings.SettingCodes.INITIAL_WINDOW_SIZE] = min(int(cmd["window"]),
                                                                     2 ** 31 - 1)
    if settings:
        conn.update_settings(settings)
    if cmd.get("window"):
        conn.increment_flow_control_window(int(cmd["window"]))
    sid = conn.get_next_available_stream_id()
    headers = [(":method", "POST"), (":scheme", "http"),
               (":path", "/process.v1.ProcessService/" + cmd["method"]),
               (":authority", cmd["target"]), ("content-type", "application/grpc"),
               ("te", "trailers")] + [tuple(h) for h in cmd.get("headers") or []]
    conn.send_headers(sid, headers)
    conn.send_data(sid, b"\x00" + len(body).to_bytes(4, "big") + body, end_stream=True)
    s.sendall(conn.data_to_send())
    frames, events, hdrs, trailers, msgs = [], [], [], [], []
    buf = b""
    grpc_buf = bytearray()
    deadline = time.monotonic() + float(cmd.get("read", 5))
    ended = False
    h2_ok = True
    while time.monotonic() < deadline and not ended:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = s.recv(65536)
        except socket.timeout:
            break
        except OSError as e:
            events.append({"type": "socket_error", "error": str(e)})
            break
        if not data:
            events.append({"type": "eof"})
            break
        buf += data
        while len(buf) >= 9:
            n = int.from_bytes(buf[:3], "big")
            if len(buf) < 9 + n:
                break
            raw, buf = buf[:9 + n], buf[9 + n:]
            f, length = Frame.parse_frame_header(memoryview(raw[:9]))
            f.parse_body(memoryview(raw[9:]))
            rec = {"type": type(f).__name__.replace("Frame", "").upper(),
                   "stream": f.stream_id, "flags": sorted(f.flags), "length": length}
            if rec["type"] == "HEADERS":
                blk = f.data
                ups = []
                i = 0
                while i < len(blk) and (blk[i] & 0xE0) == 0x20:   # 001xxxxx size update
                    v = blk[i] & 0x1F
                    i += 1
                    if v == 0x1F:
                        m = 0
                        while True:
                            b = blk[i]
                            i += 1
                            v += (b & 0x7F) << m
                            m += 7
                            if not b & 0x80:
                                break
                    ups.append(v)
                rec["size_updates"] = ups
            if rec["type"] == "RSTSTREAM":
                rec["error_code"] = f.error_code
            if rec["type"] == "GOAWAY":
                rec["error_code"] = f.error_code
                rec["last_stream_id"] = f.last_stream_id
            if rec["type"] == "DATA" and f.stream_id == sid:
                # gRPC messages from the frames themselves, so they are counted even
                # after h2 stopped following the connection
                grpc_buf += f.data
                while len(grpc_buf) >= 5 and \
                        len(grpc_buf) >= 5 + int.from_bytes(grpc_buf[1:5], "big"):
                    n = int.from_bytes(grpc_buf[1:5], "big")
                    msgs.append(n)
                    del grpc_buf[:5 + n]
            if f.stream_id == sid and ("END_STREAM" in f.flags or rec["type"] == "RSTSTREAM"):
                ended = True
            frames.append(rec)
        if not h2_ok:
            continue
        try:
            evs = conn.receive_data(data)
        except Exception as e:
            events.append({"type": "protocol_error", "error": "%s: %s" % (type(e).__name__, e)})
            h2_ok = False
            continue
        for ev in evs:
            name = type(ev).__name__
            if isinstance(ev, h2.events.ResponseReceived):
                hdrs.append([[k.decode(errors="replace"), v.decode(errors="replace")]
                             for k, v in ev.headers])
            elif isinstance(ev, h2.events.TrailersReceived):
                trailers.append([[k.decode(errors="replace"), v.decode(errors="replace")]
                                 for k, v in ev.headers])
            elif isinstance(ev, h2.events.DataReceived):
                if not cmd.get("no_ack"):
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamReset):
                events.append({"type": name, "error_code": int(ev.error_code)})
            elif isinstance(ev, h2.events.ConnectionTerminated):
                events.append({"type": name, "error_code": int(ev.error_code),
                               "last_stream_id": ev.last_stream_id})
            elif isinstance(ev, h2.events.StreamEnded):
                events.append({"type": name})
        pending = conn.data_to_send()
        if pending:
            try:
                s.sendall(pending)
            except OSError:
                pass
    s.close()
    return {"frames": frames, "events": events, "headers": hdrs, "trailers": trailers,
            "messages": len(msgs), "message_bytes": msgs}


if __name__ == "__main__":
    main()
