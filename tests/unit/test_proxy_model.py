"""What the service proxy programs for one Service: its (VIP, protocol,
port) keys and the endpoints new connections to each are sent to."""

from __future__ import annotations

from podnet.proxy.model import PortKey, ServicePort, has_virtual_ip, service_ports

Obj = dict
VIP = "10.96.0.10"


def service(
    ports: list[Obj] | None = None, cluster_ip: str = VIP, type_: str | None = None, **spec: object
) -> Obj:
    s: Obj = {
        "clusterIP": cluster_ip,
        "ports": ports if ports is not None else [{"name": "http", "port": 80, "protocol": "TCP"}],
        **spec,
    }
    if type_:
        s["type"] = type_
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": s,
    }


def ep(
    ip: str, ready: bool | None = True, serving: bool | None = None, terminating: bool | None = None
) -> Obj:
    cond: Obj = {}
    if ready is not None:
        cond["ready"] = ready
    if serving is not None:
        cond["serving"] = serving
    if terminating is not None:
        cond["terminating"] = terminating
    return {"addresses": [ip], "conditions": cond}


def slice_(endpoints: list[Obj], ports: list[Obj] | None = None, address_type: str = "IPv4") -> Obj:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "web-abcde",
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": "web"},
        },
        "addressType": address_type,
        "ports": ports if ports is not None else [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": endpoints,
    }


HTTP = PortKey(VIP, "tcp", 80)


def eps_of(service_obj: Obj, slices: list[Obj], key: PortKey = HTTP) -> tuple[tuple[str, int], ...]:
    return service_ports(service_obj, slices)[key].endpoints


# -- keys -----------------------------------------------------------------------


def test_a_cluster_ip_port_is_keyed_by_vip_lowercase_protocol_and_port() -> None:
    got = service_ports(service(), [slice_([ep("10.244.1.2")])])
    assert got == {HTTP: ServicePort("default/web:http", HTTP, (("10.244.1.2", 8080),))}


def test_the_protocol_defaults_to_tcp() -> None:
    got = service_ports(service(ports=[{"name": "http", "port": 80}]), [])
    assert list(got) == [HTTP]


def test_a_port_key_renders_as_an_nftables_concatenation() -> None:
    assert PortKey("10.96.0.10", "udp", 53).nft() == "10.96.0.10 . udp . 53"


def test_an_unnamed_port_is_named_by_its_number() -> None:
    got = service_ports(service(ports=[{"port": 80}]), [])
    assert got[HTTP].name == "default/web:80"


def test_a_headless_service_programs_nothing() -> None:
    assert service_ports(service(cluster_ip="None"), [slice_([ep("10.244.1.2")])]) == {}


def test_an_external_name_service_programs_nothing() -> None:
    svc = service(type_="ExternalName", externalName="example.com")
    assert not has_virtual_ip(svc)
    assert service_ports(svc, [slice_([ep("10.244.1.2")])]) == {}


def test_a_service_without_a_cluster_ip_yet_programs_nothing() -> None:
    assert service_ports(service(cluster_ip=""), []) == {}


def test_a_service_without_slices_has_its_ports_with_no_endpoints() -> None:
    assert service_ports(service(), []) == {HTTP: ServicePort("default/web:http", HTTP, ())}


