"""Objects every dev cluster starts with.

Namespaces default, kube-system, kube-public, kube-node-lease and
agent-sandbox-system; node `devcluster-node`; Service `kubernetes`; in
`default`: SandboxTemplate `python-sandbox-template` (python runtime on port
8888), SandboxWarmPools `python-sandbox-warmpool` (replicas 2 by default),
`python-sandbox-coldpool` (0) and `shadow-pool-python-sandbox-template` (0,
the pool the v1alpha1 conversion points template-only claims at); Service
`sandbox-router-svc` (8080 -> 8080, selector app=sandbox-router) in
agent-sandbox-system, whose pod the controller keeps running, and Gateway
`external-http-gateway` in default (its status.addresses[0].value is the
router pod's IP).
"""
from resources import EXT, GATEWAY

TEMPLATE = "python-sandbox-template"
WARM_POOL = "python-sandbox-warmpool"
COLD_POOL = "python-sandbox-coldpool"
SHADOW_POOL = "shadow-pool-" + TEMPLATE
RUNTIME_IMAGE = "registry.k8s.io/agent-sandbox/python-runtime-sandbox:latest-main"


def template_obj(name=TEMPLATE, namespace="default", image=RUNTIME_IMAGE, port=8888, **extra):
    spec = {"podTemplate": {
        "metadata": {"labels": {"app": "python-sandbox"}},
        "spec": {"containers": [{
            "name": "python-runtime", "image": image,
            "ports": [{"containerPort": port, "protocol": "TCP"}],
            "readinessProbe": {"httpGet": {"path": "/", "port": port},
                               "periodSeconds": 1}}]}}}
    spec.update(extra)
    return {"kind": "SandboxTemplate", "metadata": {"name": name, "namespace": namespace},
            "spec": spec}


SANDBOXD_IMAGE = "registry.example/agent-sandbox/sandboxd:latest-main"


def sandboxd_template_obj(name="sandboxd-template", namespace="default", image=SANDBOXD_IMAGE,
                          **extra):
    """A sandboxd template shaped like upstream's USER_GUIDE example: REST on 8080 and the
    gRPC ProcessService on 9090 (named here so the kubelet's port rule is explicit).
    Not seeded (tests/lib/test.h creates its own "sandboxd-template"); for tests."""
    spec = {"podTemplate": {
        "metadata": {"labels": {"app": "sandboxd"}},
        "spec": {"containers": [{
            "name": "sandboxd", "image": image,
            "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"},
                      {"name": "grpc", "containerPort": 9090, "protocol": "TCP"}],
            "readinessProbe": {"httpGet": {"path": "/v1/health", "port": 8080},
                               "periodSeconds": 1}}]}}}
    spec.update(extra)
    return {"kind": "SandboxTemplate", "metadata": {"name": name, "namespace": namespace},
            "spec": spec}


def pool_obj(name, replicas, template=TEMPLATE, namespace="default"):
    return {"kind": "SandboxWarmPool", "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": replicas, "sandboxTemplateRef": {"name": template}}}


def seed(store, registry, node_ip, warm_replicas=2, router=True):
    r = registry.get
    for ns in ("default", "kube-system", "kube-public", "kube-node-lease",
               "agent-sandbox-system"):
        store.create(r("", "namespaces"), {
            "kind": "Namespace", "metadata": {"name": ns,
                                              "labels": {"kubernetes.io/metadata.name": ns}},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}},
            keep_status=True)
    store.create(r("", "nodes"), {
        "kind": "Node", "metadata": {"name": "devcluster-node",
                                     "labels": {"kubernetes.io/hostname": "devcluster-node"}},
        "spec": {},
        "status": {"addresses": [{"type": "InternalIP", "address": node_ip},
                                 {"type": "Hostname", "address": "devcluster-node"}],
                   "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                   "message": "kubelet is posting ready status"}],
                   "nodeInfo": {"kubeletVersion": "v1.32.4", "architecture": "amd64",
                                "operatingSystem": "linux"}}}, keep_status=True)
    store.create(r("", "services"), {
        "kind": "Service", "metadata": {"name": "kubernetes", "namespace": "default"},
        "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1"],
                 "ports": [{"name": "https", "port": 443, "targetPort": 6443,
                            "protocol": "TCP"}]}})
    templates, pools = r(EXT, "sandboxtemplates"), r(EXT, "sandboxwarmpools")
    for obj in (template_obj(),):
        obj["apiVersion"] = templates.api_version()
        store.create(templates, obj)
    for name, n in ((WARM_POOL, warm_replicas), (COLD_POOL, 0), (SHADOW_POOL, 0)):
        obj = pool_obj(name, n)
        obj["apiVersion"] = pools.api_version()
        store.create(pools, obj)
    if router:
        store.create(r("", "services"), {
            "kind": "Service",
            "metadata": {"name": "sandbox-router-svc", "namespace": "agent-sandbox-system",
                         "labels": {"app": "sandbox-router"}},
            "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                     "selector": {"app": "sandbox-router"},
                     "ports": [{"name": "http", "port": 8080, "targetPort": 8080,
                                "protocol": "TCP"}]}})
        store.create(r(GATEWAY, "gateways"), {
            "kind": "Gateway",
            "metadata": {"name": "external-http-gateway", "namespace": "default"},
            "spec": {"gatewayClassName": "devcluster",
                     "listeners": [{"name": "http", "protocol": "HTTP", "port": 80}]}})


def settled(store, registry, router=True):
    """True once the seeded pools are full of Ready sandboxes and the router runs."""
    pools = registry.get(EXT, "sandboxwarmpools")
    for p in store.list_refs(pools, "default"):
        want = (p.get("spec") or {}).get("replicas", 1)
        st = p.get("status") or {}
        if st.get("readyReplicas", 0) < want or st.get("replicas", 0) != want:
            return False
    if router:
        gw = store.get_ref(registry.get(GATEWAY, "gateways"), "default", "external-http-gateway")
        if gw is None or not (gw.get("status") or {}).get("addresses"):
            return False
    return True
