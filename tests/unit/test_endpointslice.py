"""The EndpointSlice controller's pure decisions: which pods of a selector
Service become endpoints, with which conditions and ports, and how they are
cut into slices."""

from __future__ import annotations

import random

from podnet.controllers.endpointslice import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    MAX_ENDPOINTS,
    SERVICE_NAME_LABEL,
    desired_slices,
    resolve_port,
    same_content,
    selects,
)

Obj = dict


def service(
    name: str = "web",
    ports: list[Obj] | None = None,
    selector: Obj | None = None,
    publish_not_ready: bool = False,
) -> Obj:
    spec: Obj = {
        "selector": {"app": "web"} if selector is None else selector,
        "clusterIP": "10.96.0.10",
        "ports": ports if ports is not None else [{"name": "http", "port": 80, "targetPort": 8080}],
    }
    if publish_not_ready:
        spec["publishNotReadyAddresses"] = True
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default", "uid": f"{name}-uid"},
        "spec": spec,
    }


def pod(
    name: str,
    ip: str | None = "10.244.1.2",
    labels: Obj | None = None,
    ready: bool = True,
    node: str = "node-1",
    container_ports: list[Obj] | None = None,
    deleting: bool = False,
    phase: str = "Running",
    hostname: str | None = None,
    subdomain: str | None = None,
) -> Obj:
    meta: Obj = {
        "name": name,
        "namespace": "default",
        "uid": f"{name}-uid",
        "labels": labels or {"app": "web"},
    }
    if deleting:
        meta["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    spec: Obj = {
        "nodeName": node,
        "containers": [{"name": "c", "image": "i", "ports": container_ports or []}],
    }
    if hostname:
        spec["hostname"] = hostname
    if subdomain:
        spec["subdomain"] = subdomain
    status: Obj = {
        "phase": phase,
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
    }
    if ip:
        status["podIP"] = ip
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status}


def endpoints(slices: list[Obj]) -> list[Obj]:
    return [ep for s in slices for ep in s["endpoints"]]


def addresses(slices: list[Obj]) -> list[str]:
    return sorted(a for ep in endpoints(slices) for a in ep["addresses"])


def only_endpoint(slices: list[Obj]) -> Obj:
    (ep,) = endpoints(slices)
    return ep


# -- which pods ------------------------------------------------------------------


def test_only_pods_matching_the_selector_are_endpoints() -> None:
    pods = [pod("a", "10.244.1.2"), pod("b", "10.244.1.3", labels={"app": "db"})]
    assert addresses(desired_slices(service(), pods)) == ["10.244.1.2"]


def test_a_pod_without_an_ip_is_no_endpoint() -> None:
    pods = [pod("a", "10.244.1.2"), pod("b", None)]
    assert addresses(desired_slices(service(), pods)) == ["10.244.1.2"]


def test_succeeded_and_failed_pods_are_no_endpoints() -> None:
    pods = [pod("a", "10.244.1.2", phase="Succeeded"), pod("b", "10.244.1.3", phase="Failed")]
    assert addresses(desired_slices(service(), pods)) == []


def test_a_service_without_a_selector_selects_no_pod() -> None:
    assert not selects(service(selector={}), pod("a"))


# -- conditions -----------------------------------------------------------------


def test_a_ready_pod_is_ready_serving_and_not_terminating() -> None:
    ep = only_endpoint(desired_slices(service(), [pod("a")]))
    assert ep["conditions"] == {"ready": True, "serving": True, "terminating": False}


def test_a_pod_that_is_not_ready_is_neither_ready_nor_serving() -> None:
    ep = only_endpoint(desired_slices(service(), [pod("a", ready=False)]))
    assert ep["conditions"] == {"ready": False, "serving": False, "terminating": False}


def test_a_pod_being_deleted_is_terminating_not_ready_and_serves_while_its_ready_condition_holds() -> None:
    ep = only_endpoint(desired_slices(service(), [pod("a", deleting=True)]))
    assert ep["conditions"] == {"ready": False, "serving": True, "terminating": True}


def test_a_pod_being_deleted_that_is_not_ready_is_not_serving() -> None:
    ep = only_endpoint(desired_slices(service(), [pod("a", deleting=True, ready=False)]))
    assert ep["conditions"] == {"ready": False, "serving": False, "terminating": True}


