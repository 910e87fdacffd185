"""The cluster zone, pure: every record kind of the DNS-Based Service
Discovery specification 1.1.0, and NXDOMAIN versus NODATA."""

from __future__ import annotations

from typing import Any

import pytest

from podnet.dns.records import NOERROR, NXDOMAIN, TTL, Answer, Record, Zone, build, dashed, reverse_name

Obj = dict[str, Any]
Z = "cluster.local."


def svc(
    name: str, ns: str = "default", ip: str | None = None, ports: list[Obj] | None = None, **spec: Any
) -> Obj:
    s: Obj = {"ports": ports if ports is not None else [], **spec}
    if ip is not None:
        s["clusterIP"] = ip
        s["clusterIPs"] = [ip]
    return {"kind": "Service", "metadata": {"name": name, "namespace": ns}, "spec": s}


def port(name: str, number: int, protocol: str = "TCP") -> Obj:
    return {"name": name, "port": number, "protocol": protocol}


def endpoint(ip: str, ready: bool | None = True, hostname: str | None = None) -> Obj:
    ep: Obj = {"addresses": [ip]}
    if ready is not None:
        ep["conditions"] = {"ready": ready}
    if hostname:
        ep["hostname"] = hostname
    return ep


def slice_(service: str, endpoints: list[Obj], ports: list[Obj], ns: str = "default", name: str = "") -> Obj:
    return {
        "kind": "EndpointSlice",
        "metadata": {
            "name": name or f"{service}-abc",
            "namespace": ns,
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": ports,
    }


def pod(name: str, ns: str, ip: str, phase: str = "Running") -> Obj:
    return {
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns},
        "status": {"phase": phase, "podIP": ip, "podIPs": [{"ip": ip}]},
    }


SERVICES = [
    svc("web", ip="10.96.1.1", ports=[port("http", 80), port("dns", 53, "UDP")]),
    svc("plain", ip="10.96.1.2", ports=[{"port": 8080, "protocol": "TCP"}]),
    svc("db", ip="None", ports=[port("pg", 5432)]),
    svc("empty", ip="None", ports=[port("http", 80)]),
    svc("ext", type="ExternalName", externalName="www.example.com"),
    svc("inner", type="ExternalName", externalName="web.default.svc.cluster.local."),
    svc("kube-dns", ns="kube-system", ip="10.96.0.10", ports=[port("dns", 53, "UDP"), port("dns-tcp", 53)]),
    svc("pending"),
]
SLICES = [
    slice_(
        "db",
        [
            endpoint("10.244.1.7", hostname="db-0"),
            endpoint("10.244.2.8"),
            endpoint("10.244.2.9", ready=False),
        ],
        [port("pg", 5432)],
    ),
    slice_("web", [endpoint("10.244.1.3")], [port("http", 8080)]),
    slice_("empty", [endpoint("10.244.1.4", ready=False)], [port("http", 80)]),
]
PODS = [pod("client", "default", "10.244.1.5"), pod("done", "default", "10.244.1.6", phase="Succeeded")]
NAMESPACES = ["default", "kube-system", "quiet"]


@pytest.fixture(scope="module")
def zone() -> Zone:
    return build(SERVICES, SLICES, PODS, NAMESPACES, serial=42)


def ask(zone: Zone, name: str, qtype: str = "A") -> Answer:
    ans = zone.answer(name, qtype)
    assert ans is not None, f"{name} {qtype} is not the zone's"
    return ans


def data(ans: Answer) -> list[str]:
    return sorted(r.data for r in ans.answer)


SOA = Record(Z, "SOA", f"ns.dns.{Z} hostmaster.{Z} 42 7200 1800 86400 5", 5)


# -- ClusterIP Services -----------------------------------------------------------------


def test_a_cluster_ip_service_has_an_a_record_with_the_ttl_of_coredns(zone: Zone) -> None:
    ans = ask(zone, "web.default.svc.cluster.local.")
    assert ans == Answer(NOERROR, (Record("web.default.svc.cluster.local.", "A", "10.96.1.1", TTL),))
    assert TTL == 5


def test_names_are_case_insensitive_and_the_final_dot_optional(zone: Zone) -> None:
    assert data(ask(zone, "WEB.Default.SVC.cluster.LOCAL")) == ["10.96.1.1"]


def test_named_ports_have_srv_records_with_the_target_in_additional(zone: Zone) -> None:
    ans = ask(zone, "_http._tcp.web.default.svc.cluster.local", "SRV")
    assert data(ans) == ["0 100 80 web.default.svc.cluster.local."]
    assert ans.additional == (Record("web.default.svc.cluster.local.", "A", "10.96.1.1"),)
    assert data(ask(zone, "_dns._udp.web.default.svc.cluster.local", "SRV")) == [
        "0 100 53 web.default.svc.cluster.local."
    ]


