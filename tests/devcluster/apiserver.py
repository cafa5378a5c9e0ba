"""The dev cluster's Kubernetes API server (HTTP/1.1 keep-alive, one thread per
connection, TCP_NODELAY, optional TLS + bearer token).

Serves what the real kubectl and our library use:
  /version (v1.32.x, so the gcloud kubectl dispatcher runs its built-in 1.32
  binary), /healthz /livez /readyz, legacy discovery (/api, /api/v1, /apis,
  /apis/G, /apis/G/V; plain JSON, which kubectl accepts instead of aggregated
  discovery), and for every resource of resources.Registry:
    GET (get / list / watch), POST (create, generateName), PUT (update,
    optimistic lock), PATCH (merge-patch, json-patch; strategic merge is
    accepted for core types only, like a real server for CRDs), DELETE
    (propagationPolicy from query or DeleteOptions body; default Background),
    DELETE on a collection; subresources status, scale (warm pools, v1alpha1
    sandboxes), pods/log, pods/NAME[:PORT]/proxy/..., services/NAME[:PORT]/proxy/...
    (HTTP relayed to the pod process, any method, streamed both ways) and
    pods/NAME/portforward (handed to portforward.serve).
  Every error is a `Status` object with the right code and reason.
  v1alpha1 requests on a cluster that also serves v1beta1 get the CRD
  deprecation `Warning: 299 - "..."` header.

Watch (`watch=true|True|1`): chunked NDJSON events; resourceVersion unset or
"0" gives synthetic ADDED events first; a specific one replays later events
from the store history or gives a 200 stream with one ERROR event holding a
410 Expired Status (or plain HTTP 410 with the `watch_expired_http` fault);
`timeoutSeconds` ends the stream cleanly; `allowWatchBookmarks=true` adds
BOOKMARK events (period `bookmark_interval_ms`, default 1000).

Listeners: the API listener (api_url, the kubeconfig's server) and a separate
plain-HTTP loopback admin listener (admin_url), which serves /_admin/* and the
same API (unauthenticated) and stays up while the API listener restarts. Request
faults (api_error_every, api_429_every, api_latency_ms) apply to every non-admin
request on either listener.

Admin endpoints (never authenticated, never subject to faults), JSON:
  GET  /_admin/health                 {"ok": true}
  GET  /_admin/state                  live state, see Cluster.state()
  GET  /_admin/faults                 the fault knobs (faults.py)
  POST /_admin/faults                 JSON merge patch of the knobs -> new knobs
  POST /_admin/kill-portforwards      optional body {"namespace","pod"} ->
                                      {"killed": N}
  GET  /_admin/requests[?since=SEQ&limit=N]   {"requests": [...]} request log
  DELETE /_admin/requests             clear the log
  POST /_admin/restart-api?down_ms=N  API server restart with state kept: the API
                                      listener is closed (new connects refused), every
                                      connection accepted on it is cut (watches,
                                      port-forwards, pod proxies), and after N ms
                                      (default 1000) it listens again on the same
                                      address and port -> {"down_ms", "ports"}; 409 while
                                      a restart is under way. GET /_admin/state "api"
                                      says {"up", "restarts", "connections"}.
  POST /_admin/compact                forget watch history -> {"resourceVersion"}
  POST /_admin/pods/kill              {"namespace","name","signal"?} kill a pod's
                                      process as if it crashed -> {"pid"}
"""
import _thread
import json
import re
import select
import signal
import socket
import ssl
import threading
import time
import urllib.parse

import httpio
import tables
from kube import (ApiError, bad_request, deep, jdump, json_patch, merge_patch,
                  not_found, parse_field_selector, parse_label_selector, status_object)
from kube import DNS1123_SUBDOMAIN
from resources import AGENTS, EXT, GATEWAY

try:
    import portforward
except ImportError:                       # the port-forward module is optional
    portforward = None

VERSION = {"major": "1", "minor": "32", "gitVersion": "v1.32.4-devcluster",
           "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
           "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.23.6", "compiler": "gc",
           "platform": "linux/amd64"}
MAX_BODY = 3 * 1024 * 1024
TRUE = ("true", "True", "1")
CRD_GROUPS = (AGENTS, EXT, GATEWAY)


def _q(query, name, default=None):
    v = query.get(name)
    return v[-1] if v else default


