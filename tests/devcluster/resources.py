"""What the dev cluster's API server serves: resource types, discovery, schema
defaults, validation and v1alpha1 <-> v1beta1 conversion.

A `Resource` describes one plural of one API group (e.g. `sandboxclaims` in
`extensions.agents.x-k8s.io`). Objects are stored in ONE storage version per
group (v1beta1, or v1alpha1 with `--v1alpha1-only`) and converted on the way in
and out, the way the upstream conversion webhook does it (protocol.md §1.2):

  * SandboxClaim v1alpha1 -> v1beta1: `warmpool: <pool>` becomes
    `warmPoolRef.name`; "", "default" and "none" become the pool of an already
    bound warm sandbox (its name minus the last `-suffix`) or
    `shadow-pool-<template>`.  The v1alpha1 spec is kept in annotation
    `api.agents.x-k8s.io/v1alpha1-sandboxclaim-state` so a v1alpha1 read gives
    back what was written.
  * Sandbox: `spec.operatingMode` (Running|Suspended) <-> `spec.replicas` (1|0);
    the v1alpha1 view has `status.replicas` and no `status.nodeName`.
  * SandboxWarmPool / SandboxTemplate: v1beta1-only fields are dropped from the
    v1alpha1 view.

v1alpha1 requests (when v1beta1 is also served) get the CRD deprecation
warning, returned by the API server as a `Warning: 299 - "..."` header.
"""
import json

from kube import invalid, parse_time

AGENTS = "agents.x-k8s.io"
EXT = "extensions.agents.x-k8s.io"
GATEWAY = "gateway.networking.k8s.io"
DISCOVERY = "discovery.k8s.io"
STATE_ANNOTATION = "api.agents.x-k8s.io/v1alpha1-sandboxclaim-state"

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


class Resource:
    def __init__(self, group, plural, kind, singular, versions, namespaced=True, short=(),
                 status=False, scale=False, extra=(), deprecated=()):
        self.group, self.plural, self.kind, self.singular = group, plural, kind, singular
        self.versions = list(versions)          # served, preferred first
        self.storage = self.versions[0]
        self.namespaced = namespaced
        self.short = list(short)
        self.status = status                    # has a status subresource
        self.scale = scale                      # has a scale subresource (spec.replicas)
        self.extra = list(extra)                # other subresources: (name, kind, verbs)
        self.deprecated = set(deprecated)

    @property
    def key(self):
        return (self.group, self.plural)

    def api_version(self, version=None):
        v = version or self.storage
        return "%s/%s" % (self.group, v) if self.group else v

    def list_kind(self):
        return self.kind + "List"

    def warning(self, version):
        if version in self.deprecated:
            return '299 - "%s/%s %s is deprecated; use %s/%s %s instead"' % (
                self.group, version, self.kind, self.group, self.storage, self.kind)
        return None

    def __repr__(self):
        return "<Resource %s>" % "/".join(self.key)


