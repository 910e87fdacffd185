"""The EndpointSlice controller's decisions, pure: the discovery.k8s.io/v1
EndpointSlices a Service with a selector should have, given its pods.

Endpoints are grouped by their resolved port set (a named targetPort can
resolve to different numbers on different pods, and a pod that lacks the
name is no endpoint for that port), at most 100 to a slice. Slice names
are derived from the Service name and the port set, so a resync rewrites
the same objects instead of making new ones.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from podnet.api import selectors

Obj = dict[str, Any]
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
MANAGED_BY = "endpointslice-controller.k8s.io"
TRIGGER_TIME = "endpoints.kubernetes.io/last-change-trigger-time"
MAX_ENDPOINTS = 100


def selects(service: Obj, pod: Obj) -> bool:
    sel = service.get("spec", {}).get("selector")
    return bool(sel) and selectors.from_map(sel).matches(pod["metadata"].get("labels") or {})


def _condition(pod: Obj, type_: str) -> bool:
    return any(
        c.get("type") == type_ and c.get("status") == "True" for c in pod.get("status", {}).get("conditions") or []
    )


def resolve_port(svc_port: Obj, pod: Obj) -> int | None:
    """The pod's number for a Service port's targetPort: a number as is, a
    name through the pod's own containerPorts of the same protocol."""
    target = svc_port.get("targetPort", svc_port["port"])
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    protocol = svc_port.get("protocol", "TCP")
    for c in pod.get("spec", {}).get("containers", []):
        for p in c.get("ports", []) or []:
            if p.get("name") == target and p.get("protocol", "TCP") == protocol:
                return int(p["containerPort"])
    return None


def endpoint(pod: Obj, service: Obj) -> Obj:
    # As upstream's podToEndpoint: serving is the pod's Ready condition;
    # publishNotReadyAddresses makes `ready` true even while terminating.
    serving = _condition(pod, "Ready")
    terminating = bool(pod["metadata"].get("deletionTimestamp"))
    ready = bool(service["spec"].get("publishNotReadyAddresses")) or (serving and not terminating)
    ep: Obj = {
        "addresses": [pod["status"]["podIP"]],
        "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
        "nodeName": pod["spec"].get("nodeName"),
        "targetRef": {
            "kind": "Pod",
            "namespace": pod["metadata"]["namespace"],
            "name": pod["metadata"]["name"],
            "uid": pod["metadata"]["uid"],
        },
    }
    spec = pod.get("spec", {})
    if spec.get("hostname") and spec.get("subdomain") == service["metadata"]["name"]:
        ep["hostname"] = spec["hostname"]
    return ep


def _slice_name(service: str, ports: list[Obj], index: int) -> str:
    digest = hashlib.sha256(json.dumps(ports, sort_keys=True).encode()).hexdigest()[:5]
    base = f"{service[:56]}-{digest}"
    return base if index == 0 else f"{base}-{index}"


def desired_slices(service: Obj, pods: list[Obj]) -> list[Obj]:
    """The slices for `service` (which has a selector) over `pods` (the
    namespace's pods). Metadata other than name, namespace, labels and the
    owner is left to the caller."""
    meta = service["metadata"]
    groups: dict[str, tuple[list[Obj], list[Obj]]] = {}
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        if not selects(service, pod) or not pod.get("status", {}).get("podIP"):
            continue
        if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            continue
        ports = []
        for sp in service["spec"].get("ports") or []:
            number = resolve_port(sp, pod)
            if number is not None:
                ports.append({"name": sp.get("name", ""), "port": number, "protocol": sp.get("protocol", "TCP")})
        key = json.dumps(ports, sort_keys=True)
        groups.setdefault(key, (ports, []))[1].append(endpoint(pod, service))
    if not groups:
        # An empty slice still says "this Service has no endpoints".
        groups[""] = ([], [])
    out = []
    for ports, endpoints in groups.values():
        for i in range(0, max(len(endpoints), 1), MAX_ENDPOINTS):
            out.append(
                {
                    "apiVersion": "discovery.k8s.io/v1",
                    "kind": "EndpointSlice",
                    "metadata": {
                        "name": _slice_name(meta["name"], ports, i // MAX_ENDPOINTS),
                        "namespace": meta["namespace"],
                        "labels": {SERVICE_NAME_LABEL: meta["name"], MANAGED_BY_LABEL: MANAGED_BY},
                        "ownerReferences": [
                            {
                                "apiVersion": "v1",
                                "kind": "Service",
                                "name": meta["name"],
                                "uid": meta["uid"],
                                "controller": True,
                                "blockOwnerDeletion": True,
                            }
                        ],
                    },
                    "addressType": "IPv4",
                    "endpoints": endpoints[i : i + MAX_ENDPOINTS],
                    "ports": ports,
                }
            )
    return out


def same_content(a: Obj, b: Obj) -> bool:
    return bool(
        a.get("endpoints") == b.get("endpoints")
        and a.get("ports") == b.get("ports")
        and a.get("addressType") == b.get("addressType")
        and a["metadata"].get("labels") == b["metadata"].get("labels")
    )
