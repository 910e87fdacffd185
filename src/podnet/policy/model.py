"""NetworkPolicy semantics, pure: parsed policies, pods and namespaces as
plain data, and the truth-table evaluator (`evaluate`) that `podnet
explain` prints and the tests compare with the kernel.

The rules of networking.k8s.io/v1, as the API reference states them:

* A policy selects the pods of its own namespace matching `podSelector`
  (`{}`: all of them). A pod is isolated for ingress (egress) once any
  policy selecting it has `Ingress` (`Egress`) in `policyTypes`; then only
  what some such policy's rules allow passes. Policies only add: the
  allowed traffic is the union of their rules.
* A rule matches when one of its peers matches (no peers, `from`/`to`
  missing or empty: every peer) and one of its ports matches (no ports:
  every port and protocol).
* A peer with only `podSelector` picks pods of the policy's namespace;
  only `namespaceSelector`: every pod of the matching namespaces; both:
  the pods matching `podSelector` in the matching namespaces; `ipBlock`:
  addresses in `cidr` and not in any `except` (pod addresses included,
  as most implementations and the upstream e2e suite have it).
* A port matches on protocol (default TCP) and port: a number, a range
  `port`..`endPort`, a name (resolved through the destination pod's own
  container ports, with the same protocol), or absent (every port).
* Traffic to a Service is judged after DNAT: against the backend pod and
  its target port (so the evaluator never sees Service addresses).

Two cases are allowed whatever the policies say, as on every common
implementation: a pod reaching itself (loopback: it never leaves the pod)
and traffic between a pod and the node it runs on (kubelet probes).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from podnet.api import selectors
from podnet.api.selectors import Selector

Obj = dict[str, Any]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class IPBlock:
    cidr: Network
    excepts: tuple[Network, ...] = ()

    def contains(self, ip: str) -> bool:
        addr = ipaddress.ip_address(ip)
        if addr.version != self.cidr.version or addr not in self.cidr:
            return False
        return not any(addr in e for e in self.excepts)

    def ranges(self) -> list[Network]:
        """`cidr` minus every `except`, as disjoint networks."""
        out = [self.cidr]
        for ex in self.excepts:
            nxt: list[Network] = []
            for net in out:
                if ex.version != net.version:
                    nxt.append(net)
                elif net.subnet_of(ex):  # type: ignore[arg-type]
                    continue
                elif ex.subnet_of(net):  # type: ignore[arg-type]
                    nxt.extend(net.address_exclude(ex))  # type: ignore[arg-type]
                else:
                    nxt.append(net)
            out = nxt
        return sorted(out, key=lambda n: (n.version, n.network_address, n.prefixlen))

    def __str__(self) -> str:
        text = str(self.cidr)
        if self.excepts:
            text += " except " + ", ".join(str(e) for e in self.excepts)
        return text


@dataclass(frozen=True)
class Peer:
    pod_selector: Selector | None = None
    namespace_selector: Selector | None = None
    ip_block: IPBlock | None = None

    def __str__(self) -> str:
        if self.ip_block is not None:
            return f"ipBlock {self.ip_block}"
        parts = []
        if self.namespace_selector is not None:
            parts.append(f"namespaces [{self.namespace_selector or 'all'}]")
        if self.pod_selector is not None:
            parts.append(f"pods [{self.pod_selector or 'all'}]")
        return " and ".join(parts)


@dataclass(frozen=True)
class PortMatch:
    protocol: str = "TCP"  # the API's spelling: TCP, UDP, SCTP
    port: int | str | None = None  # a number, a container port name, or every port
    end_port: int | None = None

    def __str__(self) -> str:
        if self.port is None:
            return f"{self.protocol} (all ports)"
        if self.end_port is not None:
            return f"{self.protocol} {self.port}-{self.end_port}"
        return f"{self.protocol} {self.port}"


@dataclass(frozen=True)
class Rule:
    peers: tuple[Peer, ...] = ()  # empty: every peer
    ports: tuple[PortMatch, ...] = ()  # empty: every port


@dataclass(frozen=True)
class Policy:
    namespace: str
    name: str
    pod_selector: Selector
    ingress: tuple[Rule, ...] | None  # None: the policy does not isolate ingress
    egress: tuple[Rule, ...] | None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def rules(self, direction: str) -> tuple[Rule, ...] | None:
        return self.ingress if direction == INGRESS else self.egress


INGRESS = "ingress"
EGRESS = "egress"


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    labels: Mapping[str, str]
    ip: str
    node: str = ""
    # (name, protocol, number) of every named container port
    ports: tuple[tuple[str, str, int], ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def named_port(self, name: str, protocol: str) -> int | None:
        for n, proto, number in self.ports:
            if n == name and proto == protocol:
                return number
        return None

    def __hash__(self) -> int:
        return hash((self.namespace, self.name, self.ip))


# -- parsing -------------------------------------------------------------------


def _selector(value: Any) -> Selector | None:
    return None if value is None else selectors.from_label_selector(value)


def _peer(obj: Obj) -> Peer:
    block = obj.get("ipBlock")
    ip_block = None
    if block is not None:
        ip_block = IPBlock(
            ipaddress.ip_network(block["cidr"], strict=False),
            tuple(ipaddress.ip_network(e, strict=False) for e in block.get("except") or []),
        )
    return Peer(_selector(obj.get("podSelector")), _selector(obj.get("namespaceSelector")), ip_block)


def _port(obj: Obj) -> PortMatch:
    port = obj.get("port")
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    end = obj.get("endPort") if isinstance(port, int) else None
    return PortMatch(obj.get("protocol") or "TCP", port, end)


def _rules(items: Any, peers_key: str) -> tuple[Rule, ...]:
    return tuple(
        Rule(
            tuple(_peer(p) for p in r.get(peers_key) or []),
            tuple(_port(p) for p in r.get("ports") or []),
        )
        for r in items or []
    )


def parse_policy(obj: Obj) -> Policy:
    """A stored (defaulted, validated) NetworkPolicy object as a Policy."""
    meta, spec = obj["metadata"], obj.get("spec") or {}
    types = spec.get("policyTypes") or (
        ["Ingress", "Egress"] if spec.get("egress") else ["Ingress"]
    )  # what defaulting gives
    return Policy(
        namespace=meta.get("namespace") or "default",
        name=meta["name"],
        pod_selector=selectors.from_label_selector(spec.get("podSelector") or {}),
        ingress=_rules(spec.get("ingress"), "from") if "Ingress" in types else None,
        egress=_rules(spec.get("egress"), "to") if "Egress" in types else None,
    )


def parse_pod(obj: Obj) -> Pod | None:
    """A Pod object as a Pod, or None while it has no address (or is gone:
    a succeeded or failed pod no longer holds one)."""
    status = obj.get("status") or {}
    ip = status.get("podIP")
    if not ip or status.get("phase") in ("Succeeded", "Failed"):
        return None
    meta, spec = obj["metadata"], obj.get("spec") or {}
    ports = tuple(
        (p["name"], p.get("protocol") or "TCP", int(p["containerPort"]))
        for c in spec.get("containers") or []
        for p in c.get("ports") or []
        if p.get("name") and p.get("containerPort") is not None
    )
    return Pod(
        namespace=meta.get("namespace") or "default",
        name=meta["name"],
        labels=dict(meta.get("labels") or {}),
        ip=str(ip),
        node=spec.get("nodeName") or "",
        ports=ports,
    )


def namespace_labels(obj: Obj) -> dict[str, str]:
    labels = dict(obj["metadata"].get("labels") or {})
    # Set by the API server since 1.21; a namespace made before has it implied.
    labels.setdefault("kubernetes.io/metadata.name", obj["metadata"]["name"])
    return labels


# -- matching ------------------------------------------------------------------


def selects(policy: Policy, pod: Pod) -> bool:
    return pod.namespace == policy.namespace and policy.pod_selector.matches(pod.labels)


def peer_matches_pod(
    peer: Peer, policy_ns: str, pod: Pod, ns_labels: Mapping[str, Mapping[str, str]]
) -> bool:
    """Whether `peer` (of a policy in `policy_ns`) picks `pod` by selectors or
    by address."""
    if peer.ip_block is not None:
        return peer.ip_block.contains(pod.ip)
    if peer.namespace_selector is None:
        if pod.namespace != policy_ns:
            return False
    elif not peer.namespace_selector.matches(ns_labels.get(pod.namespace, {})):
        return False
    return peer.pod_selector is None or peer.pod_selector.matches(pod.labels)


def port_matches(pm: PortMatch, protocol: str, port: int, dst: Pod | None) -> bool:
    """Whether `pm` admits (protocol, port) towards `dst` (None: not a pod,
    which no named port can resolve on)."""
    if pm.protocol != protocol:
        return False
    if pm.port is None:
        return True
    if isinstance(pm.port, str):
        return dst is not None and dst.named_port(pm.port, protocol) == port
    if pm.end_port is not None:
        return pm.port <= port <= pm.end_port
    return pm.port == port


# -- the evaluator ---------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """One end of a connection: a pod, or an address outside any pod (a
    node's own address names the node in `node`)."""

    ip: str
    pod: Pod | None = None
    node: str = ""

    def __str__(self) -> str:
        if self.pod is not None:
            return f"pod {self.pod.key} ({self.ip})"
        if self.node:
            return f"node {self.node} ({self.ip})"
        return self.ip


@dataclass(frozen=True)
class RuleMatch:
    policy: str  # namespace/name
    rule: int  # index in spec.ingress / spec.egress
    peer: str  # what matched, for humans
    port: str


@dataclass
class DirectionVerdict:
    direction: str
    applies: bool  # the pod on this side is isolated in this direction
    policies: list[str] = field(default_factory=list)  # the policies isolating it
    allowed_by: RuleMatch | None = None

    @property
    def allowed(self) -> bool:
        return not self.applies or self.allowed_by is not None


@dataclass
class Verdict:
    src: Endpoint
    dst: Endpoint
    protocol: str
    port: int
    egress: DirectionVerdict
    ingress: DirectionVerdict
    exempt: str = ""  # why no policy applies at all (loopback, the pod's own node)

    @property
    def allowed(self) -> bool:
        return bool(self.exempt) or (self.egress.allowed and self.ingress.allowed)

    def to_json(self) -> Obj:
        def side(d: DirectionVerdict) -> Obj:
            return {
                "isolated": d.applies,
                "policies": d.policies,
                "allowed": d.allowed,
                "allowedBy": None if d.allowed_by is None else vars(d.allowed_by),
            }

        return {
            "from": str(self.src),
            "to": str(self.dst),
            "protocol": self.protocol,
            "port": self.port,
            "allowed": self.allowed,
            "exempt": self.exempt or None,
            "egress": side(self.egress),
            "ingress": side(self.ingress),
        }

    def text(self) -> str:
        lines = [f"{self.protocol} {self.src} -> {self.dst} port {self.port}"]
        if self.exempt:
            lines.append(f"  allowed: {self.exempt}; no policy applies")
            return "\n".join(lines)
        for d, who in ((self.egress, self.src), (self.ingress, self.dst)):
            if d.direction == EGRESS and who.pod is None:
                lines.append(f"  egress:  {who} is not a pod: not subject to policy")
                continue
            if d.direction == INGRESS and who.pod is None:
                lines.append(f"  ingress: {who} is not a pod: not subject to policy")
                continue
            label = f"{d.direction}:".ljust(8)
            if not d.applies:
                lines.append(
                    f"  {label} allowed: no policy selecting {who.pod.key if who.pod else who} "
                    f"has {d.direction.capitalize()} in policyTypes"
                )
            elif d.allowed_by is not None:
                m = d.allowed_by
                lines.append(
                    f"  {label} allowed by {m.policy} {d.direction}[{m.rule}]: peer {m.peer}, port {m.port}"
                    f" (policies isolating it: {', '.join(d.policies)})"
                )
            else:
                lines.append(f"  {label} DENIED: no rule of {', '.join(d.policies)} allows it")
        lines.append("  verdict: " + ("allowed" if self.allowed else "denied"))
        return "\n".join(lines)


def _rule_match(
    policy: Policy,
    rule: Rule,
    index: int,
    peer: Endpoint,
    dst: Endpoint,
    protocol: str,
    port: int,
    ns_labels: Mapping[str, Mapping[str, str]],
) -> RuleMatch | None:
    if rule.peers:
        matched = None
        for p in rule.peers:
            if peer.pod is not None:
                ok = peer_matches_pod(p, policy.namespace, peer.pod, ns_labels)
            else:
                ok = p.ip_block is not None and p.ip_block.contains(peer.ip)
            if ok:
                matched = p
                break
        if matched is None:
            return None
        peer_text = str(matched)
    else:
        peer_text = "any"
    if rule.ports:
        for pm in rule.ports:
            if port_matches(pm, protocol, port, dst.pod):
                return RuleMatch(policy.key, index, peer_text, str(pm))
        return None
    return RuleMatch(policy.key, index, peer_text, "any")


def _direction(
    direction: str,
    subject: Pod | None,
    peer: Endpoint,
    dst: Endpoint,
    protocol: str,
    port: int,
    policies: Iterable[Policy],
    ns_labels: Mapping[str, Mapping[str, str]],
) -> DirectionVerdict:
    verdict = DirectionVerdict(direction, False)
    if subject is None:
        return verdict
    for policy in sorted(policies, key=lambda p: (p.namespace, p.name)):
        rules = policy.rules(direction)
        if rules is None or not selects(policy, subject):
            continue
        verdict.applies = True
        verdict.policies.append(policy.key)
        if verdict.allowed_by is None:
            for i, rule in enumerate(rules):
                m = _rule_match(policy, rule, i, peer, dst, protocol, port, ns_labels)
                if m is not None:
                    verdict.allowed_by = m
                    break
    return verdict


def evaluate(
    policies: Iterable[Policy],
    ns_labels: Mapping[str, Mapping[str, str]],
    src: Endpoint,
    dst: Endpoint,
    protocol: str,
    port: int,
) -> Verdict:
    """Whether a new connection from `src` to `dst` on (protocol, port) is
    allowed, and why. `protocol` in the API's spelling (TCP, UDP, SCTP)."""
    policies = list(policies)
    protocol = protocol.upper()
    egress = _direction(EGRESS, src.pod, dst, dst, protocol, port, policies, ns_labels)
    ingress = _direction(INGRESS, dst.pod, src, dst, protocol, port, policies, ns_labels)
    exempt = ""
    if src.pod is not None and dst.pod is not None and src.pod.key == dst.pod.key:
        exempt = "a pod reaching itself"
    elif src.pod is not None and dst.node and src.pod.node == dst.node:
        exempt = "a pod reaching its own node"
    elif dst.pod is not None and src.node and dst.pod.node == src.node:
        exempt = "a node reaching its own pod"
    return Verdict(src, dst, protocol, port, egress, ingress, exempt)
