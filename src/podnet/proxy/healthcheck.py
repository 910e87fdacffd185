"""The node agent's health endpoints, as kube-proxy serves them: its own
`/healthz` (port 10256), and one `healthCheckNodePort` per LoadBalancer
Service with externalTrafficPolicy Local, answering 200 with the number
of local endpoints when there are some and 503 when there are none. The
cloud load balancer uses them to pick the nodes it sends traffic to."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from podnet.lab import netns as netns_mod

PROXY_HEALTHZ_PORT = 10256


def service_health(namespace: str, name: str, local_endpoints: int) -> tuple[int, dict[str, Any]]:
    """The healthCheckNodePort answer (code, body), as kube-proxy gives it."""
    body = {
        "service": {"namespace": namespace, "name": name},
        "localEndpoints": local_endpoints,
        "serviceProxyHealthy": True,
    }
    return (200 if local_endpoints > 0 else 503), body


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, sock: socket.socket, answer: Any) -> None:
        super().__init__(sock.getsockname(), _Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.answer = answer


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        code, body = self.server.answer(self.path)
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _listen(netns: str | None, port: int, host: bool) -> socket.socket:
    if not netns and not host:
        raise ValueError("refusing to listen in the current network namespace without host=True")
    ctx = netns_mod.entered(netns) if netns else contextlib.nullcontext()
    with ctx:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", port))
    sock.listen(64)
    return sock


class HealthServers:
    """The agent's listeners in its node's namespace, one thread each."""

    def __init__(self, netns: str | None, node: str, *, host: bool = False) -> None:
        self.netns = netns
        self.host = host
        self.node = node
        self.servers: dict[int, _Server] = {}
        self.services: dict[int, tuple[str, str, int]] = {}  # port -> (ns, name, local endpoints)
        self.last_sync = 0.0
        self.lock = threading.Lock()

    def start(self) -> None:
        self._open(PROXY_HEALTHZ_PORT, self._proxy_answer)

    def _proxy_answer(self, path: str) -> tuple[int, dict[str, Any]]:
        body = {"lastUpdated": self.last_sync, "currentTime": time.time(), "nodeName": self.node}
        return (200 if self.last_sync else 503), body

    def _open(self, port: int, answer: Any) -> None:
        server = _Server(_listen(self.netns, port, self.host), answer)
        threading.Thread(target=server.serve_forever, name=f"health-{self.node}-{port}", daemon=True).start()
        self.servers[port] = server

    def set_services(self, wanted: dict[int, tuple[str, str, int]]) -> None:
        """Open, update and close the healthCheckNodePort listeners."""
        with self.lock:
            self.services = dict(wanted)
        for port in set(self.servers) - set(wanted) - {PROXY_HEALTHZ_PORT}:
            server = self.servers.pop(port)
            # shutdown() waits for the serving thread's next poll: not on the sync path
            threading.Thread(target=lambda s=server: (s.shutdown(), s.server_close()), daemon=True).start()
        for port in set(wanted) - set(self.servers):

            def answer(path: str, port: int = port) -> tuple[int, dict[str, Any]]:
                with self.lock:
                    ns, name, count = self.services.get(port, ("", "", 0))
                return service_health(ns, name, count)

            # A port taken by something else on the node: the cloud sees it failing.
            with contextlib.suppress(OSError):
                self._open(port, answer)

    def stop(self) -> None:
        for server in self.servers.values():
            server.shutdown()
            server.server_close()
        self.servers.clear()
