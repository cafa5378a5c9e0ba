"""The real kubectl against the dev cluster: get, apply, wait, delete,
port-forward (pod and service, WebSocket and SPDY), proxy.

Skipped, saying why, when kubectl is not on PATH. Each kubectl run gets the
cluster's kubeconfig plus a private KUBECACHEDIR and HOME. Run:
    python3 tests/pyrun.py tests/devcluster devcluster -k ClusterKubectl
"""
import hashlib
import http.client
import json
import os
import time
import unittest
import uuid

from .. import harness
from ..harness import CLAIMS, ready

C = None
CL = CLAIMS % ("v1beta1", "default")
MB = 1024 * 1024
BIG = 100 * MB

CLAIM_YAML = """apiVersion: extensions.agents.x-k8s.io/v1beta1
kind: SandboxClaim
metadata:
  name: %s
  labels:
%s
spec:
  warmPoolRef:
    name: %s
"""


def setUpModule():
    global C
    if harness.KUBECTL is not None:
        C = harness.DevCluster().up()


def tearDownModule():
    if C is not None:
        C.down()


def apply_claim(name, pool="python-sandbox-coldpool", labels=None):
    path = os.path.join(C.state, name + ".yaml")
    lab = "\n".join("    %s: %s" % kv for kv in sorted((labels or {"k": "v"}).items()))
    with open(path, "w") as f:
        f.write(CLAIM_YAML % (name, lab, pool))
    return C.kubectl("apply", "-f", path)


def forward(*args, env=None):
    """kubectl port-forward ... --address 127.0.0.1 -> (BgProcess, local port)."""
    k = C.kubectl_bg("port-forward", *args, "--address", "127.0.0.1", env=env)
    m = k.wait_line(r"^Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)$")
    return k, int(m.group(1))


