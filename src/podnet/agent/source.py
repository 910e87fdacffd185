"""A local cache of a Kubernetes API server, fed by list-then-watch streams
through the `kubernetes` client library, shaped like the embedded store's
watch (`list`, `events_since`) so that the service proxy and the network
policy agent run on it unchanged.

One thread per kind lists, then watches from the list's resourceVersion
(with bookmarks), relists on 410 Gone (emitting the difference as events,
so consumers see a consistent stream), and backs off on disconnects. The
events of every kind go into one log with a local sequence number: several
consumers (proxy, policy) share one cache and one set of streams.
"""

from __future__ import annotations

import builtins
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from podnet.api.errors import Gone
from podnet.store.store import Event

log = logging.getLogger("podnet.agent.source")
Obj = dict[str, Any]
HISTORY = 10_000  # events kept for consumers that fall behind; older: a relist
WATCH_TIMEOUT = 60  # seconds a watch request lasts before it is renewed (bounds a silent cut)
MAX_BACKOFF = 10.0


@dataclass(frozen=True)
class Resource:
    kind: str
    api_version: str
    lister: Callable[[client.ApiClient], Callable[..., Any]]


RESOURCES = {
    r.kind: r
    for r in (
        Resource("Service", "v1", lambda c: client.CoreV1Api(c).list_service_for_all_namespaces),
        Resource(
            "EndpointSlice",
            "discovery.k8s.io/v1",
            lambda c: client.DiscoveryV1Api(c).list_endpoint_slice_for_all_namespaces,
        ),
        Resource("Node", "v1", lambda c: client.CoreV1Api(c).list_node),
        Resource("Pod", "v1", lambda c: client.CoreV1Api(c).list_pod_for_all_namespaces),
        Resource("Namespace", "v1", lambda c: client.CoreV1Api(c).list_namespace),
        Resource(
            "NetworkPolicy",
            "networking.k8s.io/v1",
            lambda c: client.NetworkingV1Api(c).list_network_policy_for_all_namespaces,
        ),
    )
}


def _key(obj: Obj) -> tuple[str, str]:
    meta = obj.get("metadata", {})
    return meta.get("namespace", "") or "", meta["name"]


