"""The node agent's NetworkPolicy enforcer: watches NetworkPolicies, Pods
and Namespaces, keeps an Index of who each selector picks, and on every
batch of changes compiles the node's Ruleset and applies the difference
from what it programmed as one nftables transaction (libnftables, in the
node's namespace). A full resync at start and after any failure."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable

from podnet.api.errors import APIError
from podnet.policy import model, render
from podnet.proxy.agent import Histogram, Source
from podnet.proxy.nftables import Nftables
from podnet.store.store import Event

log = logging.getLogger("podnet.policy")
KINDS = ("NetworkPolicy", "Pod", "Namespace")


class PolicyAgent:
    def __init__(self, source: Source, node: str, netns: str | None, *, host: bool = False) -> None:
        self.source = source
        self.node = node
        self.netns = netns
        self.nft = Nftables(netns, host=host)
        self.index = render.Index()
        self.programmed: render.Ruleset | None = None
        self.needs_full = True
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"policy-{node}", daemon=True)
        self.sync_duration = Histogram()
        self.programming_latency = Histogram()
        self.last_transaction = ""
        self.syncs = 0
        self.failures = 0
        self.ready = threading.Event()

    def start(self) -> None:
        self.thread.start()

    def shutdown(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.nft.close()

    # -- the loop --------------------------------------------------------------

    def _run(self) -> None:
        rv = self._relist()
        while not self.stop.is_set():
            try:
                if self.needs_full:
                    self.sync(full=True)
                    self.ready.set()
                events = self.source.events_since(rv, timeout=1.0)
            except APIError:
                try:
                    rv = self._relist()
                except Exception:
                    log.exception("policy agent on %s: relist failed", self.node)
                    self.stop.wait(0.5)
                continue
            except Exception:
                log.exception("policy agent on %s: sync failed; full resync", self.node)
                self.failures += 1
                self.needs_full = True
                self.stop.wait(0.5)
                continue
            if not events:
                continue
            rv = events[-1].rv
            try:
                triggers = self.ingest(events)
                if triggers:
                    self.sync(triggers=triggers)
            except Exception:
                # Never let one bad batch end the loop (the table would go
                # stale for good): start over from a fresh list.
                log.exception("policy agent on %s: incremental sync failed; relist and full resync", self.node)
                self.failures += 1
                self.needs_full = True
                try:
                    rv = self._relist()
                except Exception:
                    log.exception("policy agent on %s: relist failed", self.node)
                    self.stop.wait(0.5)

    def _relist(self) -> int:
        index = render.Index()
        namespaces, rv = self.source.list("Namespace")
        for ns in namespaces:
            index.set_namespace(ns["metadata"]["name"], model.namespace_labels(ns))
        for obj in self.source.list("Pod")[0]:
            pod = model.parse_pod(obj)
            if pod is not None:
                index.set_pod(pod)
        for obj in self.source.list("NetworkPolicy")[0]:
            index.set_policy(model.parse_policy(obj))
        self.index = index
        self.needs_full = True
        return rv

    def ingest(self, events: Iterable[Event]) -> list[float]:
        """Apply watch events to the index; the times of those that matter."""
        triggers: list[float] = []
        for ev in events:
            if ev.kind not in KINDS:
                continue
            obj = ev.object
            meta = obj["metadata"]
            key = f"{meta.get('namespace') or 'default'}/{meta['name']}"
            if ev.kind == "NetworkPolicy":
                if ev.type == "DELETED":
                    self.index.delete_policy(key)
                else:
                    self.index.set_policy(model.parse_policy(obj))
            elif ev.kind == "Pod":
                pod = None if ev.type == "DELETED" else model.parse_pod(obj)
                before = self.index.pods.get(key)
                if pod is None:
                    if before is None:
                        continue
                    self.index.delete_pod(key)
                elif pod == before and pod.labels == before.labels:
                    continue  # a status change that moves nothing
                else:
                    self.index.set_pod(pod)
            else:
                name = meta["name"]
                if ev.type == "DELETED":
                    self.index.delete_namespace(name)
                else:
                    labels = model.namespace_labels(obj)
                    if self.index.namespaces.get(name) == labels:
                        continue
                    self.index.set_namespace(name, labels)
            triggers.append(ev.at)
        return triggers

    def sync(self, *, full: bool = False, triggers: Iterable[float] = ()) -> str:
        """Compile and apply; returns the transaction."""
        start = time.monotonic()
        new = render.compile_ruleset(self.index, self.node)
        text = render.full(new) if full or self.programmed is None else render.delta(self.programmed, new)
        if text:
            self.nft.run(text)
        self.programmed = new
        self.needs_full = False
        self.last_transaction = text
        self.syncs += 1
        self.sync_duration.observe(time.monotonic() - start)
        now = time.time()
        for at in triggers:
            if at > 0:
                self.programming_latency.observe(max(0.0, now - at))
        return text

    # -- figures ---------------------------------------------------------------

    def metrics(self) -> list[str]:
        labels = f'node="{self.node}"'
        counts = self.programmed.counts() if self.programmed else {}
        return [
            *self.sync_duration.prometheus("podnet_policy_sync_duration_seconds", labels),
            *self.programming_latency.prometheus("podnet_policy_programming_duration_seconds", labels),
            f"podnet_policy_syncs_total{{{labels}}} {self.syncs}",
            f"podnet_policy_sync_failures_total{{{labels}}} {self.failures}",
            *(f"podnet_policy_{k}{{{labels}}} {v}" for k, v in sorted(counts.items())),
        ]
