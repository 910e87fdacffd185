"""The service proxy's nftables ruleset, pure: `full` renders everything
(start-up and resync), `delta` renders only what changed between two
states of some Services, as one transaction.

Layout (see ../shared/docs/nftables-scaling.md for why): no chain per
Service or per endpoint. A verdict map keyed by (VIP, protocol, port)
sends a new connection to the one shared chain for its endpoint count N,
whose single rule DNATs through the `backends` map keyed by (VIP,
protocol, port, numgen random mod N). So the packet path costs two map
lookups whatever the number of Services, and a change to one Service
rewrites only that Service's elements.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from podnet.proxy.model import PortKey, ServicePort

TABLE = "podnet"
FAMILY = "ip"
KEY_TYPE = "ip daddr . meta l4proto . th dport"

State = Mapping[PortKey, ServicePort]


@dataclass(frozen=True)
class ProxyConfig:
    cluster_cidr: str = "10.244.0.0/16"
    # Masquerade pods' traffic that leaves the cluster through this interface
    # (the lab's nodes; on a real node the CNI usually does it): "" for none.
    egress_interface: str = "eth0"


def endpoints_chain(n: int) -> str:
    return f"endpoints_{n}"


def _endpoints_chain_def(n: int) -> str:
    return (
        f"\tchain {endpoints_chain(n)} {{\n"
        f"\t\tdnat ip to {KEY_TYPE} . numgen random mod {n} map @backends\n"
        "\t}\n"
    )


def _elements(sp: ServicePort) -> tuple[list[str], list[str], list[str]]:
    """(service_ips, no_endpoint_services, backends) elements of one port."""
    k = sp.key.nft()
    n = len(sp.endpoints)
    if n == 0:
        return [], [f"{k} : goto reject_chain"], []
    backends = [f"{k} . {i} : {ip} . {port}" for i, (ip, port) in enumerate(sp.endpoints)]
    return [f"{k} : goto {endpoints_chain(n)}"], [], backends


def endpoint_ips(state: State) -> set[str]:
    return {ip for sp in state.values() for ip, _ in sp.endpoints}


def _add(name: str, elements: Iterable[str]) -> str:
    items = list(elements)
    if not items:
        return ""
    return f"add element {FAMILY} {TABLE} {name} {{ {', '.join(items)} }}\n"


def _delete(name: str, keys: Iterable[str]) -> str:
    items = list(keys)
    if not items:
        return ""
    return f"delete element {FAMILY} {TABLE} {name} {{ {', '.join(items)} }}\n"


class NeedsFullSync(Exception):
    """The change needs a chain the table does not have yet."""


def chain_counts(state: State) -> set[int]:
    return {len(sp.endpoints) for sp in state.values() if sp.endpoints}


def chain_capacity(state: State, minimum: int = 32) -> int:
    """How many endpoint-count chains a full sync defines: every count up
    to a power of two above the largest in use. nftables 1.0.6 cannot add
    a rule that reads a `typeof` map in a later transaction than the one
    that declared the map ("conflicting protocols specified"), so deltas
    never add chains: they use these, and a count beyond them takes a
    full sync."""
    largest = max(chain_counts(state), default=0)
    capacity = minimum
    while capacity < largest:
        capacity *= 2
    return capacity


def full(state: State, cfg: ProxyConfig) -> str:
    """The whole table, replacing whatever podnet had before, atomically."""
    egress = (
        f'\t\tip saddr {cfg.cluster_cidr} ip daddr != {cfg.cluster_cidr} oifname "{cfg.egress_interface}" '
        'masquerade comment "pods leaving the cluster"\n'
        if cfg.egress_interface
        else ""
    )
    chains = "".join(_endpoints_chain_def(n) for n in range(1, chain_capacity(state) + 1))
    text = f"""\
table {FAMILY} {TABLE}
delete table {FAMILY} {TABLE}
table {FAMILY} {TABLE} {{
	comment "service proxy: owned by podnet"
	map service_ips {{
		typeof {KEY_TYPE} : verdict
	}}
	map no_endpoint_services {{
		typeof {KEY_TYPE} : verdict
	}}
	map backends {{
		typeof {KEY_TYPE} . numgen random mod 1 : ip daddr . th dport
	}}
	set hairpin {{
		typeof ip saddr . ip daddr
	}}
	chain reject_chain {{
		reject
	}}
	chain services {{
		{KEY_TYPE} vmap @service_ips
	}}
	chain nat_prerouting {{
		type nat hook prerouting priority dstnat; policy accept;
		jump services
	}}
	chain nat_output {{
		type nat hook output priority -100; policy accept;
		jump services
	}}
	chain nat_postrouting {{
		type nat hook postrouting priority srcnat; policy accept;
		ct status dnat ip saddr . ip daddr @hairpin masquerade comment "a pod reaching itself through a Service"
{egress}	}}
	chain filter_forward {{
		type filter hook forward priority filter; policy accept;
		ct state new {KEY_TYPE} vmap @no_endpoint_services
	}}
	chain filter_output {{
		type filter hook output priority filter; policy accept;
		ct state new {KEY_TYPE} vmap @no_endpoint_services
	}}
{chains}}}
"""
    service_ips: list[str] = []
    no_endpoints: list[str] = []
    backends: list[str] = []
    for sp in sorted(state.values(), key=lambda s: s.key):
        a, b, c = _elements(sp)
        service_ips += a
        no_endpoints += b
        backends += c
    return (
        text
        + _add("service_ips", service_ips)
        + _add("no_endpoint_services", no_endpoints)
        + _add("backends", backends)
        + _add("hairpin", hairpin_elements(endpoint_ips(state)))
    )


def hairpin_elements(ips: Iterable[str]) -> list[str]:
    return [f"{ip} . {ip}" for ip in sorted(ips)]


def delta(
    old: State,
    new: State,
    defined_chains: set[int],
    hairpin_add: Iterable[str] = (),
    hairpin_remove: Iterable[str] = (),
) -> str:
    """One transaction turning `old` into `new` (the states of the Services
    that changed, not of the whole cluster). `defined_chains` are the
    endpoint-count chains the kernel already has (raises NeedsFullSync when
    one more is needed); `hairpin_add` and `hairpin_remove` the endpoint
    addresses that start or stop being one."""
    missing = chain_counts(new) - defined_chains
    if missing:
        raise NeedsFullSync(f"no chain yet for {max(missing)} endpoints")
    out: list[str] = []
    del_service_ips: list[str] = []
    del_no_endpoints: list[str] = []
    del_backends: list[str] = []
    add_service_ips: list[str] = []
    add_no_endpoints: list[str] = []
    add_backends: list[str] = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        if before is not None:
            k = key.nft()
            if before.endpoints:
                del_service_ips.append(k)
                del_backends += [f"{k} . {i}" for i in range(len(before.endpoints))]
            else:
                del_no_endpoints.append(k)
        if after is not None:
            a, b, c = _elements(after)
            add_service_ips += a
            add_no_endpoints += b
            add_backends += c
    out += [
        _delete("service_ips", del_service_ips),
        _delete("no_endpoint_services", del_no_endpoints),
        _delete("backends", del_backends),
        _delete("hairpin", hairpin_elements(hairpin_remove)),
        _add("backends", add_backends),
        _add("service_ips", add_service_ips),
        _add("no_endpoint_services", add_no_endpoints),
        _add("hairpin", hairpin_elements(hairpin_add)),
    ]
    return "".join(out)
