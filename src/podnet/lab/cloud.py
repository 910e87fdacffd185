"""The lab's cloud provider, as a cloud controller manager would run it:
gives each LoadBalancer Service an address from the pool and shows it in
`status.loadBalancer.ingress`, health-checks every node the way a cloud
load balancer does (kube-proxy's `/healthz` on 10256 for
externalTrafficPolicy Cluster, the Service's `healthCheckNodePort` for
Local), and programs the router: each load balancer port DNATs to the
healthy nodes' nodePort; externalIPs and load balancers without nodePorts
are routed, unchanged, to a healthy node."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from podnet.api.errors import Conflict, NotFound
from podnet.config import ClusterConfig
from podnet.lab import netns, readiness
from podnet.lab.topology import LabPlan, LoadBalancerPort, router_ruleset
from podnet.proxy.healthcheck import PROXY_HEALTHZ_PORT
from podnet.proxy.nftables import Nftables
from podnet.server.registry import Registry
from podnet.store.store import clone

log = logging.getLogger("podnet.cloud")
Obj = dict[str, Any]
CHECK_INTERVAL = 1.0
CHECK_TIMEOUT = 0.5


def pool_addresses(pool: str) -> list[str]:
    net = ipaddress.IPv4Network(pool)
    return [str(a) for a in net.hosts()]


def allocate(pool: str, used: set[str], asked: str | None = None) -> str | None:
    """An address for a new load balancer: the one asked for when free and
    in the pool, else the first free one; None when the pool is exhausted."""
    addrs = pool_addresses(pool)
    if asked and asked in addrs and asked not in used:
        return asked
    for a in addrs:
        if a not in used:
            return a
    return None


def health_target(svc: Obj) -> tuple[int, str]:
    """Where the cloud checks a node for this Service: (port, path)."""
    spec = svc["spec"]
    if spec.get("externalTrafficPolicy") == "Local" and spec.get("healthCheckNodePort"):
        return int(spec["healthCheckNodePort"]), "/"
    return PROXY_HEALTHZ_PORT, "/healthz"


def frontends(svc: Obj, healthy_nodes: list[str]) -> list[LoadBalancerPort]:
    """The load balancer ports of one Service, pure."""
    spec = svc["spec"]
    ingress = [
        i["ip"] for i in (svc.get("status", {}).get("loadBalancer", {}).get("ingress") or []) if i.get("ip")
    ]
    ranges = tuple(spec.get("loadBalancerSourceRanges") or ())
    out = []
    for ip in ingress:
        for p in spec.get("ports") or []:
            if not p.get("nodePort"):
                continue
            out.append(
                LoadBalancerPort(
                    ip,
                    p.get("protocol", "TCP").lower(),
                    int(p["port"]),
                    tuple((node, int(p["nodePort"])) for node in healthy_nodes),
                    ranges,
                )
            )
    return out


class CloudController:
    def __init__(self, registry: Registry, plan: LabPlan, cfg: ClusterConfig) -> None:
        self.reg = registry
        self.plan = plan
        self.cfg = cfg
        self.nft = Nftables(plan.router_netns)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="cloud", daemon=True)
        self.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="cloud-health")
        self.applied = ""
        self.routes: dict[str, str] = {}  # routed address -> node address
        self.health: dict[tuple[str, int, str], bool] = {}

    def start(self) -> None:
        self.thread.start()

    def shutdown(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.nft.close()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                self.sync()
            except Exception:
                log.exception("cloud sync failed")
            self.stop.wait(CHECK_INTERVAL)

    def sync(self) -> None:
        # Read without copies (every second, every Service): only what is
        # written back is copied, in _allocate.
        services = self.reg.store.list("Service", shared=True)[0]
        self._allocate(services)
        services = self.reg.store.list("Service", where=lambda s: bool(_wants_traffic(s)), shared=True)[0]
        self._check_health(services)
        ports: list[LoadBalancerPort] = []
        routed: dict[str, str] = {}
        for svc in services:
            port, path = health_target(svc)
            healthy = [n.internal_ip for n in self.plan.nodes if self.health.get((n.internal_ip, port, path))]
            ports += frontends(svc, healthy)
            # Addresses a node must see unchanged: routed to the first healthy node.
            for ip in _routed_addresses(svc):
                if healthy:
                    routed[ip] = healthy[0]
        text = router_ruleset(
            self.plan, tuple(sorted(ports, key=lambda f: (f.ip, f.protocol, f.port))), tuple(sorted(routed))
        )
        if text != self.applied:
            self.nft.run(text)
            self.applied = text
        if routed != self.routes:
            self._set_routes(routed)

    def _allocate(self, services: list[Obj]) -> None:
        used = {
            i["ip"]
            for s in services
            if s["spec"].get("type") == "LoadBalancer"
            for i in (s.get("status", {}).get("loadBalancer", {}).get("ingress") or [])
        }
        for shared in services:
            ingress = shared.get("status", {}).get("loadBalancer", {}).get("ingress")
            if shared["spec"].get("type") != "LoadBalancer" and not ingress:
                continue
            svc = clone(shared)
            if svc["spec"].get("type") == "LoadBalancer":
                if ingress:
                    continue
                ip = allocate(self.cfg.load_balancer_pool, used, svc["spec"].get("loadBalancerIP"))
                if ip is None:
                    log.warning(
                        "service %s/%s: load balancer pool %s is exhausted",
                        svc["metadata"]["namespace"],
                        svc["metadata"]["name"],
                        self.cfg.load_balancer_pool,
                    )
                    continue
                used.add(ip)
                svc.setdefault("status", {})["loadBalancer"] = {"ingress": [{"ip": ip, "ipMode": "VIP"}]}
            elif ingress:
                svc["status"]["loadBalancer"] = {}  # no longer a LoadBalancer: release its address
            else:
                continue
            with contextlib.suppress(Conflict, NotFound):
                self.reg.update(svc, subresource="status")

    def _check_health(self, services: list[Obj]) -> None:
        targets = {(n.internal_ip, *health_target(s)) for s in services for n in self.plan.nodes}
        futures = {
            t: self.pool.submit(readiness.http_get, self.plan.router_netns, t[0], t[1], t[2], CHECK_TIMEOUT)
            for t in targets
        }
        self.health = {t: _result(f) for t, f in futures.items()}

    def _set_routes(self, routed: dict[str, str]) -> None:
        from pyroute2 import IPRoute  # rarely needed: not worth its import at start-up

        with netns.entered(self.plan.router_netns):
            ipr = IPRoute()
        with ipr:
            for ip in set(self.routes) - set(routed):
                with contextlib.suppress(Exception):
                    ipr.route("del", dst=f"{ip}/32")
            for ip, via in routed.items():
                if self.routes.get(ip) != via:
                    ipr.route("replace", dst=f"{ip}/32", gateway=via)
        self.routes = dict(routed)


def _wants_traffic(svc: Obj) -> bool:
    spec = svc["spec"]
    return spec.get("type") == "LoadBalancer" or bool(spec.get("externalIPs"))


def _routed_addresses(svc: Obj) -> list[str]:
    spec = svc["spec"]
    out = list(spec.get("externalIPs") or [])
    if spec.get("type") == "LoadBalancer" and not any(p.get("nodePort") for p in spec.get("ports") or []):
        out += [
            i["ip"]
            for i in (svc.get("status", {}).get("loadBalancer", {}).get("ingress") or [])
            if i.get("ip")
        ]
    return out


def _result(future: Any) -> bool:
    try:
        return bool(future.result())
    except Exception:
        return False


__all__ = ["CloudController", "allocate", "frontends", "health_target"]
