"""Address allocation: pod IPs round-robin as CNI host-local hands them out,
ClusterIPs at random."""

from __future__ import annotations

import ipaddress
import random

import pytest

from podnet.controllers.ipam import RangeExhausted, in_range, next_pod_ip, nth_address, random_ip

CIDR = "10.244.1.0/24"
GATEWAY = "10.244.1.1"


def test_the_first_pod_ip_is_the_first_address_not_reserved() -> None:
    assert next_pod_ip(CIDR, set(), None, {GATEWAY}) == "10.244.1.2"


def test_the_next_pod_ip_follows_the_last_one_handed_out() -> None:
    assert next_pod_ip(CIDR, set(), "10.244.1.7", {GATEWAY}) == "10.244.1.8"


def test_a_freed_address_is_not_reused_at_once() -> None:
    # .2 was handed out and freed; .3 is the last handed out: .4 comes next, not .2.
    assert next_pod_ip(CIDR, {"10.244.1.3"}, "10.244.1.3", {GATEWAY}) == "10.244.1.4"


def test_used_addresses_are_skipped() -> None:
    used = {"10.244.1.8", "10.244.1.9"}
    assert next_pod_ip(CIDR, used, "10.244.1.7", {GATEWAY}) == "10.244.1.10"


def test_reserved_addresses_are_skipped() -> None:
    assert next_pod_ip(CIDR, set(), None, {GATEWAY, "10.244.1.2"}) == "10.244.1.3"


def test_after_the_last_usable_address_it_wraps_round_past_the_reserved_ones() -> None:
    assert next_pod_ip(CIDR, set(), "10.244.1.254", {GATEWAY}) == "10.244.1.2"


def test_the_network_and_broadcast_addresses_are_never_handed_out() -> None:
    seen = set()
    last = None
    for _ in range(253):
        last = next_pod_ip(CIDR, seen, last, {GATEWAY})
        seen.add(last)
    assert "10.244.1.0" not in seen and "10.244.1.255" not in seen
    assert len(seen) == 253


def test_a_full_range_is_exhausted_with_a_message_naming_it() -> None:
    used = {f"10.244.1.{i}" for i in range(2, 255)}
    with pytest.raises(RangeExhausted, match=r"no free address left in 10\.244\.1\.0/24"):
        next_pod_ip(CIDR, used, "10.244.1.100", {GATEWAY})


def test_the_one_free_address_is_found_wherever_the_search_starts() -> None:
    used = {f"10.244.1.{i}" for i in range(2, 255)} - {"10.244.1.50"}
    assert next_pod_ip(CIDR, used, "10.244.1.200", {GATEWAY}) == "10.244.1.50"


def test_a_random_cluster_ip_is_in_the_range() -> None:
    ip = random_ip("10.96.0.0/12", set())
    assert ipaddress.ip_address(ip) in ipaddress.ip_network("10.96.0.0/12")


def test_a_random_cluster_ip_is_never_the_first_address() -> None:
    # In a /29 the usable addresses are .1-.6 and .1 is the kubernetes Service's.
    got = {random_ip("10.96.0.0/29", set(), random.Random(seed)) for seed in range(200)}
    assert got == {f"10.96.0.{i}" for i in range(2, 7)}


def test_a_random_cluster_ip_is_never_a_used_one() -> None:
    used = {"10.96.0.2", "10.96.0.3", "10.96.0.5"}
    got = {random_ip("10.96.0.0/29", used, random.Random(seed)) for seed in range(200)}
    assert got == {"10.96.0.4", "10.96.0.6"}


def test_the_last_free_cluster_ip_is_found_even_with_the_first_address_in_use() -> None:
    # The kubernetes Service holds .1; .2-.5 are taken; .6 is free.
    used = {"10.96.0.1", "10.96.0.2", "10.96.0.3", "10.96.0.4", "10.96.0.5"}
    assert random_ip("10.96.0.0/29", used, random.Random(0)) == "10.96.0.6"


def test_a_full_service_range_is_exhausted() -> None:
    used = {f"10.96.0.{i}" for i in range(2, 7)}
    with pytest.raises(RangeExhausted, match="no free address"):
        random_ip("10.96.0.0/29", used)


def test_the_same_seed_gives_the_same_cluster_ip() -> None:
    assert random_ip("10.96.0.0/12", set(), random.Random(7)) == random_ip(
        "10.96.0.0/12", set(), random.Random(7)
    )


def test_in_range_tells_addresses_inside_from_outside_and_garbage() -> None:
    assert in_range("10.96.0.0/12", "10.100.1.1")
    assert not in_range("10.96.0.0/12", "10.112.0.1")
    assert not in_range("10.96.0.0/12", "not-an-ip")


def test_nth_address_counts_from_the_network_address() -> None:
    assert nth_address("10.244.1.0/24", 1) == "10.244.1.1"
    assert nth_address("10.96.0.0/12", 10) == "10.96.0.10"
