"""The service proxy's nftables ruleset, pure: `full` renders everything
(start-up and resync), `delta` renders only what changed between two
states of some Services, as one transaction.

Layout (see ../shared/docs/nftables-scaling.md for why): no chain per
Service or per endpoint. A verdict map keyed by (address, protocol, port)
- or (protocol, port) for nodePorts, on any local address - sends a new
connection to the one shared chain for its kind and endpoint count N,
whose single rule DNATs through a `backends` map keyed by the frontend
plus `numgen random mod N`. So the packet path costs two map lookups
whatever the number of Services, and a change to one Service rewrites
only that Service's elements. Only Services with sessionAffinity get
chains of their own (one per frontend and one per endpoint, with a
timeout set remembering clients, as kube-proxy does), so that cost stays
with the Services that use the feature.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from podnet.proxy.model import CLUSTER, NODEPORT, PortKey, ServicePort

TABLE = "podnet"
FAMILY = "ip"
KEY_TYPE = "ip daddr . meta l4proto . th dport"
NODEPORT_KEY_TYPE = "meta l4proto . th dport"
MASQUERADE_MARK = "0x4000"
MARK = f"meta mark set meta mark | {MASQUERADE_MARK}"

State = Mapping[PortKey, ServicePort]


@dataclass(frozen=True)
class ProxyConfig:
    cluster_cidr: str = "10.244.0.0/16"
    # Masquerade pods' traffic that leaves the cluster through this interface
    # (the lab's nodes; on a real node the CNI usually does it): "" for none.
    egress_interface: str = "eth0"
    # This node's pod CIDR: only its own pods can hairpin through it, so the
    # hairpin set holds those endpoints alone. "": every endpoint.
    pod_cidr: str = ""

    def local_endpoint(self, ip: str) -> bool:
        return not self.pod_cidr or ipaddress.ip_address(ip) in ipaddress.ip_network(self.pod_cidr)


class NeedsFullSync(Exception):
    """The change needs a chain the table does not have yet."""


# -- naming ------------------------------------------------------------------

FAMILIES = ("endpoints", "external", "nodeport", "nodeport_local")


def _family(sp: ServicePort) -> str:
    if sp.key.ip == "" or sp.kind == NODEPORT:
        return "nodeport" if sp.masquerade else "nodeport_local"
    if sp.kind != CLUSTER and sp.masquerade:
        return "external"
    return "endpoints"


def _chain_rule(family: str, n: int) -> str:
    if family in ("endpoints", "external"):
        dnat = f"dnat ip to {KEY_TYPE} . numgen random mod {n} map @backends"
    else:
        dnat = f"dnat ip to {NODEPORT_KEY_TYPE} . numgen random mod {n} map @nodeport_backends"
    return f"{MARK} {dnat}" if family in ("external", "nodeport") else dnat


def _id(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def affinity_chain(key: PortKey) -> str:
    return f"aff_{_id(key.nft())}"


def affinity_endpoint(key: PortKey, ep: tuple[str, int]) -> str:
    return f"aff_{_id(key.nft())}_{_id(f'{ep[0]}:{ep[1]}')}"


# -- elements ------------------------------------------------------------------


def _dispatch_map(key: PortKey) -> str:
    return "service_nodeports" if not key.ip else "service_ips"


def _no_endpoint_map(key: PortKey) -> str:
    return "no_endpoint_nodeports" if not key.ip else "no_endpoint_services"


def _backends_map(key: PortKey) -> str:
    return "nodeport_backends" if not key.ip else "backends"


def _elements(sp: ServicePort) -> dict[str, list[str]]:
    """The map elements of one frontend, by map name."""
    k = sp.key.nft()
    n = len(sp.endpoints)
    if n == 0:
        verdict = "goto reject_chain" if sp.when_empty == "reject" else "drop"
        return {_no_endpoint_map(sp.key): [f"{k} : {verdict}"]}
    if sp.affinity:
        return {_dispatch_map(sp.key): [f"{k} : goto {affinity_chain(sp.key)}"]}
    return {
        _dispatch_map(sp.key): [f"{k} : goto {_family(sp)}_{n}"],
        _backends_map(sp.key): [f"{k} . {i} : {ip} . {port}" for i, (ip, port) in enumerate(sp.endpoints)],
    }


def _by_key(elements: dict[str, list[str]]) -> dict[tuple[str, str], str]:
    """{(map, key): element} of a frontend's elements."""
    return {(m, e.split(" : ")[0]): e for m, els in elements.items() for e in els}