def test_a_port_under_the_wrong_protocol_does_not_exist(zone: Zone) -> None:
    assert ask(zone, "_http._udp.web.default.svc.cluster.local", "SRV").rcode == NXDOMAIN


def test_an_unnamed_port_has_no_srv_record(zone: Zone) -> None:
    assert ask(zone, "_tcp.plain.default.svc.cluster.local", "SRV").rcode == NXDOMAIN
    ans = ask(zone, "plain.default.svc.cluster.local", "SRV")
    assert ans.rcode == NOERROR and ans.answer == () and ans.authority == (SOA,)


def test_a_cluster_ip_has_a_ptr_record(zone: Zone) -> None:
    ans = ask(zone, "1.1.96.10.in-addr.arpa.", "PTR")
    assert ans == Answer(
        NOERROR, (Record("1.1.96.10.in-addr.arpa.", "PTR", "web.default.svc.cluster.local."),)
    )


def test_a_service_without_an_address_yet_has_no_records(zone: Zone) -> None:
    assert ask(zone, "pending.default.svc.cluster.local").rcode == NXDOMAIN


def test_a_dual_stack_service_has_a_and_aaaa() -> None:
    s = svc("dual", ip="10.96.3.3", ports=[port("http", 80)])
    s["spec"]["clusterIPs"] = ["10.96.3.3", "fd00::3"]
    z = build([s], [])
    assert data(ask(z, "dual.default.svc.cluster.local", "AAAA")) == ["fd00::3"]
    assert data(ask(z, "dual.default.svc.cluster.local", "A")) == ["10.96.3.3"]
    assert z.answer(reverse_name("fd00::3"), "PTR") is not None


# -- headless Services ------------------------------------------------------------------


def test_a_headless_service_has_an_a_record_per_ready_endpoint(zone: Zone) -> None:
    assert data(ask(zone, "db.default.svc.cluster.local")) == ["10.244.1.7", "10.244.2.8"]


def test_endpoints_have_their_hostname_or_their_dashed_address(zone: Zone) -> None:
    assert data(ask(zone, "db-0.db.default.svc.cluster.local")) == ["10.244.1.7"]
    assert data(ask(zone, "10-244-2-8.db.default.svc.cluster.local")) == ["10.244.2.8"]
    assert ask(zone, "10-244-2-9.db.default.svc.cluster.local").rcode == NXDOMAIN  # not ready


def test_a_headless_srv_lists_each_ready_endpoint_with_weights_splitting_100(zone: Zone) -> None:
    ans = ask(zone, "_pg._tcp.db.default.svc.cluster.local", "SRV")
    assert data(ans) == [
        "0 50 5432 10-244-2-8.db.default.svc.cluster.local.",
        "0 50 5432 db-0.db.default.svc.cluster.local.",
    ]
    assert sorted(r.data for r in ans.additional) == ["10.244.1.7", "10.244.2.8"]


def test_a_headless_endpoint_has_a_ptr_to_its_own_name(zone: Zone) -> None:
    assert data(ask(zone, "7.1.244.10.in-addr.arpa", "PTR")) == ["db-0.db.default.svc.cluster.local."]
    assert data(ask(zone, "8.2.244.10.in-addr.arpa", "PTR")) == ["10-244-2-8.db.default.svc.cluster.local."]


def test_a_headless_service_without_ready_endpoints_is_nxdomain(zone: Zone) -> None:
    ans = ask(zone, "empty.default.svc.cluster.local")
    assert ans.rcode == NXDOMAIN and ans.authority == (SOA,)
    assert ask(zone, "_http._tcp.empty.default.svc.cluster.local", "SRV").rcode == NXDOMAIN


def test_an_unset_ready_condition_counts_as_ready() -> None:
    z = build([svc("h", ip="None")], [slice_("h", [endpoint("10.244.1.9", ready=None)], [])])
    assert data(ask(z, "h.default.svc.cluster.local")) == ["10.244.1.9"]


def test_endpoints_of_several_slices_are_merged() -> None:
    z = build(
        [svc("h", ip="None")],
        [
            slice_("h", [endpoint("10.244.1.1")], [port("p", 1)], name="h-1"),
            slice_("h", [endpoint("10.244.1.2")], [port("p", 1)], name="h-2"),
        ],
    )
    assert data(ask(z, "h.default.svc.cluster.local")) == ["10.244.1.1", "10.244.1.2"]
    assert len(ask(z, "_p._tcp.h.default.svc.cluster.local", "SRV").answer) == 2


# -- ExternalName -----------------------------------------------------------------------


