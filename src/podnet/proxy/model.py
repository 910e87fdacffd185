"""What the service proxy must program on one node, pure: from a Service
and its EndpointSlices, every frontend (ClusterIP, external IP or
LoadBalancer address, nodePort) and the endpoints that frontend sends new
connections to, with the traffic policies applied."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]
SERVICE_NAME_LABEL = "kubernetes.io/service-name"

CLUSTER = "cluster"  # a ClusterIP: traffic from inside the cluster
EXTERNAL = "external"  # an externalIP or a LoadBalancer ingress address
NODEPORT = "nodeport"  # a nodePort, on any of the node's own addresses


@dataclass(frozen=True, order=True)
class PortKey:
    """A frontend as a packet sees it. `ip` is empty for a nodePort, which
    answers on every local address."""

    ip: str
    protocol: str  # "tcp", "udp", "sctp": nftables' spelling
    port: int

    def nft(self) -> str:
        if not self.ip:
            return f"{self.protocol} . {self.port}"
        return f"{self.ip} . {self.protocol} . {self.port}"


@dataclass(frozen=True)
class ServicePort:
    name: str  # namespace/service:port, for humans and logs
    key: PortKey
    endpoints: tuple[tuple[str, int], ...]  # (ip, port), sorted
    kind: str = CLUSTER
    # External traffic under externalTrafficPolicy Cluster is masqueraded,
    # so that replies come back through this node.
    masquerade: bool = False
    # With no endpoints: "reject" when the Service has none anywhere,
    # "drop" when a Local traffic policy leaves none on this node.
    when_empty: str = "reject"
    affinity: int = 0  # sessionAffinity ClientIP timeout in seconds; 0: none


def service_key(obj: Obj) -> tuple[str, str]:
    return obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


def slice_service(slice_: Obj) -> tuple[str, str] | None:
    name = (slice_["metadata"].get("labels") or {}).get(SERVICE_NAME_LABEL)
    return (slice_["metadata"].get("namespace", ""), name) if name else None


def has_virtual_ip(service: Obj) -> bool:
    spec = service.get("spec", {})
    ip = spec.get("clusterIP")
    return bool(ip) and ip != "None" and spec.get("type", "ClusterIP") != "ExternalName"


@dataclass(frozen=True)
class _Endpoint:
    addr: tuple[str, int]
    node: str | None
    ready: bool
    serving_terminating: bool


def _endpoints(slices: Iterable[Obj], port_name: str, protocol: str) -> list[_Endpoint]:
    out: dict[tuple[str, int], _Endpoint] = {}
    for s in slices:
        if s.get("addressType", "IPv4") != "IPv4":
            continue
        number = None
        for p in s.get("ports") or []:
            if (p.get("name") or "") == port_name and p.get("protocol", "TCP") == protocol:
                number = p.get("port")
        if number is None:
            continue
        for ep in s.get("endpoints") or []:
            cond = ep.get("conditions") or {}
            addr = (ep["addresses"][0], int(number))
            # A nil `ready` or `serving` means true, a nil `terminating`
            # false (the API's rule, as kube-proxy reads it).
            ready = cond.get("ready", True) is not False
            st = cond.get("serving", True) is not False and bool(cond.get("terminating"))
            prev = out.get(addr)
            if prev is None or (ready and not prev.ready):
                out[addr] = _Endpoint(addr, ep.get("nodeName"), ready, st)
    return list(out.values())


def usable(endpoints: Iterable[_Endpoint]) -> tuple[tuple[str, int], ...]:
    """Ready endpoints; when there are none, the serving ones that are
    terminating (so a rolling update with nothing ready yet still answers,
    as kube-proxy does)."""
    eps = list(endpoints)
    ready = sorted(e.addr for e in eps if e.ready)
    return tuple(ready or sorted(e.addr for e in eps if e.serving_terminating))


def service_ports(service: Obj, slices: Iterable[Obj], node: str | None = None) -> dict[PortKey, ServicePort]:
    """Every frontend of one Service as the proxy on `node` programs it."""
    if not has_virtual_ip(service):
        return {}
    ns, name = service_key(service)
    spec = service["spec"]
    slices = list(slices)
    cluster_ips = [ip for ip in spec.get("clusterIPs") or [spec["clusterIP"]] if ":" not in ip]
    external_ips = list(spec.get("externalIPs") or [])
    external_ips += [
        i["ip"]
        for i in (service.get("status", {}).get("loadBalancer", {}).get("ingress") or [])
        if i.get("ip")
    ]
    external_ips = [ip for ip in dict.fromkeys(external_ips) if ":" not in ip]
    affinity = 0
    if spec.get("sessionAffinity") == "ClientIP":
        affinity = int(
            ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get("timeoutSeconds", 10800)
        )
    internal_local = spec.get("internalTrafficPolicy") == "Local"
    external_local = spec.get("externalTrafficPolicy") == "Local"
    out: dict[PortKey, ServicePort] = {}
    for p in spec.get("ports") or []:
        protocol = p.get("protocol", "TCP")
        eps = _endpoints(slices, p.get("name") or "", protocol)
        everywhere = usable(eps)
        here = usable(e for e in eps if e.node == node)
        label = f"{ns}/{name}:{p.get('name') or p['port']}"
        empty = "reject" if not everywhere else "drop"

        def port(
            key: PortKey,
            kind: str,
            local: bool,
            *,
            label: str = label,
            empty: str = empty,
            everywhere: tuple[tuple[str, int], ...] = everywhere,
            here: tuple[tuple[str, int], ...] = here,
        ) -> None:
            chosen = here if local else everywhere
            out[key] = ServicePort(
                label,
                key,
                chosen,
                kind=kind,
                masquerade=kind != CLUSTER and not local,
                when_empty=empty if not chosen else "reject",  # only read when there are none
                affinity=affinity,
            )

        for ip in cluster_ips:
            port(PortKey(ip, protocol.lower(), int(p["port"])), CLUSTER, internal_local)
        for ip in external_ips:
            port(PortKey(ip, protocol.lower(), int(p["port"])), EXTERNAL, external_local)
        if p.get("nodePort") and spec.get("type") in ("NodePort", "LoadBalancer"):
            port(PortKey("", protocol.lower(), int(p["nodePort"])), NODEPORT, external_local)
    return out


def local_endpoint_count(service: Obj, slices: Iterable[Obj], node: str) -> int:
    """What the healthCheckNodePort reports: ready endpoints on `node`."""
    addrs = {
        ep["addresses"][0]
        for s in slices
        for ep in s.get("endpoints") or []
        if ep.get("nodeName") == node and (ep.get("conditions") or {}).get("ready", True) is not False
    }
    return len(addrs)
