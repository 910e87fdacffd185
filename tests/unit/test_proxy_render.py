"""The service proxy's nftables text: the full table (a golden file), and
the incremental transactions that touch only the Services that changed.

The element sets a text describes are read back by a tiny parser of the
`add element` / `delete element` lines, so a delta can be checked against
full syncs without running nft.

Regenerate the golden file with PODNET_UPDATE_GOLDEN=1 (and read the diff).
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import random
import re
from pathlib import Path

import pytest

from podnet.proxy.model import PortKey, ServicePort
from podnet.proxy.render import NeedsFullSync, ProxyConfig, chain_capacity, delta, endpoint_ips, full

GOLDEN = Path(__file__).parent / "golden" / "proxy_full.nft"
CHAINS = set(range(1, 33))  # what a full sync of a small state defines
State = dict[PortKey, ServicePort]


def port(name: str, ip: str, protocol: str, number: int, endpoints: list[tuple[str, int]]) -> State:
    key = PortKey(ip, protocol, number)
    return {key: ServicePort(name, key, tuple(endpoints))}


def representative() -> State:
    """A TCP+UDP Service with 3 endpoints, one with none, one with one."""
    web = [("10.244.1.2", 8080), ("10.244.1.3", 8080), ("10.244.2.2", 8080)]
    dns = [("10.244.1.2", 5353), ("10.244.1.3", 5353), ("10.244.2.2", 5353)]
    return {
        **port("default/web:http", "10.96.0.10", "tcp", 80, web),
        **port("default/web:dns", "10.96.0.10", "udp", 53, dns),
        **port("default/empty:http", "10.96.0.20", "tcp", 80, []),
        **port("default/one:https", "10.96.0.30", "tcp", 443, [("10.244.2.7", 8443)]),
    }


def vip(i: int) -> str:
    return str(ipaddress.ip_address("10.96.0.0") + 1 + i)


def pod_ip(i: int) -> str:
    return str(ipaddress.ip_address("10.244.0.0") + 2 + i)


def many(n: int, per_service: int = 2) -> State:
    state: State = {}
    for i in range(n):
        eps = [(pod_ip(i * per_service + j), 8080) for j in range(per_service)]
        state.update(port(f"default/s{i}:http", vip(i), "tcp", 80, eps))
    return state


def with_endpoints(state: State, key: PortKey, endpoints: list[tuple[str, int]]) -> State:
    new = dict(state)
    new[key] = ServicePort(state[key].name, key, tuple(endpoints))
    return new


# -- a tiny reader of element lines ----------------------------------------------

ELEMENT_LINE = re.compile(r"^(add|delete) element ip podnet (\w+) \{ (.*) \}$")
Elements = dict[str, dict[str, str | None]]  # set or map name -> key -> value (None: a set)


def element_ops(text: str) -> list[tuple[str, str, list[str]]]:
    ops = []
    for line in text.splitlines():
        m = ELEMENT_LINE.match(line)
        if m:
            ops.append((m[1], m[2], m[3].split(", ")))
    return ops


def apply(elements: Elements, text: str) -> Elements:
    """What the kernel would hold after `text`; strict as nft is: deleting
    an absent element or adding one whose key is present fails."""
    out = {name: dict(items) for name, items in elements.items()}
    for op, name, items in element_ops(text):
        for item in items:
            key, _, value = item.partition(" : ")
            if op == "delete":
                assert key in out[name], f"delete of absent {name} element {key!r}"
                del out[name][key]
            else:
                assert key not in out[name], f"add of present {name} element {key!r}"
                out[name][key] = value or None
    return out


def elements_of_full(text: str) -> Elements:
    assert text.startswith("table ip podnet\ndelete table ip podnet\n")
    empty: Elements = {"service_ips": {}, "no_endpoint_services": {}, "backends": {}, "hairpin": {}}
    assert all(op == "add" for op, _, _ in element_ops(text))
    return apply(empty, text)


def skeleton(text: str) -> str:
    """The table's declaration: everything but its elements."""
    return "".join(line for line in text.splitlines(True) if not ELEMENT_LINE.match(line.rstrip("\n")))


def hairpin_change(old: State, new: State) -> tuple[list[str], list[str]]:
    before, after = endpoint_ips(old), endpoint_ips(new)
    return sorted(after - before), sorted(before - after)


