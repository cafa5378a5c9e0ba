"""Fault knobs and the request log of a dev cluster.

`Faults` is one JSON object, set from command-line flags at start and changed
at run time with `POST /_admin/faults` (a JSON merge patch: a key set to null
is removed). Knobs (all optional):

  controller_delay_ms   int   the controller sleeps this long before every
                              reconcile step (slow controller)
  cold_start_ms         int   a sandbox pod becomes Ready no sooner than this
                              after its process was started
  pod_start_delay_ms    int   the kubelet starts a new pod's process this long
                              after the Pod was created (a real kubelet's
                              container start latency; the Pod is Pending
                              meanwhile). `make bench` sets it: on a real
                              cluster a warm pool's refill starts on a node,
                              not on the CPUs of the API server and its
                              clients; here its ~100 ms of Python start-up
                              would land inside the measured open that
                              emptied the pool
  never_ready           bool  pods never turn Ready and claims are not served
                              from the warm pool, so claims never get Ready
  delete_claim_after_ms int   every claim the controller first sees while this
                              is set is deleted this long after its creation
  api_error_every       int   every Nth matching API request fails with
                              `api_error_code` (default 500) and a Status body;
                              setting it (or api_429_every) restarts its count
  api_error_code        int   500 | 503 | 504 | 409 | ...
  api_429_every         int   every Nth matching API request gets 429
                              TooManyRequests with `Retry-After: retry_after`
  retry_after           int   seconds for Retry-After (default 1)
  api_fault_match       str   regex on "METHOD path?query" selecting requests
                              the two knobs above count. Unset: EVERY request
                              but /_admin/*, from every client (kubectl's
                              /version probe, discovery, proxy and port-forward
                              included), any method, watches and upgrades
                              (pods/portforward, WebSocket or SPDY) included;
                              one counter per knob for the whole cluster
  api_latency_ms        int   every request but /_admin/* waits this long
                              before it is served (before the knobs above)
  create_then_fail      int   the next N creates of a SandboxClaim store the
                              object and then answer 500 (a create that
                              landed but whose answer was lost)
  create_then_drop      int   ... store the object and then close the
                              connection without an answer (kubectl proxy
                              turns that into a 502 for its client)
  watch_drop_after      int   watch streams are cut (connection closed without
                              the closing chunk) after this many events
  watch_end_after       int   watch streams end cleanly (the closing chunk, as
                              on a server-side timeout) after this many events
  watch_expired         int   the next N watches that name a resourceVersion
                              (not "" / "0") get 410 Expired
  watch_expired_every   int   every Nth watch that names a resourceVersion
                              gets 410 Expired (count restarts when set)
  watch_expired_http    bool  ... as a plain HTTP 410 Status instead of a 200
                              stream whose only event is ERROR 410
  bookmark_interval_ms  int   BOOKMARK period for allowWatchBookmarks=true
                              watches (default 1000)
  portforward           dict  passed to portforward.serve(faults=...); its
                              knobs are listed in portforward.py. kubectl's
                              transports: no_websocket, no_spdy,
                              no_protocol_header, error_text,
                              kill_after_bytes, no_error_fin. The kubelet's
                              WebSocket channel protocol (v4.channel.k8s.io):
          refuse_channel_ws   bool  channel upgrades get 403, Status message
                                    "upgrade refused (fault refuse_channel_ws)"
                                    (SPDY and kubectl's WebSocket still work)
          channel_error       str   after the port prefixes, this text on the
                                    first port's error channel, then a close
          split_frames        bool  frames to the client one byte per send()
          ping_first          bool  a ping "sbx" before any data frame; the
                                    close event's "pongs" counts the answers
          abrupt_after_bytes  int   after N data bytes to the client, the TCP
                                    connection ends without a close frame
                              A pod deleted or killed (POST /_admin/pods/kill)
                              while a channel WebSocket is open ends it with
                              'pod "NAME" is gone (deleted|killed)' on the
                              error channel, then a close frame.
  runtime               dict  written to STATE/runtime-faults.json (atomic
                              rename), which every runtime process re-reads
                              (REST knobs: runtime.py "Faults"). Its key
                              "grpc" holds the sandboxd gRPC faults per pod:
                              {"grpc": {"NS/POD" | "POD" | "*": {knob: value}}}
                              (knobs grpc_slow_stream, grpc_goaway_mid_stream,
                              grpc_rst_stream, grpc_deadline, grpc_oversized,
                              grpc_hpack_updates: grpc_server.py FAULT_DOC and
                              README.md); a pod's entry set to null clears it

`RequestLog` keeps the last N API requests (method, path+query, selected
headers, status, duration) for `GET /_admin/requests`.
"""
import collections
import threading
import time

from kube import merge_patch

LOGGED_HEADERS = ("user-agent", "accept", "content-type", "content-length", "upgrade",
                  "connection", "kubectl-command", "x-stream-protocol-version",
                  "sec-websocket-protocol", "transfer-encoding", "x-forwarded-for")


class Faults:
    def __init__(self, initial=None, on_change=None):
        self.lock = threading.Lock()
        self.data = dict(initial or {})
        self.counters = collections.Counter()
        self.on_change = on_change or []

    def snapshot(self):
        with self.lock:
            return dict(self.data)

    def get(self, key, default=None):
        with self.lock:
            v = self.data.get(key, default)
            return default if v is None else v

    def get_float(self, key, default=0.0):
        try:
            return float(self.get(key, default))
        except (TypeError, ValueError):
            return default

    def merge(self, patch):
        with self.lock:
            self.data = merge_patch(self.data, patch)
            snap = dict(self.data)
            for k in patch:             # a period set (or reset) starts counting afresh
                if k.endswith("_every"):
                    self.counters.pop(k[:-len("_every")], None)
        for fn in self.on_change:
            fn(snap, patch)
        return snap

    def tick(self, counter, every_key):
        """Count one event for `counter`; True when it is the Nth one (N = data[every_key])."""
        with self.lock:
            every = self.data.get(every_key)
            if not isinstance(every, int) or every <= 0:
                return False
            self.counters[counter] += 1
            return self.counters[counter] % every == 0

    def take(self, key):
        """Decrement a countdown knob; True when one was available."""
        with self.lock:
            n = self.data.get(key)
            if n is True:
                return True
            if not isinstance(n, int) or n <= 0:
                return False
            self.data[key] = n - 1
            return True


class RequestLog:
    def __init__(self, limit=5000):
        self.lock = threading.Lock()
        self.items = collections.deque(maxlen=limit)
        self.seq = 0

    def add(self, method, target, headers, status, started, watch=False, note=None):
        entry = {"method": method, "path": target, "status": status,
                 "time": round(time.time(), 6),
                 "ms": round((time.monotonic() - started) * 1000.0, 3),
                 "headers": {k: headers[k] for k in LOGGED_HEADERS if k in headers},
                 "authorization": bool(headers.get("authorization"))}
        if watch:
            entry["watch"] = True
        if note:
            entry["note"] = note
        with self.lock:
            self.seq += 1
            entry["seq"] = self.seq
            self.items.append(entry)

    def since(self, seq=0, limit=None):
        with self.lock:
            out = [e for e in self.items if e["seq"] > seq]
        return out[-limit:] if limit else out

    def clear(self):
        with self.lock:
            self.items.clear()
