"""NetworkPolicy end to end, with real packets, on the upstream e2e suite's
model (test/e2e/network/netpol): namespaces x, y, z labelled `ns: NAME`,
pods a, b, c in each labelled `pod: NAME`, every pod serving 80 and 81 over
TCP and UDP on ports named serve-80-tcp, serve-81-udp, ... Pods a and c run
on node-1, b on node-2, so same-node and cross-node traffic are both seen.

Each case states its expected truth table explicitly, as upstream's
Reachability does, and compares it with `podnet connectivity` (every pod
probed from every pod); the last cases check `podnet explain` against the
probes, on fixed and on random policies (hypothesis)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import pytest
import yaml
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from podnet.lab import topology
from podnet.lab.probe import probe_once
from podnet.policy import connectivity, model
from tests.e2e.conftest import Lab, wait_for

NAMESPACES = ("x", "y", "z")
PODS = ("a", "b", "c")
NODE_OF = {"a": "node-1", "b": "node-2", "c": "node-1"}
KEYS = [f"{ns}/{p}" for ns in NAMESPACES for p in PODS]
Matrix = dict[str, dict[str, bool]]


def pod_doc(ns: str, name: str, labels: dict[str, str] | None = None, node: str = "node-1") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels or {"pod": name}},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {
                    "name": f"cont-{port}-{proto.lower()}",
                    "image": "agnhost",
                    "ports": [
                        {"name": f"serve-{port}-{proto.lower()}", "containerPort": port, "protocol": proto}
                    ],
                }
                for port in (80, 81)
                for proto in ("TCP", "UDP")
            ],
        },
    }


def model_manifest() -> str:
    docs: list[dict] = []
    for ns in NAMESPACES:
        docs.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"ns": ns}}})
        docs += [pod_doc(ns, p, node=NODE_OF[p]) for p in PODS]
    return yaml.safe_dump_all(docs)


@pytest.fixture(scope="module")
def cluster(lab: Lab) -> Iterator[Lab]:
    lab.apply(model_manifest())
    for ns in NAMESPACES:
        lab.wait_ready("", 3, namespace=ns, timeout=30)
    yield lab


@pytest.fixture
def netpols(cluster: Lab) -> Iterator[Callable[[str], None]]:
    """Apply policies (YAML); every policy in x, y, z is deleted afterwards."""

    def apply(manifest: str) -> None:
        cluster.apply(manifest)

    yield apply
    for item in cluster.json("get", "networkpolicies", "-A")["items"]:
        meta = item["metadata"]
        cluster.run("delete", "networkpolicy", meta["name"], "-n", meta["namespace"])


# -- truth tables -----------------------------------------------------------------


class Reachability:
    """Expectations, upstream style: everything allowed (or denied), then
    exceptions; a pod always reaches itself."""

    def __init__(self, default: bool = True) -> None:
        self.m: Matrix = {s: dict.fromkeys(KEYS, default) for s in KEYS}

    @staticmethod
    def _match(pattern: str, key: str) -> bool:
        ns, pod = pattern.split("/")
        kns, kpod = key.split("/")
        return ns in ("*", kns) and pod in ("*", kpod)

    def expect(self, src: str, dst: str, allowed: bool) -> Reachability:
        for s in KEYS:
            for d in KEYS:
                if self._match(src, s) and self._match(dst, d):
                    self.m[s][d] = allowed
        return self

    def matrix(self) -> Matrix:
        for k in KEYS:
            self.m[k][k] = True
        return self.m


def probe(lab: Lab, port: int, protocol: str = "tcp") -> Matrix:
    doc = lab.json("connectivity", "-A", "--port", str(port), "--protocol", protocol, "--timeout", "1")
    return {s: {d: doc["allowed"][s][d] for d in KEYS} for s in KEYS}


def show(m: Matrix) -> str:
    return "\n" + connectivity.format_table(m, KEYS)


def assert_reachability(
    lab: Lab, expected: Reachability | Matrix, port: int, protocol: str = "tcp", timeout: float = 15.0
) -> None:
    want = expected.matrix() if isinstance(expected, Reachability) else expected
    last: Matrix = {}

    def same() -> bool:
        nonlocal last
        last = probe(lab, port, protocol)
        return last == want

    try:
        wait_for(f"{protocol}/{port} reachability", same, timeout=timeout, interval=0.2)
    except AssertionError:
        diffs = connectivity.differences(want, last)
        raise AssertionError(
            f"{protocol}/{port}: expected{show(want)}observed{show(last)}differences: {diffs}"
        ) from None


def pod_ip(lab: Lab, key: str) -> str:
    ns, name = key.split("/")
    return str(lab.json("get", "pod", name, "-n", ns)["status"]["podIP"])


def np(name: str, ns: str, spec: dict) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns},
            "spec": spec,
        }
    )


DENY_ALL_INGRESS = {"podSelector": {}, "policyTypes": ["Ingress"]}
X_A = {"matchLabels": {"pod": "a"}}


# -- the cases ----------------------------------------------------------------------


def test_without_policies_every_pod_reaches_every_pod(cluster: Lab) -> None:
    assert_reachability(cluster, Reachability(), 80)
    assert_reachability(cluster, Reachability(), 81, "udp")


def test_default_deny_ingress(cluster: Lab, netpols: Callable[[str], None]) -> None:
    netpols(np("deny-ingress", "x", DENY_ALL_INGRESS))
    r = Reachability().expect("*/*", "x/*", False)
    assert_reachability(cluster, r, 80)
    assert_reachability(cluster, r, 81, "udp")


def test_default_deny_egress(cluster: Lab, netpols: Callable[[str], None]) -> None:
    netpols(np("deny-egress", "x", {"podSelector": {}, "policyTypes": ["Egress"]}))
    r = Reachability().expect("x/*", "*/*", False)
    assert_reachability(cluster, r, 80)
    assert_reachability(cluster, r, 80, "udp")


def test_allow_all_beside_deny_all_allows_all_policies_only_add(
    cluster: Lab, netpols: Callable[[str], None]
) -> None:
    netpols(np("deny-ingress", "x", DENY_ALL_INGRESS))
    netpols(np("allow-all", "x", {"podSelector": {}, "ingress": [{}]}))
    assert_reachability(cluster, Reachability(), 80)


def test_pod_selector_picks_pods_of_the_policys_namespace(
    cluster: Lab, netpols: Callable[[str], None]
) -> None:
    netpols(
        np(
            "allow-from-b",
            "x",
            {"podSelector": X_A, "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]},
        )
    )
    r = Reachability().expect("*/*", "x/a", False).expect("x/b", "x/a", True)
    assert_reachability(cluster, r, 80)


def test_namespace_selector_picks_every_pod_of_its_namespaces(
    cluster: Lab, netpols: Callable[[str], None]
) -> None:
    netpols(
        np(
            "allow-from-y",
            "x",
            {
                "podSelector": X_A,
                "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}],
            },
        )
    )
    r = Reachability().expect("*/*", "x/a", False).expect("y/*", "x/a", True)
    assert_reachability(cluster, r, 80)


def test_pod_and_namespace_selectors_in_one_peer_and_in_two(
    cluster: Lab, netpols: Callable[[str], None]
) -> None:
    ns_y = {"matchLabels": {"ns": "y"}}
    pod_b = {"matchLabels": {"pod": "b"}}
    netpols(
        np(
            "and",
            "x",
            {"podSelector": X_A, "ingress": [{"from": [{"namespaceSelector": ns_y, "podSelector": pod_b}]}]},
        )
    )
    r = Reachability().expect("*/*", "x/a", False).expect("y/b", "x/a", True)
    assert_reachability(cluster, r, 80)
    netpols(
        np(
            "and",
            "x",
            {
                "podSelector": X_A,
                "ingress": [{"from": [{"namespaceSelector": ns_y}, {"podSelector": pod_b}]}],
            },
        )
    )
    r = Reachability().expect("*/*", "x/a", False).expect("y/*", "x/a", True).expect("x/b", "x/a", True)
    assert_reachability(cluster, r, 80)


def test_match_expressions(cluster: Lab, netpols: Callable[[str], None]) -> None:
    netpols(
        np(
            "exprs",
            "x",
            {
                "podSelector": {"matchExpressions": [{"key": "pod", "operator": "In", "values": ["a", "b"]}]},
                "ingress": [
                    {
                        "from": [
                            {
                                "namespaceSelector": {
                                    "matchExpressions": [{"key": "ns", "operator": "NotIn", "values": ["x"]}]
                                },
                                "podSelector": {
                                    "matchExpressions": [
                                        {"key": "pod", "operator": "Exists"},
                                        {"key": "pod", "operator": "NotIn", "values": ["c"]},
                                    ]
                                },
                            }
                        ]
                    }
                ],
            },
        )
    )
    r = Reachability().expect("*/*", "x/a", False).expect("*/*", "x/b", False)
    for dst in ("x/a", "x/b"):
        r.expect("y/a", dst, True).expect("y/b", dst, True).expect("z/a", dst, True).expect("z/b", dst, True)
    assert_reachability(cluster, r, 80)


def test_ip_block_with_except(cluster: Lab, netpols: Callable[[str], None]) -> None:
    excluded = pod_ip(cluster, "y/b")
    netpols(
        np(
            "cidr",
            "x",
            {
                "podSelector": X_A,
                "ingress": [{"from": [{"ipBlock": {"cidr": "10.244.0.0/16", "except": [f"{excluded}/32"]}}]}],
            },
        )
    )
    r = Reachability().expect("y/b", "x/a", False)
    assert_reachability(cluster, r, 80)


def test_egress_ip_block_with_except(cluster: Lab, netpols: Callable[[str], None]) -> None:
    excluded = pod_ip(cluster, "z/c")
    spec = {
        "podSelector": X_A,
        "policyTypes": ["Egress"],
        "egress": [{"to": [{"ipBlock": {"cidr": "10.244.0.0/16", "except": [f"{excluded}/32"]}}]}],
    }
    netpols(np("cidr-egress", "x", spec))
    assert_reachability(cluster, Reachability().expect("x/a", "z/c", False), 80)


def test_numeric_ports_and_protocols(cluster: Lab, netpols: Callable[[str], None]) -> None:
    netpols(np("port-81", "x", {"podSelector": X_A, "ingress": [{"ports": [{"port": 81}]}]}))
    denied = Reachability().expect("*/*", "x/a", False)
    assert_reachability(cluster, denied, 80)
    assert_reachability(cluster, Reachability(), 81)
    assert_reachability(cluster, denied, 81, "udp")  # TCP is the default protocol


def test_named_ports_resolve_through_the_destination_pod(
    cluster: Lab, netpols: Callable[[str], None]
) -> None:
    netpols(
        np(
            "named",
            "x",
            {"podSelector": X_A, "ingress": [{"ports": [{"port": "serve-81-udp", "protocol": "UDP"}]}]},
        )
    )
    denied = Reachability().expect("*/*", "x/a", False)
    assert_reachability(cluster, Reachability(), 81, "udp")
    assert_reachability(cluster, denied, 80, "udp")
    assert_reachability(cluster, denied, 81)


def test_egress_named_ports(cluster: Lab, netpols: Callable[[str], None]) -> None:
    spec = {"podSelector": X_A, "policyTypes": ["Egress"], "egress": [{"ports": [{"port": "serve-80-tcp"}]}]}
    netpols(np("named-egress", "x", spec))
    assert_reachability(cluster, Reachability(), 80)
    assert_reachability(cluster, Reachability().expect("x/a", "*/*", False), 81)


def test_end_port_ranges(cluster: Lab, netpols: Callable[[str], None]) -> None:
    netpols(
        np(
            "range",
            "x",
            {"podSelector": X_A, "ingress": [{"ports": [{"port": 81, "endPort": 90, "protocol": "UDP"}]}]},
        )
    )
    denied = Reachability().expect("*/*", "x/a", False)
    assert_reachability(cluster, Reachability(), 81, "udp")
    assert_reachability(cluster, denied, 80, "udp")
    netpols(np("range", "x", {"podSelector": X_A, "ingress": [{"ports": [{"port": 79, "endPort": 80}]}]}))
    assert_reachability(cluster, Reachability(), 80)
    assert_reachability(cluster, denied, 81)


def test_egress_to_a_service_is_judged_against_its_backend(
    cluster: Lab, netpols: Callable[[str], None]
) -> None:
    cluster.apply(
        """
