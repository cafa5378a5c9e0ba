"""`cluster.py up` / `down` and start-time flags: state files, process
clean-up (also after a crash), several clusters at once, --v1alpha1-only,
fault flags, TLS + bearer token. Run:
    python3 tests/pyrun.py tests/devcluster devcluster -k ClusterCli
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

from .. import harness
from ..harness import CLAIMS, ready


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def wait_dead(pids, timeout=5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(alive(p) for p in pids):
            return True
        time.sleep(0.02)
    return False


class ClusterCli(unittest.TestCase):
    def test_up_files_startup_time_and_down_cleans_everything(self):
        c = harness.DevCluster().up()
        try:
            print("\n  cluster.py up took %.0f ms (ready: API + warm pool + router)"
                  % (c.startup_s * 1000), end="")
            self.assertLess(c.startup_s, 3.0)
            with open(c.kubeconfig) as f:
                kc = f.read()
            self.assertIn("server: %s\n" % c.api_url, kc)
            self.assertRegex(c.api_url, r"^http://127\.0\.0\.1:\d+$")
            self.assertIn("namespace: default", kc)
            self.assertEqual(c.kubeconfig, os.path.join(c.state, "kubeconfig"))
            pid = int(c.file("pid"))
            self.assertTrue(alive(pid))
            self.assertEqual(c.info["pid"], pid)
            procs = c.processes()
            pids = [p["pid"] for p in procs]
            self.assertEqual(len(pids), 3)                 # 2 warm sandboxes + router
            self.assertTrue(all(alive(p) for p in pids))
            again = subprocess.run([sys.executable, harness.CLUSTER, "up", "--state", c.state],
                                   capture_output=True, text=True, timeout=30)
            self.assertEqual(again.returncode, 1)
            self.assertIn("already running", again.stderr)
        finally:
            p = c.down(keep=True)
        try:
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertTrue(wait_dead([pid] + pids, 1))
            for f in ("pid", "api_url", "kubeconfig", "ready"):
                self.assertFalse(os.path.exists(os.path.join(c.state, f)), f)
            self.assertIn("stopped", c.log())
            p = subprocess.run([sys.executable, harness.CLUSTER, "down", "--state", c.state],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(p.returncode, 0)              # down twice is fine
        finally:
            shutil.rmtree(c.state, ignore_errors=True)

    def test_down_after_the_cluster_process_crashed(self):
        c = harness.DevCluster("--warm-replicas", "1", "--no-router").up()
        try:
            pid = int(c.file("pid"))
            pods = [p["pid"] for p in c.processes()]
            self.assertEqual(len(pods), 1)
            os.kill(pid, signal.SIGKILL)
            self.assertTrue(wait_dead([pid]))
            self.assertTrue(alive(pods[0]))                # the pod outlived its cluster
        finally:
            p = c.down()
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(wait_dead(pods, 2))

    def test_two_clusters_at_once(self):
        a = harness.DevCluster("--warm-replicas", "1").up()
        try:
            b = harness.DevCluster("--warm-replicas", "1").up()
            try:
                self.assertNotEqual(a.api_url, b.api_url)
                self.assertNotEqual(a.info["pod_cidr"], b.info["pod_cidr"])
                for c in (a, b):
                    prefix = c.info["pod_cidr"].rsplit(".", 1)[0] + "."
                    for p in c.processes():
                        self.assertTrue(p["ip"].startswith(prefix), (p, prefix))
                    c.create_claim("same-name")
                    got = c.wait_claim("same-name", ready)
                    self.assertTrue(got["status"]["sandbox"]["podIPs"][0].startswith(prefix))
            finally:
                b.down()
        finally:
            a.down()

    def test_fault_flags_at_start(self):
        c = harness.DevCluster("--no-router", "--warm-replicas", "1", "--never-ready",
                               "--cold-start-ms", "50", "--controller-delay-ms", "1",
                               "--api-429-every", "1000", "--watch-drop-after", "7",
                               "--api-latency-ms", "5",
                               "--faults", '{"retry_after": 2}').up()
        try:
            self.assertEqual(c.admin("GET", "faults"), {
                "never_ready": True, "cold_start_ms": 50, "controller_delay_ms": 1,
                "api_429_every": 1000, "watch_drop_after": 7, "api_latency_ms": 5,
                "retry_after": 2})
        finally:
            c.down()

    def test_no_crds(self):
        # agent-sandbox not installed: its groups are not served, nothing else changes
        c = harness.DevCluster("--no-crds", "--no-router").up()
        try:
            _, apis = c.api("GET", "/apis")
            names = {g["name"] for g in apis["groups"]}
            self.assertNotIn("extensions.agents.x-k8s.io", names)
            self.assertNotIn("agents.x-k8s.io", names)
            self.assertEqual(c.api("GET", "/apis/extensions.agents.x-k8s.io")[0], 404)
            self.assertEqual(c.api("GET", CLAIMS % ("v1beta1", "default"))[0], 404)
            status, pods = c.api("GET", "/api/v1/namespaces/default/pods")
            self.assertEqual((status, pods["items"]), (200, []))
        finally:
            c.down()

    def test_v1alpha1_only(self):
        c = harness.DevCluster("--v1alpha1-only", "--no-router").up()
        try:
            _, apis = c.api("GET", "/apis")
            groups = {g["name"]: [v["version"] for v in g["versions"]] for g in apis["groups"]}
            self.assertEqual(groups["extensions.agents.x-k8s.io"], ["v1alpha1"])
            self.assertEqual(groups["agents.x-k8s.io"], ["v1alpha1"])
            status, _ = c.api("GET", CLAIMS % ("v1beta1", "default"))
            self.assertEqual(status, 404)
            status, err = c.api("POST", CLAIMS % ("v1alpha1", "default"), {
                "metadata": {"name": "no-template"}, "spec": {}})
            self.assertEqual((status, err["details"]["causes"][0]["field"]),
                             (422, "spec.sandboxTemplateRef"))
            c.create_claim("old-client", pool="python-sandbox-template", version="v1alpha1")
            status, hdrs, _ = c.api("GET", CLAIMS % ("v1alpha1", "default") + "/old-client",
                                    raw=True)
            self.assertNotIn("Warning", hdrs)                  # nothing is deprecated here
            got = c.wait_claim("old-client", ready, version="v1alpha1")
            sb = got["status"]["sandbox"]
            self.assertIn("Name", sb)                          # legacy key of old clusters
            self.assertNotIn("name", sb)
            self.assertTrue(sb["Name"].startswith("python-sandbox-warmpool-"))   # warm
            self.assertNotIn("api.agents.x-k8s.io/v1alpha1-sandboxclaim-state",
                             got["metadata"].get("annotations", {}))
            s = c.sandbox(sb["Name"], version="v1alpha1")
            self.assertEqual(s["spec"]["replicas"], 1)
            c.create_claim("old-none", version="v1alpha1", spec={
                "sandboxTemplateRef": {"name": "python-sandbox-template"}, "warmpool": "none"})
            got = c.wait_claim("old-none", ready, version="v1alpha1")
            self.assertEqual(got["status"]["sandbox"]["Name"], "old-none")     # cold
            if harness.KUBECTL:
                out = c.kubectl("get", "sandboxclaims")
                self.assertEqual(out.returncode, 0, out.stderr)
                self.assertIn("old-client", out.stdout)
        finally:
            c.down()

    def test_tls_and_bearer_token(self):
        if not shutil.which("openssl"):
            self.skipTest("openssl is not on PATH; needed to make a test certificate")
        tmp = tempfile.mkdtemp(prefix="devcluster-tls-")
        crt, key = os.path.join(tmp, "tls.crt"), os.path.join(tmp, "tls.key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                        key, "-out", crt, "-days", "2", "-subj", "/CN=devcluster", "-addext",
                        "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
        c = harness.DevCluster("--tls-cert", crt, "--tls-key", key, "--token", "s3cr3t",
                               "--no-router", "--warm-replicas", "1").up()
        try:
            self.assertRegex(c.api_url, r"^https://127\.0\.0\.1:\d+$")
            self.assertTrue(c.admin_url.startswith("http://"))
            with open(c.kubeconfig) as f:
                kc = f.read()
            self.assertIn("token: s3cr3t", kc)
            self.assertIn("certificate-authority: " + crt, kc)
            import ssl
            import http.client
            ctx = ssl.create_default_context(cafile=crt)
            port = int(c.api_url.rsplit(":", 1)[1])
            for token, want in ((None, 401), ("wrong", 401), ("s3cr3t", 200)):
                conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
                hs = {"Authorization": "Bearer " + token} if token else {}
                conn.request("GET", "/api/v1/namespaces/default/pods", headers=hs)
                r = conn.getresponse()
                r.read()
                conn.close()
                self.assertEqual(r.status, want, token)
            if harness.KUBECTL:
                seq = c.last_seq()
                out = c.kubectl("get", "sandboxes")
                self.assertEqual(out.returncode, 0, out.stderr)
                self.assertIn("python-sandbox-warmpool-", out.stdout)
                reqs = c.requests_since(seq)
                self.assertTrue(reqs and all(r["authorization"] for r in reqs))
        finally:
            c.down()
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
