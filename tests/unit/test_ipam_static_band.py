"""ClusterIPs chosen at random stay out of the bottom of the range
(KEP-3070's static band) while the rest has room, so well-known addresses
such as the cluster DNS's 10.96.0.10 stay free for the Services that ask."""

from __future__ import annotations

import ipaddress
import random

from podnet.controllers.ipam import random_ip, static_band


def test_the_static_band_size_follows_kep_3070() -> None:
    assert static_band("10.96.0.0/12") == 256
    assert static_band("10.96.0.0/24") == 16
    assert static_band("10.96.0.0/20") == 256
    assert static_band("10.96.0.0/21") == 128
    assert static_band("10.96.0.0/28") == 0


def test_random_addresses_avoid_the_static_band() -> None:
    band_end = ipaddress.ip_address("10.96.1.0")  # .0.1 to .1.0: the 256 addresses of the band
    for seed in range(300):
        ip = ipaddress.ip_address(random_ip("10.96.0.0/12", set(), random.Random(seed)))
        assert ip > band_end


def test_the_static_band_is_used_when_the_rest_is_full() -> None:
    # A /26: 62 usable; the band is .1-.16; .1 is the kubernetes Service's.
    used = {f"10.96.0.{i}" for i in range(17, 63)}
    got = {random_ip("10.96.0.0/26", used, random.Random(seed)) for seed in range(200)}
    assert got == {f"10.96.0.{i}" for i in range(2, 17)}
