"""NetworkPolicy semantics, pure: defaulting, validation (as the API server
words it), and the evaluator `podnet explain` prints, case by case."""

from __future__ import annotations

import pytest

from podnet.api.defaults import apply_defaults
from podnet.api.errors import Invalid
from podnet.api.kinds import lookup
from podnet.api.validation import validate
from podnet.cli import printers
from podnet.policy.model import Endpoint, Pod, evaluate, parse_policy

NS = {ns: {"ns": ns, "kubernetes.io/metadata.name": ns} for ns in "xyz"}
PORTS = (("http", "TCP", 8080), ("dns", "UDP", 5353))


def pod(key: str, ip: str, node: str = "node-1", **labels: str) -> Endpoint:
    ns, name = key.split("/")
    return Endpoint(ip, Pod(ns, name, {"pod": name, **labels}, ip, node, PORTS))


XA = pod("x/a", "10.244.1.10")
XB = pod("x/b", "10.244.2.11", "node-2")
YB = pod("y/b", "10.244.2.14", "node-2")
ZC = pod("z/c", "10.244.1.18")


def np(spec: dict, name: str = "p", ns: str = "x") -> dict:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }


def allowed(specs: list[dict], src: Endpoint, dst: Endpoint, proto: str = "TCP", port: int = 80) -> bool:
    policies = [parse_policy(apply_defaults(np(s, f"p{i}", s.pop("_ns", "x")))) for i, s in enumerate(specs)]
    return evaluate(policies, NS, src, dst, proto, port).allowed


# -- the kind, defaulting, validation, printing ------------------------------------------


def test_the_kind_is_known_by_its_names() -> None:
    for name in (
        "networkpolicies",
        "networkpolicy",
        "netpol",
        "NetworkPolicy",
        "networkpolicies.networking.k8s.io",
    ):
        assert lookup(name).kind == "NetworkPolicy"
    assert lookup("netpol").collection_path("x") == "/apis/networking.k8s.io/v1/namespaces/x/networkpolicies"


