"""The Deployment controller's decisions, pure: given a Deployment and the
pods it owns, which pods to create and which to delete, and its status.

podnet keeps no ReplicaSet objects; pods carry the `pod-template-hash`
label a ReplicaSet would give them, and the rolling replacement follows
the RollingUpdate strategy's maxSurge and maxUnavailable.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]
HASH_LABEL = "pod-template-hash"
ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def template_hash(template: Obj) -> str:
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()
    return "".join(ALPHABET[b % len(ALPHABET)] for b in digest[:10])


def resolve(value: int | str | None, total: int, round_up: bool) -> int:
    """An int-or-percent field (maxSurge, maxUnavailable) as a count."""
    if value is None:
        value = "25%"
    if isinstance(value, int):
        return value
    pct = int(str(value).rstrip("%"))
    raw = pct * total / 100
    return math.ceil(raw) if round_up else math.floor(raw)


def is_ready(pod: Obj) -> bool:
    for cond in pod.get("status", {}).get("conditions", []) or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def owned_by(pod: Obj, deploy: Obj) -> bool:
    uid = deploy["metadata"]["uid"]
    return any(ref.get("uid") == uid for ref in pod["metadata"].get("ownerReferences", []))


def _deletion_rank(pod: Obj) -> tuple[int, int, int, str]:
    # Kubernetes deletes the least useful pods first: unscheduled, then
    # pending, then not ready, then the youngest.
    status = pod.get("status", {})
    return (
        1 if pod["spec"].get("nodeName") else 0,
        1 if status.get("phase") == "Running" else 0,
        1 if is_ready(pod) else 0,
        _neg(pod["metadata"].get("creationTimestamp", "")),
    )


def _neg(ts: str) -> str:
    return "".join(chr(0x10FFFF - ord(c)) for c in ts)


def _surplus(pods: list[Obj], replicas: int) -> list[Obj]:
    """The pods to delete to come down to `replicas`, least useful first
    (ranked only when there is something to delete: this runs on every
    event, with every pod of the Deployment)."""
    extra = len(pods) - replicas
    return sorted(pods, key=_deletion_rank)[:extra] if extra > 0 else []


@dataclass
class Plan:
    create: int = 0
    delete: list[Obj] = field(default_factory=list)
    status: Obj = field(default_factory=dict)


def new_pod(deploy: Obj, suffix: str) -> Obj:
    """A pod from the Deployment's template, as its ReplicaSet would make it."""
    template = copy.deepcopy(deploy["spec"]["template"])
    h = template_hash(deploy["spec"]["template"])
    meta = template.get("metadata") or {}
    labels = dict(meta.get("labels") or {})
    labels[HASH_LABEL] = h
    name = deploy["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{name}-{h}-{suffix}",
            "namespace": deploy["metadata"]["namespace"],
            "labels": labels,
            "annotations": dict(meta.get("annotations") or {}),
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": name,
                    "uid": deploy["metadata"]["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": template.get("spec", {}),
    }


def reconcile(deploy: Obj, pods: list[Obj]) -> Plan:
    spec = deploy["spec"]
    replicas = int(spec.get("replicas", 1))
    current_hash = template_hash(spec["template"])
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    new = [p for p in live if p["metadata"].get("labels", {}).get(HASH_LABEL) == current_hash]
    old = [p for p in live if p["metadata"].get("labels", {}).get(HASH_LABEL) != current_hash]
    plan = Plan()
    strategy = spec.get("strategy") or {}
    if strategy.get("type") == "Recreate":
        if old:
            plan.delete = old
        elif not any(p["metadata"].get("deletionTimestamp") for p in pods):
            plan.create = max(0, replicas - len(new))
            plan.delete = _surplus(new, replicas)
    elif not old:
        plan.create = max(0, replicas - len(new))
        plan.delete = _surplus(new, replicas)
    else:
        rolling = strategy.get("rollingUpdate") or {}
        surge = resolve(rolling.get("maxSurge"), replicas, round_up=True)
        unavailable = resolve(rolling.get("maxUnavailable"), replicas, round_up=False)
        if surge == 0 and unavailable == 0:
            unavailable = 1
        room = replicas + surge - len(live)
        plan.create = max(0, min(replicas - len(new), room))
        ready = sum(1 for p in live if is_ready(p))
        can_remove = ready - (replicas - unavailable)
        unready_old = [p for p in old if not is_ready(p)]
        ready_old = sorted((p for p in old if is_ready(p)), key=_deletion_rank)
        # Old pods that are not ready cost no availability: remove them first.
        plan.delete = unready_old + ready_old[: max(0, can_remove)]
        if len(new) > replicas:
            plan.delete += sorted(new, key=_deletion_rank)[: len(new) - replicas]
    plan.status = status(deploy, live, new)
    return plan


def status(deploy: Obj, live: list[Obj], new: list[Obj]) -> Obj:
    replicas = int(deploy["spec"].get("replicas", 1))
    ready = sum(1 for p in live if is_ready(p))
    strategy = deploy["spec"].get("strategy") or {}
    # Only a rolling update tolerates unavailable pods; Recreate needs them all.
    max_unavailable = (
        resolve((strategy.get("rollingUpdate") or {}).get("maxUnavailable"), replicas, False)
        if strategy.get("type", "RollingUpdate") == "RollingUpdate"
        else 0
    )
    available = ready >= replicas - max_unavailable
    out: Obj = {
        "observedGeneration": deploy["metadata"].get("generation", 1),
        "replicas": len(live),
        "updatedReplicas": len(new),
        "readyReplicas": ready,
        "availableReplicas": ready,
        "conditions": [
            {
                "type": "Available",
                "status": "True" if available else "False",
                "reason": "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
                "message": "Deployment has minimum availability."
                if available
                else "Deployment does not have minimum availability.",
            },
            {
                "type": "Progressing",
                "status": "True",
                "reason": "NewReplicaSetAvailable" if len(new) == replicas == ready else "ReplicaSetUpdated",
            },
        ],
    }
    if len(live) - ready > 0:
        out["unavailableReplicas"] = len(live) - ready
    for k in ("readyReplicas", "availableReplicas", "updatedReplicas", "replicas"):
        if out[k] == 0:
            del out[k]  # as the API server omits zero counts
    return out
