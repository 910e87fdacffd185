"""The resolv.conf and hosts file the kubelet writes for a pod, per
dnsPolicy and dnsConfig; and the stub resolver's reading of them."""

from __future__ import annotations

from typing import Any

from podnet.dns.lookup import ResolvConf, candidates
from podnet.dns.podconf import hostname, hosts_file, resolv_conf

Obj = dict[str, Any]
DNS = ["10.96.0.10"]
NODE = ["198.51.100.100"]


def pod(ns: str = "shop", **spec: Any) -> Obj:
    return {"metadata": {"name": "client", "namespace": ns}, "spec": spec}


def conf(p: Obj) -> str:
    return resolv_conf(p, DNS, "cluster.local", NODE)


def test_cluster_first_is_the_default() -> None:
    want = (
        "nameserver 10.96.0.10\n"
        "search shop.svc.cluster.local svc.cluster.local cluster.local\n"
        "options ndots:5\n"
    )
    assert conf(pod()) == want
    assert conf(pod(dnsPolicy="ClusterFirst")) == want


def test_the_nodes_search_domains_follow_the_clusters() -> None:
    text = resolv_conf(pod(), DNS, "cluster.local", NODE, ["corp.example"])
    assert "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example\n" in text


def test_default_is_the_nodes_resolver() -> None:
    assert conf(pod(dnsPolicy="Default")) == "nameserver 198.51.100.100\n"


def test_cluster_first_on_the_host_network_falls_back_to_default() -> None:
    assert conf(pod(dnsPolicy="ClusterFirst", hostNetwork=True)) == "nameserver 198.51.100.100\n"
    assert conf(pod(dnsPolicy="ClusterFirstWithHostNet", hostNetwork=True)).startswith(
        "nameserver 10.96.0.10\n"
    )


def test_none_takes_only_the_dns_config() -> None:
    p = pod(
        dnsPolicy="None",
        dnsConfig={
            "nameservers": ["1.2.3.4"],
            "searches": ["ns1.svc.cluster-domain.example", "my.dns.search.suffix"],
            "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}],
        },
    )
    assert conf(p) == (
        "nameserver 1.2.3.4\n"
        "search ns1.svc.cluster-domain.example my.dns.search.suffix\n"
        "options ndots:2 edns0\n"
    )


def test_dns_config_merges_into_cluster_first() -> None:
    p = pod(
        dnsConfig={
            "nameservers": ["10.96.0.10", "1.1.1.1"],
            "searches": ["extra.example", "cluster.local"],
            "options": [{"name": "ndots", "value": "1"}, {"name": "single-request"}],
        }
    )
    assert conf(p) == (
        "nameserver 10.96.0.10\n"
        "nameserver 1.1.1.1\n"
        "search shop.svc.cluster.local svc.cluster.local cluster.local extra.example\n"
        "options ndots:1 single-request\n"
    )


def test_at_most_three_nameservers() -> None:
    p = pod(dnsPolicy="None", dnsConfig={"nameservers": ["1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4"]})
    assert conf(p).count("nameserver") == 3


def test_the_hosts_file_names_the_pod() -> None:
    text = hosts_file(pod(), "10.244.1.5", "cluster.local")
    assert text.startswith("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n")
    assert text.endswith("\n10.244.1.5\tclient\n")


def test_hostname_and_subdomain_give_the_fqdn_first() -> None:
    text = hosts_file(pod(hostname="db-0", subdomain="db"), "10.244.1.5", "cluster.local")
    assert text.endswith("\n10.244.1.5\tdb-0.db.shop.svc.cluster.local\tdb-0\n")
    assert hostname(pod(hostname="db-0")) == "db-0"


def test_host_aliases_are_appended() -> None:
    text = hosts_file(
        pod(hostAliases=[{"ip": "127.0.0.1", "hostnames": ["foo.local", "bar.local"]}]), "10.244.1.5", "x"
    )
    assert text.endswith("# Entries added by HostAliases.\n127.0.0.1\tfoo.local\tbar.local\n")


def test_the_stub_resolver_reads_resolv_conf_and_applies_ndots() -> None:
    rc = ResolvConf.parse(conf(pod()))
    assert rc.nameservers == DNS and rc.ndots == 5
    assert candidates("cart", rc) == [
        "cart.shop.svc.cluster.local.",
        "cart.svc.cluster.local.",
        "cart.cluster.local.",
        "cart.",
    ]
    assert candidates("cart.shop.svc.cluster.local.", rc) == ["cart.shop.svc.cluster.local."]
    rc.ndots = 1
    assert candidates("www.example.com", rc)[0] == "www.example.com."