def test_policy_types_default_to_ingress_and_to_egress_when_egress_rules_exist() -> None:
    assert apply_defaults(np({"podSelector": {}}))["spec"]["policyTypes"] == ["Ingress"]
    assert apply_defaults(np({"egress": [{}]}))["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert apply_defaults(np({"egress": []}))["spec"]["policyTypes"] == ["Ingress"]
    assert apply_defaults(np({"policyTypes": ["Egress"]}))["spec"]["policyTypes"] == ["Egress"]
    out = apply_defaults(np({"ingress": [{"ports": [{"port": 80}]}]}))
    assert out["spec"]["podSelector"] == {} and out["spec"]["ingress"][0]["ports"][0]["protocol"] == "TCP"


def causes(spec: dict) -> list[tuple[str, str]]:
    with pytest.raises(Invalid) as info:
        validate(apply_defaults(np(spec)))
    return list(info.value.causes)


def test_validation_names_the_field_as_the_api_server_does() -> None:
    assert causes({"ingress": [{"from": [{}]}]}) == [
        ("spec.ingress[0].from[0]", "Required value: must specify a peer")
    ]
    assert causes({"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "namespaceSelector": {}}]}]}) == [
        ("spec.egress[0].to[0]", "Forbidden: may not specify both ipBlock and another peer")
    ]
    assert causes({"ingress": [{"ports": [{"port": 80, "endPort": 79}]}]}) == [
        ("spec.ingress[0].ports[0].endPort", "Invalid value: 80: must be greater than or equal to `port`")
    ]
    assert causes({"ingress": [{"ports": [{"port": "http", "endPort": 90}]}]}) == [
        (
            "spec.ingress[0].ports[0].endPort",
            "Invalid value: 90: may not be specified when `port` is non-numeric",
        )
    ]
    assert causes({"ingress": [{"ports": [{"endPort": 90}]}]}) == [
        (
            "spec.ingress[0].ports[0].endPort",
            "Invalid value: 90: may not be specified when `port` is not specified",
        )
    ]
    assert causes({"ingress": [{"ports": [{"protocol": "ICMP", "port": 0}]}]}) == [
        (
            "spec.ingress[0].ports[0].protocol",
            'Unsupported value: "ICMP": supported values: "TCP", "UDP", "SCTP"',
        ),
        ("spec.ingress[0].ports[0].port", "Invalid value: 0: must be between 1 and 65535, inclusive"),
    ]
    assert causes(
        {
            "ingress": [
                {"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.0.0.0/8", "11.0.0.0/24", "x"]}}]}
            ]
        }
    ) == [
        (
            "spec.ingress[0].from[0].ipBlock.except[0]",
            'Invalid value: "10.0.0.0/8": must be a strict subset of `cidr`',
        ),
        (
            "spec.ingress[0].from[0].ipBlock.except[1]",
            'Invalid value: "11.0.0.0/24": must be a strict subset of `cidr`',
        ),
        (
            "spec.ingress[0].from[0].ipBlock.except[2]",
            'Invalid value: "x": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)',
        ),
    ]
    assert causes({"ingress": [{"from": [{"ipBlock": {}}]}]}) == [
        ("spec.ingress[0].from[0].ipBlock.cidr", "Required value")
    ]
    assert causes({"policyTypes": ["Ingress", "Sideways"]}) == [
        ("spec.policyTypes[1]", 'Unsupported value: "Sideways": supported values: "Ingress", "Egress"')
    ]
    assert causes({"podSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}})[0][0] == (
        "spec.podSelector.matchExpressions[0].values"
    )
    validate(
        apply_defaults(
            np(
                {
                    "ingress": [
                        {
                            "from": [{"podSelector": {}, "namespaceSelector": {}}],
                            "ports": [{"port": "http"}, {"port": 80, "endPort": 90}],
                        }
                    ]
                }
            )
        )
    )


def test_get_prints_kubectls_columns() -> None:
    objs = [
        {
            **np({"podSelector": {}}, "deny"),
            "metadata": {"name": "deny", "namespace": "x", "creationTimestamp": "2024-01-01T00:00:00Z"},
        },
        {
            **np(
                {
                    "podSelector": {
                        "matchLabels": {"app": "web"},
                        "matchExpressions": [{"key": "tier", "operator": "In", "values": ["b", "a"]}],
                    }
                },
                "web",
            )
        },
    ]
    lines = printers.table("NetworkPolicy", objs).splitlines()
    assert lines[0].split() == ["NAME", "POD-SELECTOR", "AGE"]
    assert lines[1].split()[:2] == ["deny", "<none>"]
    assert lines[2].startswith("web ") and "   app=web,tier in (a,b)   " in lines[2]


# -- the evaluator ------------------------------------------------------------------------


def test_no_policy_no_isolation() -> None:
    assert allowed([], XA, YB)


def test_isolation_is_per_direction_and_per_selected_pod() -> None:
    deny_in = {"podSelector": {}}
    assert not allowed([dict(deny_in)], YB, XA)
    assert allowed([dict(deny_in)], XA, YB)  # x's pods can still send
    assert allowed([dict(deny_in, _ns="y")], XA, XB)
    deny_out = {"podSelector": {}, "policyTypes": ["Egress"]}
    assert not allowed([dict(deny_out)], XA, YB)
    assert allowed([dict(deny_out)], YB, XA)


def test_policies_add_up() -> None:
    deny = {"podSelector": {}}
    allow_b = {
        "podSelector": {"matchLabels": {"pod": "a"}},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}],
    }
    assert allowed([dict(deny), dict(allow_b)], XB, XA)
    assert not allowed([dict(deny), dict(allow_b)], YB, XA)  # podSelector alone: the policy's namespace


def test_empty_versus_missing() -> None:
    assert allowed([{"ingress": [{}]}], ZC, XA)  # a rule with nothing: everything
    assert allowed([{"ingress": [{"from": [], "ports": []}]}], ZC, XA)
    assert not allowed([{"ingress": []}], ZC, XA)  # no rules: nothing
    assert allowed([{"ingress": [{"from": [{"namespaceSelector": {}}]}]}], ZC, XA)  # every namespace
    assert not allowed([{"ingress": [{"from": [{"podSelector": {}}]}]}], ZC, XA)  # every pod of x only
    assert allowed([{"ingress": [{"from": [{"podSelector": {}}]}]}], XB, XA)


