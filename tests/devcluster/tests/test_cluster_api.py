"""Dev cluster API server and controller, over plain HTTP (no kubectl needed).

One cluster (started with `cluster.py up`, like `make devcluster-up`) serves
every test of this module. Run:
    python3 tests/pyrun.py tests/devcluster devcluster -k ClusterApi
"""
import json
import os
import time
import unittest

from .. import harness
from .. import workqueue
from ..harness import CLAIMS, SANDBOXES, cond, ready, reason

C = None
EXT = "/apis/extensions.agents.x-k8s.io/v1beta1/namespaces/default"
PODS = "/api/v1/namespaces/default/pods"


def setUpModule():
    global C
    C = harness.DevCluster().up()


def tearDownModule():
    if C is not None:
        C.down()


def claims(ns="default", version="v1beta1"):
    return CLAIMS % (version, ns)


def sandboxes(ns="default", version="v1beta1"):
    return SANDBOXES % (version, ns)


class ClusterApiDiscovery(unittest.TestCase):
    def test_version_is_1_32(self):
        status, v = C.api("GET", "/version")
        self.assertEqual(status, 200)
        self.assertEqual((v["major"], v["minor"]), ("1", "32"))
        self.assertTrue(v["gitVersion"].startswith("v1.32."))

    def test_discovery_documents(self):
        _, apis = C.api("GET", "/apis")
        groups = {g["name"]: g for g in apis["groups"]}
        for g in ("agents.x-k8s.io", "extensions.agents.x-k8s.io"):
            self.assertEqual(groups[g]["preferredVersion"]["version"], "v1beta1")
            self.assertEqual([v["version"] for v in groups[g]["versions"]],
                             ["v1beta1", "v1alpha1"])
        self.assertIn("gateway.networking.k8s.io", groups)
        _, ext = C.api("GET", "/apis/extensions.agents.x-k8s.io/v1beta1")
        names = {r["name"]: r for r in ext["resources"]}
        for r in ("sandboxclaims", "sandboxclaims/status", "sandboxtemplates",
                  "sandboxwarmpools", "sandboxwarmpools/scale"):
            self.assertIn(r, names)
        self.assertEqual(names["sandboxwarmpools"]["shortNames"], ["swp"])
        _, core = C.api("GET", "/api/v1")
        cnames = {r["name"] for r in core["resources"]}
        self.assertTrue({"pods", "pods/portforward", "pods/proxy", "services"} <= cnames)
        _, api = C.api("GET", "/api")
        self.assertEqual(api["versions"], ["v1"])
        status, err = C.api("GET", "/apis/nope.example.com/v1")
        self.assertEqual((status, err["kind"], err["reason"]), (404, "Status", "NotFound"))


