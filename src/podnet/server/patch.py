"""The four kinds of PATCH the API server accepts, as pure functions over
JSON-shaped data:

* JSON merge patch (RFC 7386, `application/merge-patch+json`);
* JSON patch (RFC 6902, `application/json-patch+json`);
* strategic merge patch (`application/strategic-merge-patch+json`, what a
  client-side `kubectl apply`, `kubectl label` and `kubectl edit` send):
  lists merged by their patch merge key, with the `$patch`,
  `$setElementOrder/…`, `$retainKeys` and `$deleteFromPrimitiveList/…`
  directives of k8s.io/apimachinery/pkg/util/strategicpatch;
* server-side apply (`application/apply-patch+yaml`): the applied
  configuration merged into the live object by the same structural rules,
  fields the same manager applied before and now leaves out removed, and
  each apply manager's fields recorded in `metadata.managedFields`
  (fieldsV1 format). Conflicts between managers are not detected: the
  last applier wins, as with `--force-conflicts`.

The merge keys are those of the Go types' `patchMergeKey` tags for the
fields the lab's kinds use (`SCHEMA`); any other list is atomic (replaced).
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

from podnet.api.errors import APIError, BadRequest, Invalid

Obj = dict[str, Any]


class UnsupportedMediaType(APIError):
    code = 415
    reason = "UnsupportedMediaType"


class UnprocessablePatch(APIError):
    """A JSON patch `test` that failed, or a path that does not exist."""

    code = 422
    reason = "Invalid"


# -- the schema: merge keys of associative lists ------------------------------------

# Within a pod spec (a Pod's `spec`, a Deployment's `spec.template.spec`).
_CONTAINER = {
    "ports": "containerPort",
    "env": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
}
_POD_SPEC: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "resourceClaims": "name",
    "schedulingGates": "name",
    "topologySpreadConstraints": "topologyKey",
}
for _c in ("containers", "initContainers", "ephemeralContainers"):
    for _f, _k in _CONTAINER.items():
        _POD_SPEC[f"{_c}.{_f}"] = _k
_META = {"metadata.ownerReferences": "uid"}
# Lists of scalars merged as sets (patchStrategy merge without a key).
SET_LISTS = {"metadata.finalizers", "spec.podCIDRs"}


def _mount(prefix: str, table: dict[str, str]) -> dict[str, str]:
    return {f"{prefix}.{k}": v for k, v in table.items()}


SCHEMA: dict[str, dict[str, str]] = {
    "Pod": {
        **_META,
        **_mount("spec", _POD_SPEC),
        "status.conditions": "type",
        "status.podIPs": "ip",
    },
    "Deployment": {
        **_META,
        **_mount("spec.template.spec", _POD_SPEC),
        "spec.template.metadata.ownerReferences": "uid",
        "status.conditions": "type",
    },
    "Service": {**_META, "spec.ports": "port", "status.conditions": "type"},
    "Node": {**_META, "status.conditions": "type", "status.addresses": "type"},
    "Namespace": {**_META, "status.conditions": "type"},
    "EndpointSlice": {**_META},
    "NetworkPolicy": {**_META},
    "Scale": {},
}


def merge_key(kind: str, path: str) -> str | None:
    """The patch merge key of the list at `path` (dotted, list indexes left
    out) in an object of `kind`, or None for an atomic list."""
    return SCHEMA.get(kind, _META).get(path)


# -- JSON merge patch ------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: maps merge, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


# -- JSON patch ------------------------------------------------------------------------


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise UnprocessablePatch(f'invalid JSON pointer "{path}": must start with "/"')
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _index(container: list[Any], token: str, path: str, *, adding: bool = False) -> int:
    if adding and token == "-":
        return len(container)
    if not token.isdigit():
        raise UnprocessablePatch(f'invalid index "{token}" in "{path}"')
    i = int(token)
    if i > len(container) or (i == len(container) and not adding):
        raise UnprocessablePatch(f'index {i} out of range in "{path}"')
    return i


def _parent(doc: Any, tokens: list[str], path: str) -> Any:
    cur = doc
    for t in tokens[:-1]:
        if isinstance(cur, dict) and t in cur:
            cur = cur[t]
        elif isinstance(cur, list):
            cur = cur[_index(cur, t, path)]
        else:
            raise UnprocessablePatch(f'doc is missing path: "{path}"')
    return cur


def _get_at(doc: Any, path: str) -> Any:
    cur = doc
    for t in _pointer(path):
        if isinstance(cur, dict) and t in cur:
            cur = cur[t]
        elif isinstance(cur, list):
            cur = cur[_index(cur, t, path)]
        else:
            raise UnprocessablePatch(f'doc is missing path: "{path}"')
    return cur


def _remove_at(doc: Any, path: str) -> Any:
    tokens = _pointer(path)
    if not tokens:
        raise UnprocessablePatch("cannot remove the whole document")
    parent = _parent(doc, tokens, path)
    if isinstance(parent, dict):
        if tokens[-1] not in parent:
            raise UnprocessablePatch(f"unable to remove nonexistent key: {tokens[-1]}: missing value")
        return parent.pop(tokens[-1])
    if isinstance(parent, list):
        return parent.pop(_index(parent, tokens[-1], path))
    raise UnprocessablePatch(f'doc is missing path: "{path}"')


def _add_at(doc: Any, path: str, value: Any, *, replace: bool = False) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return value
    parent = _parent(doc, tokens, path)
    if isinstance(parent, dict):
        if replace and tokens[-1] not in parent:
            raise UnprocessablePatch(f'doc is missing key: "{path}"')
        parent[tokens[-1]] = value
    elif isinstance(parent, list):
        if replace:
            parent[_index(parent, tokens[-1], path)] = value
        else:
            parent.insert(_index(parent, tokens[-1], path, adding=True), value)
    else:
        raise UnprocessablePatch(f'doc is missing path: "{path}"')
    return doc


def json_patch(doc: Any, ops: Any) -> Any:
    """RFC 6902, on a copy of `doc`."""
    if not isinstance(ops, list):
        raise BadRequest("json patch must be a list of operations")
    doc = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise BadRequest(f"invalid JSON patch operation: {json.dumps(op)}")
        kind, path = op["op"], op["path"]
        if kind in ("add", "replace", "test") and "value" not in op:
            raise BadRequest(f'missing value for "{kind}" operation at "{path}"')
        if kind == "add":
            doc = _add_at(doc, path, copy.deepcopy(op["value"]))
        elif kind == "remove":
            _remove_at(doc, path)
        elif kind == "replace":
            doc = _add_at(doc, path, copy.deepcopy(op["value"]), replace=True)
        elif kind in ("move", "copy"):
            if "from" not in op:
                raise BadRequest(f'missing from for "{kind}" operation at "{path}"')
            value = _remove_at(doc, op["from"]) if kind == "move" else copy.deepcopy(_get_at(doc, op["from"]))
            doc = _add_at(doc, path, value)
        elif kind == "test":
            if _get_at(doc, path) != op["value"]:
                raise UnprocessablePatch(f"testing value {path} failed: test failed")
        else:
            raise BadRequest(f'unexpected kind of JSON patch operation: "{kind}"')
    return doc


# -- strategic merge patch -------------------------------------------------------------

_DIRECTIVE = "$patch"
_RETAIN = "$retainKeys"
_ORDER = "$setElementOrder/"
_DELETE_PRIMITIVE = "$deleteFromPrimitiveList/"


def strategic_merge_patch(kind: str, original: Obj, patch: Obj) -> Obj:
    """`patch` applied to `original` (neither is changed) as the API server
    applies a strategic merge patch to an object of `kind`."""
    if not isinstance(patch, dict):
        raise BadRequest("strategic merge patch must be a JSON object")
    out = _smp_map(kind, "", original, patch)
    return out if out is not None else {}


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _smp_map(kind: str, path: str, original: Any, patch: Obj) -> Any:
    directive = patch.get(_DIRECTIVE)
    if directive == "delete":
        return None
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != _DIRECTIVE}
    if directive not in (None, "merge"):
        raise BadRequest(f"Unknown patch type: {directive} in map: {json.dumps(patch)}")
    out = copy.deepcopy(original) if isinstance(original, dict) else {}
    orders: dict[str, list[Any]] = {}
    for key, value in patch.items():
        if key in (_DIRECTIVE, _RETAIN):
            continue
        if key.startswith(_ORDER):
            orders[key[len(_ORDER) :]] = value if isinstance(value, list) else []
            continue
        if key.startswith(_DELETE_PRIMITIVE):
            field = key[len(_DELETE_PRIMITIVE) :]
            if isinstance(out.get(field), list) and isinstance(value, list):
                out[field] = [v for v in out[field] if v not in value]
            continue
        sub = _join(path, key)
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict):
            merged = _smp_map(kind, sub, out.get(key), value)
            if merged is None:
                out.pop(key, None)
            else:
                out[key] = merged
        elif isinstance(value, list):
            out[key] = _smp_list(kind, sub, out.get(key), value)
        else:
            out[key] = copy.deepcopy(value)
    for field, order in orders.items():
        if isinstance(out.get(field), list):
            out[field] = _ordered(out[field], order, merge_key(kind, _join(path, field)))
    retain = patch.get(_RETAIN)
    if isinstance(retain, list):
        keep = set(retain)
        out = {k: v for k, v in out.items() if k in keep}
    return out


def _smp_list(kind: str, path: str, original: Any, patch: list[Any]) -> list[Any]:
    key = merge_key(kind, path)
    if any(isinstance(e, dict) and e.get(_DIRECTIVE) == "replace" for e in patch):
        return [
            copy.deepcopy(e) for e in patch if not (isinstance(e, dict) and e.get(_DIRECTIVE) == "replace")
        ]
    current = list(copy.deepcopy(original)) if isinstance(original, list) else []
    if key is None:
        if path in SET_LISTS:
            return current + [copy.deepcopy(v) for v in patch if v not in current]
        return [copy.deepcopy(e) for e in patch if not (isinstance(e, dict) and _DIRECTIVE in e)]
    for element in patch:
        if not isinstance(element, dict):
            continue
        if key not in element:
            raise BadRequest(f"map: {json.dumps(element)} does not contain declared merge key: {key}")
        at = next(
            (i for i, e in enumerate(current) if isinstance(e, dict) and e.get(key) == element[key]), None
        )
        if element.get(_DIRECTIVE) == "delete":
            current = [e for e in current if not (isinstance(e, dict) and e.get(key) == element[key])]
        elif at is None:
            merged = _smp_map(kind, path, None, element)
            if merged is not None:
                current.append(merged)
        else:
            merged = _smp_map(kind, path, current[at], element)
            if merged is None:
                current.pop(at)
            else:
                current[at] = merged
    return current


def _ordered(items: list[Any], order: list[Any], key: str | None) -> list[Any]:
    """Elements named in `$setElementOrder` in that order; the rest (the
    server's own additions) after them, in their present order."""

    def ident(e: Any) -> Any:
        return json.dumps(e.get(key) if key and isinstance(e, dict) else e, sort_keys=True)

    rank = {ident(o): i for i, o in enumerate(order)}
    listed = sorted((e for e in items if ident(e) in rank), key=lambda e: rank[ident(e)])
    return listed + [e for e in items if ident(e) not in rank]


# -- server-side apply -----------------------------------------------------------------

# Fields the server owns, never part of an applied configuration's field set.
_NOT_APPLIED = {
    ("metadata", "name"),
    ("metadata", "namespace"),
    ("metadata", "resourceVersion"),
    ("metadata", "uid"),
    ("metadata", "creationTimestamp"),
    ("metadata", "generation"),
    ("metadata", "managedFields"),
    ("metadata", "deletionTimestamp"),
    ("metadata", "deletionGracePeriodSeconds"),
}
_IDENTITY = ("apiVersion", "kind")


def field_set(kind: str, obj: Any, path: str = "", trail: tuple[str, ...] = ()) -> Obj:
    """The fieldsV1 set of an applied configuration: `f:name` for fields,
    `k:{"name":"x"}` for associative list elements, `v:value` for set
    elements, `.` for a map or element that is itself owned."""
    out: Obj = {}
    if not isinstance(obj, dict):
        return out
    for key, value in obj.items():
        if not trail and key in _IDENTITY:
            continue
        if (*trail, key) in _NOT_APPLIED:
            continue
        sub = _join(path, key)
        if isinstance(value, dict) and value:
            out[f"f:{key}"] = field_set(kind, value, sub, (*trail, key))
        elif isinstance(value, list):
            mk = merge_key(kind, sub)
            if mk is not None:
                elements: Obj = {}
                for e in value:
                    if isinstance(e, dict) and mk in e:
                        inner = field_set(kind, e, sub, (*trail, key, "[]"))
                        elements[f"k:{json.dumps({mk: e[mk]}, separators=(',', ':'))}"] = {".": {}, **inner}
                out[f"f:{key}"] = elements
            elif sub in SET_LISTS:
                out[f"f:{key}"] = {f"v:{json.dumps(v)}": {} for v in value}
            else:
                out[f"f:{key}"] = {}
        else:
            out[f"f:{key}"] = {}
    return out


def _prune(kind: str, live: Any, old: Obj, new: Obj, path: str = "") -> Any:
    """`live` without the fields in `old` but not in `new` (what one manager
    stopped applying)."""
    if not isinstance(live, dict):
        return live
    out = dict(live)
    for fkey, sub_old in old.items():
        if not fkey.startswith("f:"):
            continue
        key = fkey[2:]
        sub_new = new.get(fkey)
        if key not in out:
            continue
        if sub_new is None:
            out.pop(key)
            continue
        value = out[key]
        sub_path = _join(path, key)
        if isinstance(value, dict):
            out[key] = _prune(kind, value, sub_old, sub_new, sub_path)
        elif isinstance(value, list):
            mk = merge_key(kind, sub_path)
            if mk is not None:
                kept = []
                for e in value:
                    ekey = (
                        f"k:{json.dumps({mk: e.get(mk)}, separators=(',', ':'))}"
                        if isinstance(e, dict)
                        else ""
                    )
                    if ekey in sub_old and ekey not in sub_new:
                        continue
                    if ekey in sub_old:
                        e = _prune(kind, e, sub_old[ekey], sub_new[ekey], sub_path)
                    kept.append(e)
                out[key] = kept
            elif sub_path in SET_LISTS:
                gone = {k for k in sub_old if k not in sub_new}
                out[key] = [v for v in value if f"v:{json.dumps(v)}" not in gone]
    return out


def _apply_merge(kind: str, path: str, live: Any, applied: Any) -> Any:
    """The applied configuration over the live object: maps merged, lists
    with a merge key merged element by element, other lists replaced."""
    if not isinstance(applied, dict):
        return copy.deepcopy(applied)
    out = copy.deepcopy(live) if isinstance(live, dict) else {}
    for key, value in applied.items():
        sub = _join(path, key)
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict):
            out[key] = _apply_merge(kind, sub, out.get(key), value)
        elif isinstance(value, list):
            mk = merge_key(kind, sub)
            existing = out.get(key)
            current: list[Any] = existing if isinstance(existing, list) else []
            if mk is not None:
                merged = list(current)
                for e in value:
                    if not isinstance(e, dict) or mk not in e:
                        raise BadRequest(
                            f'associative list with keys has an element that omits key field "{mk}"'
                        )
                    at = next(
                        (i for i, c in enumerate(merged) if isinstance(c, dict) and c.get(mk) == e[mk]), None
                    )
                    if at is None:
                        merged.append(copy.deepcopy(e))
                    else:
                        merged[at] = _apply_merge(kind, sub, merged[at], e)
                out[key] = merged
            elif sub in SET_LISTS:
                out[key] = current + [v for v in value if v not in current]
            else:
                out[key] = copy.deepcopy(value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def server_side_apply(live: Obj | None, applied: Obj, manager: str) -> Obj:
    """The object after `manager` applies `applied` to `live` (None: the
    object does not exist yet). The result carries `managedFields` with
    this manager's Apply entry replaced."""
    if not isinstance(applied, dict):
        raise BadRequest("the applied configuration must be an object")
    kind = str(applied.get("kind", ""))
    applied = copy.deepcopy(applied)
    applied.get("metadata", {}).pop("managedFields", None)
    new_fields = field_set(kind, applied)
    entries = list((live or {}).get("metadata", {}).get("managedFields") or [])
    old_entry = next(
        (e for e in entries if e.get("manager") == manager and e.get("operation") == "Apply"), None
    )
    base: Any = live
    if live is not None and old_entry is not None:
        base = _prune(kind, live, old_entry.get("fieldsV1") or {}, new_fields)
    result = _apply_merge(kind, "", base, applied)
    entry = {
        "manager": manager,
        "operation": "Apply",
        "apiVersion": applied.get("apiVersion", ""),
        "time": _now(),
        "fieldsType": "FieldsV1",
        "fieldsV1": new_fields,
    }
    entries = [e for e in entries if e is not old_entry]
    entries.append(entry)
    result.setdefault("metadata", {})["managedFields"] = entries
    return result


def check_applied(applied: Any, kind: str, api_version: str, name: str) -> None:
    """An applied configuration must name its kind, version and object."""
    if not isinstance(applied, dict):
        raise BadRequest("the applied configuration must be an object")
    problems = []
    if applied.get("kind") != kind:
        problems.append(("kind", f'Invalid value: "{applied.get("kind", "")}": must be {kind}'))
    if applied.get("apiVersion") != api_version:
        problems.append(
            ("apiVersion", f'Invalid value: "{applied.get("apiVersion", "")}": must be {api_version}')
        )
    got = (applied.get("metadata") or {}).get("name")
    if got is not None and got != name:
        raise BadRequest("the name of the object does not match the name on the URL")
    if problems:
        raise Invalid(kind, name, problems)