apiVersion: v1
kind: Service
metadata: {name: svc-b, namespace: y}
spec:
  selector: {pod: b}
  ports: [{port: 9000, targetPort: serve-80-tcp}]
---
apiVersion: v1
kind: Service
metadata: {name: svc-c, namespace: y}
spec:
  selector: {pod: c}
  ports: [{port: 9000, targetPort: 80}]
"""
    )
    vip_b = cluster.json("get", "svc", "svc-b", "-n", "y")["spec"]["clusterIP"]
    vip_c = cluster.json("get", "svc", "svc-c", "-n", "y")["spec"]["clusterIP"]
    try:
        wait_for("svc-b to answer", lambda: cluster.probe("a", vip_b, 9000, namespace="x")[0]["ok"])
        wait_for("svc-c to answer", lambda: cluster.probe("a", vip_c, 9000, namespace="x")[0]["ok"])
        to_y_b = {
            "namespaceSelector": {"matchLabels": {"ns": "y"}},
            "podSelector": {"matchLabels": {"pod": "b"}},
        }
        spec = {
            "podSelector": X_A,
            "policyTypes": ["Egress"],
            "egress": [{"to": [to_y_b], "ports": [{"port": 80}]}],
        }
        netpols(np("to-svc-b", "x", spec))
        wait_for(
            "svc-c to be denied",
            lambda: not cluster.probe("a", vip_c, 9000, namespace="x", timeout=0.5)[0]["ok"],
        )
        [r] = cluster.probe("a", vip_b, 9000, namespace="x")
        assert r["ok"] and r["pod"] == "b"
    finally:
        cluster.run("delete", "svc", "svc-b", "svc-c", "-n", "y")


def test_policy_updates_and_deletions_take_effect(cluster: Lab, netpols: Callable[[str], None]) -> None:
    def allow_from(ns: str) -> str:
        return np(
            "from-ns",
            "x",
            {"podSelector": X_A, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": ns}}}]}]},
        )

    netpols(allow_from("y"))
    assert_reachability(cluster, Reachability().expect("*/*", "x/a", False).expect("y/*", "x/a", True), 80)
    netpols(allow_from("z"))
    assert_reachability(cluster, Reachability().expect("*/*", "x/a", False).expect("z/*", "x/a", True), 80)
    cluster.run("delete", "networkpolicy", "from-ns", "-n", "x")
    assert_reachability(cluster, Reachability(), 80)


def _reacher(lab: Lab, src: str, dst: str) -> Callable[[], bool]:
    """A probe from src to dst on TCP 80, in this process (the CLI's start-up
    would blur the timing)."""
    ns, name = src.split("/")
    pod = lab.json("get", "pod", name, "-n", ns)
    netns = topology.pod_netns(lab.name, ns, name, pod["metadata"]["uid"])
    ip = pod_ip(lab, dst)
    return lambda: probe_once(ip, 80, "tcp", 0.5, netns=netns).ok


def _time_until(reach: Callable[[], bool], want: bool, since: float, timeout: float = 5.0) -> float:
    """Seconds from `since` until `reach()` gives `want`."""
    wait_for(f"reachability {want}", lambda: reach() == want, timeout=timeout, interval=0.01)
    return time.monotonic() - since


def test_pod_label_changes_take_effect_within_about_a_second(
    cluster: Lab, netpols: Callable[[str], None]
) -> None:
    netpols(
        np(
            "from-clients",
            "x",
            {
                "podSelector": X_A,
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}]}],
            },
        )
    )
    assert_reachability(cluster, Reachability().expect("*/*", "x/a", False), 80)
    reach = _reacher(cluster, "x/c", "x/a")
    try:
        start = time.monotonic()
        _patch_labels(cluster, "Pod", "x", "c", {"role": "client"})
        assert _time_until(reach, True, start) < 5  # "about a second", with room for a loaded CI machine
        start = time.monotonic()
        _patch_labels(cluster, "Pod", "x", "c", {"role": None})
        assert _time_until(reach, False, start) < 5
    finally:
        _patch_labels(cluster, "Pod", "x", "c", {"role": None})


def test_namespace_label_changes_take_effect(cluster: Lab, netpols: Callable[[str], None]) -> None:
    netpols(
        np(
            "from-blue",
            "x",
            {
                "podSelector": X_A,
                "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "blue"}}}]}],
            },
        )
    )
    assert_reachability(cluster, Reachability().expect("*/*", "x/a", False), 80)
    reach = _reacher(cluster, "y/b", "x/a")
    try:
        start = time.monotonic()
        _patch_labels(cluster, "Namespace", None, "y", {"team": "blue"})
        assert _time_until(reach, True, start) < 5  # "about a second", with room for a loaded CI machine
        assert_reachability(
            cluster, Reachability().expect("*/*", "x/a", False).expect("y/*", "x/a", True), 80
        )
    finally:
        _patch_labels(cluster, "Namespace", None, "y", {"team": None})
    assert_reachability(cluster, Reachability().expect("*/*", "x/a", False), 80)


def _patch_labels(lab: Lab, kind: str, ns: str | None, name: str, labels: dict[str, str | None]) -> None:
    """Merge-patch labels through the API (the CLI has no `label` verb)."""
    import urllib.request

    state = json.loads((lab.state_dir / "state.json").read_text())
    path = f"/api/v1/namespaces/{ns}/pods/{name}" if kind == "Pod" else f"/api/v1/namespaces/{name}"
    req = urllib.request.Request(
        state["api"] + path,
        data=json.dumps({"metadata": {"labels": labels}}).encode(),
        method="PATCH",
        headers={"Content-Type": "application/merge-patch+json"},
    )
    urllib.request.urlopen(req).read()


def test_a_new_pod_is_isolated_as_soon_as_it_runs(cluster: Lab, netpols: Callable[[str], None]) -> None:
    netpols(np("deny-ingress", "x", DENY_ALL_INGRESS))
    cluster.apply(yaml.safe_dump(pod_doc("x", "d", node="node-2")))
    try:
        cluster.wait_ready("pod=d", 1, namespace="x", timeout=20)
        [r] = cluster.probe("a", pod_ip(cluster, "x/d"), 80, namespace="y", timeout=0.5)
        assert not r["ok"]
    finally:
        cluster.run("delete", "pod", "d", "-n", "x")


def test_a_pods_own_node_always_reaches_it_other_nodes_do_not(
    cluster: Lab, netpols: Callable[[str], None]
) -> None:
    netpols(np("deny-ingress", "x", DENY_ALL_INGRESS))
    ip = pod_ip(cluster, "x/a")  # on node-1
    wait_for("x/a isolated", lambda: not cluster.probe("b", ip, 80, namespace="y", timeout=0.5)[0]["ok"])
    assert cluster.probe("node/node-1", ip, 80)[0]["ok"]
    assert not cluster.probe("node/node-2", ip, 80, timeout=0.5)[0]["ok"]


def test_get_networkpolicies_as_kubectl_shows_them(cluster: Lab, netpols: Callable[[str], None]) -> None:
    netpols(np("deny-ingress", "x", DENY_ALL_INGRESS))
    netpols(np("egress-a", "x", {"podSelector": X_A, "egress": [{}]}))
    lines = cluster.run("get", "netpol", "-n", "x").stdout.splitlines()
    assert lines[0].split() == ["NAME", "POD-SELECTOR", "AGE"]
    assert [line.split()[:2] for line in lines[1:]] == [["deny-ingress", "<none>"], ["egress-a", "pod=a"]]
    doc = yaml.safe_load(cluster.run("get", "networkpolicies", "egress-a", "-n", "x", "-o", "yaml").stdout)
    assert doc["kind"] == "NetworkPolicy" and doc["apiVersion"] == "networking.k8s.io/v1"
    assert doc["spec"]["policyTypes"] == ["Ingress", "Egress"]  # defaulted: egress rules are present
    bad = cluster.run(
        "apply",
        "-f",
        "-",
        input=np(
            "bad",
            "x",
            {
                "podSelector": {},
                "ingress": [
                    {
                        "from": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}],
                        "ports": [{"port": 80, "endPort": 79}],
                    }
                ],
            },
        ),
        check=False,
    )
    assert bad.returncode == 1
    assert "spec.ingress[0].from[0]: Forbidden: may not specify both ipBlock and another peer" in bad.stderr
    assert "spec.ingress[0].ports[0].endPort" in bad.stderr


def test_explain_names_the_policies_and_the_rule(cluster: Lab, netpols: Callable[[str], None]) -> None:
    netpols(np("deny-ingress", "x", DENY_ALL_INGRESS))
    netpols(
        np(
            "allow-y-81",
            "x",
            {
                "podSelector": X_A,
                "ingress": [
                    {"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}], "ports": [{"port": 81}]}
                ],
            },
        )
    )
    ok = cluster.run("explain", "y/b", "x/a", "--port", "81")
    assert ok.returncode == 0 and "allowed by x/allow-y-81 ingress[0]" in ok.stdout
    no = cluster.run("explain", "y/b", "x/a", "--port", "80", check=False)
    assert (
        no.returncode == 1
        and "DENIED" in no.stdout
        and "x/allow-y-81" in no.stdout
        and "x/deny-ingress" in no.stdout
    )
    doc = json.loads(cluster.run("explain", "b", "x/a", "-n", "y", "--port", "81", "-o", "json").stdout)
    assert doc["allowed"] and doc["ingress"]["allowedBy"]["policy"] == "x/allow-y-81"
    text = cluster.run("connectivity", "-n", "x", "--port", "81").stdout
    assert text.splitlines()[1].split() == ["-", "x/a", "x/b", "x/c"]


def test_the_node_holds_the_policy_table(cluster: Lab, netpols: Callable[[str], None]) -> None:
    netpols(np("deny-ingress", "x", DENY_ALL_INGRESS))
    a_ip = pod_ip(cluster, "x/a")

    def programmed() -> bool:
        text = cluster.run("rules", "node-1", "--table", "podnet-policy").stdout
        return f"{a_ip} : goto in-pods/" in text

    wait_for("node-1 to hold x/a in ingress_pods", programmed)
    text = cluster.run("rules", "node-2", "--table", "podnet-policy").stdout
    assert a_ip not in text  # each node holds its own pods only


# -- explain and the probes agree -------------------------------------------------------


def _cluster_objects(lab: Lab) -> tuple[list[model.Pod], list[model.Policy], dict[str, dict[str, str]]]:
    pods = [p for o in lab.json("get", "pods", "-A")["items"] if (p := model.parse_pod(o)) and p.key in KEYS]
    policies = [model.parse_policy(o) for o in lab.json("get", "networkpolicies", "-A")["items"]]
    ns_labels = {
        o["metadata"]["name"]: model.namespace_labels(o) for o in lab.json("get", "namespaces")["items"]
    }
    return sorted(pods, key=lambda p: p.key), policies, ns_labels


def _assert_explain_matches_probes(lab: Lab, port: int, protocol: str) -> None:
    pods, policies, ns_labels = _cluster_objects(lab)
    expected = connectivity.expected_matrix(pods, policies, ns_labels, port, protocol)
    assert_reachability(lab, expected, port, protocol)


def test_explain_agrees_with_the_probes_on_a_mix_of_policies(
    cluster: Lab, netpols: Callable[[str], None]
) -> None:
    netpols(np("deny-all", "y", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}))
    netpols(
        np(
            "b-egress",
            "y",
            {
                "podSelector": {"matchLabels": {"pod": "b"}},
                "egress": [{"to": [{"namespaceSelector": {}}], "ports": [{"port": "serve-80-tcp"}]}],
            },
        )
    )
    netpols(
        np(
            "c-in",
            "z",
            {
                "podSelector": {"matchLabels": {"pod": "c"}},
                "ingress": [
                    {"from": [{"podSelector": {"matchLabels": {"pod": "b"}}, "namespaceSelector": {}}]}
                ],
            },
        )
    )
    _assert_explain_matches_probes(cluster, 80, "tcp")
    _assert_explain_matches_probes(cluster, 81, "udp")


_labels = st.sampled_from([{}, {"pod": "a"}, {"pod": "b"}, {"pod": "c"}])
_ns_labels = st.sampled_from([{}, {"ns": "x"}, {"ns": "y"}, {"ns": "z"}])
_peer = st.one_of(
    st.builds(lambda p: {"podSelector": {"matchLabels": p}}, _labels),
    st.builds(lambda n: {"namespaceSelector": {"matchLabels": n}}, _ns_labels),
    st.builds(
        lambda p, n: {"podSelector": {"matchLabels": p}, "namespaceSelector": {"matchLabels": n}},
        _labels,
        _ns_labels,
    ),
    st.just({"ipBlock": {"cidr": "10.244.1.0/24"}}),
    st.just({"ipBlock": {"cidr": "10.244.0.0/16", "except": ["10.244.2.0/24"]}}),
)
_port = st.sampled_from(
    [
        {"port": 80},
        {"port": 81},
        {"port": 80, "protocol": "UDP"},
        {"port": "serve-80-tcp"},
        {"port": 79, "endPort": 80},
        {"protocol": "UDP"},
    ]
)
_rule = st.fixed_dictionaries(
    {}, optional={"peers": st.lists(_peer, max_size=2), "ports": st.lists(_port, max_size=2)}
)
_policy = st.fixed_dictionaries(
    {
        "ns": st.sampled_from(NAMESPACES),
        "pods": _labels,
        "types": st.sampled_from([["Ingress"], ["Egress"], ["Ingress", "Egress"]]),
        "ingress": st.lists(_rule, max_size=2),
        "egress": st.lists(_rule, max_size=2),
    }
)


def _spec(p: dict) -> dict:
    def rules(items: list[dict], key: str) -> list[dict]:
        out = []
        for r in items:
            rule: dict = {}
            if "peers" in r:
                rule[key] = r["peers"]
            if "ports" in r:
                rule["ports"] = r["ports"]
            out.append(rule)
        return out

    return {
        "podSelector": {"matchLabels": p["pods"]},
        "policyTypes": p["types"],
        "ingress": rules(p["ingress"], "from"),
        "egress": rules(p["egress"], "to"),
    }


@settings(
    max_examples=5,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
    derandomize=True,  # the same examples every run: a failure here is a finding, not a flake
    # No shrinking: each example costs real probes, and a failure prints its policies as they are.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
@given(
    policies=st.lists(_policy, min_size=1, max_size=3),
    port=st.sampled_from([(80, "tcp"), (80, "udp"), (81, "tcp")]),
)
# Found by this test: port 80 and the range 79-80 in one rule made an
# interval set with overlapping elements, which nftables refused, and the
# node's whole policy transaction with it.
@example(
    policies=[
        {"ns": "y", "pods": {"pod": "a"}, "types": ["Ingress"], "ingress": [], "egress": []},
        {
            "ns": "x",
            "pods": {},
            "types": ["Egress"],
            "ingress": [],
            "egress": [
                {
                    "peers": [
                        {"namespaceSelector": {"matchLabels": {"ns": "y"}}},
                        {"ipBlock": {"cidr": "10.244.0.0/16", "except": ["10.244.2.0/24"]}},
                    ],
                    "ports": [{"port": 80}, {"port": 79, "endPort": 80}],
                },
                {"ports": []},
            ],
        },
        {"ns": "z", "pods": {"pod": "a"}, "types": ["Ingress", "Egress"], "ingress": [], "egress": []},
    ],
    port=(80, "udp"),
)
def test_explain_agrees_with_the_probes_on_random_policies(
    cluster: Lab, policies: list[dict], port: tuple[int, str]
) -> None:
    manifest = "---\n".join(np(f"random-{i}", p["ns"], _spec(p)) for i, p in enumerate(policies))
    cluster.apply(manifest)
    try:
        _assert_explain_matches_probes(cluster, *port)
    finally:
        cluster.run("delete", "-f", "-", input=manifest)