class ClusterApiCrud(unittest.TestCase):
    def test_generate_name_and_server_fields(self):
        obj = C.create_claim("sandbox-claim-", pool="python-sandbox-coldpool",
                             metadata={"labels": {"t": "gen"}})
        name = obj["metadata"]["name"]
        self.assertRegex(name, r"^sandbox-claim-[bcdfghjklmnpqrstvwxz2456789]{5}$")
        md = obj["metadata"]
        self.assertEqual(md["generation"], 1)
        self.assertTrue(md["uid"] and md["resourceVersion"].isdigit())
        self.assertRegex(md["creationTimestamp"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertNotIn("status", obj)
        C.delete(claims() + "/" + name)

    def test_posted_status_is_dropped(self):
        body = {"apiVersion": "extensions.agents.x-k8s.io/v1beta1", "kind": "SandboxClaim",
                "metadata": {"name": "with-status"},
                "spec": {"warmPoolRef": {"name": "nope-pool"}},
                "status": {"sandbox": {"name": "fake"}}}
        status, obj = C.api("POST", claims(), body)
        self.assertEqual(status, 201)
        self.assertNotIn("status", obj)
        C.delete(claims() + "/with-status")

    def test_error_statuses(self):
        status, err = C.api("GET", claims() + "/does-not-exist")
        self.assertEqual(status, 404)
        self.assertEqual((err["kind"], err["status"], err["reason"], err["code"]),
                         ("Status", "Failure", "NotFound", 404))
        self.assertEqual(err["details"], {"name": "does-not-exist",
                                          "group": "extensions.agents.x-k8s.io",
                                          "kind": "sandboxclaims"})
        self.assertEqual(err["message"],
                         'sandboxclaims.extensions.agents.x-k8s.io "does-not-exist" not found')
        C.create_claim("dup-claim", pool="nope-pool")
        status, err = C.api("POST", claims(), {"metadata": {"name": "dup-claim"},
                                              "spec": {"warmPoolRef": {"name": "x"}}})
        self.assertEqual((status, err["reason"]), (409, "AlreadyExists"))
        C.delete(claims() + "/dup-claim")
        status, err = C.api("POST", claims(), {"metadata": {"name": "no-ref"}, "spec": {}})
        self.assertEqual((status, err["reason"]), (422, "Invalid"))
        self.assertEqual(err["details"]["causes"][0]["field"], "spec.warmPoolRef")
        self.assertEqual(err["details"]["causes"][0]["reason"], "FieldValueRequired")
        status, err = C.api("POST", claims(), {"metadata": {"name": "bad-policy"}, "spec": {
            "warmPoolRef": {"name": "x"}, "lifecycle": {"shutdownPolicy": "Nope"}}})
        self.assertEqual((status, err["details"]["causes"][0]["field"]),
                         (422, "spec.lifecycle.shutdownPolicy"))
        status, err = C.api("POST", claims(), b"{not json")
        self.assertEqual((status, err["reason"]), (400, "BadRequest"))
        status, err = C.api("POST", claims("no-such-ns"), {"metadata": {"name": "x"},
                                                           "spec": {"warmPoolRef": {"name": "x"}}})
        self.assertEqual((status, err["message"]), (404, 'namespaces "no-such-ns" not found'))
        status, err = C.api("DELETE", claims() + "/does-not-exist")
        self.assertEqual((status, err["reason"]), (404, "NotFound"))

    def test_list_selectors(self):
        for n, labels in (("sel-a", {"tier": "a", "x": "1"}), ("sel-b", {"tier": "b"}),
                          ("sel-c", {"tier": "c", "x": "2"})):
            C.create_claim(n, pool="nope-pool", metadata={"labels": dict(labels, grp="sel")})
        try:
            def names(query):
                status, lst = C.api("GET", claims() + "?" + query)
                self.assertEqual(status, 200, lst)
                self.assertEqual(lst["kind"], "SandboxClaimList")
                self.assertTrue(lst["metadata"]["resourceVersion"].isdigit())
                return sorted(i["metadata"]["name"] for i in lst["items"])
            self.assertEqual(names("labelSelector=grp%3Dsel,tier%3Da"), ["sel-a"])
            self.assertEqual(names("labelSelector=grp%3D%3Dsel,tier!%3Da"), ["sel-b", "sel-c"])
            self.assertEqual(names("labelSelector=grp%3Dsel,x"), ["sel-a", "sel-c"])
            self.assertEqual(names("labelSelector=grp%3Dsel,!x"), ["sel-b"])
            self.assertEqual(names("labelSelector=grp%3Dsel,tier%20in%20(a,c)"), ["sel-a", "sel-c"])
            self.assertEqual(names("labelSelector=grp%3Dsel,tier%20notin%20(a,c)"), ["sel-b"])
            self.assertEqual(names("fieldSelector=metadata.name%3Dsel-b"), ["sel-b"])
            self.assertEqual(names("labelSelector=grp%3Dsel&fieldSelector=metadata.namespace"
                                   "%3Ddefault"), ["sel-a", "sel-b", "sel-c"])
            status, lst = C.api("GET", "/apis/extensions.agents.x-k8s.io/v1beta1/sandboxclaims"
                                "?labelSelector=grp%3Dsel")
            self.assertEqual(len(lst["items"]), 3)           # all-namespaces list
            status, err = C.api("GET", claims() + "?fieldSelector=spec.foo%3Dx")
            self.assertEqual((status, err["reason"]), (400, "BadRequest"))
        finally:
            C.api("DELETE", claims() + "?labelSelector=grp%3Dsel")
        self.assertEqual(C.get(claims() + "?labelSelector=grp%3Dsel")["items"], [])

    def test_one_resource_version_for_all_kinds(self):
        a = C.create_claim("rv-a", pool="nope-pool")
        status, svc = C.api("POST", "/api/v1/namespaces/default/services", {
            "metadata": {"name": "rv-svc"}, "spec": {"ports": [{"port": 1}]}})
        self.assertEqual(status, 201)
        b = C.create_claim("rv-b", pool="nope-pool")
        rvs = [int(o["metadata"]["resourceVersion"]) for o in (a, svc, b)]
        self.assertEqual(rvs, sorted(rvs))
        self.assertEqual(len(set(rvs)), 3)
        for p in (claims() + "/rv-a", claims() + "/rv-b", "/api/v1/namespaces/default/services/rv-svc"):
            C.delete(p)

    def test_patch_update_and_status_subresource(self):
        C.create_claim("patchy", pool="nope-pool")
        p = claims() + "/patchy"
        mp = {"Content-Type": "application/merge-patch+json"}
        status, o = C.api("PATCH", p, {"metadata": {"labels": {"k": "v"}}}, mp)
        self.assertEqual((status, o["metadata"]["labels"], o["metadata"]["generation"]),
                         (200, {"k": "v"}, 1))
        status, o = C.api("PATCH", p, {"spec": {"warmPoolRef": {"name": "other"}}}, mp)
        self.assertEqual((o["spec"]["warmPoolRef"]["name"], o["metadata"]["generation"]),
                         ("other", 2))
        # status writes through the main resource are ignored; /status takes them
        status, o = C.api("PATCH", p, {"status": {"sandbox": {"name": "zzz"}}}, mp)
        self.assertNotEqual(((o.get("status") or {}).get("sandbox") or {}).get("name"), "zzz")
        C.faults(controller_delay_ms=None)
        status, o = C.api("PATCH", p + "/status", {"status": {"conditions": [
            {"type": "Custom", "status": "True"}]}}, mp)
        self.assertEqual(status, 200)
        self.assertIn("Custom", [c["type"] for c in o["status"]["conditions"]])
        self.assertEqual(o["metadata"]["generation"], 2)
        status, o = C.api("PATCH", p, [{"op": "add", "path": "/metadata/labels/j",
                                        "value": "p"}],
                          {"Content-Type": "application/json-patch+json"})
        self.assertEqual((status, o["metadata"]["labels"]["j"]), (200, "p"))
        status, err = C.api("PATCH", p, {"metadata": {}},
                            {"Content-Type": "application/strategic-merge-patch+json"})
        self.assertEqual((status, err["reason"]), (415, "UnsupportedMediaType"))
        stale = dict(o)
        stale["metadata"] = dict(o["metadata"], resourceVersion="1")
        status, err = C.api("PUT", p, stale)
        self.assertEqual((status, err["reason"]), (409, "Conflict"))
        # read-modify-write as clients do it: the controller may write the claim
        # between our GET and PUT (409 Conflict), then read it again
        for _ in range(5):
            cur = C.claim("patchy")
            cur["metadata"]["labels"]["put"] = "yes"
            status, o = C.api("PUT", p, cur)
            if status != 409:
                break
        self.assertEqual((status, o["metadata"]["labels"]["put"]), (200, "yes"))
        C.delete(p)


class ClusterApiWatch(unittest.TestCase):
    def test_initial_state_then_changes_then_timeout(self):
        C.create_claim("w-one", pool="nope-pool")
        w = C.watch(claims() + "?watch=true&fieldSelector=metadata.name%3Dw-one&timeoutSeconds=2")
        self.assertEqual(w.status, 200)
        self.assertEqual(w.headers.get("Transfer-Encoding"), "chunked")
        evs = w.wait(lambda e: len(e) >= 1)
        self.assertEqual(evs[0]["type"], "ADDED")
        C.delete(claims() + "/w-one")
        evs = w.wait(lambda e: any(x["type"] == "DELETED" for x in e))
        closed, broken = w.wait_end(5)
        self.assertTrue(closed, broken)              # timeoutSeconds: clean end
        w.close()

    def test_resume_from_resource_version_and_true_spellings(self):
        o = C.create_claim("w-two", pool="nope-pool")
        rv = o["metadata"]["resourceVersion"]
        C.api("PATCH", claims() + "/w-two", {"metadata": {"labels": {"n": "1"}}},
              {"Content-Type": "application/merge-patch+json"})
        for spelling in ("true", "True", "1"):
            w = C.watch(claims() + "?watch=%s&resourceVersion=%s&timeoutSeconds=1"
                        "&fieldSelector=metadata.name%%3Dw-two" % (spelling, rv))
            evs = w.wait(lambda e: any((x["object"]["metadata"].get("labels") or {}).get("n")
                                       for x in e))
            self.assertNotIn("ADDED", [e["type"] for e in evs])   # nothing synthetic
            for e in evs:
                self.assertGreater(int(e["object"]["metadata"]["resourceVersion"]), int(rv))
            w.close()
        C.delete(claims() + "/w-two")

    def test_too_old_resource_version_gets_410_expired(self):
        o = C.create_claim("w-three", pool="nope-pool")
        old_rv = str(int(o["metadata"]["resourceVersion"]) - 1)
        C.admin("POST", "compact")
        w = C.watch(claims() + "?watch=true&resourceVersion=%s" % old_rv)
        self.assertEqual(w.status, 200)
        evs = w.wait(lambda e: len(e) >= 1)
        self.assertEqual(evs[0]["type"], "ERROR")
        st = evs[0]["object"]
        self.assertEqual((st["kind"], st["code"], st["reason"]), ("Status", 410, "Expired"))
        self.assertTrue(w.wait_end()[0])
        w.close()
        w = C.watch(claims() + "?watch=true&resourceVersion=0&timeoutSeconds=1"
                    "&fieldSelector=metadata.name%3Dw-three")
        self.assertEqual(w.wait(lambda e: len(e) >= 1)[0]["type"], "ADDED")
        w.close()
        C.delete(claims() + "/w-three")

    def test_bookmarks(self):
        C.faults(bookmark_interval_ms=100)
        try:
            w = C.watch(claims() + "?watch=true&allowWatchBookmarks=true&timeoutSeconds=1"
                        "&fieldSelector=metadata.name%3Dnobody")
            evs = w.wait(lambda e: len(e) >= 2)
            self.assertEqual({e["type"] for e in evs}, {"BOOKMARK"})
            self.assertTrue(evs[0]["object"]["metadata"]["resourceVersion"].isdigit())
            self.assertEqual(evs[0]["object"]["kind"], "SandboxClaim")
            w.close()
            w = C.watch(claims() + "?watch=true&timeoutSeconds=1&fieldSelector=metadata.name"
                        "%3Dnobody")
            w.wait_end(3)
            self.assertEqual(w.items, [])           # no bookmarks unless asked for
            w.close()
        finally:
            C.faults(bookmark_interval_ms=None)

    def test_label_selector_transitions(self):
        C.create_claim("w-lab", pool="nope-pool", metadata={"labels": {"wl": "yes"}})
        w = C.watch(claims() + "?watch=true&labelSelector=wl%3Dyes&timeoutSeconds=3")
        w.wait(lambda e: len(e) >= 1)
        mp = {"Content-Type": "application/merge-patch+json"}
        C.api("PATCH", claims() + "/w-lab", {"metadata": {"labels": {"wl": "no"}}}, mp)
        C.api("PATCH", claims() + "/w-lab", {"metadata": {"labels": {"wl": "yes"}}}, mp)
        # the controller may write the claim (annotation, status) while it still
        # matches: those are MODIFIED events; the transitions are what counts
        def transitions(e):
            return [x["type"] for x in e if x["type"] != "MODIFIED"]
        evs = w.wait(lambda e: len(transitions(e)) >= 3)
        self.assertEqual(transitions(evs)[:3], ["ADDED", "DELETED", "ADDED"])
        self.assertEqual(evs[-1]["object"]["metadata"]["labels"]["wl"], "yes")
        w.close()
        C.delete(claims() + "/w-lab")


class WorkQueueOrder(unittest.TestCase):
    def test_urgent_keys_first_among_the_due(self):
        q = workqueue.WorkQueue(urgent=lambda k: k[0] == "claim")
        for k in [("pool", 1), ("sandbox", 2), ("claim", 3), ("pool", 4), ("claim", 5)]:
            q.add(k)
        q.add(("claim", 6), 0.3)        # urgent but not due: the due keys go first
        q.add(("claim", 3))             # already scheduled: not twice
        got = [q.get() for _ in range(5)]
        self.assertEqual(got, [("claim", 3), ("claim", 5), ("pool", 1), ("sandbox", 2), ("pool", 4)])
        t0 = time.monotonic()
        self.assertEqual(q.get(), ("claim", 6))
        self.assertGreater(time.monotonic() - t0, 0.2)
        self.assertEqual(q.pending(), 0)
        q.add(("claim", 3))             # taken keys can come again
        self.assertEqual(q.get(), ("claim", 3))


class ClusterController(unittest.TestCase):
    def setUp(self):
        C.reset_faults()

    def test_warm_adoption_event_sequence_and_latency(self):
        C.wait_pool_ready()
        w = C.watch(claims() + "?watch=true&fieldSelector=metadata.name%3Dwarm-1")
        t0 = time.monotonic()
        C.create_claim("warm-1")
        evs = w.wait(lambda e: any(ready(x["object"]) for x in e), timeout=5)
        latency = time.monotonic() - t0
        w.close()
        print("\n  warm claim Ready after %.1f ms (create -> Ready event)" % (latency * 1000))
        self.assertLess(latency, 0.5)
        types = [e["type"] for e in evs]
        self.assertEqual(types, ["ADDED", "MODIFIED", "MODIFIED", "MODIFIED"])
        ann = [e["object"]["metadata"].get("annotations") or {} for e in evs]
        self.assertNotIn("agents.x-k8s.io/controller-first-observed-at", ann[0])
        self.assertRegex(ann[1]["agents.x-k8s.io/controller-first-observed-at"],
                         r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")
        self.assertNotIn("agents.x-k8s.io/sandbox-name", ann[1])
        sbname = ann[2]["agents.x-k8s.io/sandbox-name"]
        self.assertNotIn("status", evs[2]["object"])
        last = evs[3]["object"]
        self.assertRegex(sbname, r"^python-sandbox-warmpool-[bcdfghjklmnpqrstvwxz2456789]{5}$")
        self.assertEqual(last["status"]["sandbox"]["name"], sbname)
        self.assertTrue(last["status"]["sandbox"]["podIPs"])
        self.assertEqual((reason(last), cond(last)["message"]), ("DependenciesReady",
                                                                  "Pod is Ready"))
        sb = C.sandbox(sbname)
        refs = sb["metadata"]["ownerReferences"]
        self.assertEqual([(r["kind"], r["name"], r["controller"]) for r in refs],
                         [("SandboxClaim", "warm-1", True)])
        labels = sb["metadata"]["labels"]
        self.assertNotIn("agents.x-k8s.io/warm-pool-sandbox", labels)
        self.assertEqual(labels["agents.x-k8s.io/launch-type"], "warm")
        self.assertEqual(labels["agents.x-k8s.io/claim-uid"], last["metadata"]["uid"])
        self.assertEqual(sb["metadata"]["annotations"]["agents.x-k8s.io/pod-name"], sbname)
        # the pool replaces the adopted sandbox
        C.wait_pool_ready()
        members = [s for s in C.state_dump()["sandboxes"]
                   if s["owner"] == "SandboxWarmPool/python-sandbox-warmpool"]
        self.assertEqual(len(members), 2)
        self.assertNotIn(sbname, [m["name"] for m in members])
        C.delete(claims() + "/warm-1")

    def test_pods_start_at_low_priority_and_serve_at_the_clusters(self):
        C.wait_pool_ready()
        cluster = int(C.file("pid"))
        normal = os.getpriority(os.PRIO_PROCESS, cluster)

        def procs():
            return {p["pod"]: p["pid"] for p in json.loads(C.file("processes.json"))}
        before = procs()
        for pid in before.values():   # every pod is Ready: back at the cluster's priority
            try:
                prio = os.getpriority(os.PRIO_PROCESS, pid)
            except ProcessLookupError:
                continue              # a pod of an earlier test that just went away
            self.assertEqual(prio, normal)
        C.faults(cold_start_ms=1500)  # the replacement stays not Ready for a while
        C.create_claim("nice-1")
        new = C.wait_for(lambda: [pid for pod, pid in procs().items() if pod not in before], 5,
                         0.01, "the pool's replacement pod process")
        if os.geteuid() == 0:  # else the kubelet may have stopped lowering it (logged)
            self.assertEqual(os.getpriority(os.PRIO_PROCESS, new[0]), 19)
        C.reset_faults()
        C.wait_pool_ready(timeout=10)
        self.assertEqual(os.getpriority(os.PRIO_PROCESS, new[0]), normal)
        C.delete(claims() + "/nice-1")

    def test_pod_start_delay_holds_the_refill_process_back(self):
        C.wait_pool_ready()

        def procs():
            return {p["pod"].split("/", 1)[1] for p in json.loads(C.file("processes.json"))}
        before = procs()
        C.faults(pod_start_delay_ms=3000)
        t0 = time.monotonic()
        C.create_claim("delay-1")
        adopted = C.wait_claim("delay-1")["status"]["sandbox"]["name"]  # from the pool at once
        self.assertLess(time.monotonic() - t0, 2.0)  # not held back by the delay (3 s)
        # the pool refills after the claim is served; a pod of an earlier test
        # may still be going away (its process ended, its Pod not yet
        # removed): not the refill
        fresh = C.wait_for(lambda: [
            p for p in C.get("/api/v1/namespaces/default/pods")["items"]
            if p["metadata"]["name"] not in before and p["metadata"]["name"] != adopted
            and not p["metadata"].get("deletionTimestamp")],
            5, 0.005, "the refill's Pod")
        self.assertEqual(len(fresh), 1, [p["metadata"]["name"] for p in fresh])
        name = fresh[0]["metadata"]["name"]
        self.assertEqual(fresh[0]["status"].get("phase"), "Pending")
        self.assertNotIn(name, procs())  # the Pod exists; its process does not yet
        C.wait_for(lambda: name in procs(), 5, 0.01, "the delayed pod process")
        self.assertGreaterEqual(time.monotonic() - t0, 3.0)
        C.reset_faults()
        C.wait_pool_ready(timeout=10)
        C.delete(claims() + "/delay-1")

    def test_cold_start_sequence(self):
        C.faults(cold_start_ms=300)
        w = C.watch(claims() + "?watch=true&fieldSelector=metadata.name%3Dcold-1")
        t0 = time.monotonic()
        C.create_claim("cold-1", pool="python-sandbox-coldpool")
        evs = w.wait(lambda e: any(ready(x["object"]) for x in e), timeout=10)
        took = time.monotonic() - t0
        w.close()
        self.assertGreaterEqual(took, 0.3)
        seq = [(reason(e["object"]), (cond(e["object"]) or {}).get("message"))
               for e in evs if cond(e["object"])]
        dedup = [s for i, s in enumerate(seq) if i == 0 or seq[i - 1] != s]
        self.assertEqual(dedup, [("SandboxNotReady", "Sandbox is not ready"),
                                 ("DependenciesNotReady", "Pod exists with phase: Pending"),
                                 ("DependenciesReady", "Pod is Ready")])
        final = evs[-1]["object"]
        self.assertEqual(final["status"]["sandbox"]["name"], "cold-1")
        for e in evs:
            if not ready(e["object"]):
                self.assertFalse((e["object"].get("status") or {}).get("sandbox", {}).get(
                    "podIPs"))
        sb = C.sandbox("cold-1")
        self.assertEqual(sb["status"]["selector"],
                         "agents.x-k8s.io/sandbox-name-hash=" + fnv("cold-1"))
        self.assertEqual(sb["status"]["podIPs"], final["status"]["sandbox"]["podIPs"])
        self.assertEqual(sb["metadata"]["labels"]["agents.x-k8s.io/launch-type"], "cold")
        self.assertEqual(cond(final)["observedGeneration"], final["metadata"]["generation"])
        pod = C.get(PODS + "/cold-1")
        self.assertEqual(pod["status"]["phase"], "Running")
        self.assertEqual(pod["status"]["podIPs"], [{"ip": sb["status"]["podIPs"][0]}])
        self.assertEqual(pod["metadata"]["labels"]["agents.x-k8s.io/sandbox-name-hash"],
                         fnv("cold-1"))
        # the pod is a real runtime process reachable through the pod proxy
        status, out = C.api("POST", PODS + "/cold-1:8888/proxy/execute",
                            {"command": "echo hello-from-pod"})
        self.assertEqual((status, out["stdout"], out["exit_code"]), (200, "hello-from-pod\n", 0))
        procs = {p["pod"]: p for p in C.processes()}
        self.assertTrue(procs["cold-1"]["alive"])
        self.assertEqual(procs["cold-1"]["ip"], sb["status"]["podIPs"][0])
        C.delete(claims() + "/cold-1")
        C.wait_for(lambda: "cold-1" not in {p["pod"] for p in C.processes()}, 5,
                   what="pod process gone")

    def test_missing_pool_then_created(self):
        C.create_claim("needs-pool", pool="late-pool")
        c = C.wait_claim("needs-pool", lambda o: reason(o) == "WarmPoolNotFound")
        self.assertEqual(cond(c)["message"], 'SandboxWarmPool "late-pool" not found')
        self.assertEqual(cond(c)["status"], "False")
        status, _ = C.api("POST", "/apis/extensions.agents.x-k8s.io/v1beta1/namespaces/default/"
                          "sandboxwarmpools", {"metadata": {"name": "late-pool"}, "spec": {
                              "replicas": 0, "sandboxTemplateRef": {"name": "late-template"}}})
        self.assertEqual(status, 201)
        c = C.wait_claim("needs-pool", lambda o: reason(o) == "TemplateNotFound")
        self.assertEqual(cond(c)["message"], 'SandboxTemplate "late-template" not found')
        tmpl = C.get(EXT + "/sandboxtemplates/python-sandbox-template")
        tmpl = {"metadata": {"name": "late-template"}, "spec": tmpl["spec"]}
        self.assertEqual(C.api("POST", EXT + "/sandboxtemplates", tmpl)[0], 201)
        c = C.wait_claim("needs-pool", ready, timeout=10)
        self.assertEqual(c["status"]["sandbox"]["name"], "needs-pool")   # replicas 0: cold
        C.delete(claims() + "/needs-pool")
        C.delete(EXT + "/sandboxwarmpools/late-pool")

    def test_invalid_metadata(self):
        C.create_claim("bad-label", spec={"warmPoolRef": {"name": "python-sandbox-warmpool"},
                                          "additionalPodMetadata": {"labels": {"team": "x"}}})
        c = C.wait_claim("bad-label", lambda o: reason(o) == "InvalidMetadata")
        self.assertIn("team", cond(c)["message"])
        C.create_claim("bad-ann", spec={"warmPoolRef": {"name": "python-sandbox-warmpool"},
                                        "additionalPodMetadata": {"annotations": {
                                            "foo.kubernetes.io/x": "1"}}})
        C.wait_claim("bad-ann", lambda o: reason(o) == "InvalidMetadata")
        C.create_claim("good-label", pool="python-sandbox-coldpool", spec={
            "warmPoolRef": {"name": "python-sandbox-coldpool"},
            "additionalPodMetadata": {"labels": {"sandbox.users.io/team": "x"}}})
        c = C.wait_claim("good-label", ready)
        pod = C.get(PODS + "/" + c["status"]["sandbox"]["name"])
        self.assertEqual(pod["metadata"]["labels"]["sandbox.users.io/team"], "x")
        for n in ("bad-label", "bad-ann", "good-label"):
            C.delete(claims() + "/" + n)
        self.assertIsNone(C.sandbox("bad-label"))

    def test_env_injection_policy_and_cold_start(self):
        C.create_claim("env-rejected", spec={"warmPoolRef": {"name": "python-sandbox-warmpool"},
                                             "env": [{"name": "FOO", "value": "bar"}]})
        c = C.wait_claim("env-rejected", lambda o: reason(o) == "EnvVarsInjectionRejected")
        self.assertIn("python-sandbox-template", cond(c)["message"])
        tmpl = C.get(EXT + "/sandboxtemplates/python-sandbox-template")
        spec = dict(tmpl["spec"], envVarsInjectionPolicy="Allowed")
        C.api("POST", EXT + "/sandboxtemplates", {"metadata": {"name": "env-template"},
                                                  "spec": spec})
        C.api("POST", EXT + "/sandboxwarmpools", {"metadata": {"name": "env-pool"}, "spec": {
            "replicas": 1, "sandboxTemplateRef": {"name": "env-template"}}})
        C.wait_pool_ready("env-pool")
        C.create_claim("env-ok", spec={"warmPoolRef": {"name": "env-pool"},
                                       "env": [{"name": "FOO", "value": "bar-baz"}]})
        c = C.wait_claim("env-ok", ready)
        self.assertEqual(c["status"]["sandbox"]["name"], "env-ok")   # env forces a cold start
        status, out = C.api("POST", PODS + "/env-ok:8888/proxy/execute",
                            {"command": "printenv FOO"})
        self.assertEqual(out["stdout"], "bar-baz\n")
        for p in (claims() + "/env-rejected", claims() + "/env-ok",
                  EXT + "/sandboxwarmpools/env-pool", EXT + "/sandboxtemplates/env-template"):
            C.delete(p)

    def _expiring(self, name, policy):
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 1.2))
        C.create_claim(name, spec={"warmPoolRef": {"name": "python-sandbox-warmpool"},
                                   "lifecycle": {"shutdownTime": when,
                                                 "shutdownPolicy": policy}})
        return C.watch(claims() + "?watch=true&fieldSelector=metadata.name%3D" + name)

    def test_lifecycle_delete(self):
        w = self._expiring("exp-delete", "Delete")
        evs = w.wait(lambda e: e and e[-1]["type"] == "DELETED", timeout=6)
        w.close()
        self.assertIn("ClaimExpired", [reason(e["object"]) for e in evs])
        expired = [e["object"] for e in evs if reason(e["object"]) == "ClaimExpired"][0]
        self.assertEqual(cond(expired)["message"], "Claim expired. Sandbox cleanup initiated.")
        sb = evs[0]["object"]
        C.wait_for(lambda: not [s for s in C.state_dump()["sandboxes"]
                                if s["owner"] == "SandboxClaim/exp-delete"], 5)
        self.assertIsNotNone(sb)

    def test_lifecycle_delete_foreground(self):
        w = self._expiring("exp-fg", "DeleteForeground")
        evs = w.wait(lambda e: e and e[-1]["type"] == "DELETED", timeout=6)
        w.close()
        fg = [e["object"] for e in evs if e["object"]["metadata"].get("deletionTimestamp")]
        self.assertTrue(fg, "the claim should linger with a deletionTimestamp")
        self.assertIn("foregroundDeletion", fg[0]["metadata"]["finalizers"])
        self.assertEqual([s for s in C.state_dump()["pods"]
                          if (s["owner"] or "").endswith("/" + (
                              evs[-1]["object"]["status"]["sandbox"]["name"]))], [])

    def test_lifecycle_retain(self):
        w = self._expiring("exp-retain", "Retain")
        evs = w.wait(lambda e: e and reason(e[-1]["object"]) == "ClaimExpired" and
                     not (e[-1]["object"]["status"].get("sandbox")), timeout=6)
        w.close()
        sbname = [e["object"]["status"]["sandbox"]["name"] for e in evs
                  if (e["object"].get("status") or {}).get("sandbox")][0]
        C.wait_for(lambda: C.sandbox(sbname) is None, 5, what="retained claim's sandbox gone")
        self.assertIsNotNone(C.claim("exp-retain"))
        C.delete(claims() + "/exp-retain")

    def test_delete_propagation_policies(self):
        C.create_claim("gc-bg", pool="python-sandbox-coldpool")
        C.wait_claim("gc-bg", ready)
        status, obj = C.delete(claims() + "/gc-bg")
        self.assertEqual((status, obj["metadata"]["name"]), (200, "gc-bg"))
        self.assertIsNone(C.claim("gc-bg"))
        C.wait_for(lambda: C.sandbox("gc-bg") is None and C.get(PODS + "/gc-bg") is None, 5)
        C.wait_for(lambda: "gc-bg" not in {p["pod"] for p in C.processes()}, 5)

        C.create_claim("gc-fg", pool="python-sandbox-coldpool")
        C.wait_claim("gc-fg", ready)
        status, obj = C.delete(claims() + "/gc-fg", {"kind": "DeleteOptions",
                                                     "propagationPolicy": "Foreground"})
        self.assertEqual(status, 202)
        self.assertIn("foregroundDeletion", obj["metadata"]["finalizers"])
        self.assertTrue(obj["metadata"]["deletionTimestamp"])
        C.wait_for(lambda: C.claim("gc-fg") is None, 5, what="foreground deletion done")
        self.assertIsNone(C.sandbox("gc-fg"))

        C.create_claim("gc-orphan", pool="python-sandbox-coldpool")
        C.wait_claim("gc-orphan", ready)
        status, _ = C.delete(claims() + "/gc-orphan?propagationPolicy=Orphan")
        self.assertIn(status, (200, 202))
        C.wait_for(lambda: C.claim("gc-orphan") is None, 5)
        sb = C.sandbox("gc-orphan")
        self.assertIsNotNone(sb)
        self.assertNotIn("ownerReferences", sb["metadata"])
        C.delete(sandboxes() + "/gc-orphan")
        C.wait_for(lambda: "gc-orphan" not in {p["pod"] for p in C.processes()}, 5)

    def test_suspend_and_resume_gives_new_ip(self):
        C.create_claim("susp", pool="python-sandbox-coldpool")
        c = C.wait_claim("susp", ready)
        ip1 = c["status"]["sandbox"]["podIPs"][0]
        mp = {"Content-Type": "application/merge-patch+json"}
        C.api("PATCH", sandboxes() + "/susp", {"spec": {"operatingMode": "Suspended"}}, mp)
        sb = C.wait_for(lambda: (lambda s: s if cond(s, "Suspended") and
                                 cond(s, "Suspended")["status"] == "True" else None)(
            C.sandbox("susp")), 5, what="suspended")
        self.assertEqual(reason(sb), "SandboxSuspended")
        self.assertNotIn("podIPs", sb["status"])
        c = C.wait_claim("susp", lambda o: reason(o) == "SandboxSuspended")
        self.assertFalse(c["status"]["sandbox"].get("podIPs"))
        C.api("PATCH", sandboxes() + "/susp", {"spec": {"operatingMode": "Running"}}, mp)
        c = C.wait_claim("susp", ready)
        self.assertNotEqual(c["status"]["sandbox"]["podIPs"][0], ip1)
        C.delete(claims() + "/susp")

    def test_sandboxd_flavour_selected_by_image(self):
        C.api("POST", EXT + "/sandboxtemplates", {"metadata": {"name": "sbd-template"}, "spec": {
            "podTemplate": {"spec": {"containers": [{
                "name": "sandboxd", "image": "example.com/agent-sandbox/sandboxd:v1"}]}}}})
        C.api("POST", EXT + "/sandboxwarmpools", {"metadata": {"name": "sbd-pool"}, "spec": {
            "replicas": 0, "sandboxTemplateRef": {"name": "sbd-template"}}})
        C.create_claim("sbd-claim", pool="sbd-pool")
        C.wait_claim("sbd-claim", ready)
        procs = {p["pod"]: p for p in C.processes()}
        self.assertEqual((procs["sbd-claim"]["flavor"], procs["sbd-claim"]["port"]),
                         ("sandboxd", 8080))
        status, out = C.api("GET", PODS + "/sbd-claim:8080/proxy/v1/health")
        self.assertEqual((status, out["status"]), (200, "ok"))
        for p in (claims() + "/sbd-claim", EXT + "/sandboxwarmpools/sbd-pool",
                  EXT + "/sandboxtemplates/sbd-template"):
            C.delete(p)

    def test_crashed_pod_process_restarts(self):
        C.create_claim("crashy", pool="python-sandbox-coldpool")
        C.wait_claim("crashy", ready)
        pid = C.admin("POST", "pods/kill", {"namespace": "default", "name": "crashy"})["pid"]
        C.wait_for(lambda: (lambda p: p and p["status"]["containerStatuses"][0][
            "restartCount"] == 1 and p["status"]["containerStatuses"][0]["ready"])(
            C.get(PODS + "/crashy")), 10, what="restarted")
        procs = {p["pod"]: p for p in C.processes()}
        self.assertNotEqual(procs["crashy"]["pid"], pid)
        self.assertTrue(procs["crashy"]["alive"])
        C.delete(claims() + "/crashy")

    def test_warm_pool_scale_subresource(self):
        path = EXT + "/sandboxwarmpools/python-sandbox-coldpool/scale"
        status, sc = C.api("GET", path)
        self.assertEqual((status, sc["kind"], sc["spec"]["replicas"]), (200, "Scale", 0))
        status, sc = C.api("PATCH", path, {"spec": {"replicas": 1}},
                           {"Content-Type": "application/merge-patch+json"})
        self.assertEqual((status, sc["spec"]["replicas"]), (200, 1))
        C.wait_pool_ready("python-sandbox-coldpool")
        C.api("PATCH", path, {"spec": {"replicas": 0}},
              {"Content-Type": "application/merge-patch+json"})
        C.wait_for(lambda: not [s for s in C.state_dump()["sandboxes"]
                                if s["owner"] == "SandboxWarmPool/python-sandbox-coldpool"], 5)


class ClusterV1alpha1(unittest.TestCase):
    def test_template_only_claim_uses_shadow_pool(self):
        o = C.create_claim("alpha-claim", pool="python-sandbox-template", version="v1alpha1")
        self.assertEqual(o["apiVersion"], "extensions.agents.x-k8s.io/v1alpha1")
        self.assertEqual(o["spec"]["sandboxTemplateRef"], {"name": "python-sandbox-template"})
        status, hdrs, _ = C.api("GET", claims(version="v1alpha1") + "/alpha-claim", raw=True)
        self.assertEqual(hdrs.get("Warning"), '299 - "extensions.agents.x-k8s.io/v1alpha1 '
                         'SandboxClaim is deprecated; use extensions.agents.x-k8s.io/v1beta1 '
                         'SandboxClaim instead"')
        beta = C.claim("alpha-claim")
        self.assertEqual(beta["spec"]["warmPoolRef"],
                         {"name": "shadow-pool-python-sandbox-template"})
        self.assertNotIn("sandboxTemplateRef", beta["spec"])
        c = C.wait_claim("alpha-claim", ready, version="v1alpha1")
        self.assertEqual(c["status"]["sandbox"]["name"], "alpha-claim")
        sb = C.sandbox("alpha-claim", version="v1alpha1")
        self.assertEqual((sb["spec"]["replicas"], sb["status"]["replicas"]), (1, 1))
        self.assertNotIn("operatingMode", sb["spec"])
        C.delete(claims(version="v1alpha1") + "/alpha-claim")

    def test_template_only_claim_without_shadow_pool(self):
        tmpl = C.get(EXT + "/sandboxtemplates/python-sandbox-template")
        C.api("POST", EXT + "/sandboxtemplates", {"metadata": {"name": "lonely"},
                                                  "spec": tmpl["spec"]})
        C.create_claim("alpha-lonely", pool="lonely", version="v1alpha1")
        c = C.wait_claim("alpha-lonely", lambda o: reason(o) == "WarmPoolNotFound")
        self.assertEqual(cond(c)["message"], 'SandboxWarmPool "shadow-pool-lonely" not found')
        C.delete(claims(version="v1alpha1") + "/alpha-lonely")
        C.delete(EXT + "/sandboxtemplates/lonely")

    def test_v1beta1_claim_read_as_v1alpha1_and_named_warmpool(self):
        C.create_claim("beta-read", pool="nope-pool")
        a = C.claim("beta-read", version="v1alpha1")
        self.assertEqual(a["spec"]["warmpool"], "nope-pool")
        self.assertNotIn("warmPoolRef", a["spec"])
        C.create_claim("alpha-named", version="v1alpha1", spec={
            "sandboxTemplateRef": {"name": "python-sandbox-template"},
            "warmpool": "python-sandbox-warmpool"})
        b = C.claim("alpha-named")
        self.assertEqual(b["spec"]["warmPoolRef"]["name"], "python-sandbox-warmpool")
        c = C.wait_claim("alpha-named", ready)
        self.assertTrue(c["status"]["sandbox"]["name"].startswith("python-sandbox-warmpool-"))
        for n in ("beta-read", "alpha-named"):
            C.delete(claims() + "/" + n)


class ClusterNetworking(unittest.TestCase):
    def test_router_service_endpoints_and_gateway(self):
        router = [p for p in C.state_dump()["pods"]
                  if p["labels"].get("app") == "sandbox-router"]
        self.assertEqual(len(router), 1)
        ip = router[0]["podIP"]
        self.assertTrue(ip.startswith(C.info["pod_cidr"].rsplit(".", 1)[0] + "."))
        gw = C.get("/apis/gateway.networking.k8s.io/v1/namespaces/default/gateways/"
                   "external-http-gateway")
        self.assertEqual(gw["status"]["addresses"][0]["value"], ip)
        svc = C.get("/api/v1/namespaces/agent-sandbox-system/services/sandbox-router-svc")
        self.assertEqual(svc["spec"]["ports"][0]["port"], 8080)
        self.assertEqual(svc["spec"]["selector"], {"app": "sandbox-router"})
        sl = C.get("/apis/discovery.k8s.io/v1/namespaces/agent-sandbox-system/endpointslices"
                   "?labelSelector=kubernetes.io%2Fservice-name%3Dsandbox-router-svc")["items"]
        self.assertEqual(sl[0]["endpoints"][0]["addresses"], [ip])
        self.assertTrue(sl[0]["endpoints"][0]["conditions"]["ready"])
        h = harness.Http("http://%s:8080" % ip)
        self.assertEqual(h.request("GET", "/healthz"), (200, {"status": "ok"}))
        h.close()
        h = harness.Http("http://%s:80" % ip)
        self.assertEqual(h.request("GET", "/healthz"), (200, {"status": "ok"}))
        h.close()

    def test_router_reaches_a_sandbox_by_pod_ip(self):
        C.create_claim("routed", pool="python-sandbox-coldpool")
        c = C.wait_claim("routed", ready)
        ip = c["status"]["sandbox"]["podIPs"][0]
        status, out = C.api("POST", "/api/v1/namespaces/agent-sandbox-system/services/"
                            "sandbox-router-svc:8080/proxy/execute", {"command": "echo routed"},
                            {"X-Sandbox-ID": "routed", "X-Sandbox-Pod-IP": ip})
        self.assertEqual((status, out.get("stdout")), (200, "routed\n"))
        C.delete(claims() + "/routed")

    def test_pod_proxy_errors_and_streaming(self):
        status, err = C.api("GET", PODS + "/no-such-pod:8888/proxy/")
        self.assertEqual((status, err["reason"]), (404, "NotFound"))
        C.create_claim("proxied", pool="python-sandbox-coldpool")
        C.wait_claim("proxied", ready)
        status, out = C.api("POST", PODS + "/proxied:8888/proxy/execute",
                            {"command": "head -c 3000000 /dev/zero"})
        self.assertEqual((status, len(out["stdout"])), (200, 3000000))
        status, out = C.api("GET", PODS + "/proxied:8888/proxy/exists/nothing%2Fhere")
        self.assertEqual((status, out), (200, {"path": "nothing/here", "exists": False}))
        C.delete(claims() + "/proxied")


def fnv(text):
    h = 0x811c9dc5
    for b in text.encode():
        h = ((h ^ b) * 0x01000193) & 0xffffffff
    return "%08x" % h


class ClusterHash(unittest.TestCase):
    def test_fnv_reference_value(self):
        self.assertEqual(fnv("sandbox-claim-1234abcd"), "fb126098")

    def test_sandbox_selector_uses_the_hash(self):
        C.create_claim("sandbox-claim-1234abcd", pool="python-sandbox-coldpool")
        C.wait_claim("sandbox-claim-1234abcd", ready)
        sb = C.sandbox("sandbox-claim-1234abcd")
        self.assertEqual(sb["status"]["selector"],
                         "agents.x-k8s.io/sandbox-name-hash=fb126098")
        C.delete(claims() + "/sandbox-claim-1234abcd")


if __name__ == "__main__":
    unittest.main()