class ApiServer:
    def __init__(self, cluster):
        self.c = cluster
        self.store, self.registry = cluster.store, cluster.registry
        self.faults, self.reqlog = cluster.faults, cluster.reqlog
        self.listeners = []            # {"host","port","ctx","role","sock"}
        self.conns = {}                # accepted socket -> role of its listener
        self.lock = threading.Lock()
        self.stopping = False
        self.api_down = False
        self.restarts = 0
        self.token = cluster.config.get("token")

    # ------------------------------------------------------------ sockets

    def listen(self, host, port, tls=None, role="api"):
        """Bind and start accepting. tls = (certfile, keyfile) or None; role "api" (the
        kubeconfig's listener, the one restart_api() takes down) or "admin". -> bound port."""
        ctx = None
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tls[0], tls[1])
        rec = {"host": host, "port": port, "ctx": ctx, "role": role, "sock": None}
        self._open_listener(rec)
        self.listeners.append(rec)
        return rec["port"]

    def _open_listener(self, rec):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((rec["host"], rec["port"]))
            s.listen(256)
        except OSError:
            s.close()
            raise
        rec["sock"], rec["port"] = s, s.getsockname()[1]
        threading.Thread(target=self._accept_loop, args=(s, rec["ctx"], rec["role"]),
                         daemon=True, name="accept-%d" % rec["port"]).start()

    def _accept_loop(self, lsock, ctx, role):
        while not self.stopping:
            try:
                conn, addr = lsock.accept()
            except OSError:
                return
            # not threading.Thread(...).start(): that waits until the new thread
            # has run, i.e. until it got the GIL, and with many busy threads (32
            # opens at once: their watches, upgrades, the controller, the pods'
            # readers) every accept then waited its turn, so connections queued
            # here for hundreds of ms before a single byte of them was read
            _thread.start_new_thread(self._serve_conn, (conn, ctx, role))

    def shutdown(self):
        self.stopping = True
        for rec in self.listeners:
            self._close_listener(rec)
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    @staticmethod
    def _close_listener(rec):
        s, rec["sock"] = rec["sock"], None
        if s is None:
            return
        try:
            s.shutdown(socket.SHUT_RDWR)    # wakes the thread blocked in accept() (Linux)
        except OSError:
            pass
        try:
            s.close()
        except OSError:
            pass

    def api_state(self):
        with self.lock:
            return {"up": not self.api_down, "restarts": self.restarts,
                    "connections": sum(1 for r in self.conns.values() if r == "api")}

    def restart_api(self, down_ms):
        """Take the API listener(s) away for down_ms: the listening socket is closed (new
        connects are refused), every connection accepted on it is cut (watches, tunnels and
        pod proxies included), then it listens again on the same address and port. Objects,
        resourceVersions, watch history, pods and the admin listener are untouched.
        Returns at once, with the listener already closed."""
        with self.lock:
            if self.api_down:
                raise ApiError(409, "the API server is already restarting", "Conflict")
            self.api_down = True
            recs = [r for r in self.listeners if r["role"] == "api"]
            cut = [c for c, r in self.conns.items() if r == "api"]
        for rec in recs:
            self._close_listener(rec)
        for c in cut:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.c.log("apiserver: restart: down for %d ms, %d connections cut" % (down_ms, len(cut)))

        def back():
            time.sleep(down_ms / 1000.0)
            for rec in recs:
                deadline = time.monotonic() + 10
                while not self.stopping:
                    try:
                        self._open_listener(rec)
                        break
                    except OSError as e:      # the port is not free yet
                        if time.monotonic() > deadline:
                            self.c.log("apiserver: restart: cannot listen on %s:%d again: %s"
                                       % (rec["host"], rec["port"], e))
                            break
                        time.sleep(0.05)
            with self.lock:
                self.api_down = False
                self.restarts += 1
            self.c.log("apiserver: restart: listening again")
        threading.Thread(target=back, daemon=True, name="api-restart").start()
        return [r["port"] for r in recs]

    def _serve_conn(self, sock, ctx, role="api"):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(300)
            if ctx is not None:
                sock = ctx.wrap_socket(sock, server_side=True)
        except (OSError, ssl.SSLError):
            sock.close()
            return
        with self.lock:
            self.conns[sock] = role
            cut = role == "api" and self.api_down    # accepted just before a restart
        if cut:
            sock.close()
            return
        rfile = sock.makefile("rb", buffering=65536)
        try:
            while not self.stopping:
                try:
                    req = httpio.read_request(rfile, sock)
                except httpio.BadRequest as e:
                    httpio.send_response(sock, 400, jdump(status_object(400, str(e))).encode(),
                                         close=True)
                    return
                if req is None:
                    return
                req.body.sock = sock
                req.secure = ctx is not None
                keep = self._handle(req)
                if not keep or not req.keep_alive():
                    return
                if not req.body.done:
                    req.body.drain()
        except (OSError, ssl.SSLError, httpio.BadRequest):
            pass
        finally:
            with self.lock:
                self.conns.pop(sock, None)
            try:
                rfile.close()
                sock.close()
            except OSError:
                pass

    # ------------------------------------------------------------ responses

    def _send(self, req, code, obj, headers=()):
        body = (jdump(obj) + "\n").encode() if not isinstance(obj, bytes) else obj
        httpio.send_response(req.sock, code, body, headers=headers,
                             head_only=req.method == "HEAD")
        return code

    def _send_error(self, req, err, headers=()):
        hs = list(headers) + list(err.headers.items())
        return self._send(req, err.code, err.status, hs)

    # ------------------------------------------------------------ dispatch

    def _handle(self, req):
        """Serve one request. -> keep the connection open?"""
        started = time.monotonic()
        req.query = urllib.parse.parse_qs(req.query_string, keep_blank_values=True)
        req.log_note = None
        req.watch = False
        keep = True
        status = 500
        if req.path.startswith("/_admin/"):
            try:
                status = self._admin(req)
            except ApiError as e:
                status = self._send_error(req, e)
            except (ValueError, KeyError, TypeError) as e:
                status = self._send_error(req, bad_request("bad admin request: %s" % e))
            return True
        latency = self.faults.get_float("api_latency_ms", 0)
        if latency > 0:
            time.sleep(latency / 1000.0)
        try:
            if self.token and req.secure and \
                    req.headers.get("authorization", "") != "Bearer " + self.token:
                raise ApiError(401, "Unauthorized", "Unauthorized")
            self._inject_faults(req)
            result = self._route(req)
            if isinstance(result, tuple):
                status, keep = result
            else:
                status = result
        except ApiError as e:
            status = self._send_error(req, e)
        except httpio.BadRequest as e:
            status = self._send_error(req, bad_request(str(e)))
            keep = False
        except (OSError, ssl.SSLError):
            status, keep = 499, False
        except Exception as e:                   # a bug: report it as a 500 Status
            import traceback
            self.c.log("apiserver: %s %s crashed:\n%s" % (req.method, req.target,
                                                         traceback.format_exc()))
            try:
                status = self._send_error(req, ApiError(500, "internal error: %r" % e))
            except OSError:
                keep = False
        if not getattr(req, "logged", False):
            self.reqlog.add(req.method, req.target, req.headers, status, started, req.watch,
                            req.log_note)
        return keep

    def _inject_faults(self, req):
        # Unset: every request counts, whoever sends it and whatever it is (kubectl's
        # /version probe, discovery, watches, port-forward upgrades, pod proxy, openapi).
        pattern = self.faults.get("api_fault_match")
        try:
            if pattern and not re.search(pattern, "%s %s" % (req.method, req.target)):
                return
        except re.error:
            return
        if self.faults.tick("api_429", "api_429_every"):
            retry = str(self.faults.get("retry_after", 1))
            raise ApiError(429, "Too many requests, please try again later.", "TooManyRequests",
                           {"retryAfterSeconds": int(float(retry))}, {"Retry-After": retry})
        if self.faults.tick("api_error", "api_error_every"):
            code = int(self.faults.get("api_error_code", 500))
            msgs = {500: "Internal error occurred: injected fault",
                    503: "the server is currently unable to handle the request",
                    504: "the server was unable to return a response in the time allotted, "
                         "but may still be processing the request",
                    409: "Operation cannot be fulfilled: the object has been modified; please "
                         "apply your changes to the latest version and try again"}
            raise ApiError(code, msgs.get(code, "injected fault"))

    def _route(self, req):
        path = req.path
        if path in ("/version", "/version/"):
            return self._send(req, 200, VERSION)
        if path in ("/healthz", "/livez", "/readyz"):
            httpio.send_response(req.sock, 200, b"ok", "text/plain; charset=utf-8")
            return 200
        if path == "/openapi/v3":
            return self._send(req, 200, self.registry.openapi_root())
        if path.startswith("/openapi/v3/"):
            bits = path[len("/openapi/v3/"):].split("/")
            doc = None
            if len(bits) == 2 and bits[0] == "api":
                doc = self.registry.openapi_gv("", bits[1])
            elif len(bits) == 3 and bits[0] == "apis":
                doc = self.registry.openapi_gv(bits[1], bits[2])
            if doc is None:
                raise ApiError(404, "the server could not find the requested resource",
                               "NotFound", {})
            return self._send(req, 200, doc)
        if path in ("/api", "/api/"):
            host = req.headers.get("host", "127.0.0.1")
            return self._send(req, 200, self.registry.api_versions(host))
        if path in ("/apis", "/apis/"):
            return self._send(req, 200, self.registry.api_group_list())
        parts = [p for p in path.split("/") if p != ""]
        if not parts or parts[0] not in ("api", "apis"):
            raise ApiError(404, "the server could not find the requested resource", "NotFound",
                           {})
        if parts[0] == "api":
            group, rest = "", parts[1:]
        else:
            group, rest = parts[1], parts[2:]
            if not rest:
                doc = self.registry.api_group(group)
                if doc is None:
                    raise ApiError(404, "the server could not find the requested resource",
                                   "NotFound", {})
                return self._send(req, 200, doc)
        version, rest = rest[0], rest[1:]
        if not rest:
            doc = self.registry.resource_list(group, version)
            if doc is None:
                raise ApiError(404, "the server could not find the requested resource",
                               "NotFound", {})
            return self._send(req, 200, doc)
        ns = None
        if rest[0] == "namespaces" and len(rest) >= 3 and \
                self.registry.lookup(group, version, rest[2]) is not None:
            ns, rest = rest[1], rest[2:]
        res = self.registry.lookup(group, version, rest[0])
        if res is None:
            raise ApiError(404, "the server could not find the requested resource", "NotFound",
                           {})
        if ns is not None and not res.namespaced:
            raise ApiError(404, "the server could not find the requested resource", "NotFound",
                           {})
        name = urllib.parse.unquote(rest[1]) if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        req.res, req.version, req.ns, req.name, req.sub = res, version, ns, name, sub
        warning = res.warning(version)
        req.extra_headers = [("Warning", warning)] if warning else []
        if sub == "proxy" and res.plural in ("pods", "services"):
            return self._proxy(req, res, ns or "", name, rest)
        if sub == "portforward" and res.plural == "pods":
            return self._portforward(req, ns or "", name)
        if sub == "log" and res.plural == "pods":
            return self._pod_log(req, ns or "", name)
        if sub not in (None, "status", "scale") or len(rest) > 3:
            raise ApiError(404, "the server could not find the requested resource", "NotFound",
                           {})
        if sub == "scale" and not (res.scale or (res.plural == "sandboxes" and
                                                 version == "v1alpha1")):
            raise ApiError(404, "the server could not find the requested resource", "NotFound",
                           {})
        if sub == "status" and not res.status:
            raise ApiError(404, "the server could not find the requested resource", "NotFound",
                           {})
        m = req.method
        if name is None:
            if m in ("GET", "HEAD"):
                if _q(req.query, "watch", "") in TRUE:
                    return self._watch(req, res, version, ns)
                return self._list(req, res, version, ns)
            if m == "POST":
                return self._create(req, res, version, ns)
            if m == "DELETE":
                return self._delete_collection(req, res, version, ns)
            raise ApiError(405, "the server does not allow this method on the requested "
                           "resource", "MethodNotAllowed")
        if m in ("GET", "HEAD"):
            return self._get(req, res, version, ns, name, sub)
        if m == "PUT":
            return self._update(req, res, version, ns, name, sub)
        if m == "PATCH":
            return self._patch(req, res, version, ns, name, sub)
        if m == "DELETE" and sub is None:
            return self._delete(req, res, version, ns, name)
        raise ApiError(405, "the server does not allow this method on the requested resource",
                       "MethodNotAllowed")

    # ------------------------------------------------------------ conversions

    def _lookup(self, group, plural, ns, name):
        r = self.registry.get(group, plural)
        return self.store.get_ref(r, ns, name) if r else None

    def _out(self, res, version, obj, in_list=False):
        """Stored object -> reply object in `version` (a private copy)."""
        obj = self.registry.from_storage(res, version, deep(obj), self._lookup)
        obj.pop("apiVersion", None)
        obj.pop("kind", None)
        return dict({"apiVersion": res.api_version(version), "kind": res.kind}, **obj)

    def _in(self, res, version, obj):
        obj = self.registry.to_storage(res, version, obj, self._lookup)
        return obj

    def _reply(self, req, code, obj):
        return self._send(req, code, obj, req.extra_headers)

    def _json_body(self, req):
        try:
            data = req.body.read_all(MAX_BODY)
        except httpio.BadRequest as e:
            if "too large" in str(e):
                raise ApiError(413, "Request entity too large: limit is %d" % MAX_BODY,
                               "RequestEntityTooLarge")
            raise
        if not data.strip():
            return None
        try:
            return json.loads(data)
        except ValueError as e:
            raise bad_request("the object provided is unrecognized: couldn't get version/kind; "
                              "json parse error: %s" % e)

    def _check_ns(self, res, ns):
        if res.namespaced and ns is not None:
            nsres = self.registry.get("", "namespaces")
            if self.store.get_ref(nsres, "", ns) is None:
                raise not_found(nsres, ns)

    # ------------------------------------------------------------ CRUD

    def _get(self, req, res, version, ns, name, sub):
        obj = self.store.get(res, ns, name)
        if obj is None:
            raise not_found(res, name)
        if sub == "scale":
            return self._reply(req, 200, self._scale(res, obj))
        out = self._out(res, version, obj)
        if tables.wants_table(req.headers.get("accept")):
            out = tables.table(res, [out], out["metadata"]["resourceVersion"],
                               _q(req.query, "includeObject", "Metadata"))
        return self._reply(req, 200, out)

    def _selectors(self, req, res):
        labels = parse_label_selector(_q(req.query, "labelSelector", ""))
        allowed = ("metadata.name", "metadata.namespace")
        if res.plural == "pods":
            allowed += ("status.phase", "spec.nodeName")
        fields = parse_field_selector(_q(req.query, "fieldSelector", ""), allowed)
        return labels, fields

    def _list(self, req, res, version, ns):
        labels, fields = self._selectors(req, res)
        items, rv = self.store.list(res, ns, labels, fields)
        if tables.wants_table(req.headers.get("accept")):
            return self._reply(req, 200, tables.table(
                res, [self._out(res, version, o) for o in items], rv,
                _q(req.query, "includeObject", "Metadata")))
        out = []
        for o in items:
            o = self._out(res, version, o)
            if res.group not in CRD_GROUPS:
                o.pop("apiVersion", None)
                o.pop("kind", None)
            out.append(o)
        return self._reply(req, 200, {"apiVersion": res.api_version(version),
                                      "kind": res.list_kind(),
                                      "metadata": {"resourceVersion": rv}, "items": out})

    def _validate_name(self, res, obj):
        md = obj.get("metadata")
        if not isinstance(md, dict):
            obj["metadata"] = md = {}
        name = md.get("name")
        gen = md.get("generateName")
        if not name and not gen:
            raise ApiError(422, '%s "" is invalid: metadata.name: Required value: name or '
                           'generateName is required' % res.kind, "Invalid",
                           {"kind": res.kind, "group": res.group,
                            "causes": [{"reason": "FieldValueRequired",
                                        "message": "Required value: name or generateName is "
                                                   "required", "field": "metadata.name"}]})
        check = name or (gen + "x")
        if len(check) > 253 or not DNS1123_SUBDOMAIN.match(check):
            raise ApiError(422, '%s "%s" is invalid: metadata.name: Invalid value: "%s": a '
                           'lowercase RFC 1123 subdomain must consist of lower case '
                           'alphanumeric characters, \'-\' or \'.\', and must start and end '
                           'with an alphanumeric character' % (res.kind, name or gen,
                                                               name or gen), "Invalid",
                           {"name": name or gen, "kind": res.kind, "group": res.group,
                            "causes": [{"reason": "FieldValueInvalid",
                                        "message": "Invalid value", "field": "metadata.name"}]})

    def _check_body_type(self, res, version, obj):
        if not isinstance(obj, dict):
            raise bad_request("the object provided is unrecognized (must be of type %s)"
                              % res.kind)
        av, kind = obj.get("apiVersion"), obj.get("kind")
        if av and av != res.api_version(version):
            raise bad_request("the API version in the data (%s) does not match the expected "
                              "API version (%s)" % (av, res.api_version(version)))
        if kind and kind != res.kind:
            raise bad_request("the kind in the data (%s) does not match the expected kind (%s)"
                              % (kind, res.kind))

    def _create(self, req, res, version, ns):
        obj = self._json_body(req)
        self._check_body_type(res, version, obj)
        md = obj.setdefault("metadata", {})
        if not isinstance(md, dict):
            raise bad_request("metadata must be an object")
        if res.namespaced:
            if md.get("namespace") and ns and md["namespace"] != ns:
                raise bad_request("the namespace of the provided object does not match the "
                                  "namespace sent on the request")
            md["namespace"] = ns or md.get("namespace") or "default"
        self._check_ns(res, md.get("namespace") if res.namespaced else None)
        self._validate_name(res, obj)
        self.registry.validate(res, version, obj)
        obj = self._in(res, version, obj)
        self.registry.apply_defaults(res, obj)
        if _q(req.query, "dryRun") == "All":
            return self._reply(req, 201, self._out(res, version, obj))
        stored = self.store.create(res, obj)
        if res.plural == "sandboxclaims":
            # the create landed, but its answer is lost (faults.py)
            if self.faults.take("create_then_fail"):
                raise ApiError(500, "Internal error occurred: injected fault after the object was "
                               "stored (create_then_fail)")
            if self.faults.take("create_then_drop"):
                raise OSError("connection dropped after the object was stored (create_then_drop)")
        return self._reply(req, 201, self._out(res, version, stored))

    def _update(self, req, res, version, ns, name, sub):
        obj = self._json_body(req)
        self._check_body_type(res, version, obj)
        cur = self.store.get(res, ns, name)
        if cur is None:
            raise not_found(res, name)
        if sub == "scale":
            return self._apply_scale(req, res, cur, obj)
        md = obj.get("metadata") or {}
        if md.get("name") and md["name"] != name:
            raise bad_request("the name of the object (%s) does not match the name on the URL "
                              "(%s)" % (md["name"], name))
        return self._write(req, res, version, ns, name, sub, obj)

    def _write(self, req, res, version, ns, name, sub, obj):
        md = obj.setdefault("metadata", {})
        md["name"] = name
        if res.namespaced:
            md["namespace"] = ns
        if sub != "status":
            self.registry.validate(res, version, obj)
        expect = md.get("resourceVersion") or None
        obj = self._in(res, version, obj)
        self.registry.apply_defaults(res, obj)
        stored = self.store.update(res, obj, subresource=sub, expect_rv=expect)
        return self._reply(req, 200, self._out(res, version, stored))

    def _patch(self, req, res, version, ns, name, sub):
        ctype = req.headers.get("content-type", "").split(";")[0].strip().lower()
        patch = self._json_body(req)
        cur = self.store.get(res, ns, name)
        if cur is None:
            raise not_found(res, name)
        if sub == "scale":
            scale = self._scale(res, cur)
            if ctype == "application/json-patch+json":
                new_scale = json_patch(scale, patch)
            else:
                new_scale = merge_patch(scale, patch or {})
            return self._apply_scale(req, res, cur, new_scale)
        view = self._out(res, version, cur)
        if ctype == "application/json-patch+json":
            new = json_patch(view, patch)
        elif ctype == "application/merge-patch+json" or (
                ctype == "application/strategic-merge-patch+json" and res.group not in CRD_GROUPS):
            if not isinstance(patch, dict):
                raise bad_request("merge patch must be a JSON object")
            new = merge_patch(view, patch)
        else:
            raise ApiError(415, "the body of the request was in an unknown format - accepted "
                           "media types include: application/json-patch+json, "
                           "application/merge-patch+json, application/apply-patch+yaml",
                           "UnsupportedMediaType")
        if not isinstance(new, dict):
            raise bad_request("patch produced a non-object")
        pmd = (patch or {}).get("metadata") if isinstance(patch, dict) else None
        if not (isinstance(pmd, dict) and pmd.get("resourceVersion")):
            new.setdefault("metadata", {})["resourceVersion"] = ""
        return self._write(req, res, version, ns, name, sub, new)

    def _scale(self, res, obj):
        md = obj["metadata"]
        spec = obj.get("spec") or {}
        st = obj.get("status") or {}
        if res.plural == "sandboxes":
            replicas = 0 if spec.get("operatingMode") == "Suspended" or \
                spec.get("replicas") == 0 else 1
            selector = st.get("selector", "")
            cur = replicas if st.get("podIPs") else 0
        else:
            replicas = spec.get("replicas", 1)
            selector = st.get("selector", "")
            cur = st.get("replicas", 0)
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {"name": md["name"], "namespace": md.get("namespace"),
                             "uid": md["uid"], "resourceVersion": md["resourceVersion"],
                             "creationTimestamp": md.get("creationTimestamp")},
                "spec": {"replicas": replicas},
                "status": {"replicas": cur, "selector": selector}}

    def _apply_scale(self, req, res, cur, scale):
        replicas = ((scale or {}).get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise ApiError(422, 'Scale.autoscaling "%s" is invalid: spec.replicas: Invalid '
                           'value: %r: must be greater than or equal to 0'
                           % (cur["metadata"]["name"], replicas), "Invalid")
        new = deep(cur)
        if res.plural == "sandboxes":
            if "operatingMode" in (new.get("spec") or {}) or res.storage == "v1beta1":
                new["spec"]["operatingMode"] = "Suspended" if replicas == 0 else "Running"
            else:
                new["spec"]["replicas"] = 1 if replicas else 0
        else:
            new.setdefault("spec", {})["replicas"] = replicas
        stored = self.store.update(res, new)
        return self._reply(req, 200, self._scale(res, stored))

    def _delete_options(self, req):
        opts = {}
        body = self._json_body(req)
        if isinstance(body, dict):
            opts = body
        pol = _q(req.query, "propagationPolicy") or opts.get("propagationPolicy")
        orphan = _q(req.query, "orphanDependents") or opts.get("orphanDependents")
        if pol is None and orphan in (True, "true"):
            pol = "Orphan"
        if pol not in (None, "Background", "Foreground", "Orphan"):
            raise ApiError(422, 'DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: '
                           'Unsupported value: "%s": supported values: "Foreground", '
                           '"Background", "Orphan", "nil"' % pol, "Invalid")
        grace = _q(req.query, "gracePeriodSeconds")
        if grace is None:
            grace = opts.get("gracePeriodSeconds")
        try:
            grace = int(grace) if grace is not None else None
        except ValueError:
            raise bad_request("invalid gracePeriodSeconds")
        return pol, opts.get("preconditions"), grace, \
            (_q(req.query, "dryRun") == "All" or "All" in (opts.get("dryRun") or []))

    def _delete(self, req, res, version, ns, name):
        pol, pre, grace, dry = self._delete_options(req)
        if dry:
            cur = self.store.get(res, ns, name)
            if cur is None:
                raise not_found(res, name)
            return self._reply(req, 200, self._out(res, version, cur))
        obj, code = self.store.delete(res, ns, name, propagation=pol, preconditions=pre,
                                      grace=grace)
        return self._reply(req, code, self._out(res, version, obj))

    def _delete_collection(self, req, res, version, ns):
        pol, pre, grace, dry = self._delete_options(req)
        labels, fields = self._selectors(req, res)
        items, rv = self.store.list(res, ns, labels, fields)
        out = []
        for o in items:
            md = o["metadata"]
            if not dry:
                try:
                    o, _ = self.store.delete(res, md.get("namespace", ""), md["name"],
                                             propagation=pol, grace=grace)
                except ApiError:
                    continue
            out.append(self._out(res, version, o))
        return self._reply(req, 200, {"apiVersion": res.api_version(version),
                                      "kind": res.list_kind(),
                                      "metadata": {"resourceVersion": str(
                                          self.store.current_rv())}, "items": out})

    # ------------------------------------------------------------ watch

    def _watch(self, req, res, version, ns):
        req.watch = True
        labels, fields = self._selectors(req, res)
        rv = _q(req.query, "resourceVersion")
        timeout = _q(req.query, "timeoutSeconds")
        try:
            timeout = float(timeout) if timeout not in (None, "", "0") else None
        except ValueError:
            raise bad_request("invalid timeoutSeconds")
        bookmarks = _q(req.query, "allowWatchBookmarks", "") in TRUE
        expired = None
        if rv not in (None, "", "0") and (self.faults.take("watch_expired") or
                                          self.faults.tick("watch_expired",
                                                           "watch_expired_every")):
            expired = ApiError(410, "too old resource version: %s (%d)"
                               % (rv, self.store.current_rv()), "Expired")
        w = None
        if expired is None:
            try:
                w = self.store.watch(res, ns, labels, fields, rv)
            except ApiError as e:
                if e.code != 410:
                    raise
                expired = e
        if expired is not None and self.faults.get("watch_expired_http"):
            raise expired
        sock = req.sock
        hs = [("Cache-Control", "no-cache, private"), ("Content-Type", "application/json"),
              ("Date", httpio.http_date()), ("Transfer-Encoding", "chunked")]
        hs += req.extra_headers
        try:
            sock.sendall(httpio.response_head(200, hs))
            # logged when the stream starts, so a test sees a watch that is still open
            self.reqlog.add(req.method, req.target, req.headers, 200, time.monotonic(), True,
                            "expired" if expired is not None else None)
            req.logged = True
            out = httpio.ChunkedWriter(sock)
            if expired is not None:
                req.log_note = "expired"
                out.write((jdump({"type": "ERROR", "object": expired.status}) + "\n").encode())
                out.end()
                return 200, True
            return self._pump_watch(req, res, version, w, out, timeout, bookmarks)
        finally:
            if w is not None:
                w.close()

    def _pump_watch(self, req, res, version, w, out, timeout, bookmarks):
        sock = req.sock
        deadline = time.monotonic() + timeout if timeout is not None else None
        period = max(0.05, self.faults.get_float("bookmark_interval_ms", 1000) / 1000.0)
        next_bookmark = time.monotonic() + period
        sent = 0
        drop_after = self.faults.get("watch_drop_after")
        end_after = self.faults.get("watch_end_after")
        table_include = _q(req.query, "includeObject", "Metadata") \
            if tables.wants_table(req.headers.get("accept")) else None
        last_check = time.monotonic()
        while True:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                out.end()
                return 200, True
            wait = 1.0
            if deadline is not None:
                wait = min(wait, deadline - now)
            if bookmarks:
                wait = min(wait, max(0.0, next_bookmark - now))
            try:
                item = w.q.get(timeout=max(0.0, wait))
            except Exception:           # queue.Empty
                item = False
            if item is None:            # server shutting down
                out.end()
                return 200, False
            if item:
                typ, obj = item
                o = self._out(res, version, obj)
                if table_include is not None:
                    o = tables.table(res, [o], o["metadata"]["resourceVersion"], table_include)
                out.write((jdump({"type": typ, "object": o}) + "\n").encode())
                sent += 1
                if isinstance(end_after, int) and end_after > 0 and sent >= end_after:
                    req.log_note = "ended after %d events" % sent
                    out.end()                   # a clean end, as on a server-side timeout
                    return 200, True
                if isinstance(drop_after, int) and drop_after > 0 and sent >= drop_after:
                    req.log_note = "dropped after %d events" % sent
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return 200, False
                continue
            now = time.monotonic()
            if bookmarks and now >= next_bookmark:
                rv = self.store.current_rv()
                if w.q.empty():
                    bm = {"type": "BOOKMARK", "object": {
                        "apiVersion": res.api_version(version), "kind": res.kind,
                        "metadata": {"resourceVersion": str(rv)}}}
                    out.write((jdump(bm) + "\n").encode())
                next_bookmark = now + period
            if now - last_check >= 1.0:
                last_check = now
                if self._peer_closed(sock):
                    return 200, False

    @staticmethod
    def _peer_closed(sock):
        try:
            r, _, _ = select.select([sock], [], [], 0)
            if not r:
                return False
            if isinstance(sock, ssl.SSLSocket):
                return False            # no MSG_PEEK on TLS; a write will notice instead
            return sock.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    # ------------------------------------------------------------ pods: proxy, port-forward, log

    def _split_name_port(self, name):
        """'name', 'name:port', 'http:name:port' -> (name, port or None)."""
        bits = name.split(":")
        if len(bits) == 3:
            bits = bits[1:]
        if len(bits) == 2:
            return bits[0], bits[1] or None
        return bits[0], None

    def _proxy(self, req, res, ns, raw_name, rest):
        name, port = self._split_name_port(raw_name or "")
        pods = self.registry.get("", "pods")
        if res.plural == "pods":
            pod = self.store.get(pods, ns, name)
            if pod is None:
                raise not_found(pods, name)
            target_port = self._pod_port(pod, port)
        else:
            svc = self.store.get(res, ns, name)
            if svc is None:
                raise not_found(res, name)
            pod, target_port = self._service_backend(svc, port)
        ip = (pod.get("status") or {}).get("podIP")
        if not ip or (pod.get("status") or {}).get("phase") != "Running":
            raise ApiError(503, 'error trying to reach service: pod "%s" is not running'
                           % pod["metadata"]["name"], "ServiceUnavailable")
        # everything after ".../proxy", raw (percent-escapes kept), plus the query
        marker = "/%s/proxy" % raw_name if res.plural == "pods" else "/%s/proxy" % raw_name
        idx = req.path.find(marker)
        tail = req.path[idx + len(marker):] if idx >= 0 else "/"
        if not tail.startswith("/"):
            tail = "/" + tail
        target = tail + ("?" + req.query_string if req.query_string else "")
        req.log_note = "proxy %s:%s" % (ip, target_port)
        try:
            status, keep = httpio.relay(req, ip, int(target_port), target)
        except (OSError, httpio.http.client.HTTPException) as e:
            raise ApiError(503, "error trying to reach service: dial tcp %s:%s: %s"
                           % (ip, target_port, getattr(e, "strerror", None) or e),
                           "ServiceUnavailable")
        return status, keep

    @staticmethod
    def _pod_port(pod, port):
        containers = (pod.get("spec") or {}).get("containers") or []
        if port is None:
            for c in containers:
                for p in c.get("ports") or []:
                    return p.get("containerPort")
            return 80
        if port.isdigit():
            return int(port)
        for c in containers:
            for p in c.get("ports") or []:
                if p.get("name") == port:
                    return p.get("containerPort")
        raise bad_request("pod %s has no port named %s" % (pod["metadata"]["name"], port))

    def _service_backend(self, svc, port):
        spec = svc.get("spec") or {}
        sel = spec.get("selector") or {}
        ports = spec.get("ports") or []
        sp = None
        for p in ports:
            if port is None or str(p.get("port")) == port or p.get("name") == port:
                sp = p
                break
        if sp is None and ports:
            raise ApiError(503, 'no service port "%s" found for service "%s"'
                           % (port, svc["metadata"]["name"]), "ServiceUnavailable")
        pods = self.registry.get("", "pods")
        for pod in self.store.list(pods, svc["metadata"]["namespace"],
                                   [(k, "=", [v]) for k, v in sel.items()])[0]:
            st = pod.get("status") or {}
            if sel and st.get("phase") == "Running" and st.get("podIP") and \
                    not pod["metadata"].get("deletionTimestamp"):
                tp = (sp or {}).get("targetPort", (sp or {}).get("port", 80))
                return pod, self._pod_port(pod, str(tp))
        raise ApiError(503, 'no endpoints available for service "%s"' % svc["metadata"]["name"],
                       "ServiceUnavailable")

    def _portforward(self, req, ns, name):
        pods = self.registry.get("", "pods")
        if req.method not in ("GET", "POST"):
            raise ApiError(405, "the server does not allow this method on the requested "
                           "resource", "MethodNotAllowed")
        pod = self.store.get(pods, ns, name)
        if pod is None:
            raise not_found(pods, name)
        if (pod.get("status") or {}).get("phase") != "Running":
            raise bad_request("pod %s is not running" % name)
        if portforward is None:
            raise ApiError(503, "port-forward is not available in this dev cluster",
                           "ServiceUnavailable")
        uid = pod["metadata"]["uid"]
        store = self.store

        def resolve(port):
            cur = store.get_ref(pods, ns, name)
            if cur is None or cur["metadata"]["uid"] != uid or \
                    cur["metadata"].get("deletionTimestamp"):
                raise portforward.TargetError(
                    'pod "%s" not found' % name if cur is None or
                    cur["metadata"]["uid"] != uid else 'pod "%s" is terminating' % name)
            ip = (cur.get("status") or {}).get("podIP")
            if not ip or (cur.get("status") or {}).get("phase") != "Running":
                raise portforward.TargetError("pod %s is not running" % name)
            return ip, int(port)

        req.log_note = "portforward"
        started = time.monotonic()
        answer = []

        def on_answer(code):   # logged when answered, not when the tunnel ends
            answer.append(code)
            self.reqlog.add(req.method, req.target, req.headers, code, started, False,
                            "portforward upgrade" if code == 101 else "portforward refused")
        req.logged = True
        req.body.drain()
        pf_faults = self.faults.get("portforward")
        if not isinstance(pf_faults, dict):
            pf_faults = {}
        portforward.serve(req.sock, req.rfile, req.method, req.headers, resolve,
                          (ns, name, uid), self.c.tunnels, faults=pf_faults,
                          log=self.c.pf_log, query=req.query, on_answer=on_answer)
        return (answer[0] if answer else 101), False

    def _pod_log(self, req, ns, name):
        pods = self.registry.get("", "pods")
        pod = self.store.get(pods, ns, name)
        if pod is None:
            raise not_found(pods, name)
        data = self.c.pod_log(ns, name)
        httpio.send_response(req.sock, 200, data, "text/plain")
        return 200

    # ------------------------------------------------------------ admin

    def _admin(self, req):
        path, m = req.path, req.method
        if path == "/_admin/health":
            return self._send(req, 200, {"ok": True})
        if path == "/_admin/state" and m == "GET":
            return self._send(req, 200, self.c.state())
        if path == "/_admin/faults":
            if m == "POST":
                patch = self._json_body(req) or {}
                if not isinstance(patch, dict):
                    raise bad_request("faults must be a JSON object")
                return self._send(req, 200, self.faults.merge(patch))
            return self._send(req, 200, self.faults.snapshot())
        if path == "/_admin/kill-portforwards" and m == "POST":
            body = self._json_body(req) or {}
            key = (body["namespace"], body["pod"]) if body.get("pod") else None
            n = self.c.tunnels.kill(key) if self.c.tunnels is not None else 0
            return self._send(req, 200, {"killed": n})
        if path == "/_admin/requests":
            if m == "DELETE":
                self.reqlog.clear()
                return self._send(req, 200, {"ok": True})
            since = int(_q(req.query, "since", "0"))
            limit = _q(req.query, "limit")
            return self._send(req, 200, {"requests": self.reqlog.since(
                since, int(limit) if limit else None)})
        if path == "/_admin/restart-api" and m == "POST":
            try:
                down = int(_q(req.query, "down_ms", "1000"))
            except ValueError:
                raise bad_request("down_ms must be an integer")
            if down < 0 or down > 600000:
                raise bad_request("down_ms must be within 0..600000")
            ports = self.restart_api(down)
            return self._send(req, 200, {"down_ms": down, "ports": ports})
        if path == "/_admin/compact" and m == "POST":
            self.store.compact()
            return self._send(req, 200, {"resourceVersion": str(self.store.current_rv())})
        if path == "/_admin/pods/kill" and m == "POST":
            body = self._json_body(req) or {}
            sig = body.get("signal", "SIGKILL")
            signum = getattr(signal, sig) if isinstance(sig, str) else int(sig)
            ns = body.get("namespace", "default")
            # channel WebSockets first say that the pod is gone (their pod-side
            # connections would otherwise just end); SPDY tunnels live on, as
            # kubectl's do when a container restarts
            pid = self.c.kubelet.kill_process(
                ns, body["name"], signum,
                before=lambda: self.c.tunnels and self.c.tunnels.gone(
                    (ns, body["name"]), "killed", spdy=False))
            if pid is None:
                raise ApiError(404, "no live process for pod %s" % body["name"], "NotFound")
            return self._send(req, 200, {"pid": pid})
        raise ApiError(404, "unknown admin endpoint %s %s" % (m, path), "NotFound")
