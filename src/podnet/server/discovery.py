"""What a Kubernetes client reads before it touches an object: `/version`,
discovery (`/api`, `/apis`, the group-version resource lists, and the
aggregated `apidiscovery.k8s.io/v2` form when the Accept header asks for it)
and OpenAPI v3 (just enough for kubectl to learn that the server validates
objects itself: the `fieldValidation` query parameter on every PATCH).
All derived from `api.kinds.KINDS`, plus the read-only `events` resource.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import dataclass
from typing import Any

from podnet import __version__
from podnet.api.kinds import KINDS

Obj = dict[str, Any]

JSON = "application/json"
AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
KUBE_VERSION = (1, 32, 0)  # the API the lab models (nodes report a 1.31 kubelet: within the skew)

VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]
READ_VERBS = ["get", "list", "watch"]
# `kubectl get all`: the kinds of the `all` category on a real cluster.
CATEGORY_ALL = {"Pod", "Service", "Deployment"}
# Subresources: name -> (group, version, kind, verbs); none means the parent's kind.
SUBRESOURCES: dict[str, dict[str, tuple[str, str, str, list[str]]]] = {
    "Pod": {"status": ("", "v1", "Pod", ["get", "patch", "update"])},
    "Service": {"status": ("", "v1", "Service", ["get", "patch", "update"])},
    "Node": {"status": ("", "v1", "Node", ["get", "patch", "update"])},
    "Namespace": {"status": ("", "v1", "Namespace", ["get", "patch", "update"])},
    "Deployment": {
        "status": ("apps", "v1", "Deployment", ["get", "patch", "update"]),
        "scale": ("autoscaling", "v1", "Scale", ["get", "patch", "update"]),
    },
}


@dataclass(frozen=True)
class Resource:
    """One served resource: a kind of `api.kinds`, or one only this server
    knows (events)."""

    kind: str
    group: str
    version: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    namespaced: bool
    verbs: tuple[str, ...]

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


EVENTS = Resource("Event", "", "v1", "events", "event", ("ev",), True, tuple(READ_VERBS))


def resources() -> list[Resource]:
    out = [
        Resource(k.kind, k.group, k.version, k.plural, k.singular, k.short_names, k.namespaced, tuple(VERBS))
        for k in KINDS
    ]
    if not any(r.plural == "events" and r.group == "" for r in out):
        out.append(EVENTS)
    return out


def group_versions() -> list[str]:
    seen: list[str] = []
    for r in resources():
        if r.group_version not in seen:
            seen.append(r.group_version)
    return seen


def version() -> Obj:
    major, minor, patch = KUBE_VERSION
    return {
        "major": str(major),
        "minor": str(minor),
        "gitVersion": f"v{major}.{minor}.{patch}-podnet.{__version__}",
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": f"python{platform.python_version()}",
        "compiler": "cpython",
        "platform": "linux/amd64",
    }


def _resource_entries(r: Resource) -> list[Obj]:
    main: Obj = {
        "name": r.plural,
        "singularName": r.singular,
        "namespaced": r.namespaced,
        "kind": r.kind,
        "verbs": list(r.verbs),
    }
    if r.short_names:
        main["shortNames"] = list(r.short_names)
    if r.kind in CATEGORY_ALL:
        main["categories"] = ["all"]
    out = [main]
    for sub, (group, ver, kind, verbs) in SUBRESOURCES.get(r.kind, {}).items():
        entry: Obj = {
            "name": f"{r.plural}/{sub}",
            "singularName": "",
            "namespaced": r.namespaced,
            "kind": kind,
            "verbs": verbs,
        }
        if (group, ver) != (r.group, r.version):
            entry["group"], entry["version"] = group, ver
        out.append(entry)
    return out


def resource_list(gv: str) -> Obj | None:
    items = [e for r in resources() if r.group_version == gv for e in _resource_entries(r)]
    if not items:
        return None
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": items}


def api_versions() -> Obj:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
    }


def api_groups() -> Obj:
    groups: dict[str, list[str]] = {}
    for r in resources():
        if r.group and r.version not in groups.setdefault(r.group, []):
            groups[r.group].append(r.version)
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [
            {
                "name": g,
                "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in versions],
                "preferredVersion": {"groupVersion": f"{g}/{versions[0]}", "version": versions[0]},
            }
            for g, versions in sorted(groups.items())
        ],
    }


def aggregated(core: bool) -> Obj:
    """apidiscovery.k8s.io/v2 APIGroupDiscoveryList: for `/api` (core) or `/apis`."""
    by_group: dict[str, dict[str, list[Obj]]] = {}
    for r in resources():
        if (r.group == "") != core:
            continue
        entry: Obj = {
            "resource": r.plural,
            "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
            "scope": "Namespaced" if r.namespaced else "Cluster",
            "singularResource": r.singular,
            "verbs": list(r.verbs),
        }
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        if r.kind in CATEGORY_ALL:
            entry["categories"] = ["all"]
        subs = [
            {
                "subresource": sub,
                "responseKind": {"group": group, "version": ver, "kind": kind},
                "verbs": verbs,
            }
            for sub, (group, ver, kind, verbs) in SUBRESOURCES.get(r.kind, {}).items()
        ]
        if subs:
            entry["subresources"] = subs
        by_group.setdefault(r.group, {}).setdefault(r.version, []).append(entry)
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": [
            {
                "metadata": {"name": group, "creationTimestamp": None},
                "versions": [
                    {"version": v, "resources": entries, "freshness": "Current"}
                    for v, entries in versions.items()
                ],
            }
            for group, versions in sorted(by_group.items())
        ],
    }


def wants_aggregated(accept: str) -> bool:
    """Whether the Accept header asks for aggregated discovery v2 (client-go
    asks for it first, then v2beta1, then plain JSON)."""
    for part in accept.split(","):
        params = {p.split("=", 1)[0].strip(): p.split("=", 1)[-1].strip() for p in part.split(";")[1:]}
        if params.get("g") == "apidiscovery.k8s.io" and params.get("v") == "v2":
            return params.get("as") == "APIGroupDiscoveryList"
    return False


# -- OpenAPI v3 ----------------------------------------------------------------------------


def _openapi_prefix(gv: str) -> str:
    return f"api/{gv}" if "/" not in gv else f"apis/{gv}"


def openapi_doc(gv: str) -> Obj | None:
    """An OpenAPI v3 document for one group-version: its paths, each PATCH
    carrying the kind (x-kubernetes-group-version-kind) and the
    fieldValidation parameter, which is what kubectl checks before leaving
    validation to the server. No schemas: kubectl then computes strategic
    merge patches from its own built-in types."""
    if gv not in group_versions():
        return None
    paths: Obj = {}
    query_params = [
        {"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
        for name in ("dryRun", "fieldManager", "fieldValidation", "force", "pretty")
    ]
    for r in resources():
        if r.group_version != gv:
            continue
        gvk = {"group": r.group, "version": r.version, "kind": r.kind}
        base = f"/{_openapi_prefix(gv)}" + ("/namespaces/{namespace}" if r.namespaced else "")
        ok = {"200": {"description": "OK"}}
        item: Obj = {
            "parameters": query_params,
            "get": {"responses": ok, "x-kubernetes-action": "get", "x-kubernetes-group-version-kind": gvk},
        }
        if "patch" in r.verbs:
            item["patch"] = {
                "operationId": f"patch{r.kind}",
                "parameters": query_params,
                "responses": ok,
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": gvk,
            }
            item["put"] = {
                "responses": ok,
                "x-kubernetes-action": "put",
                "x-kubernetes-group-version-kind": gvk,
            }
        paths[f"{base}/{r.plural}/{{name}}"] = item
        paths[f"{base}/{r.plural}"] = {
            "parameters": query_params,
            "get": {"responses": ok, "x-kubernetes-action": "list", "x-kubernetes-group-version-kind": gvk},
        }
    major, minor, patch = KUBE_VERSION
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": f"v{major}.{minor}.{patch}"},
        "paths": paths,
        "components": {"schemas": {}},
    }


def openapi_index() -> Obj:
    out: Obj = {}
    for gv in group_versions():
        digest = hashlib.sha256(json.dumps(openapi_doc(gv), sort_keys=True).encode()).hexdigest()[:32].upper()
        out[_openapi_prefix(gv)] = {"serverRelativeURL": f"/openapi/v3/{_openapi_prefix(gv)}?hash={digest}"}
    return {"paths": out}


def document(path: str, accept: str) -> tuple[str, Obj] | None:
    """The discovery or OpenAPI document at `path` (no query, no trailing
    slash) and its content type, or None when `path` is not one."""
    if path == "/version":
        return JSON, version()
    if path in ("/api", "/apis"):
        if wants_aggregated(accept):
            return AGGREGATED, aggregated(path == "/api")
        return JSON, api_versions() if path == "/api" else api_groups()
    if path == "/openapi/v3":
        return JSON, openapi_index()
    if path.startswith("/openapi/v3/"):
        rest = path[len("/openapi/v3/") :]
        gv = (
            rest[len("api/") :]
            if rest.startswith("api/")
            else rest[len("apis/") :]
            if rest.startswith("apis/")
            else ""
        )
        doc = openapi_doc(gv) if gv else None
        return (JSON, doc) if doc is not None else None
    if path.startswith("/apis/") and path.count("/") == 2:
        group = next((g for g in api_groups()["groups"] if g["name"] == path[len("/apis/") :]), None)
        return (JSON, {"kind": "APIGroup", "apiVersion": "v1", **group}) if group else None
    for gv in group_versions():
        if path == "/" + _openapi_prefix(gv):
            listing = resource_list(gv)
            return (JSON, listing) if listing is not None else None
    return None
