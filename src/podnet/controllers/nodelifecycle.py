"""The node lifecycle controller: a node whose kubelet has not posted its
status for the grace period is marked Ready=Unknown, and its pods not
ready, so that their endpoints leave every Service (as Kubernetes'
node-lifecycle controller does with --node-monitor-grace-period)."""

from __future__ import annotations

import contextlib
import logging
import threading
from datetime import UTC, datetime
from typing import Any

from podnet.api.errors import Conflict, NotFound
from podnet.server.registry import Registry
from podnet.store.store import clone, now_rfc3339

log = logging.getLogger("podnet.nodelifecycle")
Obj = dict[str, Any]
CHECK_INTERVAL = 0.5


def _ready(node: Obj) -> Obj | None:
    for c in node.get("status", {}).get("conditions", []):
        if c.get("type") == "Ready":
            return dict(c)
    return None


def _parse(ts: str) -> float:
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def is_stale(node: Obj, now: float, grace: float) -> bool:
    """Pure: has the kubelet been silent for longer than the grace period?"""
    cond = _ready(node)
    if cond is None or cond.get("status") != "True" or not cond.get("lastHeartbeatTime"):
        return False
    # The heartbeat is stamped to the second: allow for the rounding.
    return now - _parse(cond["lastHeartbeatTime"]) > grace + 1.0


def mark_not_ready(status: Obj) -> Obj:
    """A pod status with Ready and ContainersReady False (NodeLost)."""
    out = dict(status)
    conds = []
    for c in status.get("conditions", []):
        if c.get("type") in ("Ready", "ContainersReady") and c.get("status") != "False":
            c = {**c, "status": "False", "reason": "NodeNotReady", "lastTransitionTime": now_rfc3339()}
        conds.append(c)
    out["conditions"] = conds
    out["containerStatuses"] = [{**cs, "ready": False} for cs in status.get("containerStatuses", [])]
    return out


class NodeLifecycleController:
    def __init__(self, registry: Registry, grace: float) -> None:
        self.reg = registry
        self.grace = grace
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="node-lifecycle", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def shutdown(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)

    def _run(self) -> None:
        while not self.stop.wait(CHECK_INTERVAL):
            try:
                self.check(datetime.now(UTC).timestamp())
            except Exception:
                log.exception("node lifecycle check failed")

    def check(self, now: float) -> None:
        lost: set[str] = set()
        for node in self.reg.store.list("Node")[0]:
            name = node["metadata"]["name"]
            cond = _ready(node) or {}
            if cond.get("status") == "Unknown":
                lost.add(name)  # still lost: its pods are checked again below (a write may have raced)
            if not is_stale(node, now, self.grace):
                continue
            log.warning("node %s: no heartbeat for %.0fs; marking it NotReady", name, self.grace)
            cond.update(
                status="Unknown",
                reason="NodeStatusUnknown",
                message="Kubelet stopped posting node status.",
                lastTransitionTime=now_rfc3339(),
            )
            node["status"]["conditions"] = [
                cond if c.get("type") == "Ready" else c for c in node["status"].get("conditions", [])
            ]
            with contextlib.suppress(Conflict, NotFound):
                self.reg.update(node, subresource="status")
            lost.add(name)
        if not lost:
            return
        for shared in self.reg.store.list("Pod", shared=True)[0]:
            if shared["spec"].get("nodeName") not in lost:
                continue
            status = mark_not_ready(shared.get("status", {}))
            if status.get("conditions") == shared.get("status", {}).get("conditions"):
                continue  # already not ready
            pod = clone(shared)
            pod["status"] = status
            with contextlib.suppress(Conflict, NotFound):
                self.reg.update(pod, subresource="status")
