"""`python -m podnet.dns`: the cluster DNS server, as a pod runs it.

It watches Services, EndpointSlices, Pods and Namespaces through the API
(list, then watch; relist on 410), rebuilds the zone after each batch of
changes, and serves it on port 53 (UDP and TCP). Names outside the zone
go to the upstream resolver: `--upstream`, else the first nameserver of
/etc/resolv.conf (the pod runs with dnsPolicy Default, so that is the
node's resolver, as CoreDNS's `forward . /etc/resolv.conf`). Readiness on
HTTP port 8181 (`/ready`: 200 once every informer has listed).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import threading
import time

from podnet.api.kinds import BY_KIND
from podnet.dns import records
from podnet.dns.informer import Informer
from podnet.dns.server import Resolver, bind_sockets, serve

log = logging.getLogger("podnet.dns")
DEBOUNCE = 0.01  # changes arriving together make one rebuild
# At most a few rebuilds a second under churn (a rebuild is O(cluster); 500
# pods starting must not cost 500 rebuilds), still well within the
# "answers follow changes within about a second" budget.
MIN_INTERVAL = 0.25


def host_port(text: str, default_port: int) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        return text, default_port
    return host.strip("[]"), int(port)


def resolv_conf_nameserver(path: str = "/etc/resolv.conf") -> str | None:
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver":
                    return parts[1]
    except OSError:
        return None
    return None


class ClusterDNS:
    """The informers, the zone they make, and the resolver over it."""

    def __init__(self, api: tuple[str, int], domain: str, upstream: tuple[str, int] | None, ttl: int) -> None:
        self.domain = domain
        self.ttl = ttl
        self.stop = threading.Event()
        self.changed = threading.Event()
        self.informers = {
            kind: Informer(api[0], api[1], BY_KIND[kind], self.changed.set, self.stop)
            for kind in ("Service", "EndpointSlice", "Pod", "Namespace")
        }
        self.zone: records.Zone | None = None
        self.builds = 0
        self.last_build = 0.0
        self.resolver = Resolver(lambda: self.zone, upstream)
        self.builder = threading.Thread(target=self._build_loop, name="zone-builder", daemon=True)

    def start(self) -> None:
        for inf in self.informers.values():
            inf.start()
        self.builder.start()

    def ready(self) -> bool:
        return self.zone is not None

    def _build_loop(self) -> None:
        while not self.stop.is_set():
            if not self.changed.wait(1.0):
                continue
            time.sleep(max(DEBOUNCE, self.last_build + MIN_INTERVAL - time.monotonic()))
            self.changed.clear()
            if not all(i.synced.is_set() for i in self.informers.values()):
                continue
            try:
                self.zone = self.build()
                self.builds += 1
                self.last_build = time.monotonic()
            except Exception:
                log.exception("building the zone failed; keeping the previous one")

    def build(self) -> records.Zone:
        inf = self.informers
        serial = max((int(i.rv) for i in inf.values() if i.rv.isdigit()), default=1) % (1 << 32)
        return records.build(
            inf["Service"].snapshot(),
            inf["EndpointSlice"].snapshot(),
            inf["Pod"].snapshot(),
            [ns["metadata"]["name"] for ns in inf["Namespace"].snapshot()],
            domain=self.domain,
            serial=serial,
            ttl=self.ttl,
        )


def main(argv: list[str] | None = None) -> None:
    env_api = None
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        env_api = (
            f"{os.environ['KUBERNETES_SERVICE_HOST']}:{os.environ.get('KUBERNETES_SERVICE_PORT', '443')}"
        )
    p = argparse.ArgumentParser(prog="python -m podnet.dns", description="the lab's cluster DNS server")
    p.add_argument(
        "--api", default=env_api, help="the API server, HOST:PORT (default: the kubernetes Service)"
    )
    p.add_argument("--zone", default="cluster.local")
    p.add_argument("--upstream", help="HOST[:PORT] for other names (default: /etc/resolv.conf)")
    p.add_argument("--listen", default="0.0.0.0")
    p.add_argument("--port", type=int, default=53)
    p.add_argument("--ready-port", type=int, default=8181)
    p.add_argument("--ttl", type=int, default=records.TTL)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.api:
        p.error("no API server: give --api or run where KUBERNETES_SERVICE_HOST is set")
    upstream_text = args.upstream or resolv_conf_nameserver()
    upstream = host_port(upstream_text, 53) if upstream_text else None
    app = ClusterDNS(host_port(args.api, 443), args.zone, upstream, args.ttl)
    udp, tcp = bind_sockets(args.listen, args.port)
    ready_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ready_sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ready_sock.bind((args.listen, args.ready_port))
    ready_sock.listen(64)
    ready_sock.setblocking(False)
    app.start()
    log.info(
        "serving %s on %s:%s, upstream %s, API %s", args.zone, args.listen, args.port, upstream, args.api
    )

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(app.resolver, udp, tcp, stop, ready_sock, app.ready)

    asyncio.run(run())
    app.stop.set()
