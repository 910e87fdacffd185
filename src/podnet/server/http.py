"""The lab's API over HTTP, with the Kubernetes REST paths and JSON: list,
get, create, update, patch, delete and `?watch=true` event streams, bound
to loopback. Thin: every decision is in the Registry."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from podnet.api.errors import APIError, BadRequest, NotFound
from podnet.api.kinds import BY_PLURAL, KINDS, Kind
from podnet.server.registry import Registry, _filter
from podnet.store.store import Event

WATCH_POLL = 1.0


class Route:
    def __init__(self, kind: Kind, namespace: str | None, name: str | None, subresource: str | None) -> None:
        self.kind, self.namespace, self.name, self.subresource = kind, namespace, name, subresource


def parse_path(path: str) -> Route | None:
    """/api/v1[/namespaces/NS]/PLURAL[/NAME[/SUB]] and the same under /apis/GROUP/VERSION."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 3:
        group, version, rest = "", parts[1], parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 4:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace = None
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    kind = BY_PLURAL.get(rest[0])
    if kind is None or kind.group != group or kind.version != version:
        return None
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    return Route(kind, namespace, name, sub)


def discovery(path: str) -> dict[str, Any] | None:
    if path == "/api":
        return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
    if path == "/apis":
        groups = sorted({k.group for k in KINDS if k.group})
        return {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [
                {
                    "name": g,
                    "versions": [{"groupVersion": f"{g}/v1", "version": "v1"}],
                    "preferredVersion": {"groupVersion": f"{g}/v1", "version": "v1"},
                }
                for g in groups
            ],
        }
    for gv in {k.api_version for k in KINDS}:
        prefix = "/api/" if "/" not in gv else "/apis/"
        if path == prefix + gv:
            return {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": gv,
                "resources": [
                    {
                        "name": k.plural,
                        "singularName": k.singular,
                        "namespaced": k.namespaced,
                        "kind": k.kind,
                        "shortNames": list(k.short_names),
                        "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                    }
                    for k in KINDS
                    if k.api_version == gv
                ],
            }
    return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: APIHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # requests are not worth a log line each

    # -- plumbing ------------------------------------------------------------

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError as exc:
            raise BadRequest(f"invalid JSON in request body: {exc}") from None
        if not isinstance(body, dict):
            raise BadRequest("request body must be a JSON object")
        return body

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            if url.path in ("/healthz", "/readyz", "/livez", "/metrics"):
                data = b"ok"
                if url.path == "/metrics":
                    data = (self.server.metrics() if self.server.metrics else "").encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            if method == "GET" and (doc := discovery(url.path.rstrip("/"))) is not None:
                self._send(200, doc)
                return
            route = parse_path(url.path)
            if route is None:
                raise NotFound("the server could not find the requested resource", url.path)
            self._serve(method, route, query)
        except APIError as exc:
            self._send(exc.code, exc.status())
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _serve(self, method: str, r: Route, query: dict[str, str]) -> None:
        reg = self.server.registry
        kind = r.kind.kind
        if method == "GET" and r.name is None:
            if query.get("watch") in ("true", "1"):
                self._watch(r, query)
                return
            items, rv = reg.list(kind, r.namespace, query.get("labelSelector"), query.get("fieldSelector"))
            self._send(
                200,
                {
                    "kind": f"{kind}List",
                    "apiVersion": r.kind.api_version,
                    "metadata": {"resourceVersion": str(rv)},
                    "items": items,
                },
            )
        elif method == "GET":
            self._send(200, reg.get(kind, r.namespace, r.name or ""))
        elif method == "POST" and r.name is None:
            self._send(201, reg.create(self._body(), r.namespace, dry_run=query.get("dryRun") == "All"))
        elif method == "PUT" and r.name:
            body = self._body()
            if body.get("metadata", {}).get("name") != r.name:
                raise BadRequest("the name of the object does not match the name on the URL")
            self._send(
                200, reg.update(body, r.namespace, r.subresource, dry_run=query.get("dryRun") == "All")
            )
        elif method == "PATCH" and r.name:
            self._send(200, reg.patch(kind, r.namespace, r.name, self._body(), r.subresource))
        elif method == "DELETE" and r.name:
            grace = query.get("gracePeriodSeconds")
            body = self._body() if self.headers.get("Content-Length") else {}
            if grace is None and "gracePeriodSeconds" in body:
                grace = str(body["gracePeriodSeconds"])
            self._send(200, reg.delete(kind, r.namespace, r.name, int(grace) if grace is not None else None))
        else:
            self.send_response(405)
            self.send_header("Content-Length", "0")
            self.end_headers()

    def _watch(self, r: Route, query: dict[str, str]) -> None:
        """A chunked stream of watch events, one JSON object a line."""
        reg = self.server.registry
        kind = r.kind.kind
        where = _filter(query.get("labelSelector"), query.get("fieldSelector"))
        rv_text = query.get("resourceVersion", "")
        timeout = float(query.get("timeoutSeconds") or 0) or None
        namespace = r.namespace if r.kind.namespaced else None
        initial: list[Event] = []
        if rv_text in ("", "0"):
            # No version: start with the current state as ADDED events.
            items, rv = reg.list(kind, namespace, query.get("labelSelector"), query.get("fieldSelector"))
            initial = [Event("ADDED", o, rv) for o in items]
        else:
            rv = int(rv_text)
            reg.store.events_since(rv, timeout=0)  # raises Gone before any byte is sent
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def match(ev: Event) -> bool:
            meta = ev.object["metadata"]
            return (
                ev.kind == kind
                and (namespace is None or meta.get("namespace") == namespace)
                and (where is None or where(ev.object))
            )

        stop = self.server.stopping
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            for ev in initial:
                self._chunk(ev.to_json())
            while not stop.is_set():
                if deadline is not None and time.monotonic() >= deadline:
                    break
                try:
                    events = reg.store.events_since(rv, timeout=WATCH_POLL)
                except APIError as exc:
                    self._chunk({"type": "ERROR", "object": exc.status()})
                    break
                for ev in events:
                    rv = ev.rv
                    if match(ev):
                        self._chunk(ev.to_json())
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True

    def _chunk(self, doc: dict[str, Any]) -> None:
        data = json.dumps(doc).encode() + b"\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")


class APIHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        registry: Registry,
        metrics: Callable[[], str] | None = None,
        sock: socket.socket | None = None,
    ) -> None:
        """Serve on `address`, or on `sock`: a listening socket made
        elsewhere (inside the lab's router namespace, where nodes reach the
        control plane over the lab network)."""
        if sock is None:
            super().__init__(address, Handler)
        else:
            super().__init__(sock.getsockname(), Handler, bind_and_activate=False)
            self.socket.close()
            self.socket = sock
        self.registry = registry
        self.metrics = metrics
        self.stopping = threading.Event()

    def shutdown(self) -> None:
        self.stopping.set()
        super().shutdown()
