"""Server-side printing: `meta.k8s.io/v1 Table` answers for `kubectl get`.

kubectl asks with `Accept: application/json;as=Table;v=v1;g=meta.k8s.io,...`.
Columns follow the real server's printers for the core kinds (pods: READY,
STATUS, RESTARTS, AGE, IP, NODE; services: TYPE, CLUSTER-IP, ...), the
Gateway CRD's printer columns, and NAME + AGE for every other kind (the
default for CRDs without additionalPrinterColumns). Rows carry the object's
metadata as PartialObjectMetadata (`includeObject=Metadata`, the default),
the full object with `includeObject=Object`, or nothing with `None`.
"""
import time

from kube import parse_time


def wants_table(accept):
    return "as=Table" in (accept or "")


def human_age(created, now=None):
    t = parse_time(created)
    if t is None:
        return "<unknown>"
    s = int((now or time.time()) - t)
    if s < 0:
        return "0s"
    if s < 120:
        return "%ds" % s
    m = s // 60
    if m < 10:
        return "%dm%ds" % (m, s % 60) if s % 60 else "%dm" % m
    if m < 180:
        return "%dm" % m
    h = m // 60
    if h < 8:
        return "%dh%dm" % (h, m % 60) if m % 60 else "%dh" % h
    if h < 48:
        return "%dh" % h
    d = h // 24
    return "%dd%dh" % (d, h % 24) if d < 8 and h % 24 else "%dd" % d


def _col(name, typ="string", priority=0, fmt="", desc=""):
    return {"name": name, "type": typ, "format": fmt, "description": desc or name,
            "priority": priority}


def _pod_row(o):
    st = o.get("status") or {}
    css = st.get("containerStatuses") or []
    n = len((o.get("spec") or {}).get("containers") or []) or len(css)
    ready = sum(1 for c in css if c.get("ready"))
    status = st.get("phase", "Pending")
    for c in css:
        w = (c.get("state") or {}).get("waiting")
        if w and w.get("reason"):
            status = w["reason"]
    if o["metadata"].get("deletionTimestamp"):
        status = "Terminating"
    return ["%d/%d" % (ready, n), status, sum(c.get("restartCount", 0) for c in css),
            None, st.get("podIP") or "<none>",
            (o.get("spec") or {}).get("nodeName") or "<none>", "<none>", "<none>"]


def _svc_row(o):
    spec = o.get("spec") or {}
    ports = ",".join("%s/%s" % (p.get("port"), p.get("protocol", "TCP"))
                     for p in spec.get("ports") or []) or "<none>"
    sel = ",".join("%s=%s" % kv for kv in sorted((spec.get("selector") or {}).items()))
    return [spec.get("type", "ClusterIP"), spec.get("clusterIP", "<none>"), "<none>", ports, None,
            sel or "<none>"]


def _gw_row(o):
    st = o.get("status") or {}
    addr = ((st.get("addresses") or [{}])[0]).get("value", "")
    prog = next((c.get("status") for c in st.get("conditions") or []
                 if c.get("type") == "Programmed"), "Unknown")
    return [(o.get("spec") or {}).get("gatewayClassName", ""), addr, prog, None]


def _ns_row(o):
    return [(o.get("status") or {}).get("phase", "Active"), None]


def _node_row(o):
    ready = next((c.get("status") for c in (o.get("status") or {}).get("conditions") or []
                  if c.get("type") == "Ready"), "Unknown")
    return ["Ready" if ready == "True" else "NotReady", "<none>", None,
            ((o.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion", "")]


PRINTERS = {
    "pods": ([_col("Ready"), _col("Status"), _col("Restarts", "string"), _col("Age"),
              _col("IP", priority=1), _col("Node", priority=1),
              _col("Nominated Node", priority=1), _col("Readiness Gates", priority=1)], _pod_row),
    "services": ([_col("Type"), _col("Cluster-IP"), _col("External-IP"), _col("Port(s)"),
                  _col("Age"), _col("Selector", priority=1)], _svc_row),
    "gateways": ([_col("Class"), _col("Address"), _col("Programmed"), _col("Age", "date")],
                 _gw_row),
    "namespaces": ([_col("Status"), _col("Age")], _ns_row),
    "nodes": ([_col("Status"), _col("Roles"), _col("Age"), _col("Version")], _node_row),
}


def table(res, items, rv, include="Metadata"):
    """items: objects as they would be returned (already converted)."""
    cols, row_fn = PRINTERS.get(res.plural, ([_col("Age")], lambda o: [None]))
    now = time.time()
    rows = []
    for o in items:
        cells = row_fn(o)
        age = human_age(o["metadata"].get("creationTimestamp"), now)
        cells = [o["metadata"]["name"]] + [age if c is None else c for c in cells]
        row = {"cells": cells}
        if include == "Object":
            row["object"] = o
        elif include != "None":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": o["metadata"]}
        rows.append(row)
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": rv},
            "columnDefinitions": [_col("Name", fmt="name")] + cols, "rows": rows}