def test_and_versus_or() -> None:
    both = {
        "ingress": [
            {
                "from": [
                    {
                        "namespaceSelector": {"matchLabels": {"ns": "y"}},
                        "podSelector": {"matchLabels": {"pod": "c"}},
                    }
                ]
            }
        ]
    }
    either = {
        "ingress": [
            {
                "from": [
                    {"namespaceSelector": {"matchLabels": {"ns": "y"}}},
                    {"podSelector": {"matchLabels": {"pod": "c"}}},
                ]
            }
        ]
    }
    assert not allowed([dict(both)], YB, XA)
    assert allowed([dict(either)], YB, XA)


def test_ip_blocks_with_except_match_pod_and_other_addresses() -> None:
    spec = {"ingress": [{"from": [{"ipBlock": {"cidr": "10.244.0.0/16", "except": ["10.244.2.0/24"]}}]}]}
    assert allowed([dict(spec)], ZC, XA)
    assert not allowed([dict(spec)], YB, XA)
    assert not allowed([dict(spec)], Endpoint("198.51.100.100"), XA)
    assert allowed(
        [{"ingress": [{"from": [{"ipBlock": {"cidr": "198.51.100.0/24"}}]}]}], Endpoint("198.51.100.100"), XA
    )


def test_ports_protocols_ranges_and_names() -> None:
    assert allowed([{"ingress": [{"ports": [{"port": 80}]}]}], YB, XA, "TCP", 80)
    assert not allowed([{"ingress": [{"ports": [{"port": 80}]}]}], YB, XA, "UDP", 80)
    assert allowed([{"ingress": [{"ports": [{"protocol": "UDP"}]}]}], YB, XA, "UDP", 53)
    rng = {"ingress": [{"ports": [{"port": 8000, "endPort": 8080}]}]}
    assert allowed([dict(rng)], YB, XA, "TCP", 8080) and not allowed([dict(rng)], YB, XA, "TCP", 8081)
    named = {"ingress": [{"ports": [{"port": "http"}]}]}
    assert allowed([dict(named)], YB, XA, "TCP", 8080)
    assert not allowed([dict(named)], YB, XA, "TCP", 80)
    dns = {"ingress": [{"ports": [{"port": "dns", "protocol": "UDP"}]}]}
    assert allowed([dict(dns)], YB, XA, "UDP", 5353) and not allowed([dict(dns)], YB, XA, "TCP", 5353)
    # egress: the name resolves on the destination; an address outside any pod has none
    out = {"policyTypes": ["Egress"], "egress": [{"ports": [{"port": "http"}]}]}
    assert allowed([dict(out)], XA, YB, "TCP", 8080)
    assert not allowed([dict(out)], XA, Endpoint("198.51.100.100"), "TCP", 8080)


def test_a_pod_and_its_own_node_are_always_allowed() -> None:
    deny = {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    assert allowed([dict(deny)], XA, XA)
    assert allowed([dict(deny)], Endpoint("172.18.0.11", node="node-1"), XA)
    assert allowed([dict(deny)], XA, Endpoint("172.18.0.11", node="node-1"))
    assert not allowed([dict(deny)], Endpoint("172.18.0.12", node="node-2"), XA)


def test_the_explanation_names_policies_and_rules() -> None:
    policies = [
        parse_policy(apply_defaults(np({"podSelector": {}}, "deny"))),
        parse_policy(
            apply_defaults(
                np(
                    {
                        "ingress": [
                            {"ports": [{"port": 81}]},
                            {"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]},
                        ]
                    },
                    "web",
                )
            )
        ),
    ]
    v = evaluate(policies, NS, YB, XA, "TCP", 80)
    assert v.allowed and v.ingress.allowed_by is not None
    assert (v.ingress.allowed_by.policy, v.ingress.allowed_by.rule) == ("x/web", 1)
    assert v.ingress.policies == ["x/deny", "x/web"]
    assert "allowed by x/web ingress[1]: peer namespaces [ns=y], port any" in v.text()
    v = evaluate(policies, NS, ZC, XA, "TCP", 80)
    assert not v.allowed and "DENIED: no rule of x/deny, x/web allows it" in v.text()
    assert v.to_json()["ingress"]["isolated"] is True