def test_a_multi_port_service_has_one_key_per_port() -> None:
    svc = service(
        ports=[
            {"name": "http", "port": 80, "protocol": "TCP"},
            {"name": "dns", "port": 53, "protocol": "UDP"},
            {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
        ]
    )
    s = slice_(
        [ep("10.244.1.2"), ep("10.244.1.3")],
        ports=[
            {"name": "http", "port": 8080, "protocol": "TCP"},
            {"name": "dns", "port": 5353, "protocol": "UDP"},
            {"name": "dns-tcp", "port": 5354, "protocol": "TCP"},
        ],
    )
    got = service_ports(svc, [s])
    assert {k: v.endpoints for k, v in got.items()} == {
        PortKey(VIP, "tcp", 80): (("10.244.1.2", 8080), ("10.244.1.3", 8080)),
        PortKey(VIP, "udp", 53): (("10.244.1.2", 5353), ("10.244.1.3", 5353)),
        PortKey(VIP, "tcp", 53): (("10.244.1.2", 5354), ("10.244.1.3", 5354)),
    }


def test_ipv6_cluster_ips_are_left_to_another_table() -> None:
    svc = service(clusterIPs=[VIP, "fd00::10"])
    assert list(service_ports(svc, [])) == [HTTP]


# -- which endpoints ------------------------------------------------------------


def test_endpoints_come_only_from_slices_with_the_ports_name() -> None:
    right = slice_([ep("10.244.1.2")])
    wrong = slice_([ep("10.244.1.3")], ports=[{"name": "metrics", "port": 9090, "protocol": "TCP"}])
    assert eps_of(service(), [right, wrong]) == (("10.244.1.2", 8080),)


def test_endpoints_come_only_from_slices_with_the_ports_protocol() -> None:
    right = slice_([ep("10.244.1.2")])
    wrong = slice_([ep("10.244.1.3")], ports=[{"name": "http", "port": 8080, "protocol": "UDP"}])
    assert eps_of(service(), [right, wrong]) == (("10.244.1.2", 8080),)


def test_an_unnamed_service_port_matches_an_unnamed_slice_port() -> None:
    svc = service(ports=[{"port": 80, "protocol": "TCP"}])
    s = slice_([ep("10.244.1.2")], ports=[{"name": "", "port": 8080, "protocol": "TCP"}])
    assert eps_of(svc, [s]) == (("10.244.1.2", 8080),)


def test_each_slice_gives_its_own_port_number() -> None:
    a = slice_([ep("10.244.1.2")], ports=[{"name": "http", "port": 8080, "protocol": "TCP"}])
    b = slice_([ep("10.244.1.3")], ports=[{"name": "http", "port": 8081, "protocol": "TCP"}])
    assert eps_of(service(), [a, b]) == (("10.244.1.2", 8080), ("10.244.1.3", 8081))


def test_slices_of_ipv6_addresses_are_ignored() -> None:
    assert eps_of(service(), [slice_([ep("fd00::2")], address_type="IPv6")]) == ()


def test_endpoints_that_are_not_ready_are_left_out() -> None:
    s = slice_([ep("10.244.1.2"), ep("10.244.1.3", ready=False, serving=False, terminating=False)])
    assert eps_of(service(), [s]) == (("10.244.1.2", 8080),)


def test_an_unset_ready_counts_as_ready() -> None:
    assert eps_of(service(), [slice_([ep("10.244.1.2", ready=None)])]) == (("10.244.1.2", 8080),)


def test_when_none_is_ready_the_serving_terminating_endpoints_are_used() -> None:
    s = slice_(
        [
            ep("10.244.1.2", ready=False, serving=True, terminating=True),
            ep("10.244.1.3", ready=False, serving=False, terminating=True),
            ep("10.244.1.4", ready=False, serving=False, terminating=False),
        ]
    )
    assert eps_of(service(), [s]) == (("10.244.1.2", 8080),)


def test_serving_terminating_endpoints_are_not_used_while_one_is_ready() -> None:
    s = slice_([ep("10.244.1.2"), ep("10.244.1.3", ready=False, serving=True, terminating=True)])
    assert eps_of(service(), [s]) == (("10.244.1.2", 8080),)


def test_an_unset_serving_counts_as_serving_for_the_terminating_fallback() -> None:
    s = slice_([ep("10.244.1.2", ready=False, serving=None, terminating=True)])
    assert eps_of(service(), [s]) == (("10.244.1.2", 8080),)


def test_an_unset_terminating_means_not_terminating() -> None:
    s = slice_([ep("10.244.1.2", ready=False, serving=True, terminating=None)])
    assert eps_of(service(), [s]) == ()


def test_the_fallback_is_decided_per_port() -> None:
    svc = service(
        ports=[
            {"name": "http", "port": 80, "protocol": "TCP"},
            {"name": "admin", "port": 81, "protocol": "TCP"},
        ]
    )
    http = slice_([ep("10.244.1.2")], ports=[{"name": "http", "port": 8080, "protocol": "TCP"}])
    admin = slice_(
        [ep("10.244.1.3", ready=False, serving=True, terminating=True)],
        ports=[{"name": "admin", "port": 8081, "protocol": "TCP"}],
    )
    got = service_ports(svc, [http, admin])
    assert got[HTTP].endpoints == (("10.244.1.2", 8080),)
    assert got[PortKey(VIP, "tcp", 81)].endpoints == (("10.244.1.3", 8081),)


def test_duplicate_endpoints_across_slices_collapse() -> None:
    a = slice_([ep("10.244.1.2"), ep("10.244.1.3")])
    b = slice_([ep("10.244.1.3"), ep("10.244.1.4")])
    assert eps_of(service(), [a, b]) == (("10.244.1.2", 8080), ("10.244.1.3", 8080), ("10.244.1.4", 8080))


def test_endpoints_are_sorted_whatever_the_slice_order() -> None:
    a = slice_([ep("10.244.2.9"), ep("10.244.1.2")])
    b = slice_([ep("10.244.1.7")])
    assert eps_of(service(), [a, b]) == eps_of(service(), [b, a])
    assert eps_of(service(), [a, b]) == (("10.244.1.2", 8080), ("10.244.1.7", 8080), ("10.244.2.9", 8080))
