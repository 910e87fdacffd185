"""The NetworkPolicy nftables text, pinned: the full table for the upstream
model cluster with representative policies (a golden file), the deltas
for pod, label and policy changes, and a property test that runs packets
through the compiled rules (a small interpreter of the Ruleset) and
compares them with the evaluator `podnet explain` uses.

Regenerate the golden file with PODNET_UPDATE_GOLDEN=1 (and read the diff).
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from podnet.policy import model, render
from podnet.policy.model import Endpoint, Pod, evaluate, parse_policy

GOLDEN = Path(__file__).parent / "golden" / "policy_full.nft"
NODE_OF = {"a": "node-1", "b": "node-2", "c": "node-1"}
PORTS = tuple((f"serve-{port}-{proto.lower()}", proto, port) for port in (80, 81) for proto in ("TCP", "UDP"))


def pods() -> list[Pod]:
    out = []
    for i, ns in enumerate("xyz"):
        for j, name in enumerate("abc"):
            node = NODE_OF[name]
            subnet = 1 if node == "node-1" else 2
            out.append(Pod(ns, name, {"pod": name}, f"10.244.{subnet}.{10 + 3 * i + j}", node, PORTS))
    return out


NS_LABELS = {ns: {"ns": ns, "kubernetes.io/metadata.name": ns} for ns in "xyz"}


def policy(name: str, ns: str, spec: dict) -> model.Policy:
    return parse_policy({"metadata": {"name": name, "namespace": ns}, "spec": spec})


REPRESENTATIVE = [
    policy("deny-all", "x", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
    policy(
        "web",
        "x",
        {
            "podSelector": {"matchLabels": {"pod": "a"}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {
                    "from": [
                        {
                            "namespaceSelector": {"matchLabels": {"ns": "y"}},
                            "podSelector": {"matchLabels": {"pod": "b"}},
                        },
                        {"ipBlock": {"cidr": "10.244.0.0/16", "except": ["10.244.2.0/24"]}},
                    ],
                    "ports": [
                        {"port": 80, "protocol": "TCP"},
                        {"port": "serve-81-udp", "protocol": "UDP"},
                        {"port": 90, "endPort": 99, "protocol": "TCP"},
                    ],
                },
                {"ports": [{"protocol": "SCTP"}]},
            ],
            "egress": [
                {"to": [{"podSelector": {}}], "ports": [{"port": "serve-80-tcp", "protocol": "TCP"}]},
                {"to": [{"namespaceSelector": {}}]},
            ],
        },
    ),
    policy("other-node", "y", {"podSelector": {"matchLabels": {"pod": "b"}}, "ingress": [{}]}),
]


def index(policies: list[model.Policy], pod_list: list[Pod] | None = None) -> render.Index:
    idx = render.Index()
    for ns, labels in NS_LABELS.items():
        idx.set_namespace(ns, dict(labels))
    for p in pod_list if pod_list is not None else pods():
        idx.set_pod(p)
    for pol in policies:
        idx.set_policy(pol)
    return idx


def test_the_full_table_matches_the_golden_file() -> None:
    text = render.full(render.compile_ruleset(index(REPRESENTATIVE), "node-1"))
    if os.environ.get("PODNET_UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()


def test_a_node_holds_only_its_own_pods_and_the_policies_selecting_them() -> None:
    rs = render.compile_ruleset(index(REPRESENTATIVE), "node-2")
    # node-2 runs the b pods: x/b (deny-all) and y/b (other-node); not x/a's "web".
    assert set(rs.ingress_pods) == {"10.244.2.11", "10.244.2.14"}
    assert set(rs.egress_pods) == {"10.244.2.11"}
    assert not any("/web/" in name for name in rs.policy_chains)


def test_pods_selected_by_the_same_policies_share_one_chain() -> None:
    rs = render.compile_ruleset(index(REPRESENTATIVE), "node-1")
    # x/c is selected by deny-all only; x/a by deny-all and web.
    assert rs.ingress_pods["10.244.1.10"] != rs.ingress_pods["10.244.1.12"]
    many = [Pod("x", f"p{i}", {"pod": "c"}, f"10.244.1.{100 + i}", "node-1") for i in range(50)]
    rs = render.compile_ruleset(index(REPRESENTATIVE, pods() + many), "node-1")
    assert len({rs.ingress_pods[p.ip] for p in many}) == 1
    assert len(rs.set_chains) == 4  # {deny-all}, {deny-all, web} x ingress, egress


def test_a_new_pod_changes_elements_only() -> None:
    before = render.compile_ruleset(index(REPRESENTATIVE), "node-1")
    new_pod = Pod("z", "d", {"pod": "b"}, "10.244.1.99", "node-1", PORTS)
    after = render.compile_ruleset(index(REPRESENTATIVE, [*pods(), new_pod]), "node-1")
    text = render.delta(before, after)
    # z/d is a peer of web's second egress rule (every namespace), and nothing selects it.
    assert text == "add element ip podnet-policy eg/x/web/6f4c8a1e/1/peers { 10.244.1.99 }\n".replace(
        "6f4c8a1e", render.policy_chain_name(REPRESENTATIVE[1], model.EGRESS).split("/")[-1]
    )


def test_a_label_change_moves_a_pod_between_set_chains_by_elements_only() -> None:
    idx = index(REPRESENTATIVE)
    before = render.compile_ruleset(idx, "node-1")
    xc = next(p for p in pods() if p.key == "x/c")
    idx.set_pod(Pod("x", "c", {"pod": "a"}, xc.ip, xc.node, PORTS))
    after = render.compile_ruleset(idx, "node-1")
    assert after.ingress_pods[xc.ip] == after.ingress_pods["10.244.1.10"]  # now web selects it, as x/a
    lines = render.delta(before, after).splitlines()
    # No chain or rule is made: the pod's map elements switch to the chain
    # x/a uses; the chain nobody on this node uses any more goes.
    assert lines and all(" element " in line or line.startswith("delete chain") for line in lines), lines
    assert [line for line in lines if line.startswith("delete chain")] == [
        f"delete chain ip podnet-policy {before.egress_pods[xc.ip]}",
        f"delete chain ip podnet-policy {before.ingress_pods[xc.ip]}",
    ]
    assert (
        f"add element ip podnet-policy ingress_pods {{ {xc.ip} : goto {after.ingress_pods[xc.ip]} }}" in lines
    )


def test_a_changed_policy_gets_new_chains_and_the_old_ones_go() -> None:
    idx = index(REPRESENTATIVE)
    before = render.compile_ruleset(idx, "node-1")
    idx.set_policy(policy("deny-all", "x", {"podSelector": {}, "policyTypes": ["Ingress"]}))
    after = render.compile_ruleset(idx, "node-1")
    text = render.delta(before, after)
    assert "delete chain ip podnet-policy eg/x/deny-all/" in text
    lines = text.splitlines()
    # maps are switched before the chains they pointed to are deleted
    last_map = max(i for i, line in enumerate(lines) if "_pods" in line and "element" in line)
    first_delete = min(i for i, line in enumerate(lines) if line.startswith("delete chain"))
    assert last_map < first_delete


def test_deltas_compose_back_to_the_same_ruleset() -> None:
    a = render.compile_ruleset(index(REPRESENTATIVE), "node-1")
    b = render.compile_ruleset(index(REPRESENTATIVE[:1]), "node-1")
    assert render.delta(a, a) == ""
    assert render.delta(a, b) and render.delta(b, a)


# -- the compiled rules, interpreted, agree with the evaluator -------------------------


def _in_set(rs: render.Ruleset, name: str, key: tuple[str, ...]) -> bool:
    s = rs.sets[name]
    for el in s.elements:
        parts = [p.strip() for p in el.split(" . ")]
        if s.type == render.ADDR_SET:
            if ipaddress.ip_address(key[0]) in ipaddress.ip_network(parts[0]):
                return True
        elif s.type == render.PORT_SET:
            lo, _, hi = parts[1].partition("-")
            if parts[0] == key[0] and int(lo) <= int(key[1]) <= int(hi or lo):
                return True
        elif tuple(parts) == key:
            return True
    return False


def _passes(
    rs: render.Ruleset, direction: str, pod_ip: str, peer_ip: str, daddr: str, proto: str, port: int
) -> bool:
    pods_map = rs.ingress_pods if direction == model.INGRESS else rs.egress_pods
    if pod_ip not in pods_map:
        return True
    for chain_name in rs.set_chains[pods_map[pod_ip]].policies:
        for rule in rs.policy_chains[chain_name].rules:
            if rule.peers and not _in_set(rs, rule.peers, (peer_ip,)):
                continue
            if rule.ports and not _in_set(rs, rule.ports, (proto, str(port))):
                continue
            if rule.named and not _in_set(rs, rule.named, (daddr, proto, str(port))):
                continue
            return True
    return False


def kernel_allows(idx: render.Index, src: Pod, dst: Pod, proto: str, port: int) -> bool:
    if src.key == dst.key:
        return True
    p = proto.lower()
    egress = render.compile_ruleset(idx, src.node)
    ingress = render.compile_ruleset(idx, dst.node)
    return _passes(egress, model.EGRESS, src.ip, dst.ip, dst.ip, p, port) and _passes(
        ingress, model.INGRESS, dst.ip, src.ip, dst.ip, p, port
    )


_labels = st.sampled_from([{}, {"pod": "a"}, {"pod": "b"}])
_peer = st.one_of(
    st.builds(lambda p: {"podSelector": {"matchLabels": p}}, _labels),
    st.builds(lambda n: {"namespaceSelector": {"matchLabels": n}}, st.sampled_from([{}, {"ns": "y"}])),
    st.builds(
        lambda p, n: {"podSelector": {"matchLabels": p}, "namespaceSelector": {"matchLabels": n}},
        _labels,
        st.sampled_from([{}, {"ns": "x"}]),
    ),
    st.just({"ipBlock": {"cidr": "10.244.1.0/24"}}),
    st.just({"ipBlock": {"cidr": "10.244.0.0/16", "except": ["10.244.2.8/29", "10.244.1.12/32"]}}),
)
_port = st.sampled_from(
    [
        {"port": 80, "protocol": "TCP"},
        {"port": 81, "protocol": "UDP"},
        {"port": "serve-80-tcp", "protocol": "TCP"},
        {"port": "serve-81-udp", "protocol": "UDP"},
        {"port": 79, "endPort": 80, "protocol": "TCP"},
        {"protocol": "UDP"},
    ]
)
_rule = st.builds(
    lambda peers, ports: {k: v for k, v in (("peers", peers), ("ports", ports)) if v is not None},
    st.none() | st.lists(_peer, max_size=2),
    st.none() | st.lists(_port, max_size=2),
)
_policy = st.builds(
    lambda i, ns, sel, types, ing, eg: policy(
        f"p{i}",
        ns,
        {
            "podSelector": {"matchLabels": sel},
            "policyTypes": types,
            "ingress": [
                {
                    **({"from": r["peers"]} if "peers" in r else {}),
                    **({"ports": r["ports"]} if "ports" in r else {}),
                }
                for r in ing
            ],
            "egress": [
                {
                    **({"to": r["peers"]} if "peers" in r else {}),
                    **({"ports": r["ports"]} if "ports" in r else {}),
                }
                for r in eg
            ],
        },
    ),
    st.integers(0, 1000),
    st.sampled_from("xyz"),
    _labels,
    st.sampled_from([["Ingress"], ["Egress"], ["Ingress", "Egress"]]),
    st.lists(_rule, max_size=2),
    st.lists(_rule, max_size=2),
)


@settings(max_examples=300, deadline=None)
@given(
    policies=st.lists(_policy, max_size=4, unique_by=lambda p: p.key),
    pair=st.tuples(st.integers(0, 8), st.integers(0, 8)),
    traffic=st.sampled_from([("TCP", 80), ("TCP", 81), ("UDP", 80), ("UDP", 81), ("TCP", 9)]),
)
def test_the_compiled_rules_allow_exactly_what_the_evaluator_allows(
    policies: list[model.Policy], pair: tuple[int, int], traffic: tuple[str, int]
) -> None:
    all_pods = pods()
    src, dst = all_pods[pair[0]], all_pods[pair[1]]
    idx = index(policies)
    verdict = evaluate(policies, NS_LABELS, Endpoint(src.ip, src), Endpoint(dst.ip, dst), *traffic)
    assert kernel_allows(idx, src, dst, *traffic) == verdict.allowed, verdict.text()


def test_overlapping_ports_of_one_rule_are_merged_for_the_interval_set() -> None:
    # nftables refuses overlapping interval elements (and with them the whole transaction).
    ports = [
        model.PortMatch("TCP", 80),
        model.PortMatch("TCP", 79, 80),
        model.PortMatch("TCP", 82, 90),
        model.PortMatch("UDP", 80),
        model.PortMatch("TCP", 81),
    ]
    assert render._port_elements(ports) == {"tcp . 79-90", "udp . 80"}