def check_delta_reaches_full(old: State, new: State, chains: set[int] = CHAINS) -> str:
    add, remove = hairpin_change(old, new)
    text = delta(old, new, chains, add, remove)
    cfg = ProxyConfig()
    assert apply(elements_of_full(full(old, cfg)), text) == elements_of_full(full(new, cfg))
    return text


# -- the full table -----------------------------------------------------------------


def test_the_full_table_matches_the_golden_file() -> None:
    got = full(representative(), ProxyConfig())
    if os.environ.get("PODNET_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(got)
    want = GOLDEN.read_text()
    if got != want:
        diff = "".join(
            difflib.unified_diff(
                want.splitlines(True), got.splitlines(True), str(GOLDEN), "render.full(representative())"
            )
        )
        pytest.fail(
            f"the full table differs from the golden file (PODNET_UPDATE_GOLDEN=1 rewrites it):\n{diff}"
        )


def test_the_full_table_replaces_the_old_one_in_one_transaction() -> None:
    lines = full({}, ProxyConfig()).splitlines()
    assert lines[:3] == ["table ip podnet", "delete table ip podnet", "table ip podnet {"]


def test_an_empty_state_adds_no_elements() -> None:
    assert element_ops(full({}, ProxyConfig())) == []


def test_the_full_table_defines_one_chain_per_endpoint_count_up_to_the_capacity() -> None:
    text = full(many(1, per_service=40), ProxyConfig())
    counts = [int(n) for n in re.findall(r"chain endpoints_(\d+) \{", text)]
    assert counts == list(range(1, 65))


def test_without_an_egress_interface_pods_leaving_are_not_masqueraded() -> None:
    assert "pods leaving the cluster" in full({}, ProxyConfig())
    assert "pods leaving the cluster" not in full({}, ProxyConfig(egress_interface=""))


def test_the_egress_masquerade_uses_the_configured_cluster_cidr_and_interface() -> None:
    text = full({}, ProxyConfig(cluster_cidr="10.1.0.0/16", egress_interface="ens3"))
    assert 'ip saddr 10.1.0.0/16 ip daddr != 10.1.0.0/16 oifname "ens3" masquerade' in text


def test_every_endpoint_address_is_a_hairpin_element_once() -> None:
    els = elements_of_full(full(representative(), ProxyConfig()))
    assert sorted(els["hairpin"]) == [
        "10.244.1.2 . 10.244.1.2",
        "10.244.1.3 . 10.244.1.3",
        "10.244.2.2 . 10.244.2.2",
        "10.244.2.7 . 10.244.2.7",
    ]


# -- chain capacity -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("largest", "capacity"), [(0, 32), (1, 32), (32, 32), (33, 64), (64, 64), (65, 128), (300, 512)]
)
def test_chain_capacity_is_a_power_of_two_from_32_covering_the_largest_count(
    largest: int, capacity: int
) -> None:
    state = port("a/b:c", "10.96.0.1", "tcp", 80, [(pod_ip(i), 80) for i in range(largest)])
    assert chain_capacity(state) == capacity


def test_chain_capacity_honours_a_smaller_minimum() -> None:
    assert chain_capacity(many(1, per_service=5), minimum=4) == 8


# -- deltas ---------------------------------------------------------------------------


def test_nothing_changed_gives_an_empty_transaction() -> None:
    state = many(10)
    assert delta(state, state, CHAINS) == ""


def test_one_endpoint_changed_among_1000_services_touches_only_that_service() -> None:
    old = many(1000)
    key = PortKey(vip(500), "tcp", 80)
    (a, _), _ = old[key].endpoints
    new = with_endpoints(old, key, [(a, 8080), ("10.250.0.9", 8080)])
    v = vip(500)
    # Same endpoint count: the dispatch element and the unchanged endpoint stay;
    # only the replaced endpoint's backends element is rewritten.
    assert delta(old, new, CHAINS).splitlines() == [
        f"delete element ip podnet backends {{ {v} . tcp . 80 . 1 }}",
        f"add element ip podnet backends {{ {v} . tcp . 80 . 1 : 10.250.0.9 . 8080 }}",
    ]


