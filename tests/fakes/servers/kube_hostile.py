#!/usr/bin/env python3
"""A Kubernetes API server that misbehaves on purpose, for tests/unit/test_kube_hostile.c.

It serves just enough for sbx_open (API discovery, the warm-pool list, claim
create, claim watch, claim delete). The namespace in the request path picks the
misbehaviour of the watch (and of the pool list):

  garbage-watch   the watch stream carries a line that is not JSON
  huge-watch      one event line of 1 MiB with no newline
  silent-watch    the stream starts and then says nothing
  gone-watch      every watch answers an ERROR 410 event, even from scratch
  empty-watch     every watch ends at once without an event
  bad-name        Ready=True naming the sandbox "../../secret?x=1"
  ugly-status     Ready=False InvalidMetadata with control characters and a
                  5,000-character message
  bad-pools       the warm-pool list is not JSON
  http-500        claim create stores the claim, then answers 500 with a
                  text/plain body (every time)
  hostile-list    the claim list (sbx_list_claims) holds items with a name
                  that is not a string, no metadata, escapes, a 100 kB owner
                  host, owner pids that are not numbers or overflow, a bad
                  creationTimestamp, no namespace and duplicate keys

Claims are stored by name (GET serves them, DELETE removes them; a DELETE with
a UID precondition that does not match answers 409). `GET /_stats` answers
{"creates", "deletes", "watches", "live"} per namespace ("live": claims still
stored); the test uses it to check that a failed open deleted its claim and
that a misbehaving
watch was not retried in a tight loop. Prints `PORT n` once listening on
127.0.0.1; exits when its stdin closes (or after 120 s).
"""
import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STATS = {}
LOCK = threading.Lock()


CLAIMS = {}  # (ns, name) -> stored claim


def bump(ns, key, by=1):
    with LOCK:
        STATS.setdefault(ns, {"creates": 0, "deletes": 0, "watches": 0, "live": 0})[key] += by


# Raw text: duplicate keys and escapes are not expressible through json.dumps.
HOSTILE_LIST = (
    b'{"items":['
    b'{"metadata":{"name":7}},'
    b'{},'
    b'"not an object",'
    b'{"metadata":{"name":"a\\u0062c","namespace":"n\\u0073",'
    b'"creationTimestamp":"2026-12-04T10:00:00Z",'
    b'"annotations":{"sandbox.h/owner-host":"' + b"h" * 100000 + b'",'
    b'"sandbox.h/owner-pid":"12x","sandbox.h/owner-start":"99999999999999999999999"}},'
    b'"status":{"conditions":[{"type":"Ready","status":"True","reason":"R\\n1"}],'
    b'"sandbox":{"name":"s"}}},'
    b'{"metadata":{"name":"dup","name":"dup2","creationTimestamp":"yesterday",'
    b'"annotations":{"sandbox.h/owner-pid":"42","sandbox.h/owner-pid":"43","sandbox.h/owner-host":5}},'
    b'"status":{"conditions":[{"type":"Ready","status":"True"}]}}'
    b']}'
)

