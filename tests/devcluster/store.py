"""The dev cluster's object store: what etcd plus the API server's registry and
garbage collector do for us.

  * Objects are kept per resource type in the storage version, keyed by
    (namespace, name). A stored dict is never mutated after it is stored;
    every write replaces it, so events can share it safely. Callers get deep
    copies.
  * ONE monotonic resourceVersion for every object of every type. Each write
    bumps it exactly once and produces one event (ADDED / MODIFIED /
    DELETED) that goes to a bounded history and to every live watcher.
  * Watches start from "now" (with synthetic ADDED events for the current
    state) or from a resourceVersion still in the history; anything older
    raises ApiError 410 Expired. `compact()` drops the history on demand.
  * Watchers with a label selector see ADDED / DELETED when an object starts
    / stops matching, as the real watch cache does.
  * Owner-reference garbage collection: Background (owner removed now,
    dependents right after), Foreground (owner kept with deletionTimestamp
    and the `foregroundDeletion` finalizer until every dependent is gone,
    dependents deleted in foreground too) and Orphan.
  * Graceful deletion for pods: a registered `terminator` (the kubelet) gets
    the pod with deletionTimestamp set and calls `remove()` once the process
    is gone.
  * `hooks`: callables(type, resource, obj, old) run under the store lock
    right after each event; they must only enqueue work (the controller and
    the kubelet use them).
"""
import collections
import queue
import threading
import time
import uuid

from kube import (ApiError, already_exists, conflict, deep, fields_match, generate_suffix,
                  labels_match, not_found, now_rfc3339)

SYSTEM_METADATA = ("uid", "creationTimestamp", "namespace", "name", "deletionTimestamp",
                   "deletionGracePeriodSeconds", "generation", "resourceVersion")


class Event:
    __slots__ = ("type", "res", "obj", "old", "rv")

    def __init__(self, type_, res, obj, old, rv):
        self.type, self.res, self.obj, self.old, self.rv = type_, res, obj, old, rv


class Watcher:
    """One watch stream's filter and queue. Items are (type, obj) or None (closed)."""

    def __init__(self, store, res, namespace, label_reqs, field_reqs):
        self.store, self.res, self.namespace = store, res, namespace
        self.label_reqs, self.field_reqs = label_reqs or [], field_reqs or []
        self.q = queue.Queue()

    def matches(self, obj):
        if obj is None:
            return False
        md = obj.get("metadata", {})
        if self.namespace and md.get("namespace") != self.namespace:
            return False
        return labels_match(self.label_reqs, md.get("labels")) and \
            fields_match(self.field_reqs, obj)

    def translate(self, ev):
        """Map a store event to what this watcher sees (or None)."""
        if ev.res is not self.res:
            return None
        new_m = self.matches(ev.obj)
        if ev.type == "ADDED":
            return ("ADDED", ev.obj) if new_m else None
        if ev.type == "DELETED":
            return ("DELETED", ev.obj) if new_m else None
        old_m = self.matches(ev.old)
        if new_m and old_m:
            return ("MODIFIED", ev.obj)
        if new_m:
            return ("ADDED", ev.obj)
        if old_m:
            return ("DELETED", ev.obj)
        return None

    def offer(self, ev):
        item = self.translate(ev)
        if item is not None:
            self.q.put(item)

    def close(self):
        self.store.unwatch(self)
        self.q.put(None)


