"""Runs the EndpointSlice controller: watches Services and Pods, and keeps
each selector Service's EndpointSlices equal to `desired_slices`. Writes
only what changed, stamped with the time of the change that triggered it
(the start of network programming latency)."""

from __future__ import annotations

import contextlib
import logging
import threading
from datetime import UTC, datetime
from typing import Any

from podnet.api.errors import AlreadyExists, APIError, Conflict, NotFound
from podnet.controllers import loop
from podnet.controllers.endpointslice import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    SERVICE_NAME_LABEL,
    TRIGGER_TIME,
    desired_slices,
    same_content,
    selects,
)
from podnet.server.registry import Registry
from podnet.store.store import Event

log = logging.getLogger("podnet.endpointslice")
Obj = dict[str, Any]
RESYNC = 30.0


def format_trigger_time(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_trigger_time(text: str) -> float | None:
    """An RFC 3339 time with any fraction (the API server writes
    nanoseconds, podnet microseconds, some none); None when unreadable."""
    head, _, tail = text.rstrip("Z").partition(".")
    try:
        base = datetime.strptime(head, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp()
        return base + (float("0." + tail) if tail.isdigit() else 0.0)
    except ValueError:
        return None


class EndpointSliceController:
    def __init__(self, registry: Registry) -> None:
        self.reg = registry
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="endpointslice-controller", daemon=True)
        # Which Services each pod backs (namespace, pod) -> {service}, so a
        # pod event looks only at the Services it matters to.
        self.pod_services: dict[tuple[str, str], set[str]] = {}

    def start(self) -> None:
        self.thread.start()

    def shutdown(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)

    def _run(self) -> None:
        loop.run(self.reg.store, self.stop, self.handle, self.sync_all, RESYNC, log)

    def handle(self, events: list[Event]) -> None:
        dirty: dict[tuple[str, str], float] = {}  # service -> latest trigger time
        services_by_ns: dict[str, list[Obj]] = {}

        def services_in(ns: str) -> list[Obj]:
            if ns not in services_by_ns:
                services_by_ns[ns] = self.reg.store.list("Service", ns)[0]
            return services_by_ns[ns]

        for ev in events:
            meta = ev.object["metadata"]
            ns = meta.get("namespace", "")
            if ev.kind == "Service":
                services_by_ns.pop(ns, None)
                if ev.type == "DELETED":
                    self._delete_slices(ns, meta["name"])
                else:
                    key = (ns, meta["name"])
                    dirty[key] = max(dirty.get(key, 0.0), ev.at)
            elif ev.kind == "Pod":
                names = set(self.pod_services.get((ns, meta["name"]), set()))
                if ev.type != "DELETED":
                    names |= {s["metadata"]["name"] for s in services_in(ns) if selects(s, ev.object)}
                for name in names:
                    dirty[(ns, name)] = max(dirty.get((ns, name), 0.0), ev.at)
        for (ns, name), at in dirty.items():
            self.sync_service(ns, name, at)

    def sync_all(self) -> None:
        try:
            for svc in self.reg.store.list("Service")[0]:
                self.sync_service(svc["metadata"]["namespace"], svc["metadata"]["name"], None)
        except Exception:
            log.exception("endpointslice resync failed")

    def _existing(self, ns: str, name: str) -> list[Obj]:
        return self.reg.store.list(
            "EndpointSlice",
            ns,
            lambda s: (
                (s["metadata"].get("labels") or {}).get(SERVICE_NAME_LABEL) == name
                and (s["metadata"].get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGED_BY
            ),
        )[0]

    def _delete_slices(self, ns: str, name: str) -> None:
        for s in self._existing(ns, name):
            with contextlib.suppress(NotFound):
                self.reg.store.delete("EndpointSlice", ns, s["metadata"]["name"])
        for key in [k for k, v in self.pod_services.items() if k[0] == ns and name in v]:
            self.pod_services[key].discard(name)

    def sync_service(self, ns: str, name: str, trigger: float | None) -> None:
        try:
            svc = self.reg.store.get("Service", ns, name)
        except NotFound:
            self._delete_slices(ns, name)
            return
        if not svc["spec"].get("selector") or svc["spec"].get("type") == "ExternalName":
            # The user keeps this Service's EndpointSlices; the ones this
            # controller made while it had a selector go (managed-by only).
            self._delete_slices(ns, name)
            return
        pods = self.reg.store.list("Pod", ns, lambda p: selects(svc, p))[0]
        want = desired_slices(svc, pods)
        have = {s["metadata"]["name"]: s for s in self._existing(ns, name)}
        stamp = format_trigger_time(trigger) if trigger else None
        for s in want:
            cur = have.pop(s["metadata"]["name"], None)
            if cur is not None and same_content(cur, s):
                continue
            if stamp:
                s["metadata"]["annotations"] = {TRIGGER_TIME: stamp}
            try:
                if cur is None:
                    self.reg.create(s)
                else:
                    s["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"]
                    self.reg.update(s)
            except (AlreadyExists, Conflict, NotFound):
                pass  # the next event brings this Service round again
            except APIError as exc:
                log.warning("service %s/%s: cannot write EndpointSlice: %s", ns, name, exc)
        for stale in have:
            with contextlib.suppress(NotFound):
                self.reg.store.delete("EndpointSlice", ns, stale)
        backing = {ep["targetRef"]["name"] for s in want for ep in s["endpoints"]}
        for key in [
            k for k, v in self.pod_services.items() if k[0] == ns and name in v and k[1] not in backing
        ]:
            self.pod_services[key].discard(name)
        for pod in backing:
            self.pod_services.setdefault((ns, pod), set()).add(name)