class Registry:
    """All resource types of one cluster, indexed by (group, version, plural)."""

    def __init__(self, v1alpha1_only=False, no_crds=False):
        self.v1alpha1_only = v1alpha1_only
        agent_versions = ["v1alpha1"] if v1alpha1_only else ["v1beta1", "v1alpha1"]
        deprecated = () if v1alpha1_only else ("v1alpha1",)
        self.all = [
            Resource("", "namespaces", "Namespace", "namespace", ["v1"], namespaced=False,
                     short=["ns"], status=True),
            Resource("", "nodes", "Node", "node", ["v1"], namespaced=False, short=["no"],
                     status=True),
            Resource("", "pods", "Pod", "pod", ["v1"], short=["po"], status=True,
                     extra=[("portforward", "PodPortForwardOptions", ["create", "get"]),
                            ("proxy", "PodProxyOptions",
                             ["create", "delete", "get", "patch", "update"])]),
            Resource("", "services", "Service", "service", ["v1"], short=["svc"], status=True,
                     extra=[("proxy", "ServiceProxyOptions",
                             ["create", "delete", "get", "patch", "update"])]),
            Resource("", "endpoints", "Endpoints", "endpoints", ["v1"], short=["ep"]),
            Resource("", "events", "Event", "event", ["v1"], short=["ev"]),
            Resource(DISCOVERY, "endpointslices", "EndpointSlice", "endpointslice", ["v1"]),
            Resource(GATEWAY, "gateways", "Gateway", "gateway", ["v1"], short=["gtw"],
                     status=True),
            Resource(AGENTS, "sandboxes", "Sandbox", "sandbox", agent_versions,
                     short=["sandbox"], status=True, deprecated=deprecated),
            Resource(EXT, "sandboxclaims", "SandboxClaim", "sandboxclaim", agent_versions,
                     short=["sandboxclaim"], status=True, deprecated=deprecated),
            Resource(EXT, "sandboxtemplates", "SandboxTemplate", "sandboxtemplate",
                     agent_versions, short=["sandboxtemplate"], deprecated=deprecated),
            Resource(EXT, "sandboxwarmpools", "SandboxWarmPool", "sandboxwarmpool",
                     agent_versions, short=["swp"], status=True, scale=True,
                     deprecated=deprecated),
        ]
        if no_crds:     # agent-sandbox not installed (cluster.py --no-crds)
            self.all = [r for r in self.all if r.group not in (AGENTS, EXT)]
        self.by_key = {r.key: r for r in self.all}

    def get(self, group, plural):
        return self.by_key.get((group, plural))

    def lookup(self, group, version, plural):
        r = self.by_key.get((group, plural))
        if r is None or version not in r.versions:
            return None
        return r

    def groups(self):
        """[(group, [versions], preferred)] for the named groups, in a stable order."""
        out = {}
        for r in self.all:
            if r.group:
                g = out.setdefault(r.group, [])
                for v in r.versions:
                    if v not in g:
                        g.append(v)
        return [(g, vs, vs[0]) for g, vs in out.items()]

    # ------------------------------------------------------------ discovery

    def api_versions(self, server_address):
        return {"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                                "serverAddress": server_address}]}

    def _group_doc(self, group, versions, preferred):
        return {"name": group,
                "versions": [{"groupVersion": "%s/%s" % (group, v), "version": v}
                             for v in versions],
                "preferredVersion": {"groupVersion": "%s/%s" % (group, preferred),
                                     "version": preferred}}

    def api_group_list(self):
        return {"kind": "APIGroupList", "apiVersion": "v1",
                "groups": [self._group_doc(*g) for g in self.groups()]}

    def api_group(self, group):
        for g in self.groups():
            if g[0] == group:
                doc = self._group_doc(*g)
                doc.update({"kind": "APIGroup", "apiVersion": "v1"})
                return doc
        return None

    def resource_list(self, group, version):
        res = [r for r in self.all if r.group == group and version in r.versions]
        if not res:
            return None
        items = []
        for r in res:
            items.append({"name": r.plural, "singularName": r.singular,
                          "namespaced": r.namespaced, "kind": r.kind, "verbs": VERBS,
                          **({"shortNames": r.short} if r.short else {}),
                          **({"categories": ["all"]} if r.group in (AGENTS, EXT) else {})})
            if r.status:
                items.append({"name": r.plural + "/status", "singularName": "",
                              "namespaced": r.namespaced, "kind": r.kind,
                              "verbs": ["get", "patch", "update"]})
            if r.scale or (r.plural == "sandboxes" and version == "v1alpha1"):
                items.append({"name": r.plural + "/scale", "singularName": "",
                              "namespaced": r.namespaced, "group": "autoscaling",
                              "version": "v1", "kind": "Scale",
                              "verbs": ["get", "patch", "update"]})
            for name, kind, verbs in r.extra:
                items.append({"name": "%s/%s" % (r.plural, name), "singularName": "",
                              "namespaced": r.namespaced, "kind": kind, "verbs": verbs})
        return {"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": "%s/%s" % (group, version) if group else version,
                "resources": items}

    # ------------------------------------------------------------ OpenAPI v3

    def openapi_root(self):
        """/openapi/v3: one entry per served group/version (kubectl reads it to learn
        that the server validates fields itself: `fieldValidation`)."""
        paths = {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=devcluster"}}
        for g, versions, _ in self.groups():
            for v in versions:
                paths["apis/%s/%s" % (g, v)] = {
                    "serverRelativeURL": "/openapi/v3/apis/%s/%s?hash=devcluster" % (g, v)}
        return {"paths": paths}

    def openapi_gv(self, group, version):
        """A minimal OpenAPI v3 document for one group/version: the operations with
        their x-kubernetes-group-version-kind and query parameters, no schemas."""
        res = [r for r in self.all if r.group == group and version in r.versions]
        if not res:
            return None
        prefix = "/apis/%s/%s" % (group, version) if group else "/api/%s" % version
        params = [{"name": n, "in": "query", "schema": {"type": "string"}, "uniqueItems": True}
                  for n in ("dryRun", "fieldManager", "fieldValidation", "pretty")]
        paths = {}
        for r in res:
            gvk = {"group": group, "version": version, "kind": r.kind}
            base = prefix + ("/namespaces/{namespace}/" if r.namespaced else "/") + r.plural

            def op(action, r=r, gvk=gvk):
                return {"operationId": "%s%s" % (action, r.kind), "parameters": params,
                        "responses": {"200": {"description": "OK"}},
                        "x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvk}
            paths[base] = {"get": op("list"), "post": op("post"), "delete": op("deletecollection")}
            paths[base + "/{name}"] = {"get": op("get"), "put": op("put"), "patch": op("patch"),
                                       "delete": op("delete")}
            if r.status:
                paths[base + "/{name}/status"] = {"get": op("get"), "put": op("put"),
                                                  "patch": op("patch")}
        return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.32.4"},
                "paths": paths, "components": {"schemas": {}}}

    # ------------------------------------------------------------ defaults & validation

    def apply_defaults(self, res, obj):
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return
        if res.plural == "sandboxes" and res.storage == "v1beta1":
            spec.setdefault("operatingMode", "Running")
        if res.plural == "sandboxes" and res.storage == "v1alpha1":
            spec.setdefault("replicas", 1)
        if res.plural == "sandboxwarmpools" and res.storage == "v1beta1":
            spec.setdefault("replicas", 1)
        if res.plural == "sandboxclaims":
            lc = spec.get("lifecycle")
            if isinstance(lc, dict):
                lc.setdefault("shutdownPolicy", "Retain")
            if res.storage == "v1alpha1":
                spec.setdefault("warmpool", "default")

    def validate(self, res, version, obj):
        """Schema-level checks of the object as sent in `version`. Raises 422."""
        name = obj.get("metadata", {}).get("name") or obj.get("metadata", {}).get(
            "generateName", "")
        causes = []
        spec = obj.get("spec")
        if res.group in (AGENTS, EXT):
            if not isinstance(spec, dict):
                causes.append(("FieldValueRequired", "spec", "Required value"))
                raise invalid(res, name, causes)
        if res.plural == "sandboxclaims":
            if version == "v1beta1":
                ref = spec.get("warmPoolRef")
                if not isinstance(ref, dict) or not ref.get("name"):
                    causes.append(("FieldValueRequired", "spec.warmPoolRef", "Required value"))
            else:
                ref = spec.get("sandboxTemplateRef")
                if not isinstance(ref, dict) or not ref.get("name"):
                    causes.append(("FieldValueRequired", "spec.sandboxTemplateRef",
                                   "Required value"))
            lc = spec.get("lifecycle")
            if lc is not None:
                if not isinstance(lc, dict):
                    causes.append(("FieldValueTypeInvalid", "spec.lifecycle",
                                   "Invalid value: must be an object"))
                else:
                    pol = lc.get("shutdownPolicy")
                    if pol is not None and pol not in ("Delete", "DeleteForeground", "Retain"):
                        causes.append(("FieldValueNotSupported", "spec.lifecycle.shutdownPolicy",
                                       'Unsupported value: "%s": supported values: "Delete", '
                                       '"DeleteForeground", "Retain"' % pol))
                    st = lc.get("shutdownTime")
                    if st is not None and parse_time(st) is None:
                        causes.append(("FieldValueInvalid", "spec.lifecycle.shutdownTime",
                                       'Invalid value: "%s": spec.lifecycle.shutdownTime in body '
                                       'must be of type date-time' % st))
                    ttl = lc.get("ttlSecondsAfterFinished")
                    if ttl is not None and (not isinstance(ttl, int) or ttl < 0):
                        causes.append(("FieldValueInvalid",
                                       "spec.lifecycle.ttlSecondsAfterFinished",
                                       "Invalid value: %r: should be greater than or equal to 0"
                                       % (ttl,)))
            env = spec.get("env")
            if env is not None and (not isinstance(env, list) or
                                    any(not isinstance(e, dict) or not e.get("name")
                                        for e in env)):
                causes.append(("FieldValueRequired", "spec.env[].name", "Required value"))
        elif res.plural == "sandboxwarmpools":
            ref = spec.get("sandboxTemplateRef")
            if not isinstance(ref, dict) or not ref.get("name"):
                causes.append(("FieldValueRequired", "spec.sandboxTemplateRef", "Required value"))
            rep = spec.get("replicas")
            if version == "v1alpha1" and rep is None:
                causes.append(("FieldValueRequired", "spec.replicas", "Required value"))
            if rep is not None and (not isinstance(rep, int) or rep < 0):
                causes.append(("FieldValueInvalid", "spec.replicas",
                               "Invalid value: %r: should be greater than or equal to 0"
                               % (rep,)))
        elif res.plural == "sandboxes":
            if not isinstance(spec.get("podTemplate"), dict):
                causes.append(("FieldValueRequired", "spec.podTemplate", "Required value"))
            mode = spec.get("operatingMode")
            if version == "v1beta1" and mode is not None and mode not in ("Running", "Suspended"):
                causes.append(("FieldValueNotSupported", "spec.operatingMode",
                               'Unsupported value: "%s": supported values: "Running", '
                               '"Suspended"' % mode))
        elif res.plural == "sandboxtemplates":
            if not isinstance(spec.get("podTemplate"), dict):
                causes.append(("FieldValueRequired", "spec.podTemplate", "Required value"))
        if causes:
            raise invalid(res, name, causes)

    # ------------------------------------------------------------ conversion

    def to_storage(self, res, version, obj, lookup):
        """Convert an object written through `version` to the storage version."""
        obj["apiVersion"] = res.api_version(version)
        if version == res.storage or res.group not in (AGENTS, EXT):
            obj["apiVersion"] = res.api_version()
            return obj
        if res.plural == "sandboxclaims":
            obj = claim_a1_to_b1(obj)
        elif res.plural == "sandboxes":
            spec = obj.get("spec") or {}
            if "replicas" in spec:
                spec["operatingMode"] = "Suspended" if spec.pop("replicas") == 0 else "Running"
            (obj.get("status") or {}).pop("replicas", None)
        obj["apiVersion"] = res.api_version()
        return obj

    def from_storage(self, res, version, obj, lookup):
        """Convert a stored object (a private copy) for a reply in `version`."""
        if version == res.storage or res.group not in (AGENTS, EXT):
            return obj
        obj["apiVersion"] = res.api_version(version)
        if res.plural == "sandboxclaims":
            return claim_b1_to_a1(obj, lookup)
        spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
        status = obj.get("status") if isinstance(obj.get("status"), dict) else None
        if res.plural == "sandboxes":
            mode = spec.pop("operatingMode", "Running")
            spec["replicas"] = 0 if mode == "Suspended" else 1
            if status is not None:
                status.pop("nodeName", None)
                status["replicas"] = spec["replicas"]
        elif res.plural == "sandboxwarmpools":
            if status is not None:
                status.pop("observedGeneration", None)
            spec.pop("updateStrategy", None)
        elif res.plural == "sandboxtemplates":
            spec.pop("volumeClaimTemplatesPolicy", None)
        return obj


def claim_a1_to_b1(obj):
    spec = obj.get("spec") or {}
    tmpl = (spec.get("sandboxTemplateRef") or {}).get("name", "")
    warmpool = spec.get("warmpool", "default")
    kept = {"sandboxTemplateRef": spec.get("sandboxTemplateRef")}
    if "warmpool" in spec:
        kept["warmpool"] = warmpool
    new_spec = {k: v for k, v in spec.items() if k not in ("sandboxTemplateRef", "warmpool")}
    if warmpool not in ("", "default", "none", None):
        pool = warmpool
    else:
        sb = (obj.get("status") or {}).get("sandbox") or {}
        bound = sb.get("name") or sb.get("Name")
        if bound and bound != obj.get("metadata", {}).get("name") and "-" in bound:
            pool = bound.rsplit("-", 1)[0]
        else:
            pool = "shadow-pool-" + tmpl
    new_spec["warmPoolRef"] = {"name": pool}
    obj["spec"] = new_spec
    md = obj.setdefault("metadata", {})
    ann = md.get("annotations") or {}
    ann[STATE_ANNOTATION] = json.dumps({"spec": kept}, separators=(",", ":"), sort_keys=True)
    md["annotations"] = ann
    return obj


def claim_b1_to_a1(obj, lookup):
    spec = obj.get("spec") or {}
    md = obj.get("metadata", {})
    ann = md.get("annotations") or {}
    state = None
    if STATE_ANNOTATION in ann:
        try:
            state = json.loads(ann[STATE_ANNOTATION]).get("spec")
        except (ValueError, AttributeError):
            state = None
        ann.pop(STATE_ANNOTATION, None)
        if not ann:
            md.pop("annotations", None)
    new_spec = {k: v for k, v in spec.items() if k not in ("warmPoolRef", "volumeClaimTemplates")}
    if isinstance(state, dict) and state.get("sandboxTemplateRef"):
        new_spec["sandboxTemplateRef"] = state["sandboxTemplateRef"]
        new_spec["warmpool"] = state.get("warmpool", "default")
    else:
        pool = (spec.get("warmPoolRef") or {}).get("name", "")
        tmpl = ""
        pool_obj = lookup(EXT, "sandboxwarmpools", md.get("namespace"), pool) if pool else None
        if pool_obj:
            tmpl = ((pool_obj.get("spec") or {}).get("sandboxTemplateRef") or {}).get("name", "")
        new_spec["sandboxTemplateRef"] = {"name": tmpl}
        new_spec["warmpool"] = pool
    obj["spec"] = new_spec
    return obj
