"""The node agent's service proxy (the seed's kube-proxy): watches Services
and EndpointSlices, keeps what it programmed per Service, and on every
change applies one nftables transaction holding only the changed
Services' elements. A full resync at start and after any failure.

Also: conntrack clean-up for UDP (a removed endpoint's flows are deleted,
so clients that keep their source port move to a live endpoint), and the
sync and network programming latency figures kube-proxy reports."""

from __future__ import annotations

import builtins
import logging
import subprocess
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from podnet.api.errors import APIError
from podnet.controllers.endpointslice import TRIGGER_TIME
from podnet.controllers.endpointslice_controller import parse_trigger_time
from podnet.lab import netns as netns_mod
from podnet.proxy import render
from podnet.proxy.healthcheck import HealthServers
from podnet.proxy.model import (
    PortKey,
    ServicePort,
    local_endpoint_count,
    service_key,
    service_ports,
    slice_service,
)
from podnet.proxy.nftables import Nftables
from podnet.store.store import Event

log = logging.getLogger("podnet.proxy")
Obj = dict[str, Any]
SvcKey = tuple[str, str]
LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


class Source(Protocol):
    """What the agent watches: the embedded store (or, later, a client of a
    real API server with the same list/watch shape)."""

    @property
    def resource_version(self) -> int: ...

    def list(self, kind: str, namespace: str | None = None) -> tuple[list[Obj], int]: ...

    def events_since(self, rv: int, timeout: float | None = None) -> builtins.list[Event]: ...


@dataclass
class Histogram:
    buckets: tuple[float, ...] = LATENCY_BUCKETS
    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    total: float = 0.0
    n: int = 0
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))

    def observe(self, value: float) -> None:
        for i, b in enumerate(self.buckets):
            if value <= b:
                self.counts[i] += 1
                break
        else:
            self.counts[-1] += 1
        self.total += value
        self.n += 1
        self.recent.append(value)

    def prometheus(self, name: str, labels: str) -> list[str]:
        lines, acc = [], 0
        for b, c in zip(self.buckets, self.counts, strict=False):
            acc += c
            lines.append(f'{name}_bucket{{{labels},le="{b}"}} {acc}')
        lines.append(f'{name}_bucket{{{labels},le="+Inf"}} {self.n}')
        lines.append(f"{name}_sum{{{labels}}} {self.total}")
        lines.append(f"{name}_count{{{labels}}} {self.n}")
        return lines


