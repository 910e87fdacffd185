"""The Responder and the probe across real network namespaces.

Two namespaces joined by a veth pair: `srv` (10.250.7.1) holds two pods'
sockets, served by one Responder; `cli` (10.250.7.2) probes them. Nothing
touches the root namespace; teardown removes both namespaces.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from podnet.lab import netns
from podnet.lab.probe import ProbeResult, probe
from podnet.lab.readiness import http_get
from podnet.lab.workload import Responder

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]

SRV_IP, CLI_IP = "10.250.7.1", "10.250.7.2"
PORT_A, PORT_B = 8080, 9090


@dataclass
class Lab:
    srv: str
    cli: str
    responder: Responder


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@contextmanager
def two_namespaces(tag: str) -> Iterator[tuple[str, str]]:
    srv, cli = f"pnt-{os.getpid()}-{tag}-srv", f"pnt-{os.getpid()}-{tag}-cli"
    try:
        netns.create(srv)
        netns.create(cli)
        ip("-n", srv, "link", "add", "v-srv", "type", "veth", "peer", "name", "v-cli", "netns", cli)
        ip("-n", srv, "addr", "add", f"{SRV_IP}/24", "dev", "v-srv")
        ip("-n", cli, "addr", "add", f"{CLI_IP}/24", "dev", "v-cli")
        ip("-n", srv, "link", "set", "v-srv", "up")
        ip("-n", cli, "link", "set", "v-cli", "up")
        yield srv, cli
    finally:
        netns.delete(cli)
        netns.delete(srv)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with two_namespaces("m") as (srv, cli), Responder() as responder:
        responder.add_pod("default/web-a", "web-a", srv, [(PORT_A, "TCP"), (PORT_A, "UDP")])
        responder.add_pod("default/web-b", "web-b", srv, [(PORT_B, "TCP"), (PORT_B, "UDP")])
        yield Lab(srv, cli, responder)


def first_answer(
    target: str, port: int, protocol: str, netns_name: str, deadline_s: float = 10.0
) -> ProbeResult:
    """Probe until an answer or the deadline (the veth link may still be
    coming up); return the last result."""
    deadline = time.monotonic() + deadline_s
    while True:
        [r] = probe(target, port, protocol=protocol, timeout=1.0, netns=netns_name)
        if r.ok or time.monotonic() > deadline:
            return r


def test_tcp_probe_from_other_namespace_names_pod_and_client(lab: Lab) -> None:
    r = first_answer(SRV_IP, PORT_A, "tcp", lab.cli)
    assert r.ok and r.pod == "web-a"
    assert r.client is not None and r.client.startswith(f"{CLI_IP}:")


def test_second_pod_on_its_own_port_answers_with_its_name(lab: Lab) -> None:
    r = first_answer(SRV_IP, PORT_B, "tcp", lab.cli)
    assert r.ok and r.pod == "web-b"


def test_udp_probe_from_other_namespace_names_pod_and_client(lab: Lab) -> None:
    r = first_answer(SRV_IP, PORT_A, "udp", lab.cli)
    assert r.ok and r.pod == "web-a"
    assert r.client is not None and r.client.startswith(f"{CLI_IP}:")


def test_tcp_refused_port_gives_refused(lab: Lab) -> None:
    first_answer(SRV_IP, PORT_A, "tcp", lab.cli)  # link is up
    [r] = probe(SRV_IP, 7777, netns=lab.cli)
    assert (r.ok, r.error) == (False, "refused")


def test_udp_refused_port_gives_refused(lab: Lab) -> None:
    first_answer(SRV_IP, PORT_A, "udp", lab.cli)
    [r] = probe(SRV_IP, 7777, protocol="udp", netns=lab.cli)
    assert (r.ok, r.error) == (False, "refused")


def test_unroutable_target_gives_the_kernels_error_text(lab: Lab) -> None:
    [r] = probe("192.0.2.1", 80, netns=lab.cli)  # TEST-NET-1; cli has no default route
    assert (r.ok, r.error) == (False, "network is unreachable")


def test_pod_sockets_live_in_the_pods_namespace_only(lab: Lab) -> None:
    [inside] = probe("127.0.0.1", PORT_A, netns=lab.srv)
    [elsewhere] = probe("127.0.0.1", PORT_A, netns=lab.cli)
    assert inside.pod == "web-a"
    assert elsewhere.error == "refused"


def test_readiness_http_get_from_other_namespace_follows_health(lab: Lab) -> None:
    first_answer(SRV_IP, PORT_B, "tcp", lab.cli)
    assert http_get(lab.cli, SRV_IP, PORT_B, "/healthz", 2.0) is True
    lab.responder.set_healthy("default/web-b", False)
    try:
        assert http_get(lab.cli, SRV_IP, PORT_B, "/healthz", 2.0) is False
    finally:
        lab.responder.set_healthy("default/web-b", True)


def test_same_port_in_two_namespaces_serves_two_pods(lab: Lab) -> None:
    lab.responder.add_pod("default/web-c", "web-c", lab.cli, [(PORT_A, "TCP")])
    try:
        [r] = probe("127.0.0.1", PORT_A, netns=lab.cli)
        assert r.pod == "web-c"
    finally:
        lab.responder.remove_pod("default/web-c")


def test_cleanup_leaves_no_namespace() -> None:
    with two_namespaces("c") as (srv, cli), Responder() as responder:
        responder.add_pod("default/x", "x", srv, [(PORT_A, "TCP")])
        assert netns.exists(srv) and netns.exists(cli)
    assert not netns.exists(srv) and not netns.exists(cli)
    out = subprocess.run(["ip", "netns", "list"], check=True, capture_output=True, text=True).stdout
    assert f"pnt-{os.getpid()}-c-" not in out
