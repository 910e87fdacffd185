"""The lab's API over HTTP, with the Kubernetes REST paths and JSON: list,
get, create, update, patch, delete and `?watch=true` event streams, bound
to loopback. Thin: every decision is in the Registry."""

from __future__ import annotations

import contextlib
import json
import logging
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from podnet.api.errors import APIError, BadRequest, NotFound
from podnet.api.kinds import BY_PLURAL, Kind
from podnet.server import discovery as discovery_docs
from podnet.server import kubeapi, tables, tls
from podnet.server.registry import Registry, _filter
from podnet.store.store import Event

WATCH_POLL = 1.0
BOOKMARK_INTERVAL = 5.0  # seconds of quiet before a watch that allows bookmarks gets one
TLS_HANDSHAKE_TIMEOUT = 10.0
log = logging.getLogger("podnet.apiserver")


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
    if kind is None and rest[0] == "events" and (group, version) == ("", "v1"):
        kind = kubeapi.EVENT_KIND
    if kind is None or kind.group != group or kind.version != version:
        return None
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    return Route(kind, namespace, name, sub)


def discovery(path: str, accept: str = "application/json") -> dict[str, Any] | None:
    """The discovery or OpenAPI document at `path` (server/discovery.py)."""
    found = discovery_docs.document(path, accept)
    return found[1] if found else None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: APIHTTPServer
    user: tuple[str, list[str]] | None = None  # (name, groups) of a client certificate
    warnings: list[str] = []  # for Warning headers (fieldValidation=Warn); set per request

    def log_message(self, format: str, *args: Any) -> None:
        pass  # requests are not worth a log line each

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without this, Nagle's
        # algorithm holds the body for the client's delayed ACK (~40 ms).
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # -- plumbing ------------------------------------------------------------

    def _send(self, code: int, body: dict[str, Any], content_type: str = "application/json") -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        for warning in self.warnings:
            self.send_header("Warning", f"299 - {json.dumps(warning)}")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        kubeapi.check_json(self.headers.get("Content-Type"))
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError as exc:
            raise BadRequest(f"invalid JSON in request body: {exc}") from None
        if not isinstance(body, dict):
            raise BadRequest("request body must be a JSON object")
        return body

    def _raw(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _authenticate(self) -> None:
        """A TLS connection must present a client certificate the CA signed
        (its CN is the user); plain HTTP is only served where the server
        allows it (the CLI's loopback listener, the lab network's)."""
        if isinstance(self.connection, ssl.SSLSocket):
            self.user = tls.user_of(self.connection.getpeercert())
            if self.user is None:
                raise kubeapi.Unauthorized()

    def _dispatch(self, method: str) -> None:
        self.warnings = []
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            self._authenticate()
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
            if method == "GET" and (
                found := discovery_docs.document(url.path.rstrip("/"), self.headers.get("Accept") or "")
            ):
                self._send(200, found[1], found[0])
                return
            route = parse_path(url.path)
            if route is None:
                raise NotFound("the server could not find the requested resource", url.path)
            self._serve(method, route, query)
        except APIError as exc:
            self._send(exc.code, exc.status())
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass
        except Exception as exc:  # a bug: say so as the API server does, and keep serving
            log.exception("%s %s failed", method, self.path)
            with contextlib.suppress(OSError):
                self._send(500, APIError(f"Internal error occurred: {exc!r}").status())

    def _serve(self, method: str, r: Route, query: dict[str, str]) -> None:
        reg = self.server.registry
        kind = r.kind.kind
        accept = self.headers.get("Accept") or ""
        include = query.get("includeObject", "Metadata")
        dry_run = query.get("dryRun") == "All"
        if r.kind is kubeapi.EVENT_KIND and method != "GET":
            raise kubeapi.not_writable(r.kind)
        if r.subresource == "scale" and r.name:
            ctype = kubeapi.media_type(self.headers.get("Content-Type"))
            body = kubeapi.parse_body(self._raw(), ctype) if method in ("PUT", "PATCH") else None
            self._send(200, kubeapi.scale(reg, method, r.kind, r.namespace, r.name, body, ctype, query))
        elif method == "GET" and r.name is None:
            if query.get("watch") in ("true", "1"):
                self._watch(r, query)
                return
            if r.kind is kubeapi.EVENT_KIND:
                where = _filter(query.get("labelSelector"), query.get("fieldSelector"))
                items, rv = reg.store.list(kind, r.namespace, where)
            else:
                items, rv = reg.list(
                    kind, r.namespace, query.get("labelSelector"), query.get("fieldSelector")
                )
            if tables.wants_table(accept):
                self._send(200, tables.table(kind, items, str(rv), include), tables.TABLE_CONTENT_TYPE)
                return
            for item in items:
                item.setdefault("apiVersion", r.kind.api_version)
                item.setdefault("kind", kind)
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
            if r.kind is kubeapi.EVENT_KIND:
                raise NotFound("events", r.name or "")
            obj = reg.get(kind, r.namespace, r.name or "")
            if tables.wants_table(accept):
                obj_rv = str(obj["metadata"].get("resourceVersion", ""))
                self._send(200, tables.table(kind, [obj], obj_rv, include), tables.TABLE_CONTENT_TYPE)
                return
            self._send(200, obj)
        elif method == "POST" and r.name is None:
            body, self.warnings = kubeapi.validate_fields(self._body(), query, r.kind)
            self._send(201, reg.create(body, r.namespace, dry_run=dry_run))
        elif method == "PUT" and r.name:
            body, self.warnings = kubeapi.validate_fields(self._body(), query, r.kind)
            if body.get("metadata", {}).get("name") != r.name:
                raise BadRequest("the name of the object does not match the name on the URL")
            self._send(200, reg.update(body, r.namespace, r.subresource, dry_run=dry_run))
        elif method == "PATCH" and r.name:
            ctype = kubeapi.media_type(self.headers.get("Content-Type")) or kubeapi.MERGE
            body = kubeapi.parse_body(self._raw(), ctype)
            if ctype == kubeapi.APPLY:
                body, self.warnings = kubeapi.validate_fields(body, query, r.kind)
            code, obj = kubeapi.patch(reg, r.kind, r.namespace, r.name, body, ctype, query, r.subresource)
            self._send(code, obj)
        elif method == "DELETE" and r.name:
            raw = self._raw()
            kubeapi.check_json(self.headers.get("Content-Type"))
            body = kubeapi.parse_body(raw, "application/json") if raw else {}
            self._send(200, kubeapi.delete(reg, r.kind, r.namespace, r.name, body, query))
        else:
            raise kubeapi.MethodNotAllowed(
                f"the server does not allow this method on the requested resource ({r.kind.plural})"
            )

    def _watch(self, r: Route, query: dict[str, str]) -> None:
        """A chunked stream of watch events, one JSON object a line. With
        `allowWatchBookmarks`, a BOOKMARK after BOOKMARK_INTERVAL of quiet;
        with `sendInitialEvents`, the current state as ADDED events then a
        bookmark marking their end; under a Table Accept header, each
        object as a one-row Table (column definitions in the first only)."""
        reg = self.server.registry
        kind = r.kind.kind
        where = _filter(query.get("labelSelector"), query.get("fieldSelector"))
        rv_text = query.get("resourceVersion", "")
        timeout = float(query.get("timeoutSeconds") or 0) or None
        namespace = r.namespace if r.kind.namespaced else None
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
        initial_events = query.get("sendInitialEvents") in ("true", "1")
        as_table = tables.wants_table(self.headers.get("Accept") or "")
        include = query.get("includeObject", "Metadata")
        initial: list[Event] = []
        if rv_text in ("", "0") or initial_events:
            # No version: start with the current state as ADDED events.
            items, rv = reg.store.list(kind, namespace, where)
            initial = [Event("ADDED", o, rv) for o in items]
        else:
            try:
                rv = int(rv_text)
            except ValueError:
                raise BadRequest(f"invalid resourceVersion {rv_text!r}") from None
            reg.store.events_since(rv, timeout=0)  # raises Gone before any byte is sent
        self.send_response(200)
        self.send_header("Content-Type", tables.TABLE_CONTENT_TYPE if as_table else "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def match(ev: Event) -> bool:
            meta = ev.object["metadata"]
            return (
                ev.kind == kind
                and (namespace is None or meta.get("namespace") == namespace)
                and (where is None or where(ev.object))
            )

        headers = [True]

        def send(ev: Event) -> None:
            obj: dict[str, Any] = ev.object
            if as_table:
                obj = tables.table(kind, [obj], str(ev.rv), include, headers=headers[0])
                headers[0] = False
            self._chunk({"type": ev.type, "object": obj})

        def bookmark(at: int, end_of_initial: bool = False) -> None:
            meta: dict[str, Any] = {"resourceVersion": str(at)}
            if end_of_initial:
                meta["annotations"] = {"k8s.io/initial-events-end": "true"}
            obj = {"kind": kind, "apiVersion": r.kind.api_version, "metadata": meta}
            self._chunk({"type": "BOOKMARK", "object": obj})

        stop = self.server.stopping
        deadline = None if timeout is None else time.monotonic() + timeout
        quiet_since = time.monotonic()
        try:
            for ev in initial:
                send(ev)
            if initial_events and bookmarks:
                bookmark(rv, end_of_initial=True)
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
                        send(ev)
                        quiet_since = time.monotonic()
                if not events and self._client_gone():
                    break  # a watcher that left: its thread ends now, not at its next event
                if bookmarks and not as_table and time.monotonic() - quiet_since >= BOOKMARK_INTERVAL:
                    bookmark(rv)
                    quiet_since = time.monotonic()
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass
        self.close_connection = True

    def _client_gone(self) -> bool:
        """Whether the peer of this (idle) watch has closed its end."""
        sock = self.connection
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            if not readable:
                return False
            if isinstance(sock, ssl.SSLSocket):
                return sock.pending() == 0 and sock.recv(1) == b""
            return sock.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError, ssl.SSLError):
            return True

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
        tls_context: ssl.SSLContext | None = None,
        plain: bool = True,
    ) -> None:
        """Serve on `address`, or on `sock`: a listening socket made
        elsewhere (inside the lab's router namespace, where nodes reach the
        control plane over the lab network). With `tls_context`, a
        connection whose first byte starts a TLS handshake is served over
        TLS (client certificates required, server/tls.py); plain HTTP on the
        same port too when `plain`, else answered with a 400."""
        if sock is None:
            super().__init__(address, Handler)
        else:
            super().__init__(sock.getsockname(), Handler, bind_and_activate=False)
            self.socket.close()
            self.socket = sock
        self.registry = registry
        self.metrics = metrics
        self.stopping = threading.Event()
        self.tls_context = tls_context
        self.plain = plain

    def finish_request(self, request: Any, client_address: Any) -> None:
        """In the request's own thread: TLS or plain HTTP, told apart by the
        first byte (0x16: a TLS handshake record)."""
        if self.tls_context is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(TLS_HANDSHAKE_TIMEOUT)
        try:
            first = request.recv(1, socket.MSG_PEEK)
        except OSError:
            return
        if first == b"\x16":
            try:
                conn = self.tls_context.wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError):
                return
            conn.settimeout(None)
            try:
                super().finish_request(conn, client_address)
            finally:
                conn.close()
        elif first and self.plain:
            request.settimeout(None)
            super().finish_request(request, client_address)
        elif first:
            with contextlib.suppress(OSError):
                request.sendall(
                    b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
                    b"Client sent an HTTP request to an HTTPS server.\n"
                )

    def shutdown(self) -> None:
        self.stopping.set()
        super().shutdown()
