"""The NetworkPolicy nftables table of one node, pure: `compile_ruleset` turns the
cluster's policies, pods and namespaces into a `Ruleset` (plain data: sets
with their elements, chains with their rules, the two dispatch maps), `full`
renders a Ruleset as one transaction that replaces the table, and `delta`
renders the transaction that turns one Ruleset into another.

Layout (table `ip podnet-policy`, owned by podnet; see docs/design.md):

* Two base chains on the forward hook, `egress` then `ingress`. Packets
  between pods cross a node's forward hook (pods on the same node too:
  they are routed veth to veth), after the service proxy's DNAT, so a
  Service connection is judged against its backend pod and port. An
  `accept` ends only its own base chain, so a connection must pass both.
* Each base chain: `ct state established,related accept` (replies and the
  rest of an allowed connection), then a pod reaching itself, then a
  verdict map keyed by the address of a *local* pod isolated in that
  direction (`egress_pods` by source, `ingress_pods` by destination).
  Pods not isolated are not in the map and pass.
* The map sends the packet to the chain of its pod's *policy set*: one
  chain per distinct set of policies isolating pods (pods selected by the
  same policies share it), which jumps to each policy's chain and rejects
  what none of them accepted.
* A policy's chain holds one or two rules per policy rule, each a few set
  lookups: `ip saddr @peers` (the rule's peers: the addresses of the pods
  its selectors pick and its ipBlocks, one interval set),
  `meta l4proto . th dport @ports` (numeric ports and endPort ranges, an
  interval set of protocol . port range), and for named ports
  `ip daddr . meta l4proto . th dport @named` (each destination pod's own
  number for the name).

So a packet costs one map lookup plus a few set lookups per policy
selecting its pod: never more with more pods, nor with more policies that
do not select the pod. Pods coming, going and changing labels change set
and map elements only. Chains and sets are named after what they hold
(policy chains after a hash of their rules), so a change never edits a
rule in place: a changed policy gets new chains and sets, and the old
ones are deleted in the same transaction.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import json
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from podnet.api.selectors import Selector
from podnet.policy.model import (
    EGRESS,
    INGRESS,
    Peer,
    Pod,
    Policy,
    PortMatch,
    Rule,
    port_matches,
)

TABLE = "podnet-policy"
FAMILY = "ip"
ADDR_SET = "ipv4_addr"
PORT_SET = "inet_proto . inet_service"
NAMED_SET = "ipv4_addr . inet_proto . inet_service"
REJECT = "reject with icmp type admin-prohibited"
_NFT_PROTO = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}
_MAX_NAME = 200  # nftables allows 256 for chain and set names


@dataclass(frozen=True)
class NftSet:
    type: str  # ADDR_SET, PORT_SET or NAMED_SET
    interval: bool
    elements: frozenset[str]


@dataclass(frozen=True)
class NftRule:
    """One rule of a policy chain: every present lookup must hit, then accept."""

    peers: str | None = None  # set of ip saddr (ingress) / ip daddr (egress)
    ports: str | None = None  # set of meta l4proto . th dport
    named: str | None = None  # set of ip daddr . meta l4proto . th dport
    comment: str = ""

    def text(self, direction: str) -> str:
        field_ = "ip saddr" if direction == INGRESS else "ip daddr"
        parts = []
        if self.peers:
            parts.append(f"{field_} @{self.peers}")
        if self.ports:
            parts.append(f"meta l4proto . th dport @{self.ports}")
        if self.named:
            parts.append(f"ip daddr . meta l4proto . th dport @{self.named}")
        parts.append("accept")
        if self.comment:
            parts.append(f'comment "{self.comment}"')
        return " ".join(parts)


@dataclass(frozen=True)
class PolicyChain:
    direction: str
    rules: tuple[NftRule, ...]


@dataclass(frozen=True)
class SetChain:
    """The chain of a set of policies: try each, reject the rest."""

    policies: tuple[str, ...]  # policy chain names, in order


@dataclass
class Ruleset:
    sets: dict[str, NftSet] = field(default_factory=dict)
    policy_chains: dict[str, PolicyChain] = field(default_factory=dict)
    set_chains: dict[str, SetChain] = field(default_factory=dict)
    ingress_pods: dict[str, str] = field(default_factory=dict)  # pod ip -> set chain
    egress_pods: dict[str, str] = field(default_factory=dict)
    local_isolated: frozenset[str] = frozenset()

    def counts(self) -> dict[str, int]:
        return {
            "sets": len(self.sets),
            "elements": sum(len(s.elements) for s in self.sets.values()),
            "policy_chains": len(self.policy_chains),
            "set_chains": len(self.set_chains),
            "isolated_pods": len(self.local_isolated),
        }


# -- who is where: an index of selector matches -----------------------------------

SelKey = tuple[str, Selector | None, Selector | None]  # (policy namespace, pods, namespaces)


class Index:
    """The cluster as the policy agent sees it, with the pods each selector
    picks memoised and kept up to date as pods come, go and change: a pod
    change tests that pod against each selector in use, a namespace change
    recomputes the selectors that read namespace labels."""

    def __init__(self) -> None:
        self.pods: dict[str, Pod] = {}
        self.namespaces: dict[str, dict[str, str]] = {}
        self.policies: dict[str, Policy] = {}
        self._members: dict[SelKey, set[str]] = {}

    def _matches(self, key: SelKey, pod: Pod) -> bool:
        ns, pod_sel, ns_sel = key
        if ns_sel is None:
            if pod.namespace != ns:
                return False
        elif not ns_sel.matches(self.namespaces.get(pod.namespace, {})):
            return False
        return pod_sel is None or pod_sel.matches(pod.labels)

    def members(self, key: SelKey) -> set[str]:
        found = self._members.get(key)
        if found is None:
            found = {k for k, p in self.pods.items() if self._matches(key, p)}
            self._members[key] = found
        return found

    def set_pod(self, pod: Pod) -> None:
        self.pods[pod.key] = pod
        for key, members in self._members.items():
            if self._matches(key, pod):
                members.add(pod.key)
            else:
                members.discard(pod.key)

    def delete_pod(self, key: str) -> None:
        if self.pods.pop(key, None) is not None:
            for members in self._members.values():
                members.discard(key)

    def set_namespace(self, name: str, labels: dict[str, str]) -> None:
        if self.namespaces.get(name) == labels:
            return
        self.namespaces[name] = labels
        for key in [k for k in self._members if k[2] is not None]:
            del self._members[key]

    def delete_namespace(self, name: str) -> None:
        self.set_namespace(name, {})
        self.namespaces.pop(name, None)

    def set_policy(self, policy: Policy) -> None:
        self.policies[policy.key] = policy

    def delete_policy(self, key: str) -> None:
        if self.policies.pop(key, None) is not None:
            used = {k for p in self.policies.values() for k in _selector_keys(p)}
            for k in [k for k in self._members if k not in used]:
                del self._members[k]

    def selected(self, policy: Policy) -> list[Pod]:
        return [self.pods[k] for k in self.members((policy.namespace, policy.pod_selector, None))]

    def peer_pods(self, policy: Policy, peer: Peer) -> list[Pod]:
        if peer.ip_block is not None:
            return [p for p in self.pods.values() if peer.ip_block.contains(p.ip)]
        return [
            self.pods[k] for k in self.members((policy.namespace, peer.pod_selector, peer.namespace_selector))
        ]


def _selector_keys(policy: Policy) -> Iterable[SelKey]:
    yield (policy.namespace, policy.pod_selector, None)
    for rules in (policy.ingress or (), policy.egress or ()):
        for rule in rules:
            for peer in rule.peers:
                if peer.ip_block is None:
                    yield (policy.namespace, peer.pod_selector, peer.namespace_selector)


# -- compile -------------------------------------------------------------------------


def _short(name: str, prefix: str) -> str:
    if len(name) <= _MAX_NAME:
        return name
    return f"{prefix}/" + hashlib.sha256(name.encode()).hexdigest()[:24]


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:8]


def policy_chain_name(policy: Policy, direction: str) -> str:
    """`in/NS/NAME/HASH`: named after what the rules say, so a changed
    policy gets a new chain and the old one is never edited in place."""
    rules = policy.rules(direction) or ()
    shape = [
        [[str(p) for p in r.peers], [[pm.protocol, pm.port, pm.end_port] for pm in r.ports]] for r in rules
    ]
    prefix = "in" if direction == INGRESS else "eg"
    return _short(f"{prefix}/{policy.namespace}/{policy.name}/{_digest(shape)}", prefix)


def set_chain_name(direction: str, chains: tuple[str, ...]) -> str:
    prefix = "in" if direction == INGRESS else "eg"
    return f"{prefix}-pods/{_digest(list(chains))}"


def _proto(protocol: str) -> str:
    return _NFT_PROTO.get(protocol, protocol.lower())


def _port_elements(ports: Iterable[PortMatch]) -> set[str]:
    """`protocol . port-range` elements of an interval set. Overlapping or
    touching ranges are merged first: an interval set refuses overlaps, and
    one rule may well list port 80 and the range 79-80."""
    spans: dict[str, list[tuple[int, int]]] = {}
    for pm in ports:
        if isinstance(pm.port, str):
            continue
        if pm.port is None:
            lo, hi = 0, 65535
        else:
            lo = int(pm.port)
            hi = int(pm.end_port) if pm.end_port is not None else lo
        spans.setdefault(_proto(pm.protocol), []).append((lo, max(lo, hi)))
    out = set()
    for proto, items in spans.items():
        merged: list[list[int]] = []
        for lo, hi in sorted(items):
            if merged and lo <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        for lo, hi in merged:
            out.add(f"{proto} . {lo}-{hi}" if hi != lo else f"{proto} . {lo}")
    return out


def _named_elements(ports: Iterable[PortMatch], pods: Iterable[Pod]) -> set[str]:
    named = [pm for pm in ports if isinstance(pm.port, str)]
    out = set()
    for pod in pods:
        for pm in named:
            number = pod.named_port(str(pm.port), pm.protocol)
            if number is not None and port_matches(pm, pm.protocol, number, pod):
                out.add(f"{pod.ip} . {_proto(pm.protocol)} . {number}")
    return out


def _peer_elements(index: Index, policy: Policy, rule: Rule) -> set[str]:
    """The rule's peers as disjoint interval set elements: its ipBlocks'
    ranges, collapsed, and the /32 of every pod its selectors pick that no
    range already covers (an interval set refuses overlaps)."""
    blocks = [b for p in rule.peers if p.ip_block is not None for b in p.ip_block.ranges() if b.version == 4]
    ranges = list(ipaddress.collapse_addresses(blocks))
    out = {str(r) if r.prefixlen < 32 else str(r.network_address) for r in ranges}
    for peer in rule.peers:
        if peer.ip_block is not None:
            continue
        for pod in index.peer_pods(policy, peer):
            if ":" in pod.ip:
                continue  # IPv6: the ip6 table's business
            if not ranges or not any(_address(pod.ip) in r for r in ranges):
                out.add(pod.ip)
    return out


@functools.lru_cache(maxsize=65536)
def _address(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(ip)


def _egress_named_targets(index: Index, policy: Policy, rule: Rule) -> Iterable[Pod]:
    if not rule.peers:
        return index.pods.values()
    found: dict[str, Pod] = {}
    for peer in rule.peers:
        for pod in index.peer_pods(policy, peer):
            found[pod.key] = pod
    return found.values()


def _compile_policy(
    index: Index, policy: Policy, direction: str, local_selected: list[Pod], out: Ruleset
) -> str:
    name = policy_chain_name(policy, direction)
    if name in out.policy_chains:
        return name
    rules: list[NftRule] = []
    for i, rule in enumerate(policy.rules(direction) or ()):
        base = f"{name}/{i}"
        numeric = _port_elements(rule.ports)
        has_named = any(isinstance(pm.port, str) for pm in rule.ports)
        peers = None
        # Egress rules with only named ports list their peers in the named set.
        if rule.peers and (not rule.ports or numeric or direction == INGRESS):
            peers = f"{base}/peers"
            out.sets[peers] = NftSet(ADDR_SET, True, frozenset(_peer_elements(index, policy, rule)))
        comment = f"{policy.key} {direction}[{i}]"
        if not rule.ports:
            rules.append(NftRule(peers=peers, comment=comment))
            continue
        if numeric:
            ports = f"{base}/ports"
            out.sets[ports] = NftSet(PORT_SET, True, frozenset(numeric))
            rules.append(NftRule(peers=peers, ports=ports, comment=comment))
        if has_named:
            named = f"{base}/named"
            if direction == INGRESS:
                # The destination is the isolated pod itself: its own numbers.
                targets: Iterable[Pod] = local_selected
                check_peers = peers
            else:
                # Only destinations the rule's peers pick are listed, so the
                # peer lookup is already in the set.
                targets = _egress_named_targets(index, policy, rule)
                check_peers = None
            out.sets[named] = NftSet(NAMED_SET, False, frozenset(_named_elements(rule.ports, targets)))
            rules.append(NftRule(peers=check_peers, named=named, comment=comment + " (named ports)"))
    out.policy_chains[name] = PolicyChain(direction, tuple(rules))
    return name


def compile_ruleset(index: Index, node: str) -> Ruleset:
    """The ruleset of node `node`: its pods, isolated by the policies that
    select them, against peers anywhere in the cluster."""
    out = Ruleset()
    local = [p for p in index.pods.values() if p.node == node and p.ip]
    if not local:
        return out
    local_keys = {p.key for p in local}
    chains_of: dict[tuple[str, str], list[str]] = {}  # (direction, pod key) -> policy chains
    for policy in sorted(index.policies.values(), key=lambda p: p.key):
        selected = [p for p in index.selected(policy) if p.key in local_keys]
        if not selected:
            continue
        for direction in (INGRESS, EGRESS):
            if policy.rules(direction) is None:
                continue
            chain = _compile_policy(index, policy, direction, selected, out)
            for pod in selected:
                chains_of.setdefault((direction, pod.key), []).append(chain)
    isolated = set()
    for (direction, key), chains in chains_of.items():
        names = tuple(chains)
        set_chain = set_chain_name(direction, names)
        out.set_chains.setdefault(set_chain, SetChain(names))
        ip = index.pods[key].ip
        (out.ingress_pods if direction == INGRESS else out.egress_pods)[ip] = set_chain
        isolated.add(ip)
    out.local_isolated = frozenset(isolated)
    return out


# -- text ------------------------------------------------------------------------------


def _set_decl(name: str, s: NftSet) -> str:
    flags = "flags interval; " if s.interval else ""
    return f"add set {FAMILY} {TABLE} {name} {{ type {s.type}; {flags}}}\n"


def _elements(verb: str, name: str, elements: Iterable[str]) -> str:
    items = sorted(elements, key=_element_order)
    if not items:
        return ""
    return f"{verb} element {FAMILY} {TABLE} {name} {{ {', '.join(items)} }}\n"


def _element_order(e: str) -> tuple[object, ...]:
    """Addresses in numeric order (the kernel lists them so), then the rest."""
    head = e.split(" ", 1)[0].split("/", 1)[0]
    try:
        return (0, socket.inet_aton(head), e)
    except OSError:
        return (1, b"", e)


def _policy_chain(name: str, chain: PolicyChain) -> str:
    lines = [f"add chain {FAMILY} {TABLE} {name}\n"]
    for rule in chain.rules:
        lines.append(f"add rule {FAMILY} {TABLE} {name} {rule.text(chain.direction)}\n")
    return "".join(lines)


def _set_chain(name: str, chain: SetChain) -> str:
    lines = [f"add chain {FAMILY} {TABLE} {name}\n"]
    for policy_chain in chain.policies:
        lines.append(f"add rule {FAMILY} {TABLE} {name} jump {policy_chain}\n")
    lines.append(f"add rule {FAMILY} {TABLE} {name} {REJECT}\n")
    return "".join(lines)


def _map_elements(verb: str, name: str, items: Mapping[str, str], *, keys_only: bool = False) -> str:
    if not items:
        return ""
    if keys_only:
        return _elements(verb, name, items)
    return _elements(verb, name, (f"{ip} : goto {chain}" for ip, chain in items.items()))


def skeleton() -> str:
    """The table and its fixed parts, replacing whatever podnet had before."""
    return f"""\
