"""List-then-watch over the Kubernetes REST API, as client-go's reflector
does: list (remember the list's resourceVersion), watch from there, keep
the objects' latest resourceVersion, and list again when the server says
410 Gone (history compacted) or the watch breaks for good."""

from __future__ import annotations

import http.client
import json
import logging
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from podnet.api.errors import APIError
from podnet.api.kinds import Kind
from podnet.client import Client, Unreachable

log = logging.getLogger("podnet.dns.informer")
Obj = dict[str, Any]
WATCH_SECONDS = 30  # server-side timeout of one watch request
READ_TIMEOUT = WATCH_SECONDS + 15  # a silent connection is dead after this
BACKOFF_MAX = 2.0


class Gone(Exception):
    pass


class Informer:
    """Keeps `objects` equal to the server's objects of `kind` (all
    namespaces), calling `on_change` after each batch of changes."""

    def __init__(
        self, host: str, port: int, kind: Kind, on_change: Callable[[], None], stop: threading.Event
    ) -> None:
        self.host, self.port, self.kind = host, port, kind
        self.on_change = on_change
        self.stop = stop
        self.objects: dict[tuple[str, str], Obj] = {}
        self.rv = ""
        self.synced = threading.Event()
        self.lists = 0  # how many times it listed (a relist after 410 counts)
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.run, name=f"informer-{kind.plural}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def snapshot(self) -> list[Obj]:
        with self.lock:
            return list(self.objects.values())

    def run(self) -> None:
        backoff = 0.1
        while not self.stop.is_set():
            try:
                if not self.rv:
                    self._list()
                self._watch()
                backoff = 0.1
            except Gone:
                log.info("%s: resourceVersion %s is gone; listing again", self.kind.plural, self.rv)
                self.rv = ""
            except (OSError, Unreachable, APIError, http.client.HTTPException, ValueError) as exc:
                log.warning("%s: %s; retrying in %.1fs", self.kind.plural, exc, backoff)
                self.stop.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)

    def _list(self) -> None:
        doc = Client(self.host, self.port, timeout=10).request("GET", self.kind.collection_path())
        with self.lock:
            self.objects = {self._key(o): o for o in doc.get("items") or []}
            self.rv = str(doc.get("metadata", {}).get("resourceVersion", ""))
            self.lists += 1
        self.synced.set()
        self.on_change()

    @staticmethod
    def _key(obj: Obj) -> tuple[str, str]:
        meta = obj.get("metadata") or {}
        return (meta.get("namespace", "") or "", meta.get("name", ""))

    def _watch(self) -> None:
        query = urlencode({"watch": "true", "resourceVersion": self.rv, "timeoutSeconds": str(WATCH_SECONDS)})
        conn = http.client.HTTPConnection(self.host, self.port, timeout=READ_TIMEOUT)
        try:
            conn.request(
                "GET", f"{self.kind.collection_path()}?{query}", headers={"Accept": "application/json"}
            )
            resp = conn.getresponse()
            if resp.status == 410:
                raise Gone()
            if resp.status >= 400:
                raise APIError.from_status(json.loads(resp.read() or b"{}"))
            while not self.stop.is_set():
                line = resp.readline()
                if not line:
                    return  # the server ended this watch: watch again from rv
                if line.strip():
                    self._event(json.loads(line))
        finally:
            conn.close()

    def _event(self, ev: Obj) -> None:
        obj = ev.get("object") or {}
        if ev.get("type") == "ERROR":
            if obj.get("code") == 410:
                raise Gone()
            raise APIError.from_status(obj)
        with self.lock:
            key = self._key(obj)
            if ev.get("type") == "DELETED":
                self.objects.pop(key, None)
            else:
                self.objects[key] = obj
            self.rv = str(obj.get("metadata", {}).get("resourceVersion", self.rv))
        self.on_change()