class Store:
    def __init__(self, registry, history=2000):
        self.registry = registry
        self.lock = threading.RLock()
        self.rv = 0
        self.objs = {r.key: {} for r in registry.all}
        self.history = collections.deque()
        self.history_limit = history
        self.compacted_rv = 0          # events with rv <= this are no longer in the history
        self.watchers = set()
        self.hooks = []
        self.terminator = None         # fn(pod) for graceful pod deletion
        self.dependents = collections.defaultdict(set)   # owner uid -> {(reskey, ns, name)}

    # ------------------------------------------------------------ reads

    def get(self, res, ns, name):
        with self.lock:
            obj = self.objs[res.key].get((ns or "", name))
            return deep(obj) if obj is not None else None

    def get_ref(self, res, ns, name):
        """The stored (shared, read-only) object or None; for hot read-only paths."""
        return self.objs[res.key].get((ns or "", name))

    def list(self, res, ns=None, label_reqs=None, field_reqs=None):
        """-> (deep-copied items sorted by namespace/name, resourceVersion string)."""
        with self.lock:
            items = []
            for (ons, _), obj in sorted(self.objs[res.key].items()):
                if ns and ons != ns:
                    continue
                if label_reqs and not labels_match(label_reqs, obj["metadata"].get("labels")):
                    continue
                if field_reqs and not fields_match(field_reqs, obj):
                    continue
                items.append(deep(obj))
            return items, str(self.rv)

    def list_refs(self, res, ns=None):
        with self.lock:
            return [o for (ons, _), o in self.objs[res.key].items() if not ns or ons == ns]

    def current_rv(self):
        with self.lock:
            return self.rv

    # ------------------------------------------------------------ event plumbing

    def _emit(self, type_, res, obj, old):
        ev = Event(type_, res, obj, old, self.rv)
        self.history.append(ev)
        while len(self.history) > self.history_limit:
            self.compacted_rv = self.history.popleft().rv
        for w in list(self.watchers):
            w.offer(ev)
        for hook in self.hooks:
            hook(type_, res, obj, old)

    def _index(self, res, obj, add):
        key = (res.key, obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        for ref in obj["metadata"].get("ownerReferences") or []:
            uid = ref.get("uid")
            if not uid:
                continue
            if add:
                self.dependents[uid].add(key)
            else:
                self.dependents[uid].discard(key)
                if not self.dependents[uid]:
                    del self.dependents[uid]

    def _put(self, res, obj, type_, old):
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        md = obj["metadata"]
        if old is not None:
            self._index(res, old, False)
        self.objs[res.key][(md.get("namespace", ""), md["name"])] = obj
        self._index(res, obj, True)
        self._emit(type_, res, obj, old)
        return obj

    def compact(self):
        """Forget the event history: watches from any older resourceVersion get 410."""
        with self.lock:
            self.history.clear()
            self.compacted_rv = self.rv

    # ------------------------------------------------------------ writes

    def create(self, res, obj, keep_status=False):
        with self.lock:
            md = obj.setdefault("metadata", {})
            ns = md.get("namespace", "") if res.namespaced else ""
            md["namespace"] = ns
            if not res.namespaced:
                md.pop("namespace", None)
            table = self.objs[res.key]
            if not md.get("name"):
                prefix = md.get("generateName", "")
                for _ in range(50):
                    cand = prefix + generate_suffix()
                    if (ns, cand) not in table:
                        md["name"] = cand
                        break
            if (ns, md["name"]) in table:
                raise already_exists(res, md["name"])
            for k in ("deletionTimestamp", "deletionGracePeriodSeconds", "managedFields",
                      "selfLink"):
                md.pop(k, None)
            md["uid"] = str(uuid.uuid4())
            md["generation"] = 1
            md["creationTimestamp"] = now_rfc3339()
            if res.status and not keep_status:
                obj.pop("status", None)
            if res.kind == "Pod" and not keep_status:
                # as the real pod registry does on create, before any kubelet saw it
                obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
            obj["apiVersion"] = res.api_version()
            obj["kind"] = res.kind
            if res.namespaced:
                md["namespace"] = ns
            stored = self._put(res, obj, "ADDED", None)
            return deep(stored)

    @staticmethod
    def _content(obj):
        return {k: v for k, v in obj.items() if k not in ("metadata", "status")}

    def update(self, res, obj, subresource=None, expect_rv=None):
        """Replace an object (PUT semantics). subresource='status' replaces only status.
        A write that changes nothing produces no event. Returns a copy."""
        with self.lock:
            md = obj.get("metadata", {})
            ns = md.get("namespace", "") if res.namespaced else ""
            cur = self.objs[res.key].get((ns, md.get("name")))
            if cur is None:
                raise not_found(res, md.get("name", ""))
            if expect_rv and expect_rv != cur["metadata"]["resourceVersion"]:
                raise conflict(res, md["name"], "the object has been modified; please apply "
                               "your changes to the latest version and try again")
            if subresource == "status":
                new = deep(cur)
                if "status" in obj:
                    new["status"] = deep(obj["status"])
                else:
                    new.pop("status", None)
            else:
                new = deep(obj)
                new["apiVersion"], new["kind"] = cur["apiVersion"], cur["kind"]
                if res.status and subresource != "all":
                    if "status" in cur:
                        new["status"] = deep(cur["status"])
                    else:
                        new.pop("status", None)
                nmd = new.setdefault("metadata", {})
                for k in SYSTEM_METADATA:
                    if k in cur["metadata"]:
                        nmd[k] = cur["metadata"][k]
                    else:
                        nmd.pop(k, None)
                for k in ("labels", "annotations", "finalizers", "ownerReferences"):
                    if k in nmd and not nmd[k]:
                        del nmd[k]
                if self._content(new) != self._content(cur):
                    nmd["generation"] = cur["metadata"].get("generation", 1) + 1
            new["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"]
            if new == cur:
                return deep(cur)
            stored = self._put(res, new, "MODIFIED", cur)
            if stored["metadata"].get("deletionTimestamp") and \
                    not stored["metadata"].get("finalizers") and res.key != ("", "pods"):
                self._remove(res, stored)
            return deep(self.objs[res.key].get((ns, md["name"])) or stored)

    def mutate(self, res, ns, name, fn, subresource=None):
        """Atomically apply fn(copy) to an object and store it (fn returning False
        aborts). Returns the stored copy, or None when the object does not exist."""
        with self.lock:
            cur = self.objs[res.key].get((ns or "", name))
            if cur is None:
                return None
            obj = deep(cur)
            if fn(obj) is False:
                return deep(cur)
            return self.update(res, obj, subresource=subresource or "all")

    # ------------------------------------------------------------ deletion and GC

    def delete(self, res, ns, name, propagation=None, preconditions=None, grace=None):
        """-> (object as last seen, http code 200|202)."""
        with self.lock:
            cur = self.objs[res.key].get((ns or "", name))
            if cur is None:
                raise not_found(res, name)
            pre = preconditions or {}
            if pre.get("uid") and pre["uid"] != cur["metadata"]["uid"]:
                raise conflict(res, name, "Precondition failed: UID in precondition: %s, UID in "
                               "object meta: %s" % (pre["uid"], cur["metadata"]["uid"]))
            if pre.get("resourceVersion") and \
                    pre["resourceVersion"] != cur["metadata"]["resourceVersion"]:
                raise conflict(res, name, "Precondition failed: ResourceVersion in precondition: "
                               "%s, ResourceVersion in object meta: %s"
                               % (pre["resourceVersion"], cur["metadata"]["resourceVersion"]))
            propagation = propagation or "Background"
            if cur["metadata"].get("deletionTimestamp"):
                # already being deleted: a repeated delete changes nothing
                return deep(cur), 202
            pending = list(cur["metadata"].get("finalizers") or [])
            if propagation == "Foreground" and self.dependents.get(cur["metadata"]["uid"]):
                pending.append("foregroundDeletion")
            elif propagation == "Orphan" and self.dependents.get(cur["metadata"]["uid"]):
                pending.append("orphan")
            if res.key == ("", "pods") and self.terminator is not None and grace != 0:
                obj = deep(cur)
                obj["metadata"]["deletionTimestamp"] = now_rfc3339()
                obj["metadata"]["deletionGracePeriodSeconds"] = 30 if grace is None else grace
                if pending:
                    obj["metadata"]["finalizers"] = pending
                stored = self._put(res, obj, "MODIFIED", cur)
                self.terminator(deep(stored))
                return deep(stored), 200
            if pending:
                obj = deep(cur)
                obj["metadata"]["deletionTimestamp"] = now_rfc3339()
                obj["metadata"]["deletionGracePeriodSeconds"] = 0
                obj["metadata"]["finalizers"] = pending
                stored = self._put(res, obj, "MODIFIED", cur)
                if "foregroundDeletion" in pending:
                    self._delete_dependents(stored, "Foreground")
                elif "orphan" in pending:
                    self._orphan_dependents(stored)
                    self._drop_finalizer(res, stored, "orphan")
                return deep(self.objs[res.key].get((ns or "", name)) or stored), 202
            self._remove(res, cur, propagation)
            return deep(cur), 200

    def remove(self, res, ns, name, uid=None):
        """Final removal (used by the kubelet once a terminating pod's process is gone)."""
        with self.lock:
            cur = self.objs[res.key].get((ns or "", name))
            if cur is None or (uid and cur["metadata"]["uid"] != uid):
                return
            fins = [f for f in cur["metadata"].get("finalizers") or []
                    if f != "foregroundDeletion"]
            if fins:
                return
            if "foregroundDeletion" in (cur["metadata"].get("finalizers") or []) and \
                    self.dependents.get(cur["metadata"]["uid"]):
                return
            self._remove(res, cur)

    def _remove(self, res, cur, propagation="Background"):
        md = cur["metadata"]
        key = (md.get("namespace", ""), md["name"])
        if self.objs[res.key].get(key) is not cur:
            return
        del self.objs[res.key][key]
        self._index(res, cur, False)
        self.rv += 1
        final = deep(cur)
        final["metadata"]["resourceVersion"] = str(self.rv)
        self._emit("DELETED", res, final, cur)
        if propagation == "Orphan":
            self._orphan_dependents(cur)
        else:
            self._delete_dependents(cur, "Background")
        self._release_owners(cur)

    def _find(self, dkey):
        reskey, ns, name = dkey
        res = self.registry.by_key[reskey]
        return res, self.objs[reskey].get((ns, name))

    def _delete_dependents(self, owner, propagation):
        for dkey in sorted(self.dependents.get(owner["metadata"]["uid"], ())):
            res, obj = self._find(dkey)
            if obj is None or obj["metadata"].get("deletionTimestamp"):
                continue
            try:
                self.delete(res, dkey[1], dkey[2], propagation=propagation)
            except ApiError:
                pass

    def _orphan_dependents(self, owner):
        uid = owner["metadata"]["uid"]
        for dkey in sorted(self.dependents.get(uid, ())):
            res, obj = self._find(dkey)
            if obj is None:
                continue
            new = deep(obj)
            refs = [r for r in new["metadata"].get("ownerReferences") or [] if r.get("uid") != uid]
            if refs:
                new["metadata"]["ownerReferences"] = refs
            else:
                new["metadata"].pop("ownerReferences", None)
            self._put(res, new, "MODIFIED", obj)

    def _drop_finalizer(self, res, obj, fin):
        cur = self.objs[res.key].get((obj["metadata"].get("namespace", ""),
                                      obj["metadata"]["name"]))
        if cur is None:
            return
        new = deep(cur)
        fins = [f for f in new["metadata"].get("finalizers") or [] if f != fin]
        if fins:
            new["metadata"]["finalizers"] = fins
        else:
            new["metadata"].pop("finalizers", None)
        stored = self._put(res, new, "MODIFIED", cur)
        if not fins and (res.key != ("", "pods") or self.terminator is None):
            self._remove(res, stored)

    def _release_owners(self, dependent):
        """After a dependent is gone, finish foreground deletions that waited for it."""
        for ref in dependent["metadata"].get("ownerReferences") or []:
            uid = ref.get("uid")
            if not uid or self.dependents.get(uid):
                continue
            for res in self.registry.all:
                ns = dependent["metadata"].get("namespace", "") if res.namespaced else ""
                owner = self.objs[res.key].get((ns, ref.get("name")))
                if owner is not None and owner["metadata"]["uid"] == uid:
                    if "foregroundDeletion" in (owner["metadata"].get("finalizers") or []):
                        self._drop_finalizer(res, owner, "foregroundDeletion")
                    break

    # ------------------------------------------------------------ watch

    def watch(self, res, ns, label_reqs, field_reqs, rv):
        """Register a watcher. rv None/"0"/"" -> synthetic ADDED for the current state;
        otherwise only events after rv (410 when they are no longer in the history)."""
        with self.lock:
            w = Watcher(self, res, ns, label_reqs, field_reqs)
            if rv in (None, "", "0"):
                for _, obj in sorted(self.objs[res.key].items()):
                    if w.matches(obj):
                        w.q.put(("ADDED", obj))
            else:
                try:
                    since = int(rv)
                except ValueError:
                    raise ApiError(400, 'invalid resource version: strconv.ParseUint: parsing '
                                   '"%s": invalid syntax' % rv, "BadRequest")
                if since < self.compacted_rv:
                    raise ApiError(410, "too old resource version: %d (%d)"
                                   % (since, self.compacted_rv + 1), "Expired")
                for ev in self.history:
                    if ev.rv > since:
                        w.offer(ev)
            self.watchers.add(w)
            return w

    def unwatch(self, w):
        with self.lock:
            self.watchers.discard(w)

    def close_all_watchers(self):
        with self.lock:
            ws = list(self.watchers)
            self.watchers.clear()
        for w in ws:
            w.q.put(None)

    def wait_for(self, predicate, timeout):
        """Poll predicate() (with the lock held) until true or timeout; for seeding."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if predicate():
                    return True
            time.sleep(0.01)
        return False
