"""The environment the kubelet gives a container: Service variables (names
and values as pkg/kubelet/envvars makes them) and the container's env."""

from __future__ import annotations

from typing import Any

from podnet.lab.envvars import container_env, expand, field_value, pod_env, service_vars, services_env

Obj = dict[str, Any]


def svc(name: str, ns: str, ip: str, *ports: Obj, **spec: Any) -> Obj:
    return {
        "metadata": {"name": name, "namespace": ns},
        "spec": {"clusterIP": ip, "ports": list(ports), **spec},
    }


def pod(ns: str = "shop", links: bool | None = None, env: list[Obj] | None = None) -> Obj:
    spec: Obj = {"nodeName": "node-1", "containers": [{"name": "c", "env": env or []}]}
    if links is not None:
        spec["enableServiceLinks"] = links
    return {
        "metadata": {"name": "client", "namespace": ns, "uid": "u-1", "labels": {"app": "x"}},
        "spec": spec,
        "status": {"podIP": "10.244.1.5", "hostIP": "172.18.0.11"},
    }


KUBERNETES = svc("kubernetes", "default", "10.96.0.1", {"name": "https", "port": 443, "protocol": "TCP"})
CART = svc(
    "cart-api",
    "shop",
    "10.96.7.7",
    {"name": "http", "port": 8080, "protocol": "TCP"},
    {"name": "metrics-udp", "port": 9125, "protocol": "UDP"},
)
SERVICES = [
    KUBERNETES,
    CART,
    svc("headless", "shop", "None", {"port": 80}),
    {
        "metadata": {"name": "ext", "namespace": "shop"},
        "spec": {"type": "ExternalName", "externalName": "x.y"},
    },
    svc("other", "elsewhere", "10.96.8.8", {"port": 80, "protocol": "TCP"}),
]


def test_one_service_gives_the_kubelet_variables() -> None:
    assert service_vars(CART) == {
        "CART_API_SERVICE_HOST": "10.96.7.7",
        "CART_API_SERVICE_PORT": "8080",
        "CART_API_SERVICE_PORT_HTTP": "8080",
        "CART_API_SERVICE_PORT_METRICS_UDP": "9125",
        "CART_API_PORT": "tcp://10.96.7.7:8080",
        "CART_API_PORT_8080_TCP": "tcp://10.96.7.7:8080",
        "CART_API_PORT_8080_TCP_PROTO": "tcp",
        "CART_API_PORT_8080_TCP_PORT": "8080",
        "CART_API_PORT_8080_TCP_ADDR": "10.96.7.7",
        "CART_API_PORT_9125_UDP": "udp://10.96.7.7:9125",
        "CART_API_PORT_9125_UDP_PROTO": "udp",
        "CART_API_PORT_9125_UDP_PORT": "9125",
        "CART_API_PORT_9125_UDP_ADDR": "10.96.7.7",
    }


def test_an_unnamed_port_has_no_named_variable() -> None:
    out = service_vars(svc("web", "d", "10.96.1.1", {"port": 80, "protocol": "TCP"}))
    assert out["WEB_SERVICE_PORT"] == "80" and not any(k.startswith("WEB_SERVICE_PORT_") for k in out)


def test_an_ipv6_service_brackets_its_address_in_urls() -> None:
    out = service_vars(svc("v6", "d", "fd00::1", {"port": 80, "protocol": "TCP"}))
    assert out["V6_PORT"] == "tcp://[fd00::1]:80" and out["V6_SERVICE_HOST"] == "fd00::1"


def test_a_pod_gets_its_namespaces_services_and_the_kubernetes_service() -> None:
    env = services_env(pod(), SERVICES)
    prefixes = {k.split("_SERVICE_HOST")[0] for k in env if k.endswith("_SERVICE_HOST")}
    assert prefixes == {"KUBERNETES", "CART_API"}  # not headless, not ExternalName, not elsewhere
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    assert env["KUBERNETES_SERVICE_PORT_HTTPS"] == "443"
    assert env["KUBERNETES_PORT_443_TCP"] == "tcp://10.96.0.1:443"


def test_enable_service_links_false_keeps_only_the_kubernetes_service() -> None:
    env = services_env(pod(links=False), SERVICES)
    assert {k for k in env if k.endswith("_SERVICE_HOST")} == {"KUBERNETES_SERVICE_HOST"}
    # ...also in default itself.
    env = services_env(pod("default", links=False), SERVICES)
    assert {k for k in env if k.endswith("_SERVICE_HOST")} == {"KUBERNETES_SERVICE_HOST"}


def test_no_kubernetes_service_no_variables_for_it() -> None:
    assert services_env(pod(links=False), [CART]) == {}


def test_the_containers_env_comes_after_and_wins() -> None:
    env = pod_env(
        pod(
            env=[
                {"name": "CART_API_SERVICE_HOST", "value": "override"},
                {"name": "URL", "value": "http://$(CART_API_SERVICE_HOST):$(CART_API_SERVICE_PORT)/"},
                {"name": "PRICE", "value": "$$5 $(NOPE)"},
                {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                {"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
            ]
        ),
        SERVICES,
    )
    assert env["CART_API_SERVICE_HOST"] == "override"
    assert env["URL"] == "http://override:8080/"
    assert env["PRICE"] == "$5 $(NOPE)"
    assert (env["NAME"], env["NS"], env["IP"], env["NODE"], env["APP"]) == (
        "client",
        "shop",
        "10.244.1.5",
        "node-1",
        "x",
    )
    assert "SECRET" not in env


def test_expand_and_field_values() -> None:
    assert expand("$(A)-$(B)-$$(A)", {"A": "1"}) == "1-$(B)-$(A)"
    p = pod()
    assert field_value(p, "status.hostIP") == "172.18.0.11"
    assert field_value(p, "metadata.uid") == "u-1"
    assert field_value(p, "metadata.annotations['none']") == ""
    assert field_value(p, "spec.serviceAccountName") == "default"
    assert field_value(p, "no.such") is None


def test_container_env_of_a_named_container() -> None:
    p = pod()
    p["spec"]["containers"].append({"name": "side", "env": [{"name": "X", "value": "1"}]})
    assert pod_env(p, [], container="side") == {"X": "1"}
    assert container_env(p, {}, {"A": "b"}) == {"A": "b"}
