"""What the service proxy must program, pure: from a Service and its
EndpointSlices, the (VIP, protocol, port) keys and the endpoints each one
sends new connections to."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


@dataclass(frozen=True, order=True)
class PortKey:
    """A Service port as a packet sees it."""

    ip: str
    protocol: str  # "tcp", "udp", "sctp": nftables' spelling
    port: int

    def nft(self) -> str:
        return f"{self.ip} . {self.protocol} . {self.port}"


@dataclass(frozen=True)
class ServicePort:
    name: str  # namespace/service:port, for humans and logs
    key: PortKey
    endpoints: tuple[tuple[str, int], ...]  # (ip, port), sorted; empty: reject


def service_key(obj: Obj) -> tuple[str, str]:
    return obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


def slice_service(slice_: Obj) -> tuple[str, str] | None:
    name = (slice_["metadata"].get("labels") or {}).get(SERVICE_NAME_LABEL)
    return (slice_["metadata"].get("namespace", ""), name) if name else None


def has_virtual_ip(service: Obj) -> bool:
    spec = service.get("spec", {})
    ip = spec.get("clusterIP")
    return bool(ip) and ip != "None" and spec.get("type", "ClusterIP") != "ExternalName"


def _usable_endpoints(slices: Iterable[Obj], port_name: str, protocol: str) -> list[tuple[str, int]]:
    """Ready endpoints; when there are none, the serving ones that are
    terminating (so a rolling update with nothing ready yet still answers,
    as kube-proxy does)."""
    ready: set[tuple[str, int]] = set()
    serving_terminating: set[tuple[str, int]] = set()
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
            # A nil `ready` means ready (the API's compatibility rule).
            if cond.get("ready", True) is not False:
                ready.add(addr)
            elif cond.get("serving") and cond.get("terminating"):
                serving_terminating.add(addr)
    return sorted(ready or serving_terminating)


def service_ports(service: Obj, slices: Iterable[Obj]) -> dict[PortKey, ServicePort]:
    """The programmed state of one Service: each port's key and endpoints."""
    if not has_virtual_ip(service):
        return {}
    ns, name = service_key(service)
    slices = list(slices)
    out: dict[PortKey, ServicePort] = {}
    for ip in service["spec"].get("clusterIPs") or [service["spec"]["clusterIP"]]:
        if ":" in ip:
            continue  # IPv6: a second table, later
        for p in service["spec"].get("ports") or []:
            protocol = p.get("protocol", "TCP")
            key = PortKey(ip, protocol.lower(), int(p["port"]))
            eps = tuple(_usable_endpoints(slices, p.get("name") or "", protocol))
            out[key] = ServicePort(f"{ns}/{name}:{p.get('name') or p['port']}", key, eps)
    return out