def endpoint_ips(state: State) -> set[str]:
    return {ip for sp in state.values() for ip, _ in sp.endpoints}


def hairpin_elements(ips: Iterable[str]) -> list[str]:
    return [f"{ip} . {ip}" for ip in sorted(ips)]


def chain_counts(state: State) -> set[int]:
    return {len(sp.endpoints) for sp in state.values() if sp.endpoints and not sp.affinity}


def chain_capacity(state: State, minimum: int = 32) -> int:
    """How many endpoint-count chains of each kind a full sync defines: every
    count up to a power of two above the largest in use. nftables 1.0.6
    cannot add a rule that reads a `typeof` map in a later transaction than
    the one that declared the map ("conflicting protocols specified"), so
    deltas never add these chains: they use the ones defined, and a count
    beyond them takes a full sync."""
    largest = max(chain_counts(state), default=0)
    capacity = minimum
    while capacity < largest:
        capacity *= 2
    return capacity


# -- session affinity: chains of its own ------------------------------------------


def _affinity_objects(sp: ServicePort) -> tuple[list[str], dict[str, list[str]]]:
    """(sets, chains -> rules) for one affinity frontend."""
    sets, chains = [], {}
    dispatch = []
    for ep in sp.endpoints:
        name = affinity_endpoint(sp.key, ep)
        sets.append(name)
        dispatch.append(f"ip saddr @{name} goto {name}")
        # (a port in a dnat needs the protocol matched first)
        rule = f"meta l4proto {sp.key.protocol} update @{name} {{ ip saddr }} "
        if sp.masquerade:
            rule += f"{MARK} "
        chains[name] = [rule + f"dnat ip to {ep[0]}:{ep[1]}"]
    picks = ", ".join(f"{i} : goto {affinity_endpoint(sp.key, ep)}" for i, ep in enumerate(sp.endpoints))
    chains[affinity_chain(sp.key)] = [*dispatch, f"numgen random mod {len(sp.endpoints)} vmap {{ {picks} }}"]
    return sets, chains


def _set_def(timeout: int) -> str:
    return f"{{ type ipv4_addr; flags dynamic,timeout; timeout {timeout}s; }}"


# -- full ----------------------------------------------------------------------


def full(state: State, cfg: ProxyConfig) -> str:
    """The whole table, replacing whatever podnet had before, atomically."""
    egress = (
        f'\t\tip saddr {cfg.cluster_cidr} ip daddr != {cfg.cluster_cidr} oifname "{cfg.egress_interface}" '
        'masquerade comment "pods leaving the cluster"\n'
        if cfg.egress_interface
        else ""
    )
    capacity = chain_capacity(state)
    chains = "".join(
        f"\tchain {fam}_{n} {{\n\t\t{_chain_rule(fam, n)}\n\t}}\n"
        for fam in FAMILIES
        for n in range(1, capacity + 1)
    )
    affinity = ""
    for sp in sorted(state.values(), key=lambda s: s.key):
        if sp.affinity and sp.endpoints:
            sets, rules = _affinity_objects(sp)
            for name in sets:
                affinity += f"\tset {name} {_set_def(sp.affinity)}\n"
            for name, body in rules.items():
                affinity += f"\tchain {name} {{\n" + "".join(f"\t\t{r}\n" for r in body) + "\t}\n"
    text = f"""\
table {FAMILY} {TABLE}
delete table {FAMILY} {TABLE}
table {FAMILY} {TABLE} {{
	comment "service proxy: owned by podnet"
	map service_ips {{
		typeof {KEY_TYPE} : verdict
	}}
	map service_nodeports {{
		typeof {NODEPORT_KEY_TYPE} : verdict
	}}
	map no_endpoint_services {{
		typeof {KEY_TYPE} : verdict
	}}
	map no_endpoint_nodeports {{
		typeof {NODEPORT_KEY_TYPE} : verdict
	}}
	map backends {{
		typeof {KEY_TYPE} . numgen random mod 1 : ip daddr . th dport
	}}
	map nodeport_backends {{
		typeof {NODEPORT_KEY_TYPE} . numgen random mod 1 : ip daddr . th dport
	}}
	set hairpin {{
		typeof ip saddr . ip daddr
	}}
	chain reject_chain {{
		reject
	}}
	chain services {{
		{KEY_TYPE} vmap @service_ips
		fib daddr type local {NODEPORT_KEY_TYPE} vmap @service_nodeports
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
		meta mark & {MASQUERADE_MARK} == {MASQUERADE_MARK} masquerade comment "external traffic under externalTrafficPolicy Cluster"
		ct status dnat ip saddr . ip daddr @hairpin masquerade comment "a pod reaching itself through a Service"
{egress}	}}
	chain filter_forward {{
		type filter hook forward priority filter; policy accept;
		ct state new {KEY_TYPE} vmap @no_endpoint_services
	}}
	chain filter_input {{
		type filter hook input priority filter; policy accept;
		ct state new fib daddr type local {NODEPORT_KEY_TYPE} vmap @no_endpoint_nodeports
	}}
	chain filter_output {{
		type filter hook output priority filter; policy accept;
		ct state new {KEY_TYPE} vmap @no_endpoint_services
		ct state new fib daddr type local {NODEPORT_KEY_TYPE} vmap @no_endpoint_nodeports
	}}
{chains}{affinity}}}
"""
    elements: dict[str, list[str]] = {}
    for sp in sorted(state.values(), key=lambda s: s.key):
        for name, els in _elements(sp).items():
            elements.setdefault(name, []).extend(els)
    for name in (
        "backends",
        "nodeport_backends",
        "service_ips",
        "service_nodeports",
        "no_endpoint_services",
        "no_endpoint_nodeports",
    ):
        text += _add(name, elements.get(name, []))
    return text + _add(
        "hairpin", hairpin_elements(ip for ip in endpoint_ips(state) if cfg.local_endpoint(ip))
    )


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


