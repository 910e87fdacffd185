"""The probe client: "who answers, and who do they think called?".

Every attempt is a new connection (so a new source port, so a new conntrack
entry and a fresh load-balancing choice). Over TCP it sends one HTTP request
that the built-in workload answers with its JSON echo; over UDP it sends
``hostname`` then ``clientip`` from one socket. With `netns`, the socket is
created inside that namespace; the rest runs from the calling thread.
"""

from __future__ import annotations

import errno
import json
import os
import re
import socket
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import h11

from podnet.lab import netns as netns_mod

PROBE_PATH = "/probe"
MAX_REPLY = 1 << 20
_ADDR_RE = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[0-9.]+):\d+$")


@dataclass
class ProbeResult:
    ok: bool
    pod: str | None
    client: str | None
    error: str | None
    ms: float

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "pod": self.pod, "client": self.client, "error": self.error, "ms": self.ms}


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timeout"
    if isinstance(exc, OSError) and exc.errno == errno.ECONNREFUSED:
        return "refused"
    if isinstance(exc, OSError) and exc.errno is not None:
        return os.strerror(exc.errno).lower()
    return str(exc) or type(exc).__name__


def _family(ip: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


def _host_header(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _new_socket(family: socket.AddressFamily, kind: socket.SocketKind, netns: str | None) -> socket.socket:
    if netns is None:
        return socket.socket(family, kind)
    with netns_mod.entered(netns):
        return socket.socket(family, kind)


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("timed out")
    return left


def _tcp_attempt(ip: str, port: int, timeout: float, netns: str | None) -> tuple[str | None, str | None]:
    """One HTTP exchange on a new connection. Returns (pod, client); both
    None when the peer answered something that is not podnet's JSON."""
    deadline = time.monotonic() + timeout
    with _new_socket(_family(ip), socket.SOCK_STREAM, netns) as sock:
        sock.settimeout(_remaining(deadline))
        sock.connect((ip, port))
        conn = h11.Connection(h11.CLIENT)
        req = h11.Request(
            method="GET",
            target=PROBE_PATH,
            headers=[
                ("host", _host_header(ip, port)),
                ("user-agent", "podnet-probe"),
                ("connection", "close"),
            ],
        )
        sock.sendall((conn.send(req) or b"") + (conn.send(h11.EndOfMessage()) or b""))
        received = 0
        body = bytearray()
        status: int | None = None
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError:
                return None, None  # answered, but not HTTP
            if event is h11.NEED_DATA:
                sock.settimeout(_remaining(deadline))
                chunk = sock.recv(65536)
                received += len(chunk)
                if not chunk and received == 0:
                    raise ConnectionError("closed without reply")
                if received > MAX_REPLY:
                    break
                try:
                    conn.receive_data(chunk)
                except h11.RemoteProtocolError:
                    return None, None
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed) or event is h11.PAUSED:
                break
    if status is None:
        return None, None
    try:
        doc = json.loads(bytes(body))
    except ValueError:
        return None, None
    if not isinstance(doc, dict):
        return None, None
    pod = doc.get("pod")
    client = doc.get("client")
    return (pod if isinstance(pod, str) else None), (client if isinstance(client, str) else None)


def _udp_attempt(ip: str, port: int, timeout: float, netns: str | None) -> tuple[str | None, str | None]:
    deadline = time.monotonic() + timeout
    with _new_socket(_family(ip), socket.SOCK_DGRAM, netns) as sock:
        # connect(): the kernel then reports ICMP port unreachable to us
        # as ECONNREFUSED, and only accepts replies from the target.
        sock.connect((ip, port))
        sock.send(b"hostname")
        sock.send(b"clientip")
        replies: list[bytes] = []
        try:
            while len(replies) < 2:
                sock.settimeout(_remaining(deadline))
                replies.append(sock.recv(65535))
        except TimeoutError:
            if not replies:
                raise
    pod: str | None = None
    client: str | None = None
    for raw in replies:
        text = raw.decode("utf-8", "replace").strip()
        if raw in (b"hostname", b"clientip"):
            continue  # a plain echo server: answered, but not podnet
        if client is None and _ADDR_RE.match(text):
            client = text
        elif pod is None:
            pod = text
    return pod, client


def probe_once(
    target_ip: str, port: int, protocol: str = "tcp", timeout: float = 2.0, netns: str | None = None
) -> ProbeResult:
    proto = protocol.lower()
    if proto not in ("tcp", "udp"):
        raise ValueError(f"probe: unsupported protocol {protocol!r} (tcp or udp)")
    start = time.monotonic()
    try:
        if proto == "tcp":
            pod, client = _tcp_attempt(target_ip, port, timeout, netns)
        else:
            pod, client = _udp_attempt(target_ip, port, timeout, netns)
    except (OSError, h11.ProtocolError) as exc:
        ms = round((time.monotonic() - start) * 1000, 3)
        return ProbeResult(ok=False, pod=None, client=None, error=_error_text(exc), ms=ms)
    ms = round((time.monotonic() - start) * 1000, 3)
    return ProbeResult(ok=True, pod=pod, client=client, error=None, ms=ms)


def probe(
    target_ip: str,
    port: int,
    protocol: str = "tcp",
    count: int = 1,
    timeout: float = 2.0,
    netns: str | None = None,
) -> Iterator[ProbeResult]:
    """Yield one ProbeResult per attempt, each on a new connection/socket."""
    if protocol.lower() not in ("tcp", "udp"):
        raise ValueError(f"probe: unsupported protocol {protocol!r} (tcp or udp)")
    for _ in range(count):
        yield probe_once(target_ip, port, protocol, timeout, netns)


def summarize(results: Iterable[ProbeResult]) -> dict[str, Any]:
    """Count answers per pod: {"total", "ok", "failed", "pods": {name: n},
    "unidentified": n (answered but not a podnet pod), "errors": {text: n}}."""
    pods: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    total = ok = unidentified = 0
    for r in results:
        total += 1
        if r.ok:
            ok += 1
            if r.pod is None:
                unidentified += 1
            else:
                pods[r.pod] += 1
        else:
            errors[r.error or "unknown"] += 1
    return {
        "total": total,
        "ok": ok,
        "failed": total - ok,
        "pods": dict(sorted(pods.items())),
        "unidentified": unidentified,
        "errors": dict(sorted(errors.items())),
    }
