"""The lab's "internet" resolver: a tiny authoritative DNS server in the
internet namespace (198.51.100.100:53, UDP and TCP), so that forwarding
from the cluster DNS can be tried without leaving the machine. It is the
whole internet's DNS as far as the lab knows: names it holds are answered,
every other name is NXDOMAIN (with the root SOA), and it never recurses.

Its records (`internet_records`): ``example.com`` and ``www.example.com``
at the internet server's address, ``alias.example.com`` a CNAME to www,
a TXT, and the PTR of the internet address.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from podnet.dns.records import Record, Zone, reverse_name
from podnet.dns.server import Resolver, bind_sockets, serve
from podnet.lab import netns

log = logging.getLogger("podnet.dns.upstream")
TTL = 300


def internet_records(ip: str) -> list[Record]:
    return [
        Record("example.com.", "A", ip, TTL),
        Record("www.example.com.", "A", ip, TTL),
        Record("alias.example.com.", "CNAME", "www.example.com.", TTL),
        Record("example.com.", "TXT", '"the podnet lab internet"', TTL),
        Record(reverse_name(ip), "PTR", "www.example.com.", TTL),
    ]


def static_zone(recs: list[Record], domain: str = ".") -> Zone:
    """A Zone of fixed records (names absolute, lower case)."""
    by_name: dict[str, dict[str, list[Record]]] = {}
    existing = {domain}
    for r in recs:
        by_name.setdefault(r.name, {}).setdefault(r.type, []).append(r)
        labels = r.name.rstrip(".").split(".")
        for i in range(len(labels)):
            existing.add(".".join(labels[i:]) + ".")
    soa = Record(domain, "SOA", "a.root-servers.lab. hostmaster.lab. 1 1800 900 604800 60", 60)
    by_name.setdefault(domain, {})["SOA"] = [soa]
    return Zone(
        domain=domain,
        records={n: {t: tuple(rs) for t, rs in ts.items()} for n, ts in by_name.items()},
        existing=frozenset(existing),
        soa=soa,
    )


class InternetResolver:
    """Serves `internet_records` in namespace `ns` on `ip`:53 from a thread of its own."""

    def __init__(self, ns: str, ip: str, port: int = 53) -> None:
        self.ns, self.ip, self.port = ns, ip, port
        self.zone = static_zone(internet_records(ip))
        self.resolver = Resolver(lambda: self.zone, upstream=None, recursion=False)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stopping: asyncio.Event | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        with netns.entered(self.ns):
            udp, tcp = bind_sockets(self.ip, self.port)
        started = threading.Event()

        def run() -> None:
            async def main() -> None:
                self.loop = asyncio.get_running_loop()
                self.stopping = asyncio.Event()
                started.set()
                await serve(self.resolver, udp, tcp, self.stopping)

            asyncio.run(main())

        self.thread = threading.Thread(target=run, name="internet-dns", daemon=True)
        self.thread.start()
        started.wait(5)
        log.info("internet resolver on %s:%s", self.ip, self.port)

    def stop(self) -> None:
        if self.loop is not None and self.stopping is not None:
            self.loop.call_soon_threadsafe(self.stopping.set)
        if self.thread is not None:
            self.thread.join(timeout=5)