# -- delta -----------------------------------------------------------------------


def delta(
    old: State,
    new: State,
    defined_chains: set[int],
    hairpin_add: Iterable[str] = (),
    hairpin_remove: Iterable[str] = (),
) -> str:
    """One transaction turning `old` into `new` (the states of the Services
    that changed, not of the whole cluster). `defined_chains` are the
    endpoint counts the kernel has chains for (raises NeedsFullSync when one
    more is needed); `hairpin_add` and `hairpin_remove` the endpoint
    addresses that start or stop being one."""
    missing = chain_counts(new) - defined_chains
    if missing:
        raise NeedsFullSync(f"no chain yet for {max(missing)} endpoints")
    deletes: dict[str, list[str]] = {}
    adds: dict[str, list[str]] = {}
    affinity_setup: list[str] = []
    affinity_cleanup: list[str] = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        # Element by element: what stays the same is not touched (a
        # transaction that rewrites a map element costs more as the map grows).
        was = _by_key(_elements(before)) if before is not None else {}
        now = _by_key(_elements(after)) if after is not None else {}
        for (name, k), el in was.items():
            if now.get((name, k)) != el:
                deletes.setdefault(name, []).append(k)
        for (name, k), el in now.items():
            if was.get((name, k)) != el:
                adds.setdefault(name, []).append(el)
        old_sets, old_chains = (
            _affinity_objects(before) if before and before.affinity and before.endpoints else ([], {})
        )
        new_sets, new_chains = (
            _affinity_objects(after) if after and after.affinity and after.endpoints else ([], {})
        )
        for name in new_sets:
            affinity_setup.append(f"add set {FAMILY} {TABLE} {name} {_set_def(after.affinity)}\n")  # type: ignore[union-attr]
        for name, rules in new_chains.items():
            affinity_setup.append(f"add chain {FAMILY} {TABLE} {name}\n")
            affinity_setup.append(f"flush chain {FAMILY} {TABLE} {name}\n")
            affinity_setup += [f"add rule {FAMILY} {TABLE} {name} {r}\n" for r in rules]
        # A chain that stays is flushed above; one that goes is flushed here
        # first, so that no rule still names it or its set when it is deleted.
        gone_chains = [c for c in old_chains if c not in new_chains]
        affinity_cleanup += [f"flush chain {FAMILY} {TABLE} {c}\n" for c in gone_chains]
        affinity_cleanup += [f"delete chain {FAMILY} {TABLE} {c}\n" for c in gone_chains]
        affinity_cleanup += [f"delete set {FAMILY} {TABLE} {s}\n" for s in old_sets if s not in new_sets]
    order = (
        "service_ips",
        "service_nodeports",
        "no_endpoint_services",
        "no_endpoint_nodeports",
        "backends",
        "nodeport_backends",
    )
    out = [_delete(name, deletes.get(name, [])) for name in order]
    out.append(_delete("hairpin", hairpin_elements(hairpin_remove)))
    out += affinity_setup
    out += [_add(name, adds.get(name, [])) for name in reversed(order)]
    out.append(_add("hairpin", hairpin_elements(hairpin_add)))
    out += affinity_cleanup
    return "".join(out)