class ServiceProxy:
    def __init__(
        self, source: Source, node: str, netns: str | None, cfg: render.ProxyConfig, *, host: bool = False
    ) -> None:
        self.source = source
        self.node = node
        self.netns = netns
        self.cfg = cfg
        self.nft = Nftables(netns, host=host)
        self.services: dict[SvcKey, Obj] = {}
        self.slices: dict[SvcKey, dict[str, Obj]] = {}  # by Service, then slice name
        self.programmed: dict[SvcKey, dict[PortKey, ServicePort]] = {}
        self.endpoint_refs: Counter[str] = Counter()
        self.chains: set[int] = set()
        self.needs_full = True
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"proxy-{node}", daemon=True)
        self.sync_duration = Histogram()
        self.programming_latency = Histogram()
        self.last_transaction = ""
        self.syncs = 0
        self.failures = 0
        self.ready = threading.Event()
        self.host = host
        self.health = HealthServers(netns, node, host=host)
        self.health_ports: dict[SvcKey, tuple[int, str, str, int]] = {}

    def start(self) -> None:
        self.health.start()
        self.thread.start()

    def shutdown(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.health.stop()
        self.nft.close()

    # -- the loop --------------------------------------------------------------

    def _run(self) -> None:
        rv = self._relist()
        while not self.stop.is_set():
            try:
                if self.needs_full:
                    self._sync_full()
                    self.ready.set()
                events = self.source.events_since(rv, timeout=1.0)
            except APIError:
                rv = self._relist()
                continue
            except Exception:
                log.exception("proxy on %s: sync failed; full resync", self.node)
                self.failures += 1
                self.needs_full = True
                self.stop.wait(0.5)
                continue
            if not events:
                continue
            rv = events[-1].rv
            try:
                dirty, triggers = self._ingest(events)
                if dirty:
                    self._sync_services(dirty, triggers)
            except Exception:
                # Never let one bad batch end the loop: start over from a fresh list.
                log.exception("proxy on %s: incremental sync failed; relist and full resync", self.node)
                self.failures += 1
                self.needs_full = True
                try:
                    rv = self._relist()
                except Exception:
                    log.exception("proxy on %s: relist failed", self.node)
                    self.stop.wait(0.5)

    def _relist(self) -> int:
        services, rv = self.source.list("Service")
        slices, _ = self.source.list("EndpointSlice")
        self.services = {service_key(s): s for s in services}
        self.slices = {}
        for s in slices:
            owner = slice_service(s)
            if owner:
                self.slices.setdefault(owner, {})[s["metadata"]["name"]] = s
        self.needs_full = True
        return rv

    def _ingest(self, events: Iterable[Event]) -> tuple[set[SvcKey], dict[SvcKey, float]]:
        dirty: set[SvcKey] = set()
        triggers: dict[SvcKey, float] = {}
        for ev in events:
            if ev.kind == "Service":
                key = service_key(ev.object)
                if ev.type == "DELETED":
                    self.services.pop(key, None)
                else:
                    self.services[key] = ev.object
                dirty.add(key)
                triggers[key] = max(triggers.get(key, 0.0), ev.at)
            elif ev.kind == "EndpointSlice":
                owner = slice_service(ev.object)
                if owner is None:
                    continue
                name = ev.object["metadata"]["name"]
                if ev.type == "DELETED":
                    self.slices.get(owner, {}).pop(name, None)
                else:
                    self.slices.setdefault(owner, {})[name] = ev.object
                dirty.add(owner)
                stamp = (ev.object["metadata"].get("annotations") or {}).get(TRIGGER_TIME)
                at = (parse_trigger_time(stamp) if stamp else None) or ev.at
                triggers[owner] = max(triggers.get(owner, 0.0), at)
        return dirty, triggers

    def _state_of(self, key: SvcKey) -> dict[PortKey, ServicePort]:
        svc = self.services.get(key)
        if svc is None:
            return {}
        return service_ports(svc, self.slices.get(key, {}).values(), self.node)

    # -- syncs -----------------------------------------------------------------

    def _sync_full(self, triggers: dict[SvcKey, float] | None = None) -> None:
        start = time.monotonic()
        programmed = {key: self._state_of(key) for key in self.services}
        merged = {pk: sp for ports in programmed.values() for pk, sp in ports.items()}
        text = render.full(merged, self.cfg)
        self.nft.run(text)
        old = self.programmed
        self.programmed = {k: v for k, v in programmed.items() if v}
        self.endpoint_refs = Counter(
            ip for ports in self.programmed.values() for sp in ports.values() for ip, _ in sp.endpoints
        )
        self.chains = set(range(1, render.chain_capacity(merged) + 1))
        self.needs_full = False
        self._clear_udp(old, self.programmed)
        self.last_transaction = text
        self.health_ports.clear()
        self._update_health(self.services)
        self._done(start, triggers or {})

    def _sync_services(self, dirty: set[SvcKey], triggers: dict[SvcKey, float]) -> None:
        start = time.monotonic()
        old_all: dict[PortKey, ServicePort] = {}
        new_all: dict[PortKey, ServicePort] = {}
        changes: dict[SvcKey, dict[PortKey, ServicePort]] = {}
        for key in dirty:
            before = self.programmed.get(key, {})
            after = self._state_of(key)
            if before == after:
                continue  # (the healthCheckNodePort count may still move)
            old_all.update(before)
            new_all.update(after)
            changes[key] = after
        if not changes:
            self._update_health(dirty)
            return
        # Reference counts of the endpoint addresses this change touches only.
        step: Counter[str] = Counter()
        for sp in old_all.values():
            for ip, _ in sp.endpoints:
                step[ip] -= 1
        for sp in new_all.values():
            for ip, _ in sp.endpoints:
                step[ip] += 1
        counts = {ip: self.endpoint_refs.get(ip, 0) + d for ip, d in step.items() if d}
        local = self.cfg.local_endpoint
        hairpin_add = [
            ip for ip, n in counts.items() if n > 0 and self.endpoint_refs.get(ip, 0) <= 0 and local(ip)
        ]
        hairpin_remove = [
            ip for ip, n in counts.items() if n <= 0 and self.endpoint_refs.get(ip, 0) > 0 and local(ip)
        ]
        try:
            text = render.delta(old_all, new_all, self.chains, hairpin_add, hairpin_remove)
        except render.NeedsFullSync:
            self._sync_full(triggers)
            return
        self.nft.run(text)
        for ip, n in counts.items():
            if n > 0:
                self.endpoint_refs[ip] = n
            else:
                self.endpoint_refs.pop(ip, None)
        old_programmed = {k: self.programmed.get(k, {}) for k in changes}
        for key, after in changes.items():
            if after:
                self.programmed[key] = after
            else:
                self.programmed.pop(key, None)
        self._clear_udp(old_programmed, changes)
        self.last_transaction = text
        self._update_health(dirty)
        self._done(start, {k: triggers[k] for k in changes if k in triggers})

    def _update_health(self, keys: Iterable[SvcKey]) -> None:
        """Keep each Local LoadBalancer's healthCheckNodePort answering with
        this node's count of ready endpoints."""
        changed = False
        for key in keys:
            svc = self.services.get(key)
            port = (svc or {}).get("spec", {}).get("healthCheckNodePort")
            if svc is None or not port:
                changed |= self.health_ports.pop(key, None) is not None
                continue
            count = local_endpoint_count(svc, self.slices.get(key, {}).values(), self.node)
            entry = (int(port), key[0], key[1], count)
            if self.health_ports.get(key) != entry:
                self.health_ports[key] = entry
                changed = True
        if changed:
            self.health.set_services({p: (ns, name, n) for p, ns, name, n in self.health_ports.values()})

    def _done(self, start: float, triggers: dict[SvcKey, float]) -> None:
        self.health.last_sync = time.time()
        self.syncs += 1
        self.sync_duration.observe(time.monotonic() - start)
        now = time.time()
        for at in triggers.values():
            if at > 0:
                self.programming_latency.observe(max(0.0, now - at))

    # -- conntrack -------------------------------------------------------------

    def _clear_udp(
        self, old: dict[SvcKey, dict[PortKey, ServicePort]], new: dict[SvcKey, dict[PortKey, ServicePort]]
    ) -> None:
        """For UDP, conntrack would keep sending a client's flow to an
        endpoint that is gone (or keep a flow that was rejected when there
        was none): delete those entries, as kube-proxy does."""
        for key in set(old) | set(new):
            before, after = old.get(key, {}), new.get(key, {})
            for pk in set(before) | set(after):
                if pk.protocol != "udp":
                    continue
                gone = {ip for ip, _ in before[pk].endpoints} if pk in before else set()
                kept = {ip for ip, _ in after[pk].endpoints} if pk in after else set()
                for ip in sorted(gone - kept):
                    self._conntrack(
                        [
                            "-D",
                            "-p",
                            "udp",
                            "--orig-dst",
                            pk.ip,
                            "--orig-port-dst",
                            str(pk.port),
                            "--reply-src",
                            ip,
                        ]
                    )
                if pk in after and after[pk].endpoints and (pk not in before or not before[pk].endpoints):
                    self._conntrack(["-D", "-p", "udp", "--orig-dst", pk.ip, "--orig-port-dst", str(pk.port)])

    def _conntrack(self, args: list[str]) -> None:
        cmd = ["conntrack", *args]
        if self.netns:
            cmd = ["nsenter", f"--net={netns_mod.path(self.netns)}", *cmd]
        elif not self.host:
            raise RuntimeError("refusing to touch the current namespace's conntrack without host=True")
        # Exit code 1 means "no entry matched": fine.
        subprocess.run(cmd, capture_output=True, check=False)

    # -- figures ---------------------------------------------------------------

    def metrics(self) -> list[str]:
        labels = f'node="{self.node}"'
        return [
            *self.sync_duration.prometheus("kubeproxy_sync_proxy_rules_duration_seconds", labels),
            *self.programming_latency.prometheus("kubeproxy_network_programming_duration_seconds", labels),
            f"kubeproxy_sync_proxy_rules_total{{{labels}}} {self.syncs}",
            f"kubeproxy_sync_proxy_rules_failures_total{{{labels}}} {self.failures}",
            f"kubeproxy_sync_proxy_rules_service_ports{{{labels}}} "
            f"{sum(len(p) for p in list(self.programmed.values()))}",
        ]
