#!/usr/bin/env python3
"""A REAL gRPC server (Debian's python3-grpcio) for tests/unit/test_h2.c, with
bytes-in/bytes-out generic handlers, so no protoc is needed.

    grpc_echo.py [pings]

Needs grpcio: run with /usr/bin/python3 (it re-executes itself there when the
python3 on PATH lacks grpc). Listens on 127.0.0.1, port 0, prints "PORT <n>"
as its first stdout line (or "SKIP <why>" when grpc is missing) and exits when
its stdin reaches EOF or after 600 s.

With "pings", the server's ping policy lets clients ping every 100 ms
(grpc.http2.min_ping_interval_without_data_ms); without, it is gRPC's default
(5 minutes between pings while it sends nothing, 2 strikes, then GOAWAY
ENHANCE_YOUR_CALM "too_many_pings").

Methods of service test.Echo (requests are ASCII text where they carry numbers):
  Unary      answers the request bytes
  Stream     "N SIZE": N messages of SIZE bytes, message i filled with byte i % 251
  Status     "CODE text": aborts with that status code and message
  Sleep      "MS": sleeps MS milliseconds, then answers "slept"
  Count      answers the number of calls served so far (all methods)
"""
import os
import sys
import threading
import time

try:
    import grpc
except ImportError:
    if sys.executable != "/usr/bin/python3" and os.path.exists("/usr/bin/python3"):
        os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
    print("SKIP python3-grpcio is not installed", flush=True)
    sys.exit(0)

from concurrent import futures

CALLS = [0]
LOCK = threading.Lock()


def counted(fn):
    def wrap(req, ctx):
        with LOCK:
            CALLS[0] += 1
        return fn(req, ctx)
    return wrap


def unary(req, ctx):
    return req


def stream(req, ctx):
    n, size = (int(x) for x in req.decode().split())
    for i in range(n):
        yield bytes([i % 251]) * size


def status(req, ctx):
    code, _, text = req.decode("utf-8").partition(" ")
    for sc in grpc.StatusCode:
        if sc.value[0] == int(code):
            ctx.abort(sc, text)
    ctx.abort(grpc.StatusCode.UNKNOWN, "no such code " + code)


def sleep(req, ctx):
    time.sleep(int(req.decode()) / 1000.0)
    return b"slept"


def count(req, ctx):
    with LOCK:
        return str(CALLS[0]).encode()


def ident(b):
    return b


def main():
    def u(fn):
        return grpc.unary_unary_rpc_method_handler(counted(fn), request_deserializer=ident, response_serializer=ident)

    handlers = {
        "Unary": u(unary),
        "Status": u(status),
        "Sleep": u(sleep),
        "Count": u(count),
        "Stream": grpc.unary_stream_rpc_method_handler(counted(stream), request_deserializer=ident,
                                                       response_serializer=ident),
    }
    options = [("grpc.max_send_message_length", 64 * 1024 * 1024),
               ("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    if sys.argv[1:] == ["pings"]:
        options.append(("grpc.http2.min_ping_interval_without_data_ms", 100))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=40), options=options)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Echo", handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print("PORT %d" % port, flush=True)

    def watch_stdin():
        try:
            while sys.stdin.buffer.read(4096):
                pass
        finally:
            os._exit(0)

    threading.Thread(target=watch_stdin, daemon=True).start()
    time.sleep(600)
    os._exit(0)


if __name__ == "__main__":
    main()