def test_an_external_name_is_a_cname_left_for_upstream_to_follow(zone: Zone) -> None:
    ans = ask(zone, "ext.default.svc.cluster.local", "A")
    assert ans.answer == (Record("ext.default.svc.cluster.local.", "CNAME", "www.example.com."),)
    assert ans.chase == "www.example.com."
    assert ask(zone, "ext.default.svc.cluster.local", "CNAME").answer == ans.answer


def test_an_external_name_inside_the_zone_is_followed_here(zone: Zone) -> None:
    ans = ask(zone, "inner.default.svc.cluster.local", "A")
    assert [r.type for r in ans.answer] == ["CNAME", "A"]
    assert ans.answer[1].data == "10.96.1.1" and ans.chase is None


# -- pods, the version record, the apex ---------------------------------------------------


def test_a_pod_has_a_record_under_its_namespace(zone: Zone) -> None:
    assert data(ask(zone, "10-244-1-5.default.pod.cluster.local")) == ["10.244.1.5"]
    assert ask(zone, "10-244-1-5.kube-system.pod.cluster.local").rcode == NXDOMAIN
    assert ask(zone, "10-244-1-6.default.pod.cluster.local").rcode == NXDOMAIN  # finished


def test_the_schema_version_is_a_txt_record(zone: Zone) -> None:
    assert data(ask(zone, "dns-version.cluster.local", "TXT")) == ['"1.1.0"']


def test_the_apex_has_soa_and_ns_and_the_ns_name_the_dns_service_address(zone: Zone) -> None:
    assert ask(zone, "cluster.local", "SOA").answer == (SOA,)
    assert data(ask(zone, "cluster.local", "NS")) == ["ns.dns.cluster.local."]
    assert data(ask(zone, "ns.dns.cluster.local")) == ["10.96.0.10"]


def test_the_soa_negative_ttl_is_the_zone_ttl() -> None:
    z = build([], [], ttl=30, serial=7)
    ans = ask(z, "nothing.cluster.local")
    assert ans.authority[0].ttl == 30 and ans.authority[0].data.endswith(" 7 7200 1800 86400 30")


# -- NXDOMAIN versus NODATA ---------------------------------------------------------------


@pytest.mark.parametrize(
    "name,qtype",
    [
        ("web.default.svc.cluster.local", "AAAA"),  # exists, IPv4 only
        ("web.default.svc.cluster.local", "TXT"),
        ("svc.cluster.local", "A"),  # empty non-terminals
        ("pod.cluster.local", "A"),
        ("default.svc.cluster.local", "A"),
        ("quiet.svc.cluster.local", "A"),  # a namespace without Services
        ("default.pod.cluster.local", "A"),
        ("_tcp.web.default.svc.cluster.local", "SRV"),
        ("cluster.local", "A"),
        ("dns-version.cluster.local", "A"),
    ],
)
def test_a_name_that_exists_without_that_type_is_nodata(zone: Zone, name: str, qtype: str) -> None:
    assert ask(zone, name, qtype) == Answer(NOERROR, (), (SOA,))


@pytest.mark.parametrize(
    "name",
    [
        "nope.default.svc.cluster.local",
        "nons.svc.cluster.local",  # no such namespace
        "web.nons.svc.cluster.local",
        "web.default.svc.cluster.local.default.svc.cluster.local",  # a search-path miss
        "www.example.com.cluster.local",
        "foo.cluster.local",
        "_x._tcp.web.default.svc.cluster.local",
        "10-1-2-3.default.pod.cluster.local",
    ],
)
def test_a_name_that_does_not_exist_is_nxdomain(zone: Zone, name: str) -> None:
    assert ask(zone, name, "A") == Answer(NXDOMAIN, (), (SOA,))


def test_names_outside_the_zone_are_not_answered(zone: Zone) -> None:
    assert zone.answer("www.example.com", "A") is None
    assert zone.answer("local", "A") is None
    assert zone.answer("9.9.9.10.in-addr.arpa", "PTR") is None  # unknown reverse: forwarded
    assert zone.answer("1.1.96.10.in-addr.arpa", "A") is None


def test_any_returns_every_record_of_the_name(zone: Zone) -> None:
    assert {r.type for r in ask(zone, "cluster.local", "ANY").answer} == {"SOA", "NS"}


def test_another_cluster_domain() -> None:
    z = build([svc("web", ip="10.96.1.1", ports=[port("http", 80)])], [], domain="lab.example")
    assert data(ask(z, "web.default.svc.lab.example")) == ["10.96.1.1"]
    assert z.answer("web.default.svc.cluster.local", "A") is None


def test_helpers() -> None:
    assert dashed("10.244.1.5") == "10-244-1-5"
    assert dashed("fd00::1") == "fd00--1"
    assert reverse_name("10.96.0.10") == "10.0.96.10.in-addr.arpa."