def test_one_endpoint_changed_among_1000_services_names_no_other_vip() -> None:
    old = many(1000)
    key = PortKey(vip(500), "tcp", 80)
    new = with_endpoints(old, key, [old[key].endpoints[0], ("10.250.0.9", 8080)])
    text = delta(old, new, CHAINS)
    assert set(re.findall(r"10\.96\.\d+\.\d+", text)) == {vip(500)}


def test_scaling_to_zero_moves_the_key_from_service_ips_to_no_endpoint_services() -> None:
    old = port("default/web:http", "10.96.0.10", "tcp", 80, [("10.244.1.2", 8080)])
    new = port("default/web:http", "10.96.0.10", "tcp", 80, [])
    assert delta(old, new, CHAINS, hairpin_remove=["10.244.1.2"]).splitlines() == [
        "delete element ip podnet service_ips { 10.96.0.10 . tcp . 80 }",
        "delete element ip podnet backends { 10.96.0.10 . tcp . 80 . 0 }",
        "delete element ip podnet hairpin { 10.244.1.2 . 10.244.1.2 }",
        "add element ip podnet no_endpoint_services { 10.96.0.10 . tcp . 80 : goto reject_chain }",
    ]


def test_scaling_up_from_zero_moves_the_key_from_no_endpoint_services_to_service_ips() -> None:
    old = port("default/web:http", "10.96.0.10", "tcp", 80, [])
    new = port("default/web:http", "10.96.0.10", "tcp", 80, [("10.244.1.2", 8080)])
    assert delta(old, new, CHAINS).splitlines() == [
        "delete element ip podnet no_endpoint_services { 10.96.0.10 . tcp . 80 }",
        "add element ip podnet backends { 10.96.0.10 . tcp . 80 . 0 : 10.244.1.2 . 8080 }",
        "add element ip podnet service_ips { 10.96.0.10 . tcp . 80 : goto endpoints_1 }",
    ]


def test_a_new_service_is_added() -> None:
    new = port("default/web:http", "10.96.0.10", "tcp", 80, [("10.244.1.2", 8080), ("10.244.1.3", 8080)])
    assert delta({}, new, CHAINS).splitlines() == [
        "add element ip podnet backends { 10.96.0.10 . tcp . 80 . 0 : 10.244.1.2 . 8080, "
        "10.96.0.10 . tcp . 80 . 1 : 10.244.1.3 . 8080 }",
        "add element ip podnet service_ips { 10.96.0.10 . tcp . 80 : goto endpoints_2 }",
    ]


def test_a_new_service_without_endpoints_is_added_as_rejecting() -> None:
    new = port("default/web:http", "10.96.0.10", "tcp", 80, [])
    assert delta({}, new, CHAINS).splitlines() == [
        "add element ip podnet no_endpoint_services { 10.96.0.10 . tcp . 80 : goto reject_chain }",
    ]


def test_a_deleted_service_is_deleted() -> None:
    old = port("default/web:http", "10.96.0.10", "tcp", 80, [("10.244.1.2", 8080), ("10.244.1.3", 8080)])
    assert delta(old, {}, CHAINS).splitlines() == [
        "delete element ip podnet service_ips { 10.96.0.10 . tcp . 80 }",
        "delete element ip podnet backends { 10.96.0.10 . tcp . 80 . 0, 10.96.0.10 . tcp . 80 . 1 }",
    ]


def test_a_deleted_service_without_endpoints_is_deleted() -> None:
    old = port("default/web:http", "10.96.0.10", "tcp", 80, [])
    assert delta(old, {}, CHAINS).splitlines() == [
        "delete element ip podnet no_endpoint_services { 10.96.0.10 . tcp . 80 }",
    ]


def test_hairpin_addresses_are_added_and_removed() -> None:
    state = many(3)
    text = delta(
        state, state, CHAINS, hairpin_add=["10.244.9.9", "10.244.9.1"], hairpin_remove=["10.244.8.8"]
    )
    assert text.splitlines() == [
        "delete element ip podnet hairpin { 10.244.8.8 . 10.244.8.8 }",
        "add element ip podnet hairpin { 10.244.9.1 . 10.244.9.1, 10.244.9.9 . 10.244.9.9 }",
    ]


def test_a_count_beyond_the_defined_chains_needs_a_full_sync() -> None:
    old = many(1, per_service=32)
    (key,) = old
    new = with_endpoints(old, key, [*old[key].endpoints, ("10.250.0.1", 8080)])
    with pytest.raises(NeedsFullSync, match="33"):
        delta(old, new, CHAINS)


