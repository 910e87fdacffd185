"""IP address allocation, pure: which address is free in a range.

Pod addresses go round-robin after the last one handed out, as the CNI
host-local plugin does, so a freed address is not reused at once (a stale
conntrack entry or ARP cache for it would otherwise hit the new pod).
ClusterIPs are chosen at random, as the API server does, so Services made
one after the other do not get predictable neighbours.
"""

from __future__ import annotations

import ipaddress
import random


class RangeExhausted(Exception):
    pass


def _usable(cidr: str) -> tuple[int, int]:
    net = ipaddress.ip_network(cidr)
    first, last = int(net.network_address), int(net.broadcast_address)
    if net.prefixlen < net.max_prefixlen - 1:
        first, last = first + 1, last - 1  # not the network or broadcast address
    return first, last


def next_pod_ip(cidr: str, used: set[str], last: str | None, reserved: set[str] = frozenset()) -> str:  # type: ignore[assignment]
    """The first free address after `last` in `cidr`, wrapping round.
    `reserved` holds addresses the node keeps for itself (the gateway)."""
    first, end = _usable(cidr)
    size = end - first + 1
    start = int(ipaddress.ip_address(last)) + 1 - first if last else 0
    taken = used | reserved
    family = ipaddress.ip_network(cidr).version
    for i in range(size):
        addr = first + (start + i) % size
        text = str(ipaddress.ip_address(addr) if family == 4 else ipaddress.IPv6Address(addr))
        if text not in taken:
            return text
    raise RangeExhausted(f"no free address left in {cidr} ({len(taken)} in use)")


def static_band(cidr: str) -> int:
    """How many addresses at the bottom of a Service range are kept for
    Services that ask for one (KEP-3070: min(max(16, size/16), 256); none
    in a range of 16 or fewer). Random allocation takes them only when the
    rest is full, so the well-known ones (10.96.0.10 for the cluster DNS)
    stay free."""
    size = ipaddress.ip_network(cidr).num_addresses
    return 0 if size <= 16 else min(max(16, size // 16), 256)


def random_ip(cidr: str, used: set[str], rng: random.Random | None = None) -> str:
    """A random free address in `cidr` (probing forward from a random
    start), from above the static band first, then from within it."""
    first, end = _usable(cidr)
    first += 1  # the first address is kept for the `kubernetes` Service
    split = int(ipaddress.ip_network(cidr).network_address) + 1 + static_band(cidr)
    # (No shortcut on len(used): it may hold addresses outside the candidates,
    # such as the first address, held by the kubernetes Service.)
    for lo, hi in ((max(first, split), end), (first, min(end, split - 1))):
        size = hi - lo + 1
        if size <= 0:
            continue
        start = (rng or random).randrange(size)
        for i in range(size):
            text = str(ipaddress.ip_address(lo + (start + i) % size))
            if text not in used:
                return text
    raise RangeExhausted(f"no free address left in {cidr}")


def in_range(cidr: str, ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip) in ipaddress.ip_network(cidr)
    except ValueError:
        return False


def nth_address(cidr: str, n: int) -> str:
    """The n-th address of a network (n=1: the first after the network address)."""
    net = ipaddress.ip_network(cidr)
    return str(net.network_address + n)