table {FAMILY} {TABLE}
delete table {FAMILY} {TABLE}
table {FAMILY} {TABLE} {{
	comment "network policy: owned by podnet"
	map egress_pods {{
		type ipv4_addr : verdict
	}}
	map ingress_pods {{
		type ipv4_addr : verdict
	}}
	set self {{
		type ipv4_addr . ipv4_addr
	}}
	chain egress {{
		type filter hook forward priority filter; policy accept;
		ct state established,related accept
		ip saddr . ip daddr @self accept comment "a pod reaching itself (through a Service)"
		ip saddr vmap @egress_pods
	}}
	chain ingress {{
		type filter hook forward priority filter + 1; policy accept;
		ct state established,related accept
		ip saddr . ip daddr @self accept comment "a pod reaching itself (through a Service)"
		ip daddr vmap @ingress_pods
	}}
}}
"""


def full(rs: Ruleset) -> str:
    """The whole table as one transaction."""
    return skeleton() + delta(Ruleset(), rs)


def delta(old: Ruleset, new: Ruleset) -> str:
    """One transaction turning the programmed `old` into `new`: sets and
    chains first created, elements changed, dispatch maps switched, then
    what nothing refers to any more deleted."""
    out: list[str] = []
    for name in sorted(new.sets):
        s = new.sets[name]
        before = old.sets.get(name)
        if before is None or before.type != s.type:
            out.append(_set_decl(name, s))
            out.append(_elements("add", name, s.elements))
        else:
            out.append(_elements("delete", name, before.elements - s.elements))
            out.append(_elements("add", name, s.elements - before.elements))
    for name in sorted(set(new.policy_chains) - set(old.policy_chains)):
        out.append(_policy_chain(name, new.policy_chains[name]))
    for name in sorted(set(new.set_chains) - set(old.set_chains)):
        out.append(_set_chain(name, new.set_chains[name]))
    for map_name, was, now in (
        ("egress_pods", old.egress_pods, new.egress_pods),
        ("ingress_pods", old.ingress_pods, new.ingress_pods),
    ):
        gone = {ip: c for ip, c in was.items() if now.get(ip) != c}
        came = {ip: c for ip, c in now.items() if was.get(ip) != c}
        out.append(_map_elements("delete", map_name, gone, keys_only=True))
        out.append(_map_elements("add", map_name, came))
    out.append(
        _elements("delete", "self", (f"{ip} . {ip}" for ip in old.local_isolated - new.local_isolated))
    )
    out.append(_elements("add", "self", (f"{ip} . {ip}" for ip in new.local_isolated - old.local_isolated)))
    for name in sorted(set(old.set_chains) - set(new.set_chains)):
        out.append(f"delete chain {FAMILY} {TABLE} {name}\n")
    for name in sorted(set(old.policy_chains) - set(new.policy_chains)):
        out.append(f"delete chain {FAMILY} {TABLE} {name}\n")
    for name in sorted(set(old.sets) - set(new.sets)):
        out.append(f"delete set {FAMILY} {TABLE} {name}\n")
    return "".join(out)
