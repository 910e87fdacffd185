"""The built-in workload that answers for every pod in the lab.

Like the Kubernetes e2e image `agnhost netexec`, each pod answers:

* HTTP/1.1 (keep-alive, parsed and written with h11):
  ``GET /hostname`` -> the pod name, ``GET /clientip`` -> "ip:port" of the
  caller as the pod's socket sees it, ``GET /healthz`` -> 200 "ok" or 503
  "unhealthy", ``/healthz/fail`` and ``/healthz/pass`` (GET or POST) flip the
  pod's health, and any other path -> a JSON echo of the request.
* UDP: datagram ``hostname`` -> pod name, ``clientip`` -> "ip:port",
  anything else is echoed back.

One asyncio event loop in one background thread serves every pod, so a pod
costs a few sockets and small Python objects, never a thread or a process.
Listening sockets are created inside the pod's network namespace (setns in
the loop thread around ``socket()`` only); once created, a socket belongs to
that namespace whatever thread later uses it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import json
import socket
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, TypeVar, cast

import h11

from podnet.lab import netns as netns_mod

T = TypeVar("T")

MAX_BODY = 1 << 20  # request bodies larger than this get 413 and a close
MAX_INCOMPLETE_EVENT = 64 * 1024  # request line + headers
UDP_MAX = 65535


def format_addr(peer: Any) -> str:
    """Format a socket address as "ip:port", with brackets for IPv6 (as Go's
    net.JoinHostPort, which agnhost uses)."""
    if not isinstance(peer, tuple) or len(peer) < 2:
        return str(peer)
    host, port = str(peer[0]), int(peer[1])
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


@dataclass(eq=False)
class _Pod:
    key: str
    name: str
    healthy: bool = True
    closed: bool = False
    servers: list[asyncio.Server] = field(default_factory=list)
    udp: list[asyncio.DatagramTransport] = field(default_factory=list)
    conns: set[_HttpProtocol] = field(default_factory=set)
    ports: list[tuple[int, str]] = field(default_factory=list)


class _HttpProtocol(asyncio.Protocol):
    """One accepted TCP connection: an h11 server connection driven by
    data_received (no task, no stream objects: cheap per connection)."""

    def __init__(self, pod: _Pod, local_port: int) -> None:
        self.pod = pod
        self.local_port = local_port
        self.transport: asyncio.Transport | None = None
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_INCOMPLETE_EVENT)
        self.request: h11.Request | None = None
        self.body_len = 0
        self.client = "?"
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # asyncio callbacks -------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.client = format_addr(transport.get_extra_info("peername"))
        if self.pod.closed:
            # Accepted just before the pod was removed: drop it.
            transport.abort()
            return
        self.pod.conns.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.pod.conns.discard(self)
        self.transport = None
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        try:
            self.conn.receive_data(data)
            self._drain_events()
        except h11.RemoteProtocolError as exc:
            # Not HTTP (a raw TCP client) or broken HTTP: answer 400 if we
            # still can, then close. Never let it escape into the loop.
            self._fail(exc.error_status_hint)
        except Exception:
            self._fail(500)

    def eof_received(self) -> bool | None:
        try:
            self.conn.receive_data(b"")
            self._drain_events()
        except Exception:
            pass  # a broken request at EOF: nothing left to answer
        # Let asyncio close our side once the client has half-closed.
        return None

    # HTTP --------------------------------------------------------------

    def _drain_events(self) -> None:
        while self.transport is not None:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                return
            if event is h11.PAUSED:
                if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
                    self.conn.start_next_cycle()
                    continue
                return
            if isinstance(event, h11.Request):
                self.request = event
                self.body_len = 0
                declared = dict(event.headers).get(b"content-length", b"0")
                if declared.isdigit() and int(declared) > MAX_BODY:
                    self._fail(413)
                    return
            elif isinstance(event, h11.Data):
                self.body_len += len(event.data)
                if self.body_len > MAX_BODY:
                    self._fail(413)
                    return
            elif isinstance(event, h11.EndOfMessage):
                if self.request is not None:
                    self._respond(self.request)
                    self.request = None
                if self.conn.our_state is h11.MUST_CLOSE or self.conn.their_state is h11.MUST_CLOSE:
                    self._close()
                    return
                if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
                    self.conn.start_next_cycle()
            elif isinstance(event, h11.ConnectionClosed):
                self._close()
                return

    def _respond(self, req: h11.Request) -> None:
        status, ctype, body = self._route(req)
        self._send(status, ctype, body, head=req.method == b"HEAD")

    def _route(self, req: h11.Request) -> tuple[int, str, bytes]:
        method = req.method.decode("ascii", "replace")
        target = req.target.decode("utf-8", "replace")
        path = target.split("?", 1)[0]
        pod = self.pod
        if path == "/hostname":
            return 200, "text/plain", pod.name.encode()
        if path == "/clientip":
            return 200, "text/plain", self.client.encode()
        if path == "/healthz":
            if pod.healthy:
                return 200, "text/plain", b"ok"
            return 503, "text/plain", b"unhealthy"
        if path in ("/healthz/fail", "/healthz/pass") and method in ("GET", "POST"):
            pod.healthy = path.endswith("/pass")
            return 200, "text/plain", b"healthz now " + (b"passing" if pod.healthy else b"failing")
        headers: dict[str, str] = {}
        host = ""
        for name, value in req.headers:
            k = name.decode("latin-1")
            v = value.decode("latin-1")
            headers[k] = f"{headers[k]}, {v}" if k in headers else v
            if k == "host":
                host = v
        doc = {
            "pod": pod.name,
            "client": self.client,
            "port": self.local_port,
            "method": method,
            "path": target,
            "host": host,
            "headers": headers,
        }
        return 200, "application/json", json.dumps(doc).encode() + b"\n"

    def _send(self, status: int, ctype: str, body: bytes, head: bool = False) -> None:
        if self.transport is None:
            return
        resp = h11.Response(
            status_code=status,
            headers=[("content-type", ctype), ("content-length", str(len(body)))],
            reason=_reason(status),
        )
        out = self.conn.send(resp) or b""
        if not head:
            out += self.conn.send(h11.Data(data=body)) or b""
        out += self.conn.send(h11.EndOfMessage()) or b""
        self.transport.write(out)

    def _fail(self, status: int) -> None:
        if self.transport is None:
            return
        if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            with contextlib.suppress(h11.LocalProtocolError):
                body = f"{status} {_reason(status).decode()}\n".encode()
                resp = h11.Response(
                    status_code=status,
                    headers=[
                        ("content-type", "text/plain"),
                        ("content-length", str(len(body))),
                        ("connection", "close"),
                    ],
                    reason=_reason(status),
                )
                self.transport.write(self.conn.send(resp) or b"")
                self.transport.write(self.conn.send(h11.Data(data=body)) or b"")
                self.transport.write(self.conn.send(h11.EndOfMessage()) or b"")
        self._close()

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, pod: _Pod) -> None:
        self.pod = pod
        self.transport: asyncio.DatagramTransport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector loop's datagram transport does not subclass
        # asyncio.DatagramTransport in 3.11; it has the same methods.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.closed.done():
            self.closed.set_result(None)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.transport is None:
            return
        word = data.strip()
        if word == b"hostname":
            reply = self.pod.name.encode()
        elif word == b"clientip":
            reply = format_addr(addr).encode()
        else:
            reply = data
        self.transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors for earlier replies (the client went away): ignore.
        pass


@contextlib.contextmanager
def _in_netns(name: str | None) -> Iterator[None]:
    if name is None:
        yield
    else:
        with netns_mod.entered(name):
            yield


def _open_sockets(
    pod_name: str, netns: str | None, bind: str, ports: list[tuple[int, str]]
) -> list[tuple[socket.socket, str]]:
    """Create and bind every socket of one pod, all or nothing. Runs in the
    loop thread, which sits inside `netns` only for the duration."""
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    opened: list[tuple[socket.socket, str]] = []
    try:
        for port, proto in ports:
            p = proto.upper()
            if p == "SCTP":
                continue  # no SCTP sockets in this kernel
            if p not in ("TCP", "UDP"):
                raise ValueError(f"pod {pod_name}: unknown protocol {proto!r} for port {port}")
            try:
                with _in_netns(netns):
                    kind = socket.SOCK_STREAM if p == "TCP" else socket.SOCK_DGRAM
                    sock = socket.socket(family, kind)
            except OSError as exc:
                raise OSError(
                    exc.errno, f"pod {pod_name}: cannot open {p} socket in netns {netns}: {exc.strerror}"
                ) from exc
            opened.append((sock, p))
            try:
                sock.setblocking(False)
                if p == "TCP":
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((bind, port))
                if p == "TCP":
                    sock.listen(128)
            except OSError as exc:
                raise OSError(
                    exc.errno, f"pod {pod_name}: cannot bind {p} {bind}:{port}: {exc.strerror}"
                ) from exc
    except BaseException:
        for sock, _ in opened:
            sock.close()
        raise
    return opened


class Responder:
    """Serves the built-in workload for many pods from one loop thread.

    Every public method may be called from any thread except the loop thread
    itself; each blocks until done and raises what went wrong.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pods: dict[str, _Pod] = {}
        self._lock = threading.Lock()

    # lifecycle -----------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            if self._thread is not None:
                raise RuntimeError("Responder already started")
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                try:
                    loop.run_forever()
                finally:
                    loop.close()

            thread = threading.Thread(target=run, name="podnet-responder", daemon=True)
            thread.start()
            ready.wait()
            self._loop, self._thread = loop, thread

    def stop(self) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            if loop is None or thread is None:
                return
            try:
                self._call(self._close_all())
            finally:
                loop.call_soon_threadsafe(loop.stop)
                thread.join()
                self._loop = self._thread = None

    def __enter__(self) -> Responder:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # pods ----------------------------------------------------------------

    def add_pod(
        self,
        key: str,
        pod_name: str,
        netns: str | None,
        ports: list[tuple[int, str]],
        bind: str = "0.0.0.0",
    ) -> None:
        """Open and serve the listening sockets of one pod inside `netns`
        (None: the caller's current namespace). All or nothing: on failure
        nothing stays open and OSError names the pod and the port."""
        self._call(self._add_pod(key, pod_name, netns, list(ports), bind))

    def remove_pod(self, key: str) -> None:
        """Close the pod's listening sockets and its open connections.
        Unknown keys are ignored."""
        self._call(self._remove_pod(key))

    def set_healthy(self, key: str, healthy: bool) -> None:
        self._pod(key).healthy = bool(healthy)

    def is_healthy(self, key: str) -> bool:
        return self._pod(key).healthy

    def bound_ports(self, key: str) -> list[tuple[int, str]]:
        """The (port, protocol) pairs actually bound, in the order given to
        add_pod, SCTP left out (port 0 shows the port the kernel chose)."""
        return list(self._pod(key).ports)

    def pods(self) -> list[str]:
        return sorted(self._pods)

    def connection_count(self, key: str) -> int:
        return len(self._pod(key).conns)

    # internals -----------------------------------------------------------

    def _pod(self, key: str) -> _Pod:
        try:
            return self._pods[key]
        except KeyError:
            raise KeyError(f"no pod {key!r} in the responder") from None

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        loop = self._loop
        if loop is None:
            coro.close()
            raise RuntimeError("Responder is not running")
        if self._thread is threading.current_thread():
            coro.close()
            raise RuntimeError("Responder methods cannot be called from its own loop thread")
        fut: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(coro, loop)
        return fut.result(timeout)

    async def _add_pod(
        self, key: str, pod_name: str, netns: str | None, ports: list[tuple[int, str]], bind: str
    ) -> None:
        if key in self._pods:
            raise ValueError(f"pod {key!r} is already served")
        opened = _open_sockets(pod_name, netns, bind, ports)
        pod = _Pod(key=key, name=pod_name)
        loop = asyncio.get_running_loop()
        try:
            for sock, proto in opened:
                port = int(sock.getsockname()[1])
                pod.ports.append((port, proto))
                if proto == "TCP":
                    server = await loop.create_server(
                        functools.partial(_HttpProtocol, pod, port), sock=sock, start_serving=True
                    )
                    pod.servers.append(server)
                else:
                    transport, _ = await loop.create_datagram_endpoint(lambda: _UdpProtocol(pod), sock=sock)
                    pod.udp.append(transport)
        except BaseException:
            await self._close_pod(pod)
            for sock, _ in opened:
                sock.close()
            raise
        self._pods[key] = pod

    async def _remove_pod(self, key: str) -> None:
        pod = self._pods.pop(key, None)
        if pod is not None:
            await self._close_pod(pod)

    async def _close_pod(self, pod: _Pod) -> None:
        pod.closed = True
        waits: list[asyncio.Future[None]] = []
        for server in pod.servers:
            server.close()  # closes the listening socket now
        for transport in pod.udp:
            proto = transport.get_protocol()
            if isinstance(proto, _UdpProtocol):
                waits.append(proto.closed)
            transport.close()
        for conn in list(pod.conns):
            waits.append(conn.closed)
            if conn.transport is not None:
                conn.transport.abort()
        pod.servers.clear()
        pod.udp.clear()
        if waits:
            await asyncio.wait(waits, timeout=5.0)

    async def _close_all(self) -> None:
        for key in list(self._pods):
            await self._remove_pod(key)
