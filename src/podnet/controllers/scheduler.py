"""Pod placement, pure: which node a pod goes to."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

Obj = dict[str, Any]


class Unschedulable(Exception):
    pass


def node_ready(node: Obj) -> bool:
    for cond in node.get("status", {}).get("conditions", []):
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def feasible(pod: Obj, node: Obj) -> bool:
    if node.get("spec", {}).get("unschedulable") or not node_ready(node):
        return False
    labels = node.get("metadata", {}).get("labels") or {}
    wanted = pod.get("spec", {}).get("nodeSelector") or {}
    return all(labels.get(k) == v for k, v in wanted.items())


def schedule(pod: Obj, nodes: Iterable[Obj], load: dict[str, int]) -> str:
    """The feasible node with the fewest pods (ties by name), so replicas
    spread across nodes. `load` counts the pods already on each node."""
    candidates = [n for n in nodes if feasible(pod, n)]
    if not candidates:
        selector = pod.get("spec", {}).get("nodeSelector")
        why = f"didn't match Pod's node affinity/selector {selector}" if selector else "not ready"
        raise Unschedulable(
            f"0/{len(list(nodes)) if isinstance(nodes, list) else '?'} nodes are available: {why}"
        )
    best = min(candidates, key=lambda n: (load.get(n["metadata"]["name"], 0), n["metadata"]["name"]))
    return str(best["metadata"]["name"])