def test_a_count_within_the_defined_chains_needs_no_full_sync() -> None:
    old = many(1, per_service=32)
    (key,) = old
    new = with_endpoints(old, key, [*old[key].endpoints, ("10.250.0.1", 8080)])
    assert delta(old, new, set(range(1, 65)))


def test_a_count_missing_from_the_defined_chains_needs_a_full_sync() -> None:
    with pytest.raises(NeedsFullSync):
        delta({}, many(1, per_service=3), {1, 2})


# -- a delta applied to full(old) is full(new) -----------------------------------------


def test_delta_of_one_endpoint_change_applied_to_full_old_is_full_new() -> None:
    old = many(1000)
    key = PortKey(vip(500), "tcp", 80)
    check_delta_reaches_full(old, with_endpoints(old, key, [old[key].endpoints[0], ("10.250.0.9", 8080)]))


def test_delta_of_scaling_to_zero_and_back_applied_to_full_is_full() -> None:
    old = representative()
    key = PortKey("10.96.0.30", "tcp", 443)
    zero = with_endpoints(old, key, [])
    check_delta_reaches_full(old, zero)
    check_delta_reaches_full(zero, old)


def test_delta_of_adding_and_deleting_services_applied_to_full_is_full() -> None:
    old = representative()
    new = {k: v for k, v in old.items() if k.ip != "10.96.0.10"}
    new.update(port("default/new:http", "10.96.0.40", "tcp", 80, [("10.244.3.3", 80)]))
    check_delta_reaches_full(old, new)
    check_delta_reaches_full(new, old)


def test_the_table_declaration_is_unchanged_while_counts_stay_within_capacity() -> None:
    old = representative()
    new = with_endpoints(old, PortKey("10.96.0.30", "tcp", 443), [(pod_ip(i), 80) for i in range(20)])
    assert skeleton(full(old, ProxyConfig())) == skeleton(full(new, ProxyConfig()))


def random_state(rng: random.Random, services: int) -> State:
    state: State = {}
    for i in range(services):
        for proto, number in rng.sample(
            [("tcp", 80), ("udp", 53), ("tcp", 443), ("sctp", 9)], rng.randint(1, 3)
        ):
            eps = [(pod_ip(rng.randrange(60)), 8000 + rng.randrange(3)) for _ in range(rng.randrange(6))]
            state.update(port(f"default/s{i}:{number}", vip(i), proto, number, sorted(set(eps))))
    return state


def mutate(rng: random.Random, state: State) -> State:
    new = dict(state)
    for key in rng.sample(sorted(state), min(len(state), rng.randint(1, 4))):
        action = rng.choice(["endpoints", "delete", "zero"])
        if action == "delete":
            del new[key]
        elif action == "zero":
            new = with_endpoints(new, key, [])
        else:
            eps = {(pod_ip(rng.randrange(60)), 8000 + rng.randrange(3)) for _ in range(rng.randrange(1, 8))}
            new = with_endpoints(new, key, sorted(eps))
    for extra in random_state(rng, rng.randint(0, 2)).values():
        moved = PortKey(vip(900 + rng.randrange(50)), extra.key.protocol, extra.key.port)
        new.setdefault(moved, ServicePort(extra.name, moved, extra.endpoints))
    return new


@pytest.mark.parametrize("seed", range(40))
def test_delta_applied_to_full_old_is_full_new_for_random_changes(seed: int) -> None:
    rng = random.Random(seed)
    old = random_state(rng, 30)
    new = mutate(rng, old)
    check_delta_reaches_full(old, new)


def test_the_golden_state_renders_elements_of_every_kind() -> None:
    els = elements_of_full(full(representative(), ProxyConfig()))
    assert els["service_ips"] == {
        "10.96.0.10 . tcp . 80": "goto endpoints_3",
        "10.96.0.10 . udp . 53": "goto endpoints_3",
        "10.96.0.30 . tcp . 443": "goto endpoints_1",
    }
    assert els["no_endpoint_services"] == {"10.96.0.20 . tcp . 80": "goto reject_chain"}
    assert els["backends"]["10.96.0.10 . udp . 53 . 2"] == "10.244.2.2 . 5353"
    assert len(els["backends"]) == 7


