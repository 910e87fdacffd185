"""The objects `podnet up` creates for service discovery, created once:
a restarted control plane finds them and leaves them be."""

from __future__ import annotations

from podnet.config import ClusterConfig
from podnet.dns import bootstrap
from podnet.server.registry import Registry
from podnet.store.store import Store

API = ("172.18.0.1", 6443)


def registry() -> Registry:
    reg = Registry(Store(), ClusterConfig())
    for ns in ("default", "kube-system"):
        reg.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    return reg


def test_the_dns_objects_and_the_kubernetes_service() -> None:
    reg = registry()
    bootstrap.ensure(reg, ClusterConfig(), API)
    dns = reg.get("Service", "kube-system", "kube-dns")
    assert dns["spec"]["clusterIP"] == "10.96.0.10"
    assert [(p["name"], p["port"], p["protocol"]) for p in dns["spec"]["ports"]] == [
        ("dns", 53, "UDP"),
        ("dns-tcp", 53, "TCP"),
    ]
    k = reg.get("Service", "default", "kubernetes")
    assert k["spec"]["clusterIP"] == "10.96.0.1" and k["spec"]["ports"][0]["name"] == "https"
    eps = reg.get("EndpointSlice", "default", "kubernetes")
    assert eps["endpoints"][0]["addresses"] == ["172.18.0.1"] and eps["ports"][0]["port"] == 6443
    deploy = reg.get("Deployment", "kube-system", "cluster-dns")
    assert deploy["spec"]["replicas"] == 2
    tmpl = deploy["spec"]["template"]
    assert tmpl["spec"]["dnsPolicy"] == "Default"
    assert (
        "-m podnet.dns --api 172.18.0.1:6443 --zone cluster.local"
        in tmpl["metadata"]["annotations"]["podnet.io/command"]
    )


def test_a_second_start_changes_nothing() -> None:
    reg = registry()
    bootstrap.ensure(reg, ClusterConfig(), API)
    rv = reg.store.resource_version
    bootstrap.ensure(reg, ClusterConfig(), API)
    assert reg.store.resource_version == rv


def test_without_cluster_dns_only_the_kubernetes_service() -> None:
    reg = registry()
    bootstrap.ensure(reg, ClusterConfig(cluster_dns=False), API)
    assert [s["metadata"]["name"] for s in reg.list("Service")[0]] == ["kubernetes"]
    assert reg.list("Deployment")[0] == []


def test_a_configured_upstream_is_passed_on() -> None:
    cmd = bootstrap.dns_command(ClusterConfig(dns_upstream="10.0.0.53:5353"), API, python="python3")
    assert (
        cmd
        == "exec python3 -m podnet.dns --api 172.18.0.1:6443 --zone cluster.local --upstream 10.0.0.53:5353"
    )
