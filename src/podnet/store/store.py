"""The embedded source of truth: objects with resourceVersions, persisted in
SQLite, and a watch stream shaped like the Kubernetes list/watch API.

The store knows nothing of validation or defaulting (the API layer does
that); it keeps objects, numbers changes and fans them out to watchers.
"""

from __future__ import annotations

import builtins
import copy
import json
import sqlite3
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from podnet.api.errors import AlreadyExists, Conflict, Gone, NotFound
from podnet.api.kinds import BY_KIND

Obj = dict[str, Any]
Key = tuple[str, str, str]  # (kind, namespace, name); namespace "" when cluster-scoped

# How many past events a watch can resume from; older resourceVersions get
# 410 Gone, as from a real API server whose etcd history was compacted.
EVENT_HISTORY = 50_000


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def clone(value: Any) -> Any:
    """A deep copy of JSON-shaped data (dicts, lists, scalars): what the
    store holds. Several times faster than copy.deepcopy, which keeps a memo
    and dispatches on every type; anything else falls back to it."""
    if isinstance(value, dict):
        return {k: clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clone(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return copy.deepcopy(value)


def key_of(obj: Obj) -> Key:
    meta = obj.get("metadata", {})
    return (obj["kind"], meta.get("namespace", "") or "", meta["name"])


@dataclass(frozen=True)
class Event:
    type: str  # ADDED, MODIFIED, DELETED
    object: Obj
    rv: int
    at: float = 0.0  # wall-clock time of the change: where network programming latency starts

    @property
    def kind(self) -> str:
        return str(self.object["kind"])

    def to_json(self) -> Obj:
        return {"type": self.type, "object": self.object}


class Store:
    def __init__(self, path: str = ":memory:") -> None:
        self._lock = threading.Condition()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS objects (kind TEXT, namespace TEXT, name TEXT, body TEXT,"
            " PRIMARY KEY (kind, namespace, name))"
        )
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER)")
        self._objects: dict[Key, Obj] = {}
        self._by_kind: dict[str, dict[Key, Obj]] = {}  # the same objects by kind: a list reads one kind only
        for (body,) in self._db.execute("SELECT body FROM objects"):
            obj = json.loads(body)
            self._objects[key_of(obj)] = obj
            self._by_kind.setdefault(obj["kind"], {})[key_of(obj)] = obj
        row = self._db.execute("SELECT v FROM meta WHERE k='rv'").fetchone()
        self._rv = int(row[0]) if row else 0
        # Watches can resume from any version after this one.
        self._oldest_rv = self._rv
        self._events: deque[Event] = deque(maxlen=EVENT_HISTORY)
        self._closing = False

    # -- reads -------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        return self._rv

    def get(self, kind: str, namespace: str, name: str) -> Obj:
        with self._lock:
            obj = self._objects.get((kind, namespace or "", name))
            if obj is None:
                raise NotFound(BY_KIND[kind].resource, name)
            return clone(obj)

    def exists(self, kind: str, namespace: str, name: str) -> bool:
        with self._lock:
            return (kind, namespace or "", name) in self._objects

    def list(
        self,
        kind: str,
        namespace: str | None = None,
        where: Callable[[Obj], bool] | None = None,
        *,
        shared: bool = False,
    ) -> tuple[list[Obj], int]:
        """Objects of `kind` (in `namespace`, or all), sorted by namespace and
        name as the API server returns them, and the list's resourceVersion.

        `shared=True` skips the copies and returns the store's own objects,
        for readers that never change them (the store itself never changes
        an object in place: a write replaces it)."""
        with self._lock:
            items = [
                o if shared else clone(o)
                for (_, ns, _), o in self._by_kind.get(kind, {}).items()
                if (namespace is None or ns == namespace) and (where is None or where(o))
            ]
            rv = self._rv
        items.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
        return items, rv

    # -- writes ------------------------------------------------------------

    def create(self, obj: Obj) -> Obj:
        obj = clone(obj)
        key = key_of(obj)
        with self._lock:
            if key in self._objects:
                raise AlreadyExists(BY_KIND[key[0]].resource, key[2])
            meta = obj["metadata"]
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", now_rfc3339())
            meta.setdefault("generation", 1)
            self._commit("ADDED", key, obj)
            return clone(obj)

    def update(self, obj: Obj, *, bump_generation: bool = False) -> Obj:
        """Replace an object. A resourceVersion in the new object must match
        the stored one (optimistic concurrency), as on the API server."""
        obj = clone(obj)
        key = key_of(obj)
        with self._lock:
            old = self._objects.get(key)
            if old is None:
                raise NotFound(BY_KIND[key[0]].resource, key[2])
            meta = obj["metadata"]
            want = meta.get("resourceVersion")
            if want and want != old["metadata"]["resourceVersion"]:
                raise Conflict(
                    f'Operation cannot be fulfilled on {BY_KIND[key[0]].resource} "{key[2]}": '
                    "the object has been modified; please apply your changes to the latest version and try again"
                )
            for field in ("uid", "creationTimestamp"):
                meta[field] = old["metadata"][field]
            generation = old["metadata"].get("generation", 1)
            meta["generation"] = generation + 1 if bump_generation else generation
            self._commit("MODIFIED", key, obj)
            return clone(obj)

    def delete(self, kind: str, namespace: str, name: str, *, uid: str | None = None) -> Obj:
        key = (kind, namespace or "", name)
        with self._lock:
            old = self._objects.get(key)
            if old is None or (uid and old["metadata"]["uid"] != uid):
                raise NotFound(BY_KIND[kind].resource, name)
            obj = clone(old)
            self._commit("DELETED", key, obj)
            return clone(obj)

    def _commit(self, type_: str, key: Key, obj: Obj) -> None:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        # The object and the version counter in one transaction: a crash
        # between them would hand out versions twice after a restart.
        self._db.execute("BEGIN")
        if type_ == "DELETED":
            self._db.execute("DELETE FROM objects WHERE kind=? AND namespace=? AND name=?", key)
        else:
            self._db.execute("INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?)", (*key, json.dumps(obj)))
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('rv', ?)", (self._rv,))
        self._db.execute("COMMIT")
        if type_ == "DELETED":
            self._objects.pop(key, None)
            self._by_kind.get(key[0], {}).pop(key, None)
        else:
            self._objects[key] = obj
            self._by_kind.setdefault(key[0], {})[key] = obj
        if len(self._events) == self._events.maxlen:
            self._oldest_rv = self._events[0].rv
        self._events.append(Event(type_, clone(obj), self._rv, time.time()))
        self._lock.notify_all()

    # -- watch -------------------------------------------------------------

    def events_since(self, rv: int, timeout: float | None = None) -> builtins.list[Event]:
        """Every event after resourceVersion `rv`, waiting up to `timeout`
        for one to happen. Raises Gone when `rv` is older than the history."""
        with self._lock:
            if rv < self._oldest_rv:
                raise Gone(f"too old resource version: {rv} ({self._oldest_rv})")
            if self._rv <= rv and timeout:
                self._lock.wait_for(lambda: self._rv > rv or self._closing, timeout)
            if self._rv <= rv:
                return []
            # Events are in order; walk back from the newest.
            out: builtins.list[Event] = []
            for ev in reversed(self._events):
                if ev.rv <= rv:
                    break
                out.append(ev)
            out.reverse()
            return out

    def watch(
        self,
        since: int,
        match: Callable[[Event], bool] = lambda _e: True,
        stop: threading.Event | None = None,
        poll: float = 1.0,
    ) -> Iterator[Event]:
        """Events after `since` that `match`, forever or until `stop` is set."""
        rv = since
        while stop is None or not stop.is_set():
            for ev in self.events_since(rv, timeout=poll):
                rv = ev.rv
                if match(ev):
                    yield ev

    def wake(self) -> None:
        """Shutting down: every waiting watcher returns now, with nothing."""
        with self._lock:
            self._closing = True
            self._lock.notify_all()

    def close(self) -> None:
        with self._lock:
            self._db.close()