GROUP = {"kind": "APIGroup", "apiVersion": "v1", "versions": [{"groupVersion": "x/v1beta1", "version": "v1beta1"}]}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def send(self, code, obj=None, raw=None, ctype="application/json"):
        body = raw if raw is not None else json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def stream_start(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def do_GET(self):
        path = self.path.split("?")[0]
        if path == "/_stats":
            with LOCK:
                return self.send(200, STATS)
        if path in ("/apis/extensions.agents.x-k8s.io", "/apis/agents.x-k8s.io"):
            return self.send(200, GROUP)
        m = re.match(r"^/apis/[^/]+/v1beta1/namespaces/([^/]+)/(\w+)", path)
        if not m:
            return self.send(404, {"kind": "Status", "code": 404, "message": "no route " + path})
        ns, kind = m.group(1), m.group(2)
        if kind == "sandboxwarmpools":
            if ns == "bad-pools":
                return self.send(200, raw=b"<html>not json</html>", ctype="text/html")
            return self.send(200, {"items": [{"metadata": {"name": "p"},
                                              "spec": {"sandboxTemplateRef": {"name": "t"}, "replicas": 1},
                                              "status": {"readyReplicas": 1}}]})
        if kind == "sandboxclaims" and ns == "hostile-list" and path.endswith("/sandboxclaims"):
            return self.send(200, raw=HOSTILE_LIST)
        if kind == "sandboxclaims" and "watch=true" in self.path:
            bump(ns, "watches")
            return self.watch(ns)
        m = re.match(r"^/apis/[^/]+/v1beta1/namespaces/[^/]+/sandboxclaims/([^/]+)$", path)
        if m:
            with LOCK:
                obj = CLAIMS.get((ns, m.group(1)))
            if obj is not None:
                return self.send(200, obj)
        return self.send(404, {"kind": "Status", "code": 404, "message": "not found"})

    def watch(self, ns):
        def event(typ, obj):
            return (json.dumps({"type": typ, "object": obj}) + "\n").encode()
        claim = {"metadata": {"name": "c", "resourceVersion": "6"}}
        if ns == "gone-watch":
            self.stream_start()
            self.chunk(event("ERROR", {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"}))
            return self.chunk(b"")
        if ns == "empty-watch":
            self.stream_start()
            return self.chunk(b"")
        self.stream_start()
        if ns == "garbage-watch":
            self.chunk(b"this is not json\n")
        elif ns == "huge-watch":
            for _ in range(16):
                self.chunk(b"x" * 65536)
        elif ns == "bad-name":
            claim["status"] = {"sandbox": {"name": "../../secret?x=1"},
                               "conditions": [{"type": "Ready", "status": "True", "reason": "DependenciesReady"}]}
            self.chunk(event("MODIFIED", claim))
        elif ns == "ugly-status":
            claim["status"] = {"conditions": [{"type": "Ready", "status": "False", "reason": "InvalidMetadata",
                                               "message": "\x1b[31mred\x07\r\nnext " + "m" * 5000}]}
            self.chunk(event("MODIFIED", claim))
        # then say nothing until the client goes away (bounded)
        end = time.monotonic() + 10
        try:
            while time.monotonic() < end:
                time.sleep(0.05)
                self.wfile.write(b"")
                self.wfile.flush()
        except OSError:
            pass
        self.close_connection = True

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(n) or b"{}")
        m = re.match(r"^/apis/[^/]+/v1beta1/namespaces/([^/]+)/sandboxclaims$", self.path)
        ns = m.group(1) if m else "?"
        bump(ns, "creates")
        md = body.setdefault("metadata", {})
        md["resourceVersion"] = "5"
        md["uid"] = "uid-%s" % md.get("name")
        with LOCK:
            key = (ns, md.get("name"))
            if key in CLAIMS:
                exists = True
            else:
                exists = False
                CLAIMS[key] = body
        if not exists:
            bump(ns, "live")
        if ns == "http-500":
            return self.send(500, raw=b"internal \x1b[2J failure\n", ctype="text/plain")
        if exists:
            return self.send(409, {"kind": "Status", "code": 409, "reason": "AlreadyExists",
                                   "message": "sandboxclaims \"%s\" already exists" % key[1]})
        return self.send(201, body)

    def do_DELETE(self):
        n = int(self.headers.get("Content-Length") or 0)
        opts = json.loads(self.rfile.read(n) or b"{}")
        m = re.match(r"^/apis/[^/]+/v1beta1/namespaces/([^/]+)/sandboxclaims/([^/?]+)", self.path)
        ns, name = (m.group(1), m.group(2)) if m else ("?", "?")
        bump(ns, "deletes")
        uid = ((opts or {}).get("preconditions") or {}).get("uid")
        with LOCK:
            obj = CLAIMS.get((ns, name))
            if obj is not None and uid and obj["metadata"].get("uid") != uid:
                return self.send(409, {"kind": "Status", "code": 409, "message": "precondition failed"})
            if obj is not None:
                del CLAIMS[(ns, name)]
        if obj is not None:
            bump(ns, "live", -1)
        return self.send(200, {"kind": "Status", "status": "Success"})


class Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # clients that hang up mid-stream are part of the game


def main():
    srv = Server(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    print("PORT %d" % srv.server_address[1], flush=True)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if not sys.stdin.read(1):
                break
    except (OSError, ValueError):
        pass
    srv.shutdown()


if __name__ == "__main__":
    main()
