"""The parts of the Kubernetes REST API beyond plain CRUD that kubectl and
client libraries rely on, for the HTTP layer (server/http.py): PATCH in its
four media types, server-side apply, the `scale` subresource
(autoscaling/v1 Scale), DeleteOptions, and the read-only `events` resource.
Everything goes through the Registry, so the semantics stay in one place.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from podnet.api import selectors
from podnet.api.errors import APIError, BadRequest, Conflict, Invalid, NotFound
from podnet.api.kinds import Kind
from podnet.server import patch as patches
from podnet.server.registry import Registry

Obj = dict[str, Any]

# Core v1 Events: served (list, get, watch) so that `kubectl describe` can
# ask for them; the lab records none yet, so lists are empty.
EVENT_KIND = Kind("Event", "", "v1", "events", "event", ("ev",), True)
SCALE_KIND = Kind("Scale", "autoscaling", "v1", "scale", "scale", (), True)

MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"
PATCH_TYPES = (MERGE, JSON_PATCH, STRATEGIC, APPLY)
PATCH_RETRIES = 5


class Unauthorized(APIError):
    code = 401
    reason = "Unauthorized"

    def __init__(self) -> None:
        super().__init__("Unauthorized")


class MethodNotAllowed(APIError):
    code = 405
    reason = "MethodNotAllowed"


def media_type(header: str | None) -> str:
    return (header or "").split(";", 1)[0].strip().lower()


def check_json(content_type: str | None) -> None:
    """Bodies are JSON: protobuf and CBOR (what client-go's typed clients,
    e.g. `kubectl create namespace`, send) are refused with a 415."""
    if media_type(content_type) in ("application/vnd.kubernetes.protobuf", "application/cbor"):
        raise patches.UnsupportedMediaType(
            f"the body of the request was in an unknown format - accepted media types include: "
            f"application/json, application/yaml (not {media_type(content_type)})"
        )


def parse_body(raw: bytes, content_type: str) -> Any:
    """A request body: JSON, or YAML for server-side apply (a superset)."""
    if not raw:
        return {}
    try:
        if content_type == APPLY:
            return yaml.safe_load(raw)
        return json.loads(raw)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise BadRequest(f"error decoding {'YAML' if content_type == APPLY else 'JSON'}: {exc}") from None


def _same(a: Obj, b: Obj) -> bool:
    """Equal but for what a no-op write would change anyway."""

    def strip(o: Obj) -> Obj:
        o = json.loads(json.dumps(o))
        meta = o.get("metadata", {})
        for f in ("resourceVersion", "generation", "managedFields"):
            meta.pop(f, None)
        return o

    return strip(a) == strip(b)


def _patched(kind: Kind, current: Obj, body: Any, content_type: str) -> Obj:
    if content_type == MERGE:
        if not isinstance(body, dict):
            raise BadRequest("merge patch must be a JSON object")
        out = patches.merge_patch(current, body)
    elif content_type == JSON_PATCH:
        out = patches.json_patch(current, body)
    elif content_type == STRATEGIC:
        out = patches.strategic_merge_patch(kind.kind, current, body)
    else:
        raise patches.UnsupportedMediaType(
            f"the body of the request was in an unknown format - accepted media types include: {', '.join(PATCH_TYPES)}"
        )
    if not isinstance(out, dict):
        raise BadRequest("the patch did not produce an object")
    return out


def patch(
    reg: Registry,
    kind: Kind,
    namespace: str | None,
    name: str,
    body: Any,
    content_type: str,
    query: dict[str, str],
    subresource: str | None = None,
) -> tuple[int, Obj]:
    """Apply a PATCH request: (HTTP status, the object after it)."""
    dry_run = query.get("dryRun") == "All"
    if content_type == APPLY:
        return _apply(reg, kind, namespace, name, body, query, subresource, dry_run)
    for attempt in range(PATCH_RETRIES):
        current = reg.get(kind.kind, namespace, name)
        new = _patched(kind, current, body, content_type)
        if (new.get("metadata") or {}).get("name", name) != name:
            raise BadRequest("the name of the object does not match the name on the URL")
        asked_rv = _asked_rv(body, content_type)
        new.setdefault("metadata", {})["resourceVersion"] = asked_rv or current["metadata"]["resourceVersion"]
        new["metadata"]["name"] = name
        try:
            if _same(reg.update(new, namespace, subresource, dry_run=True), current):
                return 200, current
            return 200, reg.update(new, namespace, subresource, dry_run=dry_run)
        except Conflict:
            if asked_rv or attempt == PATCH_RETRIES - 1:
                raise
    raise AssertionError("not reached")


def _asked_rv(body: Any, content_type: str) -> str | None:
    if content_type in (MERGE, STRATEGIC) and isinstance(body, dict):
        rv = (body.get("metadata") or {}).get("resourceVersion")
        return str(rv) if rv else None
    return None


def _apply(
    reg: Registry,
    kind: Kind,
    namespace: str | None,
    name: str,
    body: Any,
    query: dict[str, str],
    subresource: str | None,
    dry_run: bool,
) -> tuple[int, Obj]:
    """Server-side apply: create when missing, else merge (patch.server_side_apply)."""
    manager = query.get("fieldManager")
    if not manager:
        raise BadRequest("PATCH requests of type apply must specify a fieldManager")
    patches.check_applied(body, kind.kind, kind.api_version, name)
    meta = body.setdefault("metadata", {})
    meta["name"] = name
    if kind.namespaced and namespace:
        if meta.get("namespace") and meta["namespace"] != namespace:
            raise BadRequest(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        meta["namespace"] = namespace
    for attempt in range(PATCH_RETRIES):
        try:
            current: Obj | None = reg.get(kind.kind, namespace, name)
        except NotFound:
            current = None
        if current is None:
            if subresource:
                raise NotFound(kind.resource, name)
            return 201, reg.create(patches.server_side_apply(None, body, manager), namespace, dry_run=dry_run)
        new = patches.server_side_apply(current, body, manager)
        new["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        try:
            if _same(reg.update(new, namespace, subresource, dry_run=True), current):
                return 200, current
            return 200, reg.update(new, namespace, subresource, dry_run=dry_run)
        except Conflict:
            if attempt == PATCH_RETRIES - 1:
                raise
    raise AssertionError("not reached")


# -- the scale subresource -------------------------------------------------------------


def scale_of(dep: Obj) -> Obj:
    meta = dep["metadata"]
    status = dep.get("status") or {}
    try:
        selector = str(selectors.from_label_selector(dep.get("spec", {}).get("selector") or {}))
    except ValueError:
        selector = ""
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"],
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
            "creationTimestamp": meta.get("creationTimestamp"),
        },
        "spec": {"replicas": dep.get("spec", {}).get("replicas", 1)},
        "status": {"replicas": status.get("replicas", 0), "selector": selector},
    }


def scale(
    reg: Registry,
    method: str,
    kind: Kind,
    namespace: str | None,
    name: str,
    body: Any,
    content_type: str,
    query: dict[str, str],
) -> Obj:
    """GET, PUT or PATCH of deployments/NAME/scale."""
    if kind.kind != "Deployment":
        raise NotFound(kind.resource, name)
    dry_run = query.get("dryRun") == "All"
    for attempt in range(PATCH_RETRIES):
        dep = reg.get(kind.kind, namespace, name)
        current = scale_of(dep)
        if method == "GET":
            return current
        if method == "PUT":
            if not isinstance(body, dict) or body.get("kind", "Scale") != "Scale":
                raise BadRequest("the body of a scale update must be an autoscaling/v1 Scale")
            wanted = body
        elif content_type == APPLY:
            wanted = patches.merge_patch(current, {"spec": (body or {}).get("spec", {})})
        else:
            wanted = _patched(SCALE_KIND, current, body, content_type)
        replicas = (wanted.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise Invalid(
                "Scale",
                name,
                [
                    (
                        "spec.replicas",
                        f"Invalid value: {json.dumps(replicas)}: must be greater than or equal to 0",
                    )
                ],
            )
        rv = (wanted.get("metadata") or {}).get("resourceVersion") if method == "PUT" else None
        dep["spec"]["replicas"] = replicas
        dep["metadata"]["resourceVersion"] = rv or dep["metadata"]["resourceVersion"]
        try:
            return scale_of(reg.update(dep, namespace, dry_run=dry_run))
        except Conflict:
            if rv or attempt == PATCH_RETRIES - 1:
                raise
    raise AssertionError("not reached")


# -- delete ----------------------------------------------------------------------------


def delete(
    reg: Registry, kind: Kind, namespace: str | None, name: str, body: Any, query: dict[str, str]
) -> Obj:
    """DELETE with DeleteOptions (body or query): gracePeriodSeconds,
    preconditions (uid, resourceVersion), dryRun. propagationPolicy is
    accepted; dependents are always collected in the background by the
    garbage collector (Foreground and Orphan are not modelled)."""
    opts = body if isinstance(body, dict) else {}
    grace = query.get("gracePeriodSeconds", opts.get("gracePeriodSeconds"))
    policy = query.get("propagationPolicy", opts.get("propagationPolicy"))
    if policy not in (None, "", "Background", "Foreground", "Orphan"):
        raise BadRequest(f'invalid propagationPolicy "{policy}"')
    pre = opts.get("preconditions") or {}
    current = reg.get(kind.kind, namespace, name)
    meta = current["metadata"]
    if pre.get("uid") and pre["uid"] != meta.get("uid"):
        raise Conflict(
            f'Operation cannot be fulfilled on {kind.resource} "{name}": Precondition failed: UID in precondition: '
            f"{pre['uid']}, UID in object meta: {meta.get('uid')}"
        )
    if pre.get("resourceVersion") and pre["resourceVersion"] != meta.get("resourceVersion"):
        raise Conflict(
            f'Operation cannot be fulfilled on {kind.resource} "{name}": Precondition failed: ResourceVersion in '
            f"precondition: {pre['resourceVersion']}, ResourceVersion in object meta: {meta.get('resourceVersion')}"
        )
    if query.get("dryRun") == "All" or opts.get("dryRun") == ["All"]:
        return current
    try:
        seconds = int(grace) if grace is not None else None
    except (TypeError, ValueError):
        raise BadRequest(f"invalid gracePeriodSeconds {grace!r}") from None
    return reg.delete(kind.kind, namespace, name, seconds)


def not_writable(kind: Kind) -> MethodNotAllowed:
    return MethodNotAllowed(
        f"the server does not allow this method on the requested resource ({kind.plural})"
    )


# -- fieldValidation --------------------------------------------------------------------

_OBJECT_META = {
    "name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
    "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels", "annotations",
    "ownerReferences", "finalizers", "managedFields",
}  # fmt: skip
_TOP_LEVEL = {
    "EndpointSlice": {"apiVersion", "kind", "metadata", "addressType", "endpoints", "ports"},
    **{k: {"apiVersion", "kind", "metadata", "spec", "status"} for k in
       ("Namespace", "Node", "Pod", "Service", "Deployment", "NetworkPolicy")},
}  # fmt: skip


def unknown_fields(obj: Any) -> list[str]:
    """Fields of `obj` its kind does not have, checked at the top level and
    in metadata (deeper fields are not checked: the lab has no schemas)."""
    if not isinstance(obj, dict) or obj.get("kind") not in _TOP_LEVEL:
        return []
    out = sorted(k for k in obj if k not in _TOP_LEVEL[obj["kind"]])
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        out += sorted(f"metadata.{k}" for k in meta if k not in _OBJECT_META)
    return out


def validate_fields(obj: Any, query: dict[str, str], kind: Kind) -> tuple[Any, list[str]]:
    """The `fieldValidation` query parameter on a create, update or apply:
    Strict refuses unknown fields (400, as the API server words it), Warn
    drops them and returns warnings for the Warning header, Ignore (and no
    parameter) drops them."""
    unknown = unknown_fields(obj)
    if not unknown:
        return obj, []
    mode = query.get("fieldValidation", "Ignore")
    if mode == "Strict":
        detail = ", ".join(f'unknown field "{f}"' for f in unknown)
        raise BadRequest(
            f'{kind.kind} in version "{kind.version}" cannot be handled as a {kind.kind}: strict decoding error: {detail}'
        )
    for f in unknown:
        if f.startswith("metadata."):
            obj["metadata"].pop(f[len("metadata.") :], None)
        else:
            obj.pop(f, None)
    return obj, [f'unknown field "{f}"' for f in unknown] if mode == "Warn" else []
