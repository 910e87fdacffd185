"""The service proxy's rulesets in a real kernel: `render.full` loads
through libnftables in a throwaway network namespace, a `render.delta`
patches it, and `nft -j list` shows exactly the elements the new state
says. Nothing touches the root namespace; teardown removes the namespace.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from podnet.lab import netns
from podnet.proxy import render
from podnet.proxy.model import PortKey, ServicePort
from podnet.proxy.nftables import Nftables, NftError

GOLDEN = Path(__file__).parent.parent / "unit" / "golden" / "proxy_full.nft"
State = dict[PortKey, ServicePort]
WEB = PortKey("10.96.0.10", "tcp", 80)
DNS = PortKey("10.96.0.10", "udp", 53)
EMPTY = PortKey("10.96.0.20", "tcp", 80)


def sp(name: str, key: PortKey, endpoints: list[tuple[str, int]]) -> ServicePort:
    return ServicePort(name, key, tuple(endpoints))


def initial() -> State:
    return {
        WEB: sp("default/web:http", WEB, [("10.244.1.2", 8080), ("10.244.1.3", 8080), ("10.244.2.2", 8080)]),
        DNS: sp("default/web:dns", DNS, [("10.244.1.2", 5353)]),
        EMPTY: sp("default/empty:http", EMPTY, []),
    }


@pytest.fixture
def ns() -> Iterator[str]:
    name = f"pnt-proxy-{uuid.uuid4().hex[:8]}"
    netns.create(name)
    try:
        yield name
    finally:
        netns.delete(name)
        assert not netns.exists(name)


@pytest.fixture
def nft(ns: str) -> Iterator[Nftables]:
    ctx = Nftables(ns)
    try:
        yield ctx
    finally:
        ctx.close()


def nft_json(ns: str, *what: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        ["ip", "netns", "exec", ns, "nft", "-j", "list", *what],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    return list(json.loads(out)["nftables"])


def _value(v: Any) -> Any:
    if isinstance(v, dict) and "concat" in v:
        return tuple(v["concat"])
    if isinstance(v, dict) and "goto" in v:
        return f"goto {v['goto']['target']}"
    return v


def kernel_elements(ns: str, kind: str, name: str) -> dict[Any, Any]:
    """A map's elements as {key: value}, or a set's as {key: None}."""
    (obj,) = [o[kind] for o in nft_json(ns, kind, "ip", "podnet", name) if kind in o]
    out: dict[Any, Any] = {}
    for elem in obj.get("elem", []):
        if kind == "map":
            key, value = elem
            out[_value(key)] = _value(value)
        else:
            out[_value(elem)] = None
    return out


def expected_backends(state: State) -> dict[Any, Any]:
    return {
        (k.ip, k.protocol, k.port, i): (ip, port)
        for k, s in state.items()
        for i, (ip, port) in enumerate(s.endpoints)
    }


def expected_service_ips(state: State) -> dict[Any, Any]:
    return {
        (k.ip, k.protocol, k.port): f"goto endpoints_{len(s.endpoints)}"
        for k, s in state.items()
        if s.endpoints
    }


def expected_hairpin(state: State) -> dict[Any, Any]:
    return {(ip, ip): None for ip in render.endpoint_ips(state)}


def test_nftables_refuses_the_current_namespace_without_host_true() -> None:
    with pytest.raises(NftError, match="host=True"):
        Nftables(None)


def test_the_golden_ruleset_loads(ns: str, nft: Nftables) -> None:
    nft.run(GOLDEN.read_text())
    assert len(kernel_elements(ns, "map", "backends")) == 7


def test_a_full_sync_loads_exactly_the_states_elements(ns: str, nft: Nftables) -> None:
    state = initial()
    nft.run(render.full(state, render.ProxyConfig()))
    assert kernel_elements(ns, "map", "backends") == expected_backends(state)
    assert kernel_elements(ns, "map", "service_ips") == expected_service_ips(state)
    assert kernel_elements(ns, "map", "no_endpoint_services") == {
        ("10.96.0.20", "tcp", 80): "goto reject_chain"
    }
    assert kernel_elements(ns, "set", "hairpin") == expected_hairpin(state)


def test_a_second_full_sync_replaces_the_first(ns: str, nft: Nftables) -> None:
    nft.run(render.full(initial(), render.ProxyConfig()))
    state = {WEB: sp("default/web:http", WEB, [("10.244.3.3", 8080)])}
    nft.run(render.full(state, render.ProxyConfig()))
    assert kernel_elements(ns, "map", "backends") == expected_backends(state)
    assert kernel_elements(ns, "map", "no_endpoint_services") == {}


def test_a_delta_for_one_endpoint_leaves_exactly_the_new_elements(ns: str, nft: Nftables) -> None:
    old = initial()
    nft.run(render.full(old, render.ProxyConfig()))
    new = dict(old)
    new[WEB] = sp("default/web:http", WEB, [("10.244.1.2", 8080), ("10.244.1.3", 8080), ("10.244.2.9", 8080)])
    chains = set(range(1, render.chain_capacity(old) + 1))
    nft.run(render.delta(old, new, chains, hairpin_add=["10.244.2.9"], hairpin_remove=["10.244.2.2"]))
    assert kernel_elements(ns, "map", "backends") == expected_backends(new)
    assert kernel_elements(ns, "map", "service_ips") == expected_service_ips(new)
    assert kernel_elements(ns, "set", "hairpin") == expected_hairpin(new)


def test_a_delta_scaling_to_zero_moves_the_key_to_no_endpoint_services(ns: str, nft: Nftables) -> None:
    old = initial()
    nft.run(render.full(old, render.ProxyConfig()))
    new = dict(old)
    new[DNS] = sp("default/web:dns", DNS, [])
    nft.run(render.delta(old, new, set(range(1, 33))))
    assert kernel_elements(ns, "map", "backends") == expected_backends(new)
    assert kernel_elements(ns, "map", "service_ips") == expected_service_ips(new)
    assert set(kernel_elements(ns, "map", "no_endpoint_services")) == {
        ("10.96.0.10", "udp", 53),
        ("10.96.0.20", "tcp", 80),
    }


def test_a_failing_transaction_changes_nothing(ns: str, nft: Nftables) -> None:
    state = initial()
    nft.run(render.full(state, render.ProxyConfig()))
    bad = (
        "add element ip podnet backends { 10.96.0.30 . tcp . 443 . 0 : 10.244.9.9 . 443 }\n"
        "delete element ip podnet service_ips { 10.96.0.99 . tcp . 80 }\n"
    )
    with pytest.raises(NftError):
        nft.run(bad)
    assert kernel_elements(ns, "map", "backends") == expected_backends(state)


def test_the_root_namespace_holds_no_podnet_table() -> None:
    out = subprocess.run(["nft", "list", "tables"], check=True, capture_output=True, text=True).stdout
    assert "podnet" not in out
