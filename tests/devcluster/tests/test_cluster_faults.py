"""Dev cluster fault knobs, one test each, asserting what a client sees.

Knobs are set with POST /_admin/faults (JSON merge) and reset after each test.
Flags at start are covered by test_cluster_cli. Run:
    python3 tests/pyrun.py tests/devcluster devcluster -k ClusterFaults
"""
import json
import os
import socket
import subprocess
import time
import unittest
import urllib.parse

from .. import harness
from ..harness import CLAIMS, cond, ready, reason

C = None
CL = CLAIMS % ("v1beta1", "default")
PODS = "/api/v1/namespaces/default/pods"


def setUpModule():
    global C
    C = harness.DevCluster().up()


def tearDownModule():
    if C is not None:
        C.down()


class ClusterFaults(unittest.TestCase):
    def setUp(self):
        C.reset_faults()
        C.wait_pool_ready()

    def tearDown(self):
        C.reset_faults()
        C.api("DELETE", CL + "?labelSelector=faulttest%3Dyes")

    def claim(self, name, pool="python-sandbox-warmpool"):
        return C.create_claim(name, pool=pool, metadata={"labels": {"faulttest": "yes"}})

    def test_get_and_merge_faults(self):
        self.assertEqual(C.admin("GET", "faults"), {})
        C.faults(cold_start_ms=5, never_ready=True)
        self.assertEqual(C.faults(never_ready=None), {"cold_start_ms": 5})

    def test_controller_delay(self):
        t0 = time.monotonic()
        self.claim("f-fast")
        C.wait_claim("f-fast", ready)
        fast = time.monotonic() - t0
        C.faults(controller_delay_ms=150)
        t0 = time.monotonic()
        self.claim("f-slow")
        C.wait_claim("f-slow", ready, timeout=10)
        slow = time.monotonic() - t0
        self.assertGreaterEqual(slow, 0.15)
        self.assertGreater(slow, fast + 0.1)

    def test_cold_start_delay(self):
        C.faults(cold_start_ms=700)
        t0 = time.monotonic()
        self.claim("f-cold", pool="python-sandbox-coldpool")
        C.wait_claim("f-cold", lambda o: reason(o) == "DependenciesNotReady")
        c = C.wait_claim("f-cold", ready, timeout=10)
        self.assertGreaterEqual(time.monotonic() - t0, 0.7)
        self.assertEqual(c["status"]["sandbox"]["name"], "f-cold")

    def test_never_ready(self):
        C.faults(never_ready=True)
        self.claim("f-never")
        time.sleep(1.0)
        c = C.claim("f-never")
        self.assertFalse(ready(c))
        self.assertEqual((reason(c), cond(c)["message"]),
                         ("DependenciesNotReady", "Pod exists with phase: Pending"))
        self.assertFalse(c["status"]["sandbox"].get("podIPs"))
        C.faults(never_ready=None)
        C.wait_claim("f-never", ready, timeout=5)

    def test_claim_deleted_while_waiting(self):
        C.faults(never_ready=True, delete_claim_after_ms=400)
        w = C.watch(CL + "?watch=true&fieldSelector=metadata.name%3Df-gone")
        t0 = time.monotonic()
        self.claim("f-gone")
        evs = w.wait(lambda e: e and e[-1]["type"] == "DELETED", timeout=5)
        took = time.monotonic() - t0
        w.close()
        self.assertGreaterEqual(took, 0.3)
        self.assertFalse(any(ready(e["object"]) for e in evs))
        self.assertIsNone(C.claim("f-gone"))

    def test_api_errors_every_n_requests(self):
        self.claim("f-5xx")
        C.faults(api_error_every=3, api_fault_match="sandboxclaims")
        codes = [C.api("GET", CL + "/f-5xx")[0] for _ in range(6)]
        self.assertEqual(codes, [200, 200, 500, 200, 200, 500])
        C.faults(api_error_every=1, api_error_code=503)
        status, err = C.api("GET", CL + "/f-5xx")
        self.assertEqual((status, err["kind"], err["reason"]), (503, "Status",
                                                                "ServiceUnavailable"))
        status, _ = C.api("GET", "/api/v1/namespaces/default/pods")   # not matched
        self.assertEqual(status, 200)
        status, err = C.api("GET", CL + "/f-5xx")
        self.assertEqual(err["code"], 503)

    def test_create_then_fail_and_drop(self):
        # the claim is stored, and the answer is a 500 / no answer at all
        C.faults(create_then_fail=1)
        body = {"apiVersion": "extensions.agents.x-k8s.io/v1beta1", "kind": "SandboxClaim",
                "metadata": {"name": "f-landed", "labels": {"faulttest": "yes"}},
                "spec": {"warmPoolRef": {"name": "python-sandbox-warmpool"}}}
        status, err = C.api("POST", CL, body)
        self.assertEqual((status, err["code"]), (500, 500))
        self.assertIn("create_then_fail", err["message"])
        self.assertEqual(C.api("GET", CL + "/f-landed")[0], 200)
        self.assertEqual(C.admin("GET", "faults").get("create_then_fail"), 0)
        status, err = C.api("POST", CL, body)          # used up: the name is taken now
        self.assertEqual(status, 409)
        C.faults(create_then_drop=1)
        body["metadata"]["name"] = "f-dropped"
        # the harness sends a request again once when its connection is cut
        # unanswered: the second try finds what the first one stored
        status, err = C.api("POST", CL, body)
        self.assertEqual((status, err["reason"]), (409, "AlreadyExists"))
        self.assertEqual(C.api("GET", CL + "/f-dropped")[0], 200)
        self.assertEqual(C.admin("GET", "faults").get("create_then_drop"), 0)

    def test_429_with_retry_after(self):
        C.faults(api_429_every=2, retry_after=3)
        C.api("GET", CL)
        status, hdrs, body = C.api("GET", CL, raw=True)
        self.assertEqual(status, 429)
        self.assertEqual(hdrs.get("Retry-After"), "3")
        err = json.loads(body)
        self.assertEqual((err["reason"], err["details"]["retryAfterSeconds"]),
                         ("TooManyRequests", 3))
        self.assertEqual(C.api("GET", CL)[0], 200)

    def test_watch_dropped_mid_stream(self):
        for i in range(3):
            self.claim("f-drop-%d" % i)
        C.faults(watch_drop_after=2)
        w = C.watch(CL + "?watch=true&labelSelector=faulttest%3Dyes")
        closed, broken = w.wait_end(5)
        w.close()
        self.assertEqual(len(w.items), 2)
        self.assertFalse(closed)                 # no terminating chunk: the connection was cut
        self.assertTrue(broken)

    def test_watch_expired_event_and_http(self):
        o = self.claim("f-410")
        rv = o["metadata"]["resourceVersion"]
        C.faults(watch_expired=1)
        w = C.watch(CL + "?watch=true&resourceVersion=%s" % rv)
        self.assertEqual(w.status, 200)
        ev = w.wait(lambda e: e)[0]
        self.assertEqual((ev["type"], ev["object"]["code"], ev["object"]["reason"]),
                         ("ERROR", 410, "Expired"))
        w.close()
        # the countdown is used up: the next watch from that RV works
        w = C.watch(CL + "?watch=true&timeoutSeconds=1&resourceVersion=%s" % rv)
        w.wait_end(5)
        self.assertNotIn("ERROR", [e["type"] for e in w.items])
        w.close()
        C.faults(watch_expired=1, watch_expired_http=True)
        w = C.watch(CL + "?watch=true&resourceVersion=%s" % rv)
        self.assertEqual(w.status, 410)
        w.wait_end(5)
        w.close()
        # resourceVersion "0" is never expired
        C.faults(watch_expired=1)
        w = C.watch(CL + "?watch=true&resourceVersion=0&timeoutSeconds=1")
        self.assertEqual(w.status, 200)
        w.close()

    def test_watch_ended_cleanly(self):
        for i in range(3):
            self.claim("f-end-%d" % i)
        C.faults(watch_end_after=2)
        w = C.watch(CL + "?watch=true&labelSelector=faulttest%3Dyes")
        closed, broken = w.wait_end(5)
        w.close()
        self.assertEqual(len(w.items), 2)
        self.assertTrue(closed)                  # the terminating chunk came
        self.assertIsNone(broken)

    def test_watch_expired_every_nth(self):
        rv = self.claim("f-410n")["metadata"]["resourceVersion"]
        C.faults(watch_expired_every=2, watch_expired_http=True)
        codes = []
        for q in ("resourceVersion=" + rv, "resourceVersion=0", "resourceVersion=" + rv,
                  "", "resourceVersion=" + rv, "resourceVersion=" + rv):
            w = C.watch(CL + "?watch=true&timeoutSeconds=0.1&" + q)
            codes.append(w.status)
            w.wait_end(5)
            w.close()
        # only watches that name a resourceVersion count: the 2nd and 4th of them fail
        self.assertEqual(codes, [200, 200, 410, 200, 200, 410])

    def test_runtime_faults_pass_through(self):
        self.claim("f-rt", pool="python-sandbox-coldpool")
        C.wait_claim("f-rt", ready)
        rt = {"status_5xx": 503, "fail_paths": ["/execute"], "fail_first": 1}
        C.faults(runtime=rt)
        with open(os.path.join(C.state, "runtime-faults.json")) as f:
            self.assertEqual(json.load(f), rt)
        status, body = C.api("POST", PODS + "/f-rt:8888/proxy/execute", {"command": "true"})
        self.assertEqual(status, 503)
        status, body = C.api("POST", PODS + "/f-rt:8888/proxy/execute", {"command": "echo ok"})
        self.assertEqual((status, body["stdout"]), (200, "ok\n"))
        C.faults(runtime=None)
        with open(os.path.join(C.state, "runtime-faults.json")) as f:
            self.assertEqual(json.load(f), {})

    def test_request_log_shows_watch_vs_poll(self):
        seq = C.last_seq()
        w = C.watch(CL + "?watch=1&timeoutSeconds=1")
        w.wait_end(5)
        w.close()
        C.api("GET", CL)
        reqs = [r for r in C.requests_since(seq) if "sandboxclaims" in r["path"]]
        self.assertEqual([r.get("watch", False) for r in reqs], [True, False])
        self.assertEqual(reqs[0]["method"], "GET")
        self.assertIn("watch=1", reqs[0]["path"])
        self.assertEqual(reqs[1]["headers"].get("accept"), "application/json")

    # ------------------------------------------------ faults that hit every client

    def _upgrade(self, pod, base=None):
        """A raw port-forward upgrade request (kubectl's WebSocket form); -> status code."""
        u = urllib.parse.urlsplit(base or C.api_url)
        s = socket.create_connection((u.hostname, u.port), timeout=5)
        try:
            s.sendall(("GET %s/%s/portforward HTTP/1.1\r\nHost: %s:%d\r\n"
                       "Connection: Upgrade\r\nUpgrade: websocket\r\n"
                       "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: c2J4c2J4c2J4c2J4c2J4cw==\r\n"
                       "Sec-WebSocket-Protocol: SPDY/3.1+portforward.k8s.io\r\n\r\n"
                       % (PODS, pod, u.hostname, u.port)).encode())
            head = s.recv(4096).decode("latin-1")
            return int(head.split(" ", 2)[1])
        finally:
            s.close()

    def test_error_period_counts_every_request_of_every_client(self):
        """api_fault_match unset: every request but /_admin/* counts, on one counter:
        any method, /version, /openapi, watches, port-forward upgrades, from any connection."""
        self.claim("f-all")
        pod = C.wait_claim("f-all", ready)["status"]["sandbox"]["name"]
        a, b = harness.Http(C.api_url), harness.Http(C.admin_url)
        body = {"metadata": {"labels": {"x": "y"}}}
        reqs = [lambda: a.request("GET", "/version")[0],
                lambda: b.request("GET", CL + "/f-all")[0],
                lambda: a.request("PATCH", CL + "/f-all", body,
                                  {"Content-Type": "application/merge-patch+json"})[0],
                lambda: a.request("GET", "/openapi/v3")[0],
                lambda: self._upgrade(pod),
                lambda: a.request("GET", CL + "?watch=true&timeoutSeconds=0.2")[0],
                lambda: b.request("POST", CL, {"apiVersion": "extensions.agents.x-k8s.io/v1beta1",
                                               "kind": "SandboxClaim",
                                               "metadata": {"name": "f-all2",
                                                            "labels": {"faulttest": "yes"}},
                                               "spec": {"warmPoolRef": {"name": "nope"}}})[0],
                lambda: a.request("HEAD", "/healthz")[0],
                lambda: a.request("DELETE", CL + "/f-all2")[0],
                lambda: a.request("GET", "/api")[0]]
        C.faults(api_error_every=2)
        codes = []
        for i, r in enumerate(reqs):
            codes.append(r())
            C.admin("GET", "health")                  # admin requests are never counted
        fails = [i for i, c in enumerate(codes) if c == 500]
        self.assertEqual(fails, [1, 3, 5, 7, 9], codes)
        self.assertNotIn(500, [codes[i] for i in (0, 2, 4, 6, 8)])
        self.assertEqual(codes[4], 101)
        # setting the knob restarts its count: the 3rd request after it fails
        C.faults(api_error_every=3, api_error_code=503)
        codes = [a.request("GET", "/version")[0] for _ in range(6)]
        self.assertEqual(codes, [200, 200, 503, 200, 200, 503])
        a.close()
        b.close()

    @unittest.skipIf(harness.KUBECTL is None, "kubectl is not installed")
    def test_error_period_hits_kubectl(self):
        """The real kubectl (its /version probe, discovery and GETs) is failed too."""
        C.kubectl("get", "pods")                      # warm the discovery cache
        seq = C.last_seq()
        C.faults(api_error_every=1)
        p = C.kubectl("get", "pods", "-o", "name")
        C.faults(api_error_every=None)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("InternalError", p.stderr)
        seen = C.requests_since(seq)
        kub = [r for r in seen if "kubectl" in r["headers"].get("user-agent", "")]
        self.assertTrue(any(r["path"].startswith("/version") for r in kub), kub)
        self.assertTrue(kub and all(r["status"] == 500 for r in kub),
                        [(r["path"], r["status"]) for r in kub])

    def test_api_latency(self):
        a = harness.Http(C.api_url)
        a.request("GET", "/version")
        t0 = time.monotonic()
        a.request("GET", "/version")
        fast = time.monotonic() - t0
        C.faults(api_latency_ms=250)
        for path in ("/version", CL, PODS + "?watch=1&timeoutSeconds=0.1"):
            t0 = time.monotonic()
            status, _ = a.request("GET", path)
            took = time.monotonic() - t0
            self.assertEqual(status, 200)
            self.assertGreaterEqual(took, 0.25, path)
            self.assertLess(took, 2.0, path)
        t0 = time.monotonic()
        C.admin("GET", "health")                      # admin: never delayed
        self.assertLess(time.monotonic() - t0, 0.2)
        C.faults(api_latency_ms=None)
        t0 = time.monotonic()
        a.request("GET", "/version")
        self.assertLess(time.monotonic() - t0, fast + 0.2)
        a.close()

    def _api_up(self):
        return C.state_dump()["api"]["up"]

    def test_restart_api_keeps_state(self):
        self.claim("f-rs")
        C.wait_claim("f-rs", ready)
        C.wait_pool_ready()                   # the pool refilled: nothing else is changing
        c0 = C.claim("f-rs")
        st0 = C.state_dump()
        pids0 = sorted(p["pid"] for p in st0["processes"] if p["alive"])
        port = int(C.api_url.rsplit(":", 1)[1])
        a = harness.Http(C.api_url)
        self.assertEqual(a.request("GET", CL + "/f-rs")[0], 200)     # a kept-alive connection
        w = harness.Watch(C.api_url, CL + "?watch=true&resourceVersion=%s"
                          % c0["metadata"]["resourceVersion"])
        time.sleep(0.1)
        self.assertGreaterEqual(C.state_dump()["api"]["connections"], 2)
        t0 = time.monotonic()
        out = C.admin("POST", "restart-api?down_ms=700")
        self.assertEqual(out, {"down_ms": 700, "ports": [port]})
        # down: the watch and the kept connection are cut, new connects refused
        closed, broken = w.wait_end(3)
        self.assertFalse(closed)
        self.assertTrue(broken)
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        self.assertFalse(self._api_up())
        self.assertEqual(C.api("GET", "/_admin/health")[0], 200)      # admin stays up
        self.assertEqual(C.api("GET", CL + "/f-rs")[0], 200)          # ...and serves the API
        self.assertEqual(C.api("POST", "/_admin/restart-api?down_ms=10")[0], 409)
        C.wait_for(self._api_up, 5, 0.01, "API back")
        self.assertGreaterEqual(time.monotonic() - t0, 0.65)
        self.assertEqual(C.state_dump()["api"]["restarts"], 1 + st0["api"]["restarts"])
        # up again on the same port, with the same objects and resourceVersions
        status, c1 = a.request("GET", CL + "/f-rs")          # Http reconnects once
        self.assertEqual(status, 200)
        self.assertEqual(c1["metadata"]["resourceVersion"], c0["metadata"]["resourceVersion"])
        self.assertEqual(c1["metadata"]["uid"], c0["metadata"]["uid"])
        st1 = C.state_dump()
        self.assertGreaterEqual(int(st1["resourceVersion"]), int(st0["resourceVersion"]))
        self.assertLessEqual(set(pids0), set(p["pid"] for p in st1["processes"] if p["alive"]))
        # the watch history survived: resuming from the old resourceVersion works
        w2 = harness.Watch(C.api_url, CL + "?watch=true&timeoutSeconds=0.3&resourceVersion=%s"
                           % c0["metadata"]["resourceVersion"])
        self.assertEqual(w2.status, 200)
        w2.wait_end(3)
        self.assertNotIn("ERROR", [e["type"] for e in w2.items])
        w.close()
        w2.close()
        a.close()

    @unittest.skipIf(harness.KUBECTL is None, "kubectl is not installed")
    def test_restart_api_kubectl_proxy_recovers(self):
        """The real `kubectl proxy` answers 500 while the API is down and recovers by itself;
        a `kubectl port-forward` loses its tunnel ("lost connection to pod")."""
        self.claim("f-rsk")
        pod = C.wait_claim("f-rsk", ready)["status"]["sandbox"]["name"]
        proxy = C.kubectl_bg("proxy", "--port=0")
        port = int(proxy.wait_line(r"Starting to serve on 127\.0\.0\.1:(\d+)").group(1))
        pf = C.kubectl_bg("port-forward", "pod/" + pod, "0:8888", "--address", "127.0.0.1")
        pf.wait_line(r"Forwarding from 127\.0\.0\.1:\d+")
        via = harness.Http("http://127.0.0.1:%d" % port)
        try:
            self.assertEqual(via.request("GET", CL + "/f-rsk")[0], 200)
            C.admin("POST", "restart-api?down_ms=1500")
            status, err = via.request("GET", CL + "/f-rsk")
            self.assertEqual(status, 500)
            self.assertIn(b"connection refused", err if isinstance(err, bytes) else
                          json.dumps(err).encode())
            self.assertEqual(pf.proc.wait(5), 1)
            self.assertIn("lost connection to pod", "\n".join(pf.err))
            C.wait_for(self._api_up, 5, 0.01, "API back")
            status, obj = via.request("GET", CL + "/f-rsk")
            self.assertEqual(status, 200)
            self.assertEqual(obj["metadata"]["name"], "f-rsk")
            self.assertIsNone(proxy.proc.poll())
        finally:
            via.close()
            proxy.stop()
            pf.stop()

    def test_state_lists_processes(self):
        st = C.state_dump()
        live = [p for p in st["processes"] if not p["terminating"]]
        kinds = sorted(p["kind"] for p in live)
        self.assertEqual(kinds.count("router"), 1)
        self.assertGreaterEqual(kinds.count("runtime"), 2)
        pods = {(p["namespace"], p["name"]): p for p in st["pods"]}
        for p in live:
            self.assertTrue(p["alive"])
            os.kill(p["pid"], 0)
            pod = pods.get((p["namespace"], p["pod"]))
            if pod and pod["podIP"]:
                self.assertEqual(pod["podIP"], p["ip"])


if __name__ == "__main__":
    unittest.main()
