"""The dev cluster's controllers, behaving like upstream agent-sandbox
(protocol.md §1.5, §1.7-§1.9, §3) plus the bits of kube-controller-manager
the clients rely on.

One worker thread drains a deduplicating work queue fed by store hooks, so
reconciles never race each other; API writes from clients interleave as on a
real cluster. Keys:

  ("claim", ns, name)     SandboxClaim: observed-at annotation, lifecycle
                          expiry, additionalPodMetadata / env validation,
                          warm adoption or cold create, status mirroring
  ("pool", ns, name)      SandboxWarmPool: keep `replicas` sandboxes
                          `<pool>-xxxxx`, status counts
  ("sandbox", ns, name)   Sandbox: pod named after the sandbox, optional
                          headless Service, suspend, expiry, status
  ("claims-in", ns)       re-check claims after a pool / template changed
  ("router",)             keep one sandbox-router pod in agent-sandbox-system
  ("gateway",)            Gateway external-http-gateway status.addresses
  ("endpoints", ns)       Endpoints + EndpointSlices of selector Services
  ("deleteclaim", ns, name, uid)   the delete_claim_after_ms fault

Storage shape: claims, pools and sandboxes are v1beta1 unless the cluster runs
`--v1alpha1-only`; then they are stored (and handled) in their v1alpha1 form:
a claim names a template (`sandboxTemplateRef`) and a `warmpool` policy
("none" = always cold, "default"/"" = any pool of that template, else a pool
name), sandboxes use `spec.replicas` 1|0, and the claim status carries the
legacy `Name` key of clusters older than upstream PR #440.
"""
import json
import threading
import time

from kube import ApiError, fnv1a32, now_rfc3339, now_rfc3339_nano, parse_time
from resources import AGENTS, EXT, GATEWAY
from workqueue import WorkQueue

A = "agents.x-k8s.io/"
OBSERVED = A + "controller-first-observed-at"
SANDBOX_NAME = A + "sandbox-name"
POD_NAME = A + "pod-name"
TEMPLATE_REF = A + "sandbox-template-ref"
NAME_HASH = A + "sandbox-name-hash"
CLAIM_UID = A + "claim-uid"
CREATED_BY = A + "created-by"
LAUNCH_TYPE = A + "launch-type"
WARM_POOL = A + "warm-pool-sandbox"
TEMPLATE_REF_HASH = A + "sandbox-template-ref-hash"
TEMPLATE_HASH = A + "sandbox-template-hash"
SAFE_TO_EVICT = "cluster-autoscaler.kubernetes.io/safe-to-evict"

ROUTER_NS = "agent-sandbox-system"
ROUTER_SVC = "sandbox-router-svc"
ROUTER_IMAGE = "registry.k8s.io/agent-sandbox/sandbox-router:latest"
GATEWAY_NAME, GATEWAY_NS = "external-http-gateway", "default"
FORBIDDEN_ANNOTATION_DOMAINS = ("kubernetes.io", "k8s.io", "agents.x-k8s.io")
TERMINAL = ("InvalidMetadata", "EnvVarsInjectionRejected", "VolumeClaimTemplatesError")


def _domain_in(domain, roots):
    return any(domain == r or domain.endswith("." + r) for r in roots)


def _cond(obj, ctype):
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return c
    return None


def _controller_ref(obj):
    for r in obj["metadata"].get("ownerReferences") or []:
        if r.get("controller"):
            return r
    return None


def _owned_by(obj, owner):
    ref = _controller_ref(obj)
    return ref is not None and ref.get("uid") == owner["metadata"]["uid"]


def _merge_conditions(old, new, now):
    """Keep lastTransitionTime of conditions whose status did not change."""
    prev = {c.get("type"): c for c in old or []}
    out = []
    for c in new:
        c = dict(c)
        p = prev.get(c["type"])
        if "lastTransitionTime" not in c:
            c["lastTransitionTime"] = p["lastTransitionTime"] \
                if p and p.get("status") == c["status"] and p.get("lastTransitionTime") else now
        out.append(c)
    return out