class KubeSource:
    """A cache of `kinds` from the API server behind `api` (a configured
    kubernetes.client.ApiClient)."""

    def __init__(self, api: client.ApiClient, kinds: list[str]) -> None:
        self.api = api
        self.kinds = kinds
        self._lock = threading.Condition()
        self._cache: dict[str, dict[tuple[str, str], Obj]] = {k: {} for k in kinds}
        self._events: deque[Event] = deque(maxlen=HISTORY)
        self._seq = 0
        self._oldest = 0
        self._synced: set[str] = set()
        self._stop = threading.Event()
        self._watches: dict[str, watch.Watch] = {}
        self.relists = 0
        self.disconnects = 0
        self.threads = [
            threading.Thread(target=self._run, args=(k,), name=f"source-{k}", daemon=True) for k in kinds
        ]

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def wait_synced(self, timeout: float) -> bool:
        """True once every kind has been listed once."""
        with self._lock:
            return self._lock.wait_for(lambda: self._synced >= set(self.kinds), timeout)

    def stop(self) -> None:
        self._stop.set()
        for w in list(self._watches.values()):
            w.stop()
        with self._lock:
            self._lock.notify_all()

    # -- the store's reading side ------------------------------------------------

    @property
    def resource_version(self) -> int:
        return self._seq

    def list(self, kind: str, namespace: str | None = None) -> tuple[builtins.list[Obj], int]:
        with self._lock:
            items = [
                o for (ns, _), o in self._cache.get(kind, {}).items() if namespace is None or ns == namespace
            ]
            return sorted(items, key=_key), self._seq

    def events_since(self, rv: int, timeout: float | None = None) -> builtins.list[Event]:
        with self._lock:
            if rv < self._oldest:
                raise Gone(f"too old resource version: {rv} ({self._oldest})")
            if self._seq <= rv and timeout:
                self._lock.wait_for(lambda: self._seq > rv or self._stop.is_set(), timeout)
            out: builtins.list[Event] = []
            for ev in reversed(self._events):
                if ev.rv <= rv:
                    break
                out.append(ev)
            out.reverse()
            return out

    # -- feeding it --------------------------------------------------------------

    def _emit(self, type_: str, obj: Obj) -> None:
        # under self._lock
        self._seq += 1
        if len(self._events) == self._events.maxlen:
            self._oldest = self._events[0].rv
        self._events.append(Event(type_, obj, self._seq, time.time()))
        self._lock.notify_all()

    def _apply(self, kind: str, type_: str, obj: Obj) -> None:
        res = RESOURCES[kind]
        obj.setdefault("kind", kind)
        obj.setdefault("apiVersion", res.api_version)
        with self._lock:
            cache = self._cache[kind]
            key = _key(obj)
            if type_ == "DELETED":
                cache.pop(key, None)
            else:
                cache[key] = obj
            self._emit(type_, obj)

    def _relist(self, kind: str) -> str:
        """List `kind`, replace the cache with it, and emit the difference
        (a relist after 410 must not lose a deletion). Returns the list's
        resourceVersion."""
        res = RESOURCES[kind]
        resp = res.lister(self.api)(_preload_content=False, _request_timeout=30)
        doc = json.loads(resp.data)
        items = doc.get("items") or []
        with self._lock:
            old = self._cache[kind]
            new: dict[tuple[str, str], Obj] = {}
            for obj in items:
                obj.setdefault("kind", kind)
                obj.setdefault("apiVersion", res.api_version)
                new[_key(obj)] = obj
            for key, obj in new.items():
                prev = old.get(key)
                if prev is None:
                    self._emit("ADDED", obj)
                elif prev.get("metadata", {}).get("resourceVersion") != obj["metadata"].get("resourceVersion"):
                    self._emit("MODIFIED", obj)
            for key, obj in old.items():
                if key not in new:
                    self._emit("DELETED", obj)
            self._cache[kind] = new
            self._synced.add(kind)
            self._lock.notify_all()
        return str(doc.get("metadata", {}).get("resourceVersion", ""))

    def _run(self, kind: str) -> None:
        backoff = 0.2
        rv = ""
        while not self._stop.is_set():
            try:
                if not rv:
                    rv = self._relist(kind)
                    self.relists += 1
                w = watch.Watch()
                self._watches[kind] = w
                for ev in w.stream(
                    RESOURCES[kind].lister(self.api),
                    resource_version=rv,
                    allow_watch_bookmarks=True,
                    timeout_seconds=WATCH_TIMEOUT,
                    deserialize=False,
                    _request_timeout=(5, WATCH_TIMEOUT + 15),
                ):
                    if self._stop.is_set():
                        break
                    obj = ev["raw_object"] if isinstance(ev, dict) and "raw_object" in ev else ev.get("object")
                    type_ = ev["type"]
                    if isinstance(obj, dict) and obj.get("metadata", {}).get("resourceVersion"):
                        rv = obj["metadata"]["resourceVersion"]
                    if type_ == "BOOKMARK":
                        continue
                    if type_ == "ERROR":
                        raise ApiException(status=obj.get("code", 500), reason=obj.get("message"))
                    self._apply(kind, type_, obj)
                backoff = 0.2
            except ApiException as exc:
                if exc.status == 410:
                    log.info("watch of %s expired (410 Gone): relisting", kind)
                    rv = ""
                    continue
                self._backoff(kind, exc, backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                rv = ""  # a failed stream may have missed events: relist
            except Exception as exc:
                if self._stop.is_set():
                    return
                self._backoff(kind, exc, backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                rv = ""

    def _backoff(self, kind: str, exc: BaseException, delay: float) -> None:
        self.disconnects += 1
        log.warning("watch of %s failed (%s); retrying in %.1fs", kind, exc, delay)
        self._stop.wait(delay)


def api_client(kubeconfig: str | None = None, host: str | None = None) -> client.ApiClient:
    """An ApiClient from a kubeconfig file, or for a plain URL (the lab's
    loopback API)."""
    from kubernetes import config

    if kubeconfig:
        cfg = client.Configuration()
        config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
        return client.ApiClient(cfg)
    cfg = client.Configuration()
    cfg.host = host or "http://127.0.0.1:8080"
    return client.ApiClient(cfg)
