"""A stub resolver that asks from inside a network namespace, with the
search path and ndots rule of glibc's: what `getent hosts NAME` would
find from there. Used by `podnet probe` for a TARGET that is a name."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype

from podnet.lab import netns as netns_mod


class LookupError_(Exception):
    """The name did not resolve; the message says how each try ended."""


@dataclass
class ResolvConf:
    nameservers: list[str] = field(default_factory=list)
    search: list[str] = field(default_factory=list)
    ndots: int = 1
    timeout: float = 2.0

    @classmethod
    def parse(cls, text: str) -> ResolvConf:
        rc = cls()
        for line in text.splitlines():
            parts = line.split()
            if not parts or parts[0].startswith(("#", ";")):
                continue
            if parts[0] == "nameserver" and len(parts) > 1:
                rc.nameservers.append(parts[1])
            elif parts[0] in ("search", "domain"):
                rc.search = [s.rstrip(".") for s in parts[1:]]
            elif parts[0] == "options":
                for opt in parts[1:]:
                    name, _, value = opt.partition(":")
                    if name == "ndots" and value.isdigit():
                        rc.ndots = min(int(value), 15)
                    elif name == "timeout" and value.isdigit():
                        rc.timeout = float(value)
        return rc


def candidates(name: str, rc: ResolvConf) -> list[str]:
    """The names glibc tries, in order: absolute first when the name has
    at least ndots dots, the search list appended otherwise."""
    if name.endswith("."):
        return [name]
    searched = [f"{name}.{s}." for s in rc.search]
    if name.count(".") >= rc.ndots:
        return [f"{name}.", *searched]
    return [*searched, f"{name}."]


def _exchange(wire: bytes, server: str, tcp: bool, timeout: float, netns: str | None) -> bytes:
    kind = socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM
    if netns is None:
        sock = socket.socket(socket.AF_INET, kind)
    else:
        with netns_mod.entered(netns):
            sock = socket.socket(socket.AF_INET, kind)
    with sock:
        sock.settimeout(timeout)
        sock.connect((server, 53))
        if tcp:
            sock.sendall(struct.pack("!H", len(wire)) + wire)
            size = struct.unpack("!H", _recv_exact(sock, 2))[0]
            return _recv_exact(sock, size)
        sock.send(wire)
        while True:
            data = sock.recv(65535)
            if data[:2] == wire[:2]:
                return data


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return buf


def query(
    name: str, rdtype: str, server: str, netns: str | None = None, timeout: float = 2.0
) -> dns.message.Message:
    """One query over UDP (again over TCP when truncated)."""
    q = dns.message.make_query(name, rdtype, use_edns=0, payload=1232)
    reply = dns.message.from_wire(_exchange(q.to_wire(), server, False, timeout, netns))
    if reply.flags & dns.flags.TC:
        reply = dns.message.from_wire(_exchange(q.to_wire(), server, True, timeout, netns))
    return reply


def resolve(name: str, rc: ResolvConf, netns: str | None = None) -> tuple[str, list[str]]:
    """The name found and its IPv4 addresses, as a stub resolver would find them."""
    tried = []
    for cand in candidates(name, rc):
        for server in rc.nameservers:
            try:
                reply = query(cand, "A", server, netns, rc.timeout)
            except (OSError, dns.exception.DNSException) as exc:
                tried.append(f"{cand} @{server}: {str(exc) or type(exc).__name__}")
                continue
            addrs = [rd.address for rr in reply.answer if rr.rdtype == dns.rdatatype.A for rd in rr]
            if addrs:
                return cand, addrs
            tried.append(f"{cand}: {dns.rcode.to_text(reply.rcode())}")
            break  # an answer (even a negative one): next candidate
    raise LookupError_("; ".join(tried) or "no nameserver")
