"""The lab's plan as plain data: addresses, namespace and interface names,
and the cloud router's ruleset."""

from __future__ import annotations

import uuid

import pytest

from podnet.config import ClusterConfig
from podnet.lab.topology import host_veth, netns_prefix, plan, pod_netns, router_ruleset


def test_nodes_get_fabric_public_and_pod_addresses_by_their_index() -> None:
    p = plan(ClusterConfig(name="lab", nodes=3))
    assert [(n.name, n.internal_ip, n.external_ip, n.pod_cidr) for n in p.nodes] == [
        ("node-1", "172.18.0.11", "203.0.113.11", "10.244.1.0/24"),
        ("node-2", "172.18.0.12", "203.0.113.12", "10.244.2.0/24"),
        ("node-3", "172.18.0.13", "203.0.113.13", "10.244.3.0/24"),
    ]


def test_the_router_and_internet_addresses_follow_the_architecture() -> None:
    p = plan(ClusterConfig(name="lab"))
    assert p.router_ip == "172.18.0.1"
    assert p.router_wan_ip == "198.51.100.1"
    assert p.internet_ip == "198.51.100.100"
    assert p.node_prefixlen == 24 and p.internet_prefixlen == 24
    assert p.public_network == "203.0.113.0/24"


def test_a_nodes_pod_gateway_is_the_first_address_of_its_pod_cidr() -> None:
    p = plan(ClusterConfig(name="lab"))
    assert p.node("node-2").pod_gateway == "10.244.2.1"


def test_the_plan_follows_a_custom_config() -> None:
    cfg = ClusterConfig(
        name="lab",
        nodes=2,
        cluster_cidr="10.10.0.0/16",
        node_cidr_mask=26,
        node_network="192.168.50.0/24",
        public_network="100.64.0.0/24",
        internet_network="192.0.2.0/24",
    )
    p = plan(cfg)
    assert [n.pod_cidr for n in p.nodes] == ["10.10.0.64/26", "10.10.0.128/26"]
    assert [n.internal_ip for n in p.nodes] == ["192.168.50.11", "192.168.50.12"]
    assert [n.external_ip for n in p.nodes] == ["100.64.0.11", "100.64.0.12"]
    assert p.router_ip == "192.168.50.1" and p.internet_ip == "192.0.2.100"


def test_an_unknown_node_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        plan(ClusterConfig(name="lab")).node("node-9")


def test_every_namespace_of_a_cluster_carries_its_prefix() -> None:
    p = plan(ClusterConfig(name="lab", nodes=2))
    assert p.all_netns == [
        "pn.lab.fabric",
        "pn.lab.router",
        "pn.lab.internet",
        "pn.lab.node-1",
        "pn.lab.node-2",
    ]
    assert pod_netns("lab", "default", "web", "0123456789abcdef").startswith(netns_prefix("lab"))


def test_namespaces_of_clusters_a_and_a_2_never_collide_or_share_a_prefix() -> None:
    a, a2 = plan(ClusterConfig(name="a", nodes=3)), plan(ClusterConfig(name="a-2", nodes=3))
    uid = str(uuid.uuid4())
    names_a = [*a.all_netns, pod_netns("a", "default", "web", uid)]
    names_a2 = [*a2.all_netns, pod_netns("a-2", "default", "web", uid)]
    assert not set(names_a) & set(names_a2)
    # `podnet down --name a` removes namespaces by prefix: none of a-2's may match.
    assert not [n for n in names_a2 if n.startswith(netns_prefix("a"))]
    assert not [n for n in names_a if n.startswith(netns_prefix("a-2"))]


def test_a_recreated_pod_of_the_same_name_gets_another_namespace() -> None:
    first = pod_netns("lab", "default", "web", str(uuid.uuid4()))
    second = pod_netns("lab", "default", "web", str(uuid.uuid4()))
    assert first != second


def test_host_veth_names_fit_the_kernels_15_characters_and_are_stable() -> None:
    uids = [str(uuid.uuid4()) for _ in range(500)]
    names = [host_veth(u) for u in uids]
    assert all(len(n) <= 15 for n in names)
    assert all(n.startswith("veth") for n in names)
    assert len(set(names)) == len(names)
    assert host_veth(uids[0]) == host_veth(uids[0])


def test_fabric_ports_fit_the_kernels_15_characters_for_the_largest_cluster() -> None:
    p = plan(ClusterConfig(name="a" * 20, nodes=50))
    assert all(len(n.fabric_port) <= 15 for n in p.nodes)
    assert len({n.fabric_port for n in p.nodes}) == 50


def test_the_router_ruleset_maps_each_nodes_private_and_public_address_both_ways() -> None:
    p = plan(ClusterConfig(name="lab", nodes=3))
    rules = router_ruleset(p)
    for n in p.nodes:
        assert f"{n.external_ip} : {n.internal_ip}" in rules
        assert f"{n.internal_ip} : {n.external_ip}" in rules
    assert "elements = { 172.18.0.11, 172.18.0.12, 172.18.0.13 }" in rules


def test_the_router_ruleset_replaces_its_own_table_and_drops_unknown_sources() -> None:
    rules = router_ruleset(plan(ClusterConfig(name="lab")))
    assert rules.startswith("table ip podnet-cloud\ndelete table ip podnet-cloud\n")
    assert "policy drop;" in rules
    assert 'iifname "eth0" oifname "wan" ip saddr @nodes accept' in rules
