"""Readiness probe checks, run by the lab's kubelet from a node's namespace.

Three checks with Kubernetes' meaning of success (httpGet: a status in
200-399; tcpSocket: the connection opens; exec: exit status 0) and a pure
`ProbeState` applying successThreshold / failureThreshold.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import ssl
import subprocess
from collections.abc import Mapping

from podnet.lab import netns as netns_mod

USER_AGENT = "kube-probe/podnet"


def _socket(host: str, netns: str | None) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if netns is None:
        return socket.socket(family, socket.SOCK_STREAM)
    with netns_mod.entered(netns):
        return socket.socket(family, socket.SOCK_STREAM)


def _connect(netns: str | None, host: str, port: int, timeout: float) -> socket.socket:
    sock = _socket(host, netns)
    try:
        sock.settimeout(timeout)
        sock.connect((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


class _NetnsHTTPConnection(http.client.HTTPConnection):
    def __init__(self, netns: str | None, host: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._netns = netns

    def connect(self) -> None:
        self.sock = _connect(self._netns, self.host, self.port, float(self.timeout or 1.0))


class _NetnsHTTPSConnection(_NetnsHTTPConnection):
    def connect(self) -> None:
        raw = _connect(self._netns, self.host, self.port, float(self.timeout or 1.0))
        # The kubelet does not verify the certificate of an HTTPS probe.
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.sock = ctx.wrap_socket(raw, server_hostname=None)


def http_get(
    netns: str | None,
    host: str,
    port: int,
    path: str,
    timeout: float,
    scheme: str = "HTTP",
    headers: Mapping[str, str] | None = None,
) -> bool:
    """An httpGet probe: success is a response status in 200-399 within
    `timeout` seconds (redirects count as success and are not followed)."""
    if scheme.upper() not in ("HTTP", "HTTPS"):
        raise ValueError(f"httpGet probe: unknown scheme {scheme!r}")
    conn_cls = _NetnsHTTPSConnection if scheme.upper() == "HTTPS" else _NetnsHTTPConnection
    conn = conn_cls(netns, host, port, timeout)
    sent = {"user-agent": USER_AGENT, "accept": "*/*"}
    for k, v in (headers or {}).items():
        sent[k.lower()] = v
    target = path if path.startswith("/") else "/" + path
    try:
        conn.putrequest("GET", target, skip_host="host" in sent, skip_accept_encoding=True)
        for k, v in sent.items():
            conn.putheader(k, v)
        conn.endheaders()
        resp = conn.getresponse()
        status = resp.status
        resp.read(10 * 1024)  # as the kubelet, read at most 10 KiB of body
        return 200 <= status < 400
    except (OSError, http.client.HTTPException, ValueError):
        return False
    finally:
        conn.close()


def tcp_socket(netns: str | None, host: str, port: int, timeout: float) -> bool:
    """A tcpSocket probe: success is a TCP connection opened in time."""
    try:
        sock = _connect(netns, host, port, timeout)
    except OSError:
        return False
    sock.close()
    return True


def exec_command(netns: str | None, command: list[str], timeout: float) -> bool:
    """An exec probe: runs `ip netns exec NETNS command...` (or the command
    itself when netns is None); success is exit status 0 within `timeout`.
    On timeout the whole process group is killed."""
    if not command:
        raise ValueError("exec probe: empty command")
    argv = ["ip", "netns", "exec", netns, *command] if netns is not None else list(command)
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError:
        return False
    try:
        return proc.wait(timeout=timeout) == 0
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return False


class ProbeState:
    """Kubernetes readiness semantics: not ready at first; ready after
    `success_threshold` consecutive successes; not ready again after
    `failure_threshold` consecutive failures."""

    def __init__(self, success_threshold: int = 1, failure_threshold: int = 3) -> None:
        if success_threshold < 1:
            raise ValueError(f"successThreshold must be at least 1, got {success_threshold}")
        if failure_threshold < 1:
            raise ValueError(f"failureThreshold must be at least 1, got {failure_threshold}")
        self.success_threshold = success_threshold
        self.failure_threshold = failure_threshold
        self.ready = False
        self._last: bool | None = None
        self._run = 0

    def observe(self, success: bool) -> bool | None:
        """Record one probe result; return the new Ready value if it
        changed, else None."""
        success = bool(success)
        if self._last is success:
            self._run += 1
        else:
            self._last, self._run = success, 1
        if success and not self.ready and self._run >= self.success_threshold:
            self.ready = True
            return True
        if not success and self.ready and self._run >= self.failure_threshold:
            self.ready = False
            return False
        return None

    def __repr__(self) -> str:
        return (
            f"ProbeState(ready={self.ready}, success_threshold={self.success_threshold}, "
            f"failure_threshold={self.failure_threshold}, last={self._last}, run={self._run})"
        )
