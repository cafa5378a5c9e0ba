"""Small Kubernetes API-machinery helpers shared by the dev cluster modules.

Contents:
  * ApiError and the `Status` objects every API error is reported with
    (`status_error`, `not_found`, `already_exists`, `conflict`, `invalid`, ...);
  * timestamps in the two formats the cluster writes (`now_rfc3339()` for
    creationTimestamp / lastTransitionTime, `now_rfc3339_nano()` for the
    controller's observed-at annotation) and `parse_time()`;
  * `generate_suffix()`: the 5 characters the API server appends for
    metadata.generateName, drawn from the same alphabet upstream uses;
  * `fnv1a32()`: the FNV-1a 32-bit hash the sandbox controller uses for
    `agents.x-k8s.io/sandbox-name-hash` (8 lower-case hex digits);
  * JSON merge patch (RFC 7386) and JSON patch (RFC 6902);
  * label / field selector parsing and matching.

Everything here is pure (no I/O, no threads).
"""
import copy
import datetime
import json
import random
import re

NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

_rand = random.SystemRandom()


# ---------------------------------------------------------------- errors

REASONS = {
    400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
    405: "MethodNotAllowed", 406: "NotAcceptable", 409: "Conflict", 410: "Expired",
    413: "RequestEntityTooLarge", 415: "UnsupportedMediaType", 422: "Invalid",
    429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout",
}


def status_object(code, message, reason=None, details=None):
    """A metav1.Status failure object."""
    obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason or REASONS.get(code, "Unknown"), "code": code}
    if details:
        obj["details"] = details
    return obj


class ApiError(Exception):
    """An error answered with a Status body (and optional extra headers)."""

    def __init__(self, code, message, reason=None, details=None, headers=None):
        Exception.__init__(self, message)
        self.code = code
        self.status = status_object(code, message, reason, details)
        self.headers = headers or {}


def qualified(resource):
    """'sandboxclaims.extensions.agents.x-k8s.io' or plain 'pods' for core."""
    return resource.plural + ("." + resource.group if resource.group else "")


def not_found(resource, name):
    return ApiError(404, '%s "%s" not found' % (qualified(resource), name), "NotFound",
                    {"name": name, "group": resource.group, "kind": resource.plural})


def already_exists(resource, name):
    return ApiError(409, '%s "%s" already exists' % (qualified(resource), name), "AlreadyExists",
                    {"name": name, "group": resource.group, "kind": resource.plural})


def conflict(resource, name, why):
    return ApiError(409, 'Operation cannot be fulfilled on %s "%s": %s'
                    % (qualified(resource), name, why), "Conflict",
                    {"name": name, "group": resource.group, "kind": resource.plural})


def invalid(resource, name, causes):
    """causes: list of (reason, field, message), e.g.
    ("FieldValueRequired", "spec.warmPoolRef", "Required value")."""
    kind = resource.kind + ("." + resource.group if resource.group else "")
    text = ", ".join("%s: %s" % (f, m) for _, f, m in causes)
    return ApiError(422, '%s "%s" is invalid: %s' % (kind, name, text), "Invalid",
                    {"name": name, "group": resource.group, "kind": resource.kind,
                     "causes": [{"reason": r, "message": m, "field": f} for r, f, m in causes]})


def bad_request(message):
    return ApiError(400, message, "BadRequest")


# ---------------------------------------------------------------- time

