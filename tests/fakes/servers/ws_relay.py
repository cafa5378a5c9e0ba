#!/usr/bin/env python3
"""A kubelet-style WebSocket port-forward in front of one local TCP port, for
tests/unit/test_h2.c: gRPC over the in-process WebSocket route (sbx__ws as the
connection's transport) without a cluster. It is the dev cluster's own
port-forward (tests/devcluster/portforward.py), served alone (Python 3
standard library only).

    ws_relay.py TARGET_PORT

Listens on 127.0.0.1, port 0, prints "PORT <n>" and exits when its stdin
reaches EOF or after 600 s. Every upgrade request (any path, ?ports=P) is
forwarded: data for port P goes to 127.0.0.1:TARGET_PORT.
"""
import os
import socket
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "devcluster"))
import portforward  # noqa: E402

TARGET = int(sys.argv[1])
REGISTRY = portforward.TunnelRegistry()


def handle(conn):
    rfile = conn.makefile("rb")
    try:
        line = rfile.readline(65536).decode("latin-1")
        method, target, _ = line.split(" ", 2)
        headers = {}
        while True:
            h = rfile.readline(65536).decode("latin-1")
            if h in ("\r\n", "\n", ""):
                break
            k, _, v = h.partition(":")
            headers[k.strip().lower()] = v.strip()
        query = urllib.parse.urlsplit(target).query
        portforward.serve(conn, rfile, method, headers, lambda port: ("127.0.0.1", TARGET),
                          ("default", "relay", "uid-relay"), REGISTRY, query=query)
    except Exception as ex:  # a broken client: the test sees the connection end
        sys.stderr.write("ws_relay: %r\n" % (ex,))
    finally:
        try:
            conn.close()
        except OSError:
            pass


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
        c, _ = ls.accept()
        threading.Thread(target=handle, args=(c,), daemon=True).start()
    os._exit(0)


if __name__ == "__main__":
    main()
