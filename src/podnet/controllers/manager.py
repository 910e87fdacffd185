"""Runs the controllers: reads the watch stream, works out which objects
need another look, and calls the pure reconcile functions. The only place
in controllers/ that writes to the API."""

from __future__ import annotations

import contextlib
import logging
import random
import threading
from typing import Any

from podnet.api.errors import APIError, Conflict, NotFound
from podnet.api.kinds import KINDS
from podnet.controllers import deployment, loop, scheduler
from podnet.server.registry import Registry
from podnet.store.store import Event, clone

log = logging.getLogger("podnet.controllers")
RESYNC = 5.0
Obj = dict[str, Any]


def _suffix() -> str:
    return "".join(random.choices(deployment.ALPHABET, k=5))


class ControllerManager:
    def __init__(self, registry: Registry) -> None:
        self.reg = registry
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="controllers", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def shutdown(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)

    def _run(self) -> None:
        loop.run(self.reg.store, self.stop, self._handle, self._sync_all, RESYNC, log)

    def _handle(self, events: list[Event]) -> None:
        deployments: set[tuple[str, str]] = set()
        namespaces: set[str] = set()
        schedule = False
        for ev in events:
            meta = ev.object["metadata"]
            if ev.kind == "Deployment":
                if ev.type == "DELETED":
                    self._orphans(meta["namespace"], meta["uid"])
                else:
                    deployments.add((meta["namespace"], meta["name"]))
            elif ev.kind == "Pod":
                for ref in meta.get("ownerReferences", []):
                    if ref.get("kind") == "Deployment":
                        deployments.add((meta["namespace"], ref["name"]))
                if ev.type != "DELETED" and not ev.object["spec"].get("nodeName"):
                    schedule = True
                if ev.type == "DELETED" and meta.get("namespace") in self._terminating_namespaces():
                    namespaces.add(meta["namespace"])
            elif ev.kind == "Node":
                schedule = True
            elif ev.kind == "Namespace" and meta.get("deletionTimestamp"):
                namespaces.add(meta["name"])
        for ns, name in sorted(deployments):
            self._sync_deployment(ns, name)
        if schedule:
            self._schedule()
        for ns in namespaces:
            self._sync_namespace(ns)

    def _sync_all(self) -> None:
        try:
            for d in self.reg.store.list("Deployment")[0]:
                self._sync_deployment(d["metadata"]["namespace"], d["metadata"]["name"])
            self._schedule()
            for ns in self._terminating_namespaces():
                self._sync_namespace(ns)
        except Exception:
            log.exception("resync failed")

    # -- Deployments -----------------------------------------------------------

    def _sync_deployment(self, ns: str, name: str) -> None:
        try:
            d = self.reg.store.get("Deployment", ns, name)
        except NotFound:
            return
        # Read-only: reconcile is pure, so the store's own objects do (no copies).
        pods = self.reg.store.list("Pod", ns, lambda p: deployment.owned_by(p, d), shared=True)[0]
        plan = deployment.reconcile(d, pods)
        for _ in range(plan.create):
            try:
                self.reg.create(deployment.new_pod(d, _suffix()))
            except APIError as exc:
                log.warning("deployment %s/%s: cannot create pod: %s", ns, name, exc)
                break
        for p in plan.delete:
            with contextlib.suppress(NotFound):
                self.reg.delete("Pod", ns, p["metadata"]["name"])
        if d.get("status") != plan.status:
            d["status"] = plan.status
            # On a conflict, a newer version is coming through the watch.
            with contextlib.suppress(Conflict, NotFound):
                self.reg.update(d, ns, subresource="status")

    def _orphans(self, ns: str, uid: str) -> None:
        """The garbage collector's part: pods of a deleted Deployment go too."""
        for p in self.reg.store.list("Pod", ns)[0]:
            if any(r.get("uid") == uid for r in p["metadata"].get("ownerReferences", [])):
                with contextlib.suppress(NotFound):
                    self.reg.delete("Pod", ns, p["metadata"]["name"])

    # -- Scheduler -----------------------------------------------------------

    def _schedule(self) -> None:
        pods = self.reg.store.list("Pod", shared=True)[0]  # read-only; pending ones are copied below
        pending = [
            clone(p)
            for p in pods
            if not p["spec"].get("nodeName") and not p["metadata"].get("deletionTimestamp")
        ]
        if not pending:
            return
        nodes = self.reg.store.list("Node")[0]
        load: dict[str, int] = {}
        for p in pods:
            if p["spec"].get("nodeName"):
                load[p["spec"]["nodeName"]] = load.get(p["spec"]["nodeName"], 0) + 1
        for pod in pending:
            try:
                node = scheduler.schedule(pod, nodes, load)
            except scheduler.Unschedulable as exc:
                self._mark_unschedulable(pod, str(exc))
                continue
            pod["spec"]["nodeName"] = node
            try:
                self.reg.update(pod)
                load[node] = load.get(node, 0) + 1
            except (Conflict, NotFound):
                pass

    def _mark_unschedulable(self, pod: Obj, message: str) -> None:
        cond = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}
        status = pod.setdefault("status", {})
        if cond in status.get("conditions", []):
            return
        status["phase"] = "Pending"
        status["conditions"] = [cond]
        with contextlib.suppress(Conflict, NotFound):
            self.reg.update(pod, subresource="status")

    # -- Namespaces ----------------------------------------------------------

    def _terminating_namespaces(self) -> set[str]:
        return {
            n["metadata"]["name"]
            for n in self.reg.store.list("Namespace")[0]
            if n["metadata"].get("deletionTimestamp")
        }

    def _sync_namespace(self, ns: str) -> None:
        """Empty a terminating namespace, then remove it."""
        left = 0
        for k in KINDS:
            if not k.namespaced:
                continue
            for obj in self.reg.store.list(k.kind, ns)[0]:
                left += 1
                with contextlib.suppress(NotFound):
                    self.reg.delete(k.kind, ns, obj["metadata"]["name"])
        if left == 0 or not any(self.reg.store.list(k.kind, ns)[0] for k in KINDS if k.namespaced):
            with contextlib.suppress(NotFound):
                self.reg.store.delete("Namespace", "", ns)