def now_rfc3339(ts=None):
    d = datetime.datetime.fromtimestamp(ts, datetime.timezone.utc) if ts is not None else \
        datetime.datetime.now(datetime.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%SZ")


def now_rfc3339_nano(ts=None):
    d = datetime.datetime.fromtimestamp(ts, datetime.timezone.utc) if ts is not None else \
        datetime.datetime.now(datetime.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + "%06d000Z" % d.microsecond


_TIME_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def parse_time(text):
    """RFC 3339 (any fraction length, Z or offset) -> epoch seconds, or None."""
    if not isinstance(text, str):
        return None
    m = _TIME_RE.match(text.strip())
    if not m:
        return None
    frac = (m.group(3) or ".0")[1:7].ljust(6, "0")
    tz = m.group(4)
    tz = "+00:00" if tz in ("Z", "z") else tz
    try:
        d = datetime.datetime.fromisoformat("%sT%s.%s%s" % (m.group(1), m.group(2), frac, tz))
    except ValueError:
        return None
    return d.timestamp()


# ---------------------------------------------------------------- names, hashes

def generate_suffix(n=5):
    return "".join(_rand.choice(NAME_ALPHABET) for _ in range(n))


def fnv1a32(text):
    h = 0x811c9dc5
    for b in text.encode():
        h ^= b
        h = (h * 0x01000193) & 0xffffffff
    return "%08x" % h


_IMMUTABLE = (str, int, float, bool, type(None))


def deep(obj):
    """A deep copy of JSON-shaped data: about twice as fast as copy.deepcopy,
    which every read and write of the store pays several times over."""
    t = type(obj)
    if t is dict:
        return {k: deep(v) for k, v in obj.items()}
    if t is list:
        return [deep(v) for v in obj]
    if t in _IMMUTABLE:
        return obj
    return copy.deepcopy(obj)


def jdump(obj):
    return json.dumps(obj, separators=(",", ":"))


# ---------------------------------------------------------------- patches

def merge_patch(target, patch):
    """RFC 7386 JSON merge patch; returns a new object."""
    if not isinstance(patch, dict):
        return deep(patch)
    result = deep(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        elif isinstance(v, dict):
            result[k] = merge_patch(result.get(k), v)
        else:
            result[k] = deep(v)
    return result


def _pointer(path):
    if path == "":
        return []
    if not path.startswith("/"):
        raise bad_request("invalid JSON pointer %r" % path)
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc, parts):
    for p in parts:
        if isinstance(doc, list):
            doc = doc[int(p)]
        else:
            doc = doc[p]
    return doc


def json_patch(target, ops):
    """RFC 6902 JSON patch; returns a new object or raises ApiError(422)."""
    doc = deep(target)
    if not isinstance(ops, list):
        raise bad_request("json patch must be a list of operations")
    try:
        for op in ops:
            kind, parts = op.get("op"), _pointer(op.get("path", ""))
            if kind == "test":
                if _walk(doc, parts) != op.get("value"):
                    raise ApiError(422, "the test operation failed for path %s" % op.get("path"))
                continue
            if kind in ("move", "copy"):
                src = _pointer(op.get("from", ""))
                value = deep(_walk(doc, src))
                if kind == "move":
                    parent = _walk(doc, src[:-1])
                    if isinstance(parent, list):
                        parent.pop(int(src[-1]))
                    else:
                        del parent[src[-1]]
                kind, op = "add", {"value": value}
            if not parts:
                if kind in ("add", "replace"):
                    doc = deep(op.get("value"))
                    continue
                raise bad_request("cannot remove the document root")
            parent = _walk(doc, parts[:-1])
            last = parts[-1]
            if kind == "add":
                if isinstance(parent, list):
                    parent.insert(len(parent) if last == "-" else int(last), deep(op.get("value")))
                else:
                    parent[last] = deep(op.get("value"))
            elif kind == "remove":
                if isinstance(parent, list):
                    parent.pop(int(last))
                else:
                    del parent[last]
            elif kind == "replace":
                if isinstance(parent, list):
                    parent[int(last)] = deep(op.get("value"))
                else:
                    if last not in parent:
                        raise KeyError(last)
                    parent[last] = deep(op.get("value"))
            else:
                raise bad_request("unknown json patch op %r" % kind)
    except (KeyError, IndexError, ValueError, TypeError) as e:
        raise ApiError(422, "the json patch could not be applied: %s" % e)
    return doc


# ---------------------------------------------------------------- selectors

def _split_requirements(text):
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


_LABEL_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_SET_RE = re.compile(r"^(%s)\s+(in|notin)\s*\(([^)]*)\)$" % _LABEL_KEY)
_EQ_RE = re.compile(r"^(%s)\s*(==|=|!=)\s*([-A-Za-z0-9_.]*)$" % _LABEL_KEY)
_EXISTS_RE = re.compile(r"^(!?)\s*(%s)$" % _LABEL_KEY)


def parse_label_selector(text):
    """-> list of (key, op, values); op in =, !=, in, notin, exists, !exists."""
    reqs = []
    for part in _split_requirements(text or ""):
        m = _SET_RE.match(part)
        if m:
            vals = [v.strip() for v in m.group(4).split(",") if v.strip()]
            reqs.append((m.group(1), m.group(3), vals))
            continue
        m = _EQ_RE.match(part)
        if m:
            op = "!=" if m.group(3) == "!=" else "="
            reqs.append((m.group(1), op, [m.group(4)]))
            continue
        m = _EXISTS_RE.match(part)
        if m:
            reqs.append((m.group(2), "!exists" if m.group(1) else "exists", []))
            continue
        raise bad_request("unable to parse requirement: %r" % part)
    return reqs


def labels_match(reqs, labels):
    labels = labels or {}
    for key, op, vals in reqs:
        have = key in labels
        v = labels.get(key)
        if op == "=" and (not have or v != vals[0]):
            return False
        if op == "!=" and have and v == vals[0]:
            return False
        if op == "in" and (not have or v not in vals):
            return False
        if op == "notin" and have and v in vals:
            return False
        if op == "exists" and not have:
            return False
        if op == "!exists" and have:
            return False
    return True


FIELD_GETTERS = {
    "metadata.name": lambda o: o.get("metadata", {}).get("name", ""),
    "metadata.namespace": lambda o: o.get("metadata", {}).get("namespace", ""),
    "status.phase": lambda o: (o.get("status") or {}).get("phase", ""),
    "spec.nodeName": lambda o: (o.get("spec") or {}).get("nodeName", ""),
}


def parse_field_selector(text, allowed=("metadata.name", "metadata.namespace")):
    reqs = []
    for part in _split_requirements(text or ""):
        m = re.match(r"^([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*)$", part)
        if not m:
            raise bad_request("invalid selector: '%s'; can't understand '%s'" % (text, part))
        field = m.group(1)
        if field not in allowed:
            raise bad_request('field label not supported: %s' % field)
        reqs.append((field, "!=" if m.group(2) == "!=" else "=", m.group(3)))
    return reqs


def fields_match(reqs, obj):
    for field, op, value in reqs:
        have = FIELD_GETTERS[field](obj)
        if (op == "=") != (have == value):
            return False
    return True