def test_publish_not_ready_addresses_makes_a_pod_that_is_not_ready_ready() -> None:
    # As upstream: `ready` is overridden, `serving` still tells the pod's own condition.
    ep = only_endpoint(desired_slices(service(publish_not_ready=True), [pod("a", ready=False)]))
    assert ep["conditions"] == {"ready": True, "serving": False, "terminating": False}


def test_publish_not_ready_addresses_keeps_a_terminating_pod_ready() -> None:
    ep = only_endpoint(desired_slices(service(publish_not_ready=True), [pod("a", deleting=True)]))
    assert ep["conditions"] == {"ready": True, "serving": True, "terminating": True}


# -- ports ----------------------------------------------------------------------


def test_a_numeric_target_port_is_the_endpoint_port() -> None:
    (s,) = desired_slices(service(), [pod("a")])
    assert s["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]


def test_without_a_target_port_the_service_port_is_the_endpoint_port() -> None:
    (s,) = desired_slices(service(ports=[{"name": "http", "port": 80}]), [pod("a")])
    assert s["ports"] == [{"name": "http", "port": 80, "protocol": "TCP"}]


def test_a_target_port_that_is_a_string_of_digits_is_a_number() -> None:
    assert resolve_port({"port": 80, "targetPort": "8080"}, pod("a")) == 8080


def test_a_named_target_port_resolves_through_the_pods_container_ports() -> None:
    svc = service(ports=[{"name": "http", "port": 80, "targetPort": "web"}])
    p = pod(
        "a",
        container_ports=[{"name": "other", "containerPort": 9000}, {"name": "web", "containerPort": 8081}],
    )
    (s,) = desired_slices(svc, [p])
    assert s["ports"] == [{"name": "http", "port": 8081, "protocol": "TCP"}]


def test_a_named_target_port_resolves_only_to_a_container_port_of_the_same_protocol() -> None:
    svc_port = {"name": "dns", "port": 53, "targetPort": "dns", "protocol": "UDP"}
    tcp_only = pod("a", container_ports=[{"name": "dns", "containerPort": 5353, "protocol": "TCP"}])
    both = pod(
        "b",
        container_ports=[
            {"name": "dns", "containerPort": 5353, "protocol": "TCP"},
            {"name": "dns", "containerPort": 5354, "protocol": "UDP"},
        ],
    )
    assert resolve_port(svc_port, tcp_only) is None
    assert resolve_port(svc_port, both) == 5354


def test_a_pod_without_the_named_port_is_no_endpoint_for_that_port() -> None:
    svc = service(
        ports=[
            {"name": "http", "port": 80, "targetPort": 8080},
            {"name": "metrics", "port": 9090, "targetPort": "metrics"},
        ]
    )
    with_metrics = pod("a", "10.244.1.2", container_ports=[{"name": "metrics", "containerPort": 9100}])
    without = pod("b", "10.244.1.3")
    slices = desired_slices(svc, [with_metrics, without])
    by_ports = {tuple(p["name"] for p in s["ports"]): s for s in slices}
    assert set(by_ports) == {("http", "metrics"), ("http",)}
    assert [ep["addresses"] for ep in by_ports["http", "metrics"]["endpoints"]] == [["10.244.1.2"]]
    assert [ep["addresses"] for ep in by_ports["http",]["endpoints"]] == [["10.244.1.3"]]


def test_pods_resolving_a_name_to_different_numbers_land_in_different_slices() -> None:
    svc = service(ports=[{"name": "http", "port": 80, "targetPort": "web"}])
    pods = [
        pod("a", "10.244.1.2", container_ports=[{"name": "web", "containerPort": 8080}]),
        pod("b", "10.244.1.3", container_ports=[{"name": "web", "containerPort": 8081}]),
        pod("c", "10.244.1.4", container_ports=[{"name": "web", "containerPort": 8080}]),
    ]
    slices = desired_slices(svc, pods)
    got = {s["ports"][0]["port"]: [ep["addresses"][0] for ep in s["endpoints"]] for s in slices}
    assert got == {8080: ["10.244.1.2", "10.244.1.4"], 8081: ["10.244.1.3"]}
    assert len({s["metadata"]["name"] for s in slices}) == 2


# -- slicing --------------------------------------------------------------------


def many_pods(n: int) -> list[Obj]:
    return [pod(f"p{i:03d}", f"10.244.{i // 200}.{i % 200 + 2}") for i in range(n)]


def test_a_slice_holds_at_most_100_endpoints() -> None:
    slices = desired_slices(service(), many_pods(250))
    assert MAX_ENDPOINTS == 100
    assert [len(s["endpoints"]) for s in slices] == [100, 100, 50]


def test_every_pod_is_in_exactly_one_slice_when_split() -> None:
    pods = many_pods(250)
    slices = desired_slices(service(), pods)
    assert addresses(slices) == sorted(p["status"]["podIP"] for p in pods)
    assert len({s["metadata"]["name"] for s in slices}) == 3


def test_a_service_without_matching_pods_gets_one_empty_slice() -> None:
    slices = desired_slices(service(), [pod("a", labels={"app": "db"})])
    assert len(slices) == 1
    assert slices[0]["endpoints"] == []
    assert slices[0]["ports"] == []


def test_a_slice_carries_the_service_name_and_managed_by_labels() -> None:
    (s,) = desired_slices(service(), [pod("a")])
    assert s["metadata"]["labels"] == {SERVICE_NAME_LABEL: "web", MANAGED_BY_LABEL: MANAGED_BY}
    assert s["metadata"]["namespace"] == "default"
    assert s["apiVersion"] == "discovery.k8s.io/v1"
    assert s["kind"] == "EndpointSlice"
    assert s["addressType"] == "IPv4"


def test_a_slice_is_owned_by_its_service() -> None:
    (s,) = desired_slices(service(), [pod("a")])
    assert s["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "name": "web",
            "uid": "web-uid",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def test_an_endpoint_names_its_node_and_its_pod() -> None:
    ep = only_endpoint(desired_slices(service(), [pod("a", "10.244.2.5", node="node-2")]))
    assert ep["addresses"] == ["10.244.2.5"]
    assert ep["nodeName"] == "node-2"
    assert ep["targetRef"] == {"kind": "Pod", "namespace": "default", "name": "a", "uid": "a-uid"}


def test_slice_names_are_deterministic() -> None:
    pods = many_pods(250)
    first = [s["metadata"]["name"] for s in desired_slices(service(), pods)]
    again = [s["metadata"]["name"] for s in desired_slices(service(), list(pods))]
    assert first == again


def test_the_order_pods_are_listed_in_changes_nothing() -> None:
    pods = many_pods(150)
    shuffled = list(pods)
    random.Random(7).shuffle(shuffled)
    assert desired_slices(service(), shuffled) == desired_slices(service(), pods)


def test_slice_names_start_with_the_service_name() -> None:
    for s in desired_slices(service(name="frontend"), many_pods(150)):
        assert s["metadata"]["name"].startswith("frontend-")


def test_different_port_sets_give_different_slice_names() -> None:
    a = desired_slices(service(), [pod("a")])
    b = desired_slices(service(ports=[{"name": "http", "port": 80, "targetPort": 9999}]), [pod("a")])
    assert a[0]["metadata"]["name"] != b[0]["metadata"]["name"]


def test_a_pods_hostname_is_published_when_its_subdomain_is_the_service() -> None:
    ep = only_endpoint(desired_slices(service(), [pod("a", hostname="db-0", subdomain="web")]))
    assert ep["hostname"] == "db-0"


def test_a_pods_hostname_is_not_published_for_another_subdomain() -> None:
    ep = only_endpoint(desired_slices(service(), [pod("a", hostname="db-0", subdomain="other")]))
    assert "hostname" not in ep


def test_same_content_ignores_metadata_other_than_labels() -> None:
    (a,) = desired_slices(service(), [pod("a")])
    b = {**a, "metadata": {**a["metadata"], "resourceVersion": "7", "annotations": {"x": "y"}}}
    assert same_content(a, b)
    c = {**a, "endpoints": []}
    assert not same_content(a, c)