def execute(port, command, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    hs = {"Content-Type": "application/json"}
    hs.update(headers or {})
    conn.request("POST", "/execute", json.dumps({"command": command}), hs)
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, json.loads(body)


def upload_download(port, data, name):
    """Multipart upload of `data` as `name`, then download; returns the sha256 of
    what came back and the two durations."""
    boundary = uuid.uuid4().hex
    head = ("--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"%s\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n" % (boundary, name)).encode()
    tail = ("\r\n--%s--\r\n" % boundary).encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    t0 = time.monotonic()
    conn.putrequest("POST", "/upload")
    conn.putheader("Content-Type", "multipart/form-data; boundary=" + boundary)
    conn.putheader("Content-Length", str(len(head) + len(data) + len(tail)))
    conn.endheaders()
    conn.send(head)
    view = memoryview(data)
    for i in range(0, len(data), 4 * MB):
        conn.send(view[i:i + 4 * MB])
    conn.send(tail)
    r = conn.getresponse()
    body = r.read()
    up = time.monotonic() - t0
    if r.status != 200:
        raise AssertionError("upload failed: %s %s" % (r.status, body[:300]))
    t0 = time.monotonic()
    conn.request("GET", "/download/" + name)
    r = conn.getresponse()
    if r.status != 200:
        raise AssertionError("download failed: %s" % r.status)
    h = hashlib.sha256()
    n = 0
    while True:
        chunk = r.read(4 * MB)
        if not chunk:
            break
        h.update(chunk)
        n += len(chunk)
    down = time.monotonic() - t0
    conn.close()
    return h.hexdigest(), n, up, down


@unittest.skipIf(harness.KUBECTL is None,
                 "kubectl is not on PATH; the real-kubectl tests need it")
class ClusterKubectl(unittest.TestCase):
    def setUp(self):
        C.reset_faults()

    def test_get_all_namespaces(self):
        C.wait_pool_ready()
        C.create_claim("listed-claim", pool="nope-pool")
        out = C.kubectl("get", "sandboxclaims,sandboxes", "-A")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("sandboxclaim.extensions.agents.x-k8s.io/listed-claim", out.stdout)
        self.assertRegex(out.stdout, r"sandbox\.agents\.x-k8s\.io/python-sandbox-warmpool-\w{5}")
        out = C.kubectl("get", "pods", "-A", "-o", "wide")
        self.assertRegex(out.stdout, r"sandbox-router-\w{5}\s+1/1\s+Running")
        self.assertIn(C.info["pod_cidr"].rsplit(".", 1)[0] + ".", out.stdout)
        out = C.kubectl("get", "swp", "python-sandbox-warmpool", "-o",
                        "jsonpath={.status.readyReplicas}")
        self.assertEqual(out.stdout, "2")
        C.delete(CL + "/listed-claim")

    def test_apply_wait_reapply_delete_cascades(self):
        C.faults(cold_start_ms=800)            # not Ready yet when kubectl wait starts
        out = apply_claim("kc-claim", pool="python-sandbox-coldpool")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stdout.strip(),
                         "sandboxclaim.extensions.agents.x-k8s.io/kc-claim created")
        seq = C.last_seq()
        out = C.kubectl("wait", "--for=condition=Ready", "sandboxclaim/kc-claim",
                        "--timeout=20s")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("condition met", out.stdout)
        self.assertTrue(any(r.get("watch") and "sandboxclaims" in r["path"]
                            for r in C.requests_since(seq)), "kubectl wait should watch")
        out = apply_claim("kc-claim", labels={"k": "changed"})
        self.assertIn("configured", out.stdout)
        self.assertEqual(C.claim("kc-claim")["metadata"]["labels"]["k"], "changed")
        sb = C.claim("kc-claim")["status"]["sandbox"]["name"]
        pid = {p["pod"]: p for p in C.processes()}[sb]["pid"]
        os.kill(pid, 0)
        out = C.kubectl("delete", "sandboxclaim", "kc-claim")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn('sandboxclaim.extensions.agents.x-k8s.io "kc-claim" deleted', out.stdout)
        self.assertIsNone(C.sandbox(sb))
        C.wait_for(lambda: sb not in {p["pod"] for p in C.processes()}, 5,
                   what="runtime process gone")
        C.wait_for(lambda: not _alive(pid), 5, what="pid %d gone" % pid)

    def test_port_forward_pod_execute_and_100mb_both_transports(self):
        C.create_claim("pf-claim", pool="python-sandbox-coldpool")
        sb = C.wait_claim("pf-claim", ready)["status"]["sandbox"]["name"]
        data = os.urandom(BIG)
        want = hashlib.sha256(data).hexdigest()
        for label, env in (("websocket", None),
                           ("spdy", {"KUBECTL_PORT_FORWARD_WEBSOCKETS": "false"})):
            k, port = forward("pod/" + sb, "0:8888", env=env)
            try:
                status, out = execute(port, "echo through-%s" % label)
                self.assertEqual((status, out["stdout"]), (200, "through-%s\n" % label))
                got, n, up, down = upload_download(port, data, "big-%s.bin" % label)
                self.assertEqual((n, got), (BIG, want))
                print("\n  port-forward %-9s 100 MB up %.2f s (%.0f MB/s), down %.2f s "
                      "(%.0f MB/s)" % (label, up, 100 / up, down, 100 / down), end="")
            finally:
                self.assertEqual(k.stop(), 0)          # SIGINT: clean exit
        events = [e for e in C.state_dump()["portforwards"]["events"]
                  if e.get("event") == "portforward.open"]
        self.assertEqual([e["transport"] for e in events[-2:]], ["ws", "spdy"])
        C.delete(CL + "/pf-claim")

    def test_port_forward_router_service_with_headers(self):
        C.create_claim("rt-claim", pool="python-sandbox-coldpool")
        c = C.wait_claim("rt-claim", ready)
        k, port = forward("svc/sandbox-router-svc", "0:8080", "-n", "agent-sandbox-system")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/healthz")
            r = conn.getresponse()
            self.assertEqual((r.status, json.loads(r.read())), (200, {"status": "ok"}))
            conn.close()
            status, out = execute(port, "echo routed", {
                "X-Sandbox-ID": "rt-claim", "X-Sandbox-Namespace": "default",
                "X-Sandbox-Port": "8888",
                "X-Sandbox-Pod-IP": c["status"]["sandbox"]["podIPs"][0]})
            self.assertEqual((status, out["stdout"]), (200, "routed\n"))
            status, out = execute(port, "true", {})
            self.assertEqual((status, out), (400, {"detail": "X-Sandbox-ID header is required."}))
        finally:
            k.stop()
        C.delete(CL + "/rt-claim")

    def test_kubectl_proxy_claim_lifecycle(self):
        k = C.kubectl_bg("proxy", "--port=0")
        port = int(k.wait_line(r"^Starting to serve on 127\.0\.0\.1:(\d+)$").group(1))
        try:
            via = harness.Http("http://127.0.0.1:%d" % port)
            status, obj = via.request("POST", CL, {
                "apiVersion": "extensions.agents.x-k8s.io/v1beta1", "kind": "SandboxClaim",
                "metadata": {"generateName": "sandbox-claim-"},
                "spec": {"warmPoolRef": {"name": "python-sandbox-warmpool"}}})
            self.assertEqual(status, 201, obj)
            name = obj["metadata"]["name"]
            rv = obj["metadata"]["resourceVersion"]
            w = harness.Watch("http://127.0.0.1:%d" % port,
                              CL + "?watch=true&resourceVersion=%s&fieldSelector=metadata.name"
                              "%%3D%s&timeoutSeconds=20" % (rv, name))
            evs = w.wait(lambda e: any(ready(x["object"]) for x in e), timeout=10)
            w.close()
            self.assertTrue(all(e["type"] == "MODIFIED" for e in evs))
            status, obj = via.request("DELETE", CL + "/" + name)
            self.assertEqual(status, 200)
            status, obj = via.request("GET", CL + "/" + name)
            self.assertEqual((status, obj["reason"]), (404, "NotFound"))
            via.close()
            fwd = [r for r in C.requests_since(0) if r["path"].startswith(CL + "/" + name)]
            self.assertEqual(fwd[-1]["headers"].get("x-forwarded-for"), "127.0.0.1")
        finally:
            k.stop(15)

    def test_kill_portforwards_and_pod_deletion_end_tunnels(self):
        C.create_claim("pf-kill", pool="python-sandbox-coldpool")
        C.wait_claim("pf-kill", ready)
        k, port = forward("pod/pf-kill", "0:8888")
        self.assertEqual(execute(port, "true")[0], 200)
        self.assertEqual(C.admin("POST", "kill-portforwards", {})["killed"], 1)
        k.proc.wait(10)
        self.assertEqual(k.proc.returncode, 1)
        k.stop()
        self.assertIn("error: lost connection to pod", "\n".join(k.err))
        k, port = forward("pod/pf-kill", "0:8888")
        self.assertEqual(execute(port, "true")[0], 200)
        C.delete(CL + "/pf-kill")
        k.proc.wait(10)
        k.stop()
        self.assertEqual(k.proc.returncode, 1)
        self.assertIn("lost connection to pod", "\n".join(k.err))

    def test_websocket_refused_falls_back_to_spdy(self):
        C.create_claim("pf-fallback", pool="python-sandbox-coldpool")
        C.wait_claim("pf-fallback", ready)
        C.faults(portforward={"no_websocket": True})
        k, port = forward("pod/pf-fallback", "0:8888")
        try:
            self.assertEqual(execute(port, "echo fb")[1]["stdout"], "fb\n")
        finally:
            k.stop()
        ev = [e for e in C.state_dump()["portforwards"]["events"]
              if e.get("event") in ("portforward.open", "portforward.reject")][-2:]
        self.assertEqual([(e["event"], e["transport"]) for e in ev],
                         [("portforward.reject", "ws"), ("portforward.open", "spdy")])
        C.delete(CL + "/pf-fallback")

    def test_port_forward_errors(self):
        out = C.kubectl("port-forward", "pod/nosuch", "0:8888", "--address", "127.0.0.1",
                        timeout=20)
        self.assertEqual(out.returncode, 1)
        self.assertIn('pods "nosuch" not found', out.stderr)
        C.faults(never_ready=True)
        C.create_claim("pf-pending", pool="python-sandbox-coldpool")
        C.wait_for(lambda: C.get("/api/v1/namespaces/default/pods/pf-pending"), 5)
        out = C.kubectl("port-forward", "pod/pf-pending", "0:8888", "--address", "127.0.0.1",
                        timeout=20)
        self.assertEqual(out.returncode, 1)
        self.assertIn("pod is not running. Current status=Pending", out.stderr)
        C.delete(CL + "/pf-pending")


def _alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


if __name__ == "__main__":
    unittest.main()