class Controller:
    def __init__(self, store, registry, faults, config, log=None):
        self.store, self.registry, self.faults, self.config = store, registry, faults, config
        self.log = log or (lambda *a: None)
        r = registry.get
        self.claims, self.sandboxes = r(EXT, "sandboxclaims"), r(AGENTS, "sandboxes")
        self.pools, self.templates = r(EXT, "sandboxwarmpools"), r(EXT, "sandboxtemplates")
        self.pods, self.services = r("", "pods"), r("", "services")
        self.endpoints, self.slices = r("", "endpoints"), r("discovery.k8s.io", "endpointslices")
        self.gateways = r(GATEWAY, "gateways")
        self.alpha = registry.v1alpha1_only
        self.label_domains = config.get("label_domains") or ["sandbox.users.io"]
        # Claims first among the due keys: agent-sandbox's claim controller has
        # its own workers, so a claim never waits behind the warm pool refilling
        # the sandboxes claims just took (32 opens at once: 32 pod creations).
        self.queue = WorkQueue(urgent=lambda key: key[0] == "claim")
        self.delete_scheduled = set()
        self.thread = threading.Thread(target=self._run, name="controller", daemon=True)
        store.hooks.append(self._hook)

    def start(self):
        self.thread.start()

    def stop(self):
        self.queue.shutdown()

    # ------------------------------------------------------------ event routing

    def _hook(self, type_, res, obj, old):
        md = obj["metadata"]
        ns, name = md.get("namespace", ""), md["name"]
        q = self.queue.add
        if res is self.claims:
            q(("claim", ns, name))
        elif res is self.pools:
            q(("pool", ns, name))
            q(("claims-in", ns))
        elif res is self.templates:
            q(("claims-in", ns))
            for p in self.store.list_refs(self.pools, ns):
                q(("pool", ns, p["metadata"]["name"]))
        elif res is self.sandboxes:
            q(("sandbox", ns, name))
            for o in (obj, old):
                ref = _controller_ref(o) if o else None
                if ref and ref.get("kind") == "SandboxClaim":
                    q(("claim", ns, ref["name"]))
                elif ref and ref.get("kind") == "SandboxWarmPool":
                    q(("pool", ns, ref["name"]))
        elif res is self.pods:
            ref = _controller_ref(obj)
            if ref and ref.get("kind") == "Sandbox":
                q(("sandbox", ns, ref["name"]))
            if (md.get("labels") or {}).get("app") == "sandbox-router":
                q(("router",))
                q(("gateway",))
            q(("endpoints", ns))
        elif res is self.services:
            q(("endpoints", ns))
        elif res is self.gateways:
            q(("gateway",))

    def _run(self):
        while True:
            key = self.queue.get()
            if key is None:
                return
            try:
                kind = key[0]
                if kind in ("claim", "pool", "sandbox"):
                    delay = self.faults.get_float("controller_delay_ms", 0)
                    if delay > 0:
                        time.sleep(delay / 1000.0)
                getattr(self, "reconcile_" + kind.replace("-", "_"))(*key[1:])
            except ApiError as e:
                self.log("controller: %s: %s" % (key, e))
                self.queue.add(key, 0.2)
            except Exception as e:              # never let the worker die silently
                import traceback
                self.log("controller: %s crashed: %s" % (key, traceback.format_exc()))
                self.queue.add(key, 1.0)

    # ------------------------------------------------------------ small write helpers

    def _patch_meta(self, res, obj, labels=None, annotations=None):
        uid = obj["metadata"]["uid"]

        def fn(o):
            if o["metadata"]["uid"] != uid:
                return False
            for field, vals in (("labels", labels), ("annotations", annotations)):
                if vals:
                    m = dict(o["metadata"].get(field) or {})
                    for k, v in vals.items():
                        if v is None:
                            m.pop(k, None)
                        else:
                            m[k] = v
                    if m:
                        o["metadata"][field] = m
                    else:
                        o["metadata"].pop(field, None)
        md = obj["metadata"]
        return self.store.mutate(res, md.get("namespace", ""), md["name"], fn)

    def _write_status(self, res, obj, status):
        """Status merge-patch equivalent: write only when something changed."""
        if (obj.get("status") or {}) == status:
            return obj
        uid = obj["metadata"]["uid"]

        def fn(o):
            if o["metadata"]["uid"] != uid:
                return False
            o["status"] = status
        md = obj["metadata"]
        return self.store.mutate(res, md.get("namespace", ""), md["name"], fn) or obj

    def _owner_ref(self, res, obj):
        return {"apiVersion": res.api_version(), "kind": res.kind, "name": obj["metadata"]["name"],
                "uid": obj["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}

    # ------------------------------------------------------------ claims

    def reconcile_claims_in(self, ns):
        for c in self.store.list_refs(self.claims, ns):
            self.queue.add(("claim", ns, c["metadata"]["name"]))

    def reconcile_deleteclaim(self, ns, name, uid):
        cur = self.store.get_ref(self.claims, ns, name)
        if cur is not None and cur["metadata"]["uid"] == uid:
            try:
                self.store.delete(self.claims, ns, name)
            except ApiError:
                pass

    def reconcile_claim(self, ns, name):
        claim = self.store.get(self.claims, ns, name)
        if claim is None or claim["metadata"].get("deletionTimestamp"):
            return
        md = claim["metadata"]
        if OBSERVED not in (md.get("annotations") or {}):
            claim = self._patch_meta(self.claims, claim, annotations={OBSERVED: now_rfc3339_nano()})
            if claim is None:
                return
        after = self.faults.get("delete_claim_after_ms")
        if isinstance(after, (int, float)) and after >= 0 and md["uid"] not in self.delete_scheduled:
            # counted from the first observation (creationTimestamp has 1 s resolution)
            self.delete_scheduled.add(md["uid"])
            self.queue.add(("deleteclaim", ns, name, md["uid"]), after / 1000.0)
        if self._claim_lifecycle(claim):
            return
        status = claim.get("status") or {}
        ready = _cond(claim, "Ready")
        if ready and ready.get("reason") in TERMINAL and self._bound_sandbox(claim) is None:
            # user errors are not retried, unless the spec changed since
            if ready.get("observedGeneration") == md.get("generation"):
                return
        problem = self._validate_metadata(claim)
        if problem:
            return self._claim_status(claim, None, ("InvalidMetadata", problem))
        sandbox = self._bound_sandbox(claim)
        if sandbox is None:
            target = self._claim_target(claim)
            if isinstance(target, tuple) and target[0] == "error":
                return self._claim_status(claim, None, target[1:])
            pools, template = target
            spec = claim.get("spec") or {}
            problem = self._check_env(claim, template)
            if problem:
                return self._claim_status(claim, None, ("EnvVarsInjectionRejected", problem))
            if spec.get("volumeClaimTemplates") and (template.get("spec") or {}).get(
                    "volumeClaimTemplatesPolicy", "Disallowed") == "Disallowed":
                return self._claim_status(claim, None, (
                    "VolumeClaimTemplatesError", 'SandboxTemplate "%s" does not allow '
                    'volumeClaimTemplates on claims' % template["metadata"]["name"]))
            cold_only = bool(spec.get("env") or spec.get("volumeClaimTemplates"))
            if not cold_only and not self.faults.get("never_ready"):
                cand, waiting = self._warm_candidate(ns, pools)
                if cand is not None:
                    sandbox = self._adopt(claim, cand, template)
                    if sandbox is None:
                        self.queue.add(("claim", ns, name), 0.05)
                        return
                elif waiting:
                    created = parse_time(md.get("creationTimestamp")) or time.time()
                    if time.time() - created < 2.0:
                        self.queue.add(("claim", ns, name), 0.5)
                        return
            if sandbox is None:
                sandbox = self._create_cold(claim, template)
                if isinstance(sandbox, tuple):
                    return self._claim_status(claim, None, sandbox)
        claim = self.store.get(self.claims, ns, name) or claim
        self._claim_status(claim, sandbox, None)

    def _bound_sandbox(self, claim):
        md = claim["metadata"]
        ns = md["namespace"]
        sb_status = (claim.get("status") or {}).get("sandbox") or {}
        for cand in (sb_status.get("name") or sb_status.get("Name"),
                     (md.get("annotations") or {}).get(SANDBOX_NAME), md["name"]):
            if not cand:
                continue
            sb = self.store.get(self.sandboxes, ns, cand)
            if sb is None or sb["metadata"].get("deletionTimestamp"):
                continue
            if _owned_by(sb, claim):
                return sb
            ref = _controller_ref(sb)
            if cand == (md.get("annotations") or {}).get(SANDBOX_NAME) and ref and \
                    ref.get("kind") == "SandboxWarmPool":
                return self._finish_adoption(claim, sb)     # interrupted adoption
        return None

    def _claim_target(self, claim):
        """-> ([pool objects to take warm sandboxes from], template) or ("error", reason, msg)."""
        ns = claim["metadata"]["namespace"]
        spec = claim.get("spec") or {}
        if not self.alpha:
            pname = (spec.get("warmPoolRef") or {}).get("name", "")
            pool = self.store.get(self.pools, ns, pname)
            if pool is None:
                self.queue.add(("claim", ns, claim["metadata"]["name"]), 60)
                return ("error", "WarmPoolNotFound", 'SandboxWarmPool "%s" not found' % pname)
            tname = ((pool.get("spec") or {}).get("sandboxTemplateRef") or {}).get("name", "")
            pools = [pool]
        else:
            tname = (spec.get("sandboxTemplateRef") or {}).get("name", "")
            policy = spec.get("warmpool") or "default"
            if policy == "none":
                pools = []
            elif policy == "default":
                pools = [p for p in self.store.list(self.pools, ns)[0]
                         if ((p.get("spec") or {}).get("sandboxTemplateRef") or {}).get("name")
                         == tname]
            else:
                pool = self.store.get(self.pools, ns, policy)
                if pool is None:
                    self.queue.add(("claim", ns, claim["metadata"]["name"]), 60)
                    return ("error", "WarmPoolNotFound", 'SandboxWarmPool "%s" not found' % policy)
                pools = [pool]
        template = self.store.get(self.templates, ns, tname)
        if template is None:
            self.queue.add(("claim", ns, claim["metadata"]["name"]), 60)
            return ("error", "TemplateNotFound", 'SandboxTemplate "%s" not found' % tname)
        return pools, template

    def _validate_metadata(self, claim):
        apm = (claim.get("spec") or {}).get("additionalPodMetadata") or {}
        for key in sorted(apm.get("labels") or {}):
            domain = key.split("/", 1)[0] if "/" in key else ""
            if not domain or not _domain_in(domain, self.label_domains):
                return ('label key "%s" is not allowed: additionalPodMetadata label keys must '
                        'have a domain prefix in the allowlist [%s]'
                        % (key, ", ".join(self.label_domains)))
        if (apm.get("labels") or {}).get("app") == "sandbox-router":
            return 'label "app=sandbox-router" is reserved'
        for key in sorted(apm.get("annotations") or {}):
            if key == SAFE_TO_EVICT:
                continue
            domain = key.split("/", 1)[0] if "/" in key else ""
            if domain and _domain_in(domain, FORBIDDEN_ANNOTATION_DOMAINS):
                return ('annotation key "%s" is not allowed: the domains %s are reserved'
                        % (key, ", ".join(FORBIDDEN_ANNOTATION_DOMAINS)))
        return None

    def _check_env(self, claim, template):
        env = (claim.get("spec") or {}).get("env") or []
        if not env:
            return None
        tspec = template.get("spec") or {}
        policy = tspec.get("envVarsInjectionPolicy") or "Disallowed"
        tname = template["metadata"]["name"]
        if policy == "Disallowed":
            return ('SandboxTemplate "%s" does not allow environment variable injection '
                    '(envVarsInjectionPolicy: Disallowed)' % tname)
        containers = ((tspec.get("podTemplate") or {}).get("spec") or {}).get("containers") or []
        for e in env:
            cname = e.get("containerName")
            c = next((c for c in containers if c.get("name") == cname), None) if cname else \
                (containers[0] if containers else None)
            if c is None:
                return 'container "%s" not found in SandboxTemplate "%s"' % (cname, tname)
            if policy == "Allowed":
                if c.get("envFrom"):
                    return ('container "%s" uses envFrom; env injection needs '
                            'envVarsInjectionPolicy: Overrides' % c.get("name"))
                if any(x.get("name") == e.get("name") for x in c.get("env") or []):
                    return ('env var "%s" already set by SandboxTemplate "%s"; overriding needs '
                            'envVarsInjectionPolicy: Overrides' % (e.get("name"), tname))
        return None

    def _claim_lifecycle(self, claim):
        """Expiry (§3.7). True when the reconcile is finished."""
        lc = (claim.get("spec") or {}).get("lifecycle")
        if not isinstance(lc, dict):
            return False
        md = claim["metadata"]
        expire = parse_time(lc.get("shutdownTime")) if lc.get("shutdownTime") else None
        fin = _cond(claim, "Finished")
        ttl = lc.get("ttlSecondsAfterFinished")
        if isinstance(ttl, int) and fin and fin.get("status") == "True":
            t = parse_time(fin.get("lastTransitionTime"))
            if t is not None:
                expire = min(expire, t + ttl) if expire is not None else t + ttl
        if expire is None:
            return False
        now = time.time()
        if now < expire:
            self.queue.add(("claim", md["namespace"], md["name"]), expire - now + 0.001)
            return False
        ready = _cond(claim, "Ready")
        if not ready or ready.get("reason") != "ClaimExpired":
            st = dict(claim.get("status") or {})
            conds = [c for c in st.get("conditions") or [] if c.get("type") != "Ready"]
            conds.insert(0, {"type": "Ready", "status": "False", "reason": "ClaimExpired",
                             "message": "Claim expired. Sandbox cleanup initiated.",
                             "observedGeneration": md.get("generation", 1)})
            st["conditions"] = _merge_conditions(st.get("conditions"), conds, now_rfc3339())
            self._write_status(self.claims, claim, st)
            self.queue.add(("claim", md["namespace"], md["name"]), 0.001)
            return True
        policy = lc.get("shutdownPolicy") or "Retain"
        if policy in ("Delete", "DeleteForeground"):
            try:
                self.store.delete(self.claims, md["namespace"], md["name"],
                                  propagation="Foreground" if policy == "DeleteForeground"
                                  else "Background")
            except ApiError:
                pass
            return True
        sb = self._bound_sandbox(claim)
        if sb is not None:
            try:
                self.store.delete(self.sandboxes, md["namespace"], sb["metadata"]["name"])
            except ApiError:
                pass
            return True
        st = dict(claim.get("status") or {})
        if st.get("sandbox"):
            st.pop("sandbox", None)
            self._write_status(self.claims, claim, st)
        return True

    def _claim_status(self, claim, sandbox, problem):
        md = claim["metadata"]
        gen = md.get("generation", 1)
        old = claim.get("status") or {}
        st = {}
        key = "Name" if self.alpha else "name"
        if sandbox is not None:
            sst = sandbox.get("status") or {}
            sbs = {key: sandbox["metadata"]["name"]}
            if sst.get("podIPs"):
                sbs["podIPs"] = list(sst["podIPs"])
            st["sandbox"] = sbs
            ready = _cond(sandbox, "Ready")
            if ready is not None:
                ready = dict(ready, observedGeneration=gen)
            else:
                ready = {"type": "Ready", "status": "False", "reason": "SandboxNotReady",
                         "message": "Sandbox is not ready", "observedGeneration": gen}
            conds = [ready]
            fin = _cond(sandbox, "Finished")
            if fin is not None:
                conds.append(dict(fin))
        else:
            reason, message = problem if problem else ("SandboxMissing", "Sandbox is missing")
            conds = [{"type": "Ready", "status": "False", "reason": reason, "message": message,
                      "observedGeneration": gen}]
        st["conditions"] = _merge_conditions(old.get("conditions"), conds, now_rfc3339())
        self._write_status(self.claims, claim, st)

    # ------------------------------------------------------------ warm adoption

    def _pool_members(self, pool):
        ns = pool["metadata"]["namespace"]
        return [s for s in self.store.list_refs(self.sandboxes, ns)
                if _owned_by(s, pool) and not s["metadata"].get("deletionTimestamp")]

    def _warm_candidate(self, ns, pools):
        """-> (best sandbox or None, True if members exist that have no pod IP yet)."""
        members = []
        for p in pools:
            members += self._pool_members(p)
        with_ip = [s for s in members if (s.get("status") or {}).get("podIPs")]
        waiting = len(with_ip) < len(members)
        if not with_ip:
            return None, waiting

        def rank(s):
            ready = (_cond(s, "Ready") or {}).get("status") == "True"
            return (0 if ready else 1, s["metadata"].get("creationTimestamp", ""),
                    int(s["metadata"]["resourceVersion"]))
        with_ip.sort(key=rank)
        best = with_ip[0]
        return self.store.get(self.sandboxes, ns, best["metadata"]["name"]), waiting

    def _adopt(self, claim, sandbox, template):
        sname = sandbox["metadata"]["name"]
        claim = self._patch_meta(self.claims, claim, annotations={SANDBOX_NAME: sname})
        if claim is None:
            return None
        return self._finish_adoption(claim, sandbox, template)

    def _finish_adoption(self, claim, sandbox, template=None):
        cmd = claim["metadata"]
        ref = self._owner_ref(self.claims, claim)
        apm = (claim.get("spec") or {}).get("additionalPodMetadata") or {}
        tname = (sandbox["metadata"].get("annotations") or {}).get(TEMPLATE_REF) or \
            (template["metadata"]["name"] if template else "")
        pool_uid = (_controller_ref(sandbox) or {}).get("uid")

        def fn(sb):
            if _controller_ref(sb) is None or _controller_ref(sb).get("uid") != pool_uid:
                return False
            smd = sb["metadata"]
            smd["ownerReferences"] = [ref]
            labels = dict(smd.get("labels") or {})
            for k in (WARM_POOL, TEMPLATE_HASH):
                labels.pop(k, None)
            labels[LAUNCH_TYPE] = "warm"
            labels[CLAIM_UID] = cmd["uid"]
            labels[TEMPLATE_REF_HASH] = fnv1a32(tname)
            cb = (cmd.get("labels") or {}).get(CREATED_BY)
            if cb:
                labels[CREATED_BY] = cb
            smd["labels"] = labels
            ann = dict(smd.get("annotations") or {})
            ann[POD_NAME] = smd["name"]
            smd["annotations"] = ann
            pt = sb.setdefault("spec", {}).setdefault("podTemplate", {})
            pmd = pt.setdefault("metadata", {})
            plabels = dict(pmd.get("labels") or {})
            plabels.pop(WARM_POOL, None)
            plabels.pop(TEMPLATE_HASH, None)
            plabels[CLAIM_UID] = cmd["uid"]
            plabels.update(apm.get("labels") or {})
            pmd["labels"] = plabels
            pann = dict(pmd.get("annotations") or {})
            pann.pop(SAFE_TO_EVICT, None)
            pann.update(apm.get("annotations") or {})
            if pann:
                pmd["annotations"] = pann
            else:
                pmd.pop("annotations", None)
        out = self.store.mutate(self.sandboxes, cmd["namespace"], sandbox["metadata"]["name"], fn)
        if out is None or not _owned_by(out, claim):
            return None
        if pool_uid:
            for p in self.store.list_refs(self.pools, cmd["namespace"]):
                if p["metadata"]["uid"] == pool_uid:
                    self.queue.add(("pool", cmd["namespace"], p["metadata"]["name"]))
        return out

    # ------------------------------------------------------------ cold start

    def _pod_template(self, template, labels=None, annotations=None, env=None):
        tspec = template.get("spec") or {}
        pt = json.loads(json.dumps(tspec.get("podTemplate") or {}))
        pmd = pt.setdefault("metadata", {})
        pmd["labels"] = dict(pmd.get("labels") or {}, **(labels or {}))
        if annotations or pmd.get("annotations"):
            pmd["annotations"] = dict(pmd.get("annotations") or {}, **(annotations or {}))
        pspec = pt.setdefault("spec", {})
        pspec.setdefault("automountServiceAccountToken", False)
        if tspec.get("networkPolicyManagement", "Managed") != "Unmanaged":
            pspec.setdefault("dnsPolicy", "None")
            pspec.setdefault("dnsConfig", {"nameservers": ["8.8.8.8", "1.1.1.1"]})
        containers = pspec.get("containers") or []
        for e in env or []:
            cname = e.get("containerName")
            c = next((c for c in containers if c.get("name") == cname), None) if cname else \
                (containers[0] if containers else None)
            if c is None:
                continue
            cenv = [x for x in c.get("env") or [] if x.get("name") != e["name"]]
            cenv.append({"name": e["name"], "value": e.get("value", "")})
            c["env"] = cenv
        return pt

    def _blueprint(self, template, pod_template):
        tspec = template.get("spec") or {}
        spec = {"podTemplate": pod_template}
        if self.alpha:
            spec["replicas"] = 1
        else:
            spec["operatingMode"] = "Running"
        for k in ("volumeClaimTemplates", "service"):
            if k in tspec:
                spec[k] = json.loads(json.dumps(tspec[k]))
        return spec

    def _create_cold(self, claim, template):
        md = claim["metadata"]
        tname = template["metadata"]["name"]
        spec = claim.get("spec") or {}
        apm = spec.get("additionalPodMetadata") or {}
        labels = {CLAIM_UID: md["uid"], LAUNCH_TYPE: "cold", TEMPLATE_REF_HASH: fnv1a32(tname)}
        cb = (md.get("labels") or {}).get(CREATED_BY)
        if cb:
            labels[CREATED_BY] = cb
        pt = self._pod_template(template, dict(apm.get("labels") or {}, **{CLAIM_UID: md["uid"]}),
                                apm.get("annotations"), spec.get("env"))
        bp = self._blueprint(template, pt)
        if spec.get("volumeClaimTemplates"):
            bp["volumeClaimTemplates"] = (bp.get("volumeClaimTemplates") or []) + \
                spec["volumeClaimTemplates"]
        obj = {"apiVersion": self.sandboxes.api_version(), "kind": "Sandbox",
               "metadata": {"name": md["name"], "namespace": md["namespace"], "labels": labels,
                            "annotations": {TEMPLATE_REF: tname},
                            "ownerReferences": [self._owner_ref(self.claims, claim)]},
               "spec": bp}
        try:
            return self.store.create(self.sandboxes, obj)
        except ApiError as e:
            if e.code == 409:
                self.queue.add(("claim", md["namespace"], md["name"]), 0.2)
                return ("SandboxCreatePending", "Sandbox %s already exists" % md["name"])
            return ("ReconcilerError", "Error seen: %s" % e)

    # ------------------------------------------------------------ warm pools

    def reconcile_pool(self, ns, name):
        pool = self.store.get(self.pools, ns, name)
        if pool is None or pool["metadata"].get("deletionTimestamp"):
            return
        spec = pool.get("spec") or {}
        replicas = spec.get("replicas", 1)
        tname = (spec.get("sandboxTemplateRef") or {}).get("name", "")
        template = self.store.get(self.templates, ns, tname)
        members = self._pool_members(pool)
        if template is not None:
            bp_hash = fnv1a32(json.dumps((template.get("spec") or {}).get("podTemplate"),
                                         sort_keys=True))
            if (spec.get("updateStrategy") or {}).get("type") == "Recreate":
                for s in members:
                    if (s["metadata"].get("labels") or {}).get(TEMPLATE_HASH) != bp_hash:
                        self._delete_quietly(self.sandboxes, ns, s["metadata"]["name"])
                members = self._pool_members(pool)
            for _ in range(max(0, replicas - len(members))):
                self._create_pool_sandbox(pool, template, bp_hash)
        if len(members) > replicas:
            def rank(s):
                ready = (_cond(s, "Ready") or {}).get("status") == "True"
                return (1 if ready else 0, -int(s["metadata"]["resourceVersion"]))
            for s in sorted(members, key=rank)[:len(members) - replicas]:
                self._delete_quietly(self.sandboxes, ns, s["metadata"]["name"])
        members = self._pool_members(pool)
        st = {"replicas": len(members),
              "readyReplicas": sum(1 for s in members
                                   if (_cond(s, "Ready") or {}).get("status") == "True"),
              "selector": "%s=%s" % (WARM_POOL, fnv1a32(name))}
        if not self.alpha:
            st["observedGeneration"] = pool["metadata"].get("generation", 1)
        self._write_status(self.pools, pool, st)

    def _create_pool_sandbox(self, pool, template, bp_hash):
        pmd = pool["metadata"]
        tname = template["metadata"]["name"]
        labels = {WARM_POOL: fnv1a32(pmd["name"]), LAUNCH_TYPE: "warm", CREATED_BY: "controller",
                  TEMPLATE_REF_HASH: fnv1a32(tname), TEMPLATE_HASH: bp_hash}
        pt = self._pod_template(template, {WARM_POOL: fnv1a32(pmd["name"]),
                                           TEMPLATE_HASH: bp_hash},
                                {SAFE_TO_EVICT: "true"})
        obj = {"apiVersion": self.sandboxes.api_version(), "kind": "Sandbox",
               "metadata": {"generateName": pmd["name"] + "-", "namespace": pmd["namespace"],
                            "labels": labels, "annotations": {TEMPLATE_REF: tname},
                            "ownerReferences": [self._owner_ref(self.pools, pool)]},
               "spec": self._blueprint(template, pt)}
        self.store.create(self.sandboxes, obj)

    def _delete_quietly(self, res, ns, name, propagation=None):
        try:
            self.store.delete(res, ns, name, propagation=propagation)
        except ApiError:
            pass

    # ------------------------------------------------------------ sandboxes

    def _suspended(self, sb):
        spec = sb.get("spec") or {}
        if self.alpha:
            return spec.get("replicas", 1) == 0
        return spec.get("operatingMode", "Running") == "Suspended"

    def reconcile_sandbox(self, ns, name):
        sb = self.store.get(self.sandboxes, ns, name)
        if sb is None or sb["metadata"].get("deletionTimestamp"):
            return
        spec = sb.get("spec") or {}
        h = fnv1a32(name)
        pod = self.store.get(self.pods, ns, name)
        if pod is not None and not _owned_by(pod, sb):
            return self._sandbox_status(sb, None, "PodNotOwned")
        expire = parse_time(spec.get("shutdownTime")) if spec.get("shutdownTime") else None
        if expire is not None:
            left = expire - time.time()
            if left > 0:
                self.queue.add(("sandbox", ns, name), max(left, 0.0) + 0.001)
            else:
                return self._expire_sandbox(sb, pod)
        if self._suspended(sb):
            if pod is not None and not pod["metadata"].get("deletionTimestamp"):
                self._delete_quietly(self.pods, ns, name)
                pod = self.store.get(self.pods, ns, name)
            return self._sandbox_status(sb, pod, "suspended")
        if pod is None:
            pt = spec.get("podTemplate") or {}
            pmd = pt.get("metadata") or {}
            labels = dict(pmd.get("labels") or {}, **{NAME_HASH: h})
            cb = (sb["metadata"].get("labels") or {}).get(CREATED_BY)
            if cb:
                labels[CREATED_BY] = cb
            obj = {"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": name, "namespace": ns, "labels": labels,
                                "ownerReferences": [self._owner_ref(self.sandboxes, sb)]},
                   "spec": json.loads(json.dumps(pt.get("spec") or {}))}
            if pmd.get("annotations"):
                obj["metadata"]["annotations"] = dict(pmd["annotations"])
            obj["spec"].setdefault("restartPolicy", "Always")
            pod = self.store.create(self.pods, obj)
        if (sb["metadata"].get("annotations") or {}).get(POD_NAME) != name:
            sb = self._patch_meta(self.sandboxes, sb, annotations={POD_NAME: name}) or sb
        svc_required = self._ensure_service(sb, h)
        self._sandbox_status(sb, pod, None, svc_required)

    def _ensure_service(self, sb, h):
        """-> None when no Service is required, else True/False = it exists."""
        ns, name = sb["metadata"]["namespace"], sb["metadata"]["name"]
        want = (sb.get("spec") or {}).get("service")
        svc = self.store.get(self.services, ns, name)
        if want is True and svc is None:
            svc = self.store.create(self.services, {
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": ns, "labels": {NAME_HASH: h},
                             "ownerReferences": [self._owner_ref(self.sandboxes, sb)]},
                "spec": {"clusterIP": "None", "clusterIPs": ["None"], "type": "ClusterIP",
                         "selector": {NAME_HASH: h}, "ports": []}})
        elif want is False and svc is not None and _owned_by(svc, sb):
            self._delete_quietly(self.services, ns, name)
            svc = None
        if want is True or (want is None and svc is not None):
            return svc is not None
        return None

    def _expire_sandbox(self, sb, pod):
        ns, name = sb["metadata"]["namespace"], sb["metadata"]["name"]
        if pod is not None:
            self._delete_quietly(self.pods, ns, name)
        svc = self.store.get(self.services, ns, name)
        if svc is not None and _owned_by(svc, sb):
            self._delete_quietly(self.services, ns, name)
        gen = sb["metadata"].get("generation", 1)
        old = (sb.get("status") or {}).get("conditions")
        conds = [{"type": "Ready", "status": "False", "reason": "SandboxExpired",
                  "message": "Sandbox has expired", "observedGeneration": gen}]
        conds += [c for c in old or [] if c.get("type") not in ("Ready", "PodScheduled")]
        st = {"conditions": _merge_conditions(old, conds, now_rfc3339())}
        sb = self._write_status(self.sandboxes, sb, st)
        if (sb.get("spec") or {}).get("shutdownPolicy") == "Delete":
            self._delete_quietly(self.sandboxes, ns, name)

    def _sandbox_status(self, sb, pod, mode, svc_required=None):
        md = sb["metadata"]
        gen = md.get("generation", 1)
        name, ns = md["name"], md["namespace"]
        pst = (pod or {}).get("status") or {}
        phase = pst.get("phase", "Pending") if pod else None
        ips = [x.get("ip") for x in pst.get("podIPs") or [] if x.get("ip")] if pod else []
        pod_ready = (_cond(pod, "Ready") or {}).get("status") == "True" if pod else False
        terminating = bool(pod and pod["metadata"].get("deletionTimestamp"))
        st = {}
        conds = []
        finished = None
        if mode == "PodNotOwned":
            conds.append({"type": "Ready", "status": "False", "reason": "ReconcilerError",
                          "message": 'Error seen: pod "%s" is not owned by the sandbox' % name})
            conds.append({"type": "Suspended", "status": "False", "reason": "PodNotOwned",
                          "message": "Pod is not owned by the sandbox"})
        elif mode == "suspended":
            gone = pod is None
            conds.append({"type": "Ready", "status": "False", "reason": "SandboxSuspended",
                          "message": "Sandbox is suspended" if gone else "Sandbox is suspending"})
            conds.append({"type": "Suspended", "status": "True" if gone else "False",
                          "reason": "PodTerminated" if gone else "PodTerminating",
                          "message": "Pod is terminated" if gone else "Pod is terminating"})
        else:
            if phase in ("Succeeded", "Failed"):
                reason = "Pod" + phase
                conds.append({"type": "Ready", "status": "False", "reason": reason,
                              "message": "Pod has %s" % phase.lower()})
                finished = {"type": "Finished", "status": "True", "reason": reason,
                            "message": "Pod phase is %s" % phase}
            else:
                if pod is None:
                    msg = "Pod does not exist"
                elif terminating:
                    msg = "Pod is terminating"
                elif phase != "Running":
                    msg = "Pod exists with phase: %s" % phase
                elif not pod_ready:
                    msg = "Pod is Running but not Ready"
                elif not ips:
                    msg = "Pod is Ready but has no podIPs yet"
                else:
                    msg = None
                ok = msg is None and svc_required is not False
                if svc_required is not None:
                    suffix = "; Service Exists" if svc_required else "; Service does not exist"
                    msg = (msg or "Pod is Ready") + suffix
                if ok:
                    conds.append({"type": "Ready", "status": "True", "reason": "DependenciesReady",
                                  "message": msg or "Pod is Ready"})
                else:
                    conds.append({"type": "Ready", "status": "False",
                                  "reason": "DependenciesNotReady", "message": msg})
            conds.append({"type": "Suspended", "status": "False", "reason": "NotSuspended",
                          "message": "Sandbox is not suspended"})
        for c in conds:
            c["observedGeneration"] = gen
        if pod is not None and mode is None:
            ps = _cond(pod, "PodScheduled")
            if ps is not None:
                conds.append({"type": "PodScheduled", "status": ps["status"],
                              "reason": "PodScheduled", "message": "Pod is scheduled",
                              "observedGeneration": gen,
                              "lastTransitionTime": ps.get("lastTransitionTime") or now_rfc3339()})
        if finished:
            finished["observedGeneration"] = gen
            conds.append(finished)
        if ips and mode is None:
            st["podIPs"] = ips
        if pod is not None and mode is None:
            st["selector"] = "%s=%s" % (NAME_HASH, fnv1a32(name))
            if (pod.get("spec") or {}).get("nodeName") and ips:
                st["nodeName"] = pod["spec"]["nodeName"]
        svc = self.store.get_ref(self.services, ns, name)
        if svc is not None and mode is None:
            st["service"] = name
            st["serviceFQDN"] = "%s.%s.svc.%s" % (name, ns,
                                                  self.config.get("cluster_domain",
                                                                  "cluster.local"))
        if self.alpha:
            st["replicas"] = 0 if mode == "suspended" else 1
            st.pop("nodeName", None)
        st["conditions"] = _merge_conditions((sb.get("status") or {}).get("conditions"), conds,
                                             now_rfc3339())
        self._write_status(self.sandboxes, sb, st)

    # ------------------------------------------------------------ router, gateway, endpoints

    def reconcile_router(self):
        if not self.config.get("router", True):
            return
        if self.store.get_ref(self.services, ROUTER_NS, ROUTER_SVC) is None:
            return
        live = [p for p in self.store.list_refs(self.pods, ROUTER_NS)
                if (p["metadata"].get("labels") or {}).get("app") == "sandbox-router"
                and not p["metadata"].get("deletionTimestamp")]
        if live:
            return
        self.store.create(self.pods, {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": "sandbox-router-", "namespace": ROUTER_NS,
                         "labels": {"app": "sandbox-router"}},
            "spec": {"restartPolicy": "Always",
                     "containers": [{"name": "router", "image": ROUTER_IMAGE,
                                     "ports": [{"containerPort": 8080, "name": "http",
                                                "protocol": "TCP"}]}]}})

    def router_pod(self):
        for p in self.store.list_refs(self.pods, ROUTER_NS):
            if (p["metadata"].get("labels") or {}).get("app") == "sandbox-router" and \
                    not p["metadata"].get("deletionTimestamp") and \
                    (p.get("status") or {}).get("phase") == "Running" and \
                    (p.get("status") or {}).get("podIP"):
                return p
        return None

    def reconcile_gateway(self):
        gw = self.store.get(self.gateways, GATEWAY_NS, GATEWAY_NAME)
        if gw is None:
            return
        pod = self.router_pod()
        gen = gw["metadata"].get("generation", 1)
        ok = pod is not None
        st = {"conditions": _merge_conditions(
            (gw.get("status") or {}).get("conditions"),
            [{"type": "Accepted", "status": "True", "reason": "Accepted",
              "message": "Gateway accepted", "observedGeneration": gen},
             {"type": "Programmed", "status": "True" if ok else "False",
              "reason": "Programmed" if ok else "AddressNotAssigned",
              "message": "Gateway programmed" if ok else "Router pod is not running",
              "observedGeneration": gen}], now_rfc3339())}
        if ok:
            st["addresses"] = [{"type": "IPAddress", "value": pod["status"]["podIP"]}]
        self._write_status(self.gateways, gw, st)

    def reconcile_endpoints(self, ns):
        pods = [p for p in self.store.list_refs(self.pods, ns)]
        for svc in self.store.list_refs(self.services, ns):
            sel = (svc.get("spec") or {}).get("selector")
            if not sel:
                continue
            sname = svc["metadata"]["name"]
            eps = []
            for p in sorted(pods, key=lambda p: p["metadata"]["name"]):
                labels = p["metadata"].get("labels") or {}
                ip = (p.get("status") or {}).get("podIP")
                if not ip or any(labels.get(k) != v for k, v in sel.items()):
                    continue
                ready = (_cond(p, "Ready") or {}).get("status") == "True"
                term = bool(p["metadata"].get("deletionTimestamp"))
                eps.append((p, ip, ready and not term, term))
            ports = (svc.get("spec") or {}).get("ports") or []
            sl_ports = [{"name": pt.get("name", ""), "port": pt.get("targetPort", pt.get("port")),
                         "protocol": pt.get("protocol", "TCP")} for pt in ports]
            owner = {"apiVersion": "v1", "kind": "Service", "name": sname,
                     "uid": svc["metadata"]["uid"], "controller": True,
                     "blockOwnerDeletion": True}
            slice_obj = {
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": "%s-%s" % (sname, fnv1a32(sname)[:5]), "namespace": ns,
                             "labels": {"kubernetes.io/service-name": sname,
                                        "endpointslice.kubernetes.io/managed-by":
                                            "endpointslice-controller.k8s.io"},
                             "ownerReferences": [owner]},
                "addressType": "IPv4",
                "endpoints": [{"addresses": [ip],
                               "conditions": {"ready": rd, "serving": rd or term,
                                              "terminating": term},
                               "nodeName": "devcluster-node",
                               "targetRef": {"kind": "Pod", "name": p["metadata"]["name"],
                                             "namespace": ns, "uid": p["metadata"]["uid"]}}
                              for p, ip, rd, term in eps],
                "ports": sl_ports}
            ep_obj = {"apiVersion": "v1", "kind": "Endpoints",
                      "metadata": {"name": sname, "namespace": ns,
                                   "labels": {"kubernetes.io/service-name": sname},
                                   "ownerReferences": [owner]}}
            ready_addrs = [{"ip": ip, "nodeName": "devcluster-node",
                            "targetRef": {"kind": "Pod", "name": p["metadata"]["name"],
                                          "namespace": ns, "uid": p["metadata"]["uid"]}}
                           for p, ip, rd, _ in eps if rd]
            if ready_addrs:
                ep_obj["subsets"] = [{"addresses": ready_addrs,
                                      "ports": [{"name": x["name"], "port": x["port"],
                                                 "protocol": x["protocol"]} for x in sl_ports]}]
            for res, obj in ((self.slices, slice_obj), (self.endpoints, ep_obj)):
                cur = self.store.get(res, ns, obj["metadata"]["name"])
                if cur is None:
                    self.store.create(res, obj)
                else:
                    new = dict(cur)
                    for k, v in obj.items():
                        if k != "metadata":
                            new[k] = v
                    if "subsets" not in obj:
                        new.pop("subsets", None)
                    new["metadata"] = dict(cur["metadata"], labels=obj["metadata"]["labels"])
                    self.store.update(res, new, subresource="all")
