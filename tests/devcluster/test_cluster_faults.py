"""Dev cluster fault knobs, one test each, asserting what a client sees.

Knobs are set with POST /_admin/faults (JSON merge) and reset after each test.
Flags at start are covered by test_cluster_cli. Run:
    python3 tests/pyrun.py tests/devcluster devcluster -k ClusterFaults
"""
import json
import os
import time
import unittest

from . import harness
from .harness import CLAIMS, cond, ready, reason

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
