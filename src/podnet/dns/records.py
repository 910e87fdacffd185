"""The records of the cluster zone, pure: Services, EndpointSlices, Pods and
Namespaces in, a `Zone` out, and from it the answer to any (name, type).

What it serves is the Kubernetes DNS-Based Service Discovery
specification, schema 1.1.0, with CoreDNS's choices where the
specification leaves room:

* ClusterIP Service (also NodePort, LoadBalancer):
  ``svc.ns.svc.zone A|AAAA <clusterIP>``, one per address of clusterIPs;
  ``_port._proto.svc.ns.svc.zone SRV 0 100 <port> svc.ns.svc.zone.`` per
  named port; ``<reversed clusterIP>.in-addr.arpa PTR svc.ns.svc.zone.``.
* Headless Service (clusterIP None): an A/AAAA per address of every ready
  endpoint (endpoint ``conditions.ready`` true or unset) of its
  EndpointSlices; none ready: the name does not exist (NXDOMAIN).
  Each endpoint gets ``<hostname>.svc.ns.svc.zone`` (its ``hostname``, else
  its address with dashes, as CoreDNS names it), one SRV per named port
  and endpoint pointing at that name (weights splitting 100, as CoreDNS),
  and a PTR from its address to that name.
* ExternalName Service: ``svc.ns.svc.zone CNAME <externalName>.`` for any
  query type; a target inside the zone is followed here, one outside is
  left for the server to resolve upstream (`Answer.chase`).
* Pods: ``a-b-c-d.ns.pod.zone A a.b.c.d`` for a pod of that namespace
  holding that address (CoreDNS's ``pods verified``).
* ``dns-version.zone TXT "1.1.0"``; the apex has SOA and NS
  (``ns.dns.zone``, with an A record to the kube-dns Service's address).
* A name that exists with no record of the asked type (an empty
  non-terminal such as ``svc.zone``, ``ns.svc.zone`` of an existing
  namespace, ``_tcp.svc.ns.svc.zone``, or AAAA of an IPv4 Service) is
  NODATA: NOERROR, no answer, the SOA in the authority section. A name
  that does not exist is NXDOMAIN, SOA likewise. The SOA's TTL and its
  minimum (the negative-caching TTL) are the zone TTL.
* Every record has the zone TTL: 5 s, CoreDNS's kubernetes plugin default.

Names outside the zone, and reverse names the zone does not hold, are not
answered here (`Zone.answer` gives None): the server forwards them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]
TTL = 5
SCHEMA_VERSION = "1.1.0"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
NOERROR, NXDOMAIN = "NOERROR", "NXDOMAIN"
MAX_CHAIN = 8  # CNAMEs followed inside the zone
# Refresh, retry, expire as CoreDNS's kubernetes plugin gives them.
SOA_TIMERS = (7200, 1800, 86400)


@dataclass(frozen=True, order=True)
class Record:
    name: str  # absolute, lower case, with the trailing dot
    type: str  # A, AAAA, SRV, PTR, CNAME, TXT, SOA, NS
    data: str  # presentation format
    ttl: int = TTL

    def text(self) -> str:
        return f"{self.name} {self.ttl} IN {self.type} {self.data}"


@dataclass(frozen=True)
class Answer:
    rcode: str  # NOERROR or NXDOMAIN
    answer: tuple[Record, ...] = ()
    authority: tuple[Record, ...] = ()
    additional: tuple[Record, ...] = ()
    # A CNAME target outside the zone that the server should resolve
    # upstream and append (an ExternalName Service).
    chase: str | None = None


def fqdn(name: str) -> str:
    name = name.lower()
    return name if name.endswith(".") else name + "."


def dashed(ip: str) -> str:
    """An address as a DNS label: 10.244.1.5 -> 10-244-1-5 (IPv6: colons to dashes)."""
    return ip.replace(":", "-").replace(".", "-")


def reverse_name(ip: str) -> str:
    return ipaddress.ip_address(ip).reverse_pointer + "."


def _addr_type(ip: str) -> str:
    return "AAAA" if ipaddress.ip_address(ip).version == 6 else "A"


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@dataclass
class Zone:
    """A precomputed view of the cluster for one DNS zone. Lookups are a
    dict access or two; nothing walks the objects per query."""

    domain: str  # "cluster.local." (absolute, lower case)
    records: dict[str, dict[str, tuple[Record, ...]]]  # name -> type -> records
    existing: frozenset[str]  # every name in the zone that exists (with records or not)
    soa: Record
    reverse: dict[str, tuple[Record, ...]] = field(default_factory=dict)  # PTR name -> records

    def in_zone(self, name: str) -> bool:
        return self.domain == "." or name == self.domain or name.endswith("." + self.domain)

    def answer(self, qname: str, qtype: str) -> Answer | None:
        """The answer for `qname` (any case, dot optional) and `qtype`
        ("A", "SRV", ... or "ANY"); None when the name is not the zone's
        to answer (forward it)."""
        name = fqdn(qname)
        qtype = qtype.upper()
        if not self.in_zone(name):
            ptrs = self.reverse.get(name)
            if ptrs and qtype in ("PTR", "ANY"):
                return Answer(NOERROR, ptrs)
            return None
        return self._answer(name, qtype, MAX_CHAIN)

    def _answer(self, name: str, qtype: str, depth: int) -> Answer:
        types = self.records.get(name)
        if types is None:
            rcode = NOERROR if name in self.existing else NXDOMAIN
            return Answer(rcode, authority=(self.soa,))
        if qtype == "ANY":
            return Answer(NOERROR, tuple(r for rs in types.values() for r in rs))
        if qtype != "CNAME" and "CNAME" in types:
            [cname] = types["CNAME"]
            target = cname.data
            if not self.in_zone(target) or depth <= 0:
                return Answer(NOERROR, (cname,), chase=target if not self.in_zone(target) else None)
            then = self._answer(target, qtype, depth - 1)
            return Answer(then.rcode, (cname, *then.answer), then.authority, then.additional, then.chase)
        found = types.get(qtype)
        if not found:
            return Answer(NOERROR, authority=(self.soa,))
        additional: tuple[Record, ...] = ()
        if qtype == "SRV":
            targets = {r.data.rsplit(" ", 1)[1] for r in found}
            additional = tuple(
                r
                for t in sorted(targets)
                for kind in ("A", "AAAA")
                for r in self.records.get(t, {}).get(kind, ())
            )
        return Answer(NOERROR, found, additional=additional)


class _Builder:
    def __init__(self, domain: str, ttl: int) -> None:
        self.domain = fqdn(domain)
        self.ttl = ttl
        self.records: dict[str, dict[str, list[Record]]] = {}
        self.existing: set[str] = {self.domain}
        self.reverse: dict[str, list[Record]] = {}

    def add(self, name: str, type_: str, data: str) -> None:
        rec = Record(name, type_, data, self.ttl)
        bucket = self.records.setdefault(name, {}).setdefault(type_, [])
        if rec not in bucket:
            bucket.append(rec)
        self.exists(name)

    def exists(self, name: str) -> None:
        """`name` and every name between it and the apex exist."""
        while name not in self.existing and name.endswith("." + self.domain):
            self.existing.add(name)
            name = name.split(".", 1)[1]

    def ptr(self, ip: str, target: str) -> None:
        name = reverse_name(ip)
        rec = Record(name, "PTR", target, self.ttl)
        bucket = self.reverse.setdefault(name, [])
        if rec not in bucket:
            bucket.append(rec)


def _cluster_ips(spec: Obj) -> list[str]:
    ips = [ip for ip in (spec.get("clusterIPs") or [spec.get("clusterIP")]) if ip and ip != "None"]
    return [ip for ip in ips if _is_ip(ip)]


def _ready(ep: Obj) -> bool:
    # An unset `ready` means ready (the API's documented reading).
    return (ep.get("conditions") or {}).get("ready") is not False


def build(
    services: Iterable[Obj],
    slices: Iterable[Obj],
    pods: Iterable[Obj] = (),
    namespaces: Iterable[str] = (),
    domain: str = "cluster.local",
    serial: int = 1,
    ttl: int = TTL,
    dns_service: tuple[str, str] = ("kube-system", "kube-dns"),
) -> Zone:
    """The zone `domain` for these objects. `serial` is the SOA serial
    (the server passes the highest resourceVersion it has seen)."""
    b = _Builder(domain, ttl)
    zone = b.domain
    b.add(zone, "NS", f"ns.dns.{zone}")
    b.add(f"dns-version.{zone}", "TXT", f'"{SCHEMA_VERSION}"')
    b.exists(f"svc.{zone}")
    b.exists(f"pod.{zone}")
    for ns in namespaces:
        b.exists(f"{ns}.svc.{zone}")
        b.exists(f"{ns}.pod.{zone}")

    by_service: dict[tuple[str, str], list[Obj]] = {}
    for s in slices:
        meta = s.get("metadata") or {}
        owner = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if owner:
            by_service.setdefault((meta.get("namespace", ""), owner), []).append(s)

    for svc in sorted(services, key=lambda s: (s["metadata"].get("namespace", ""), s["metadata"]["name"])):
        meta, spec = svc["metadata"], svc.get("spec") or {}
        ns, name = meta.get("namespace", "default"), meta["name"]
        base = f"{name}.{ns}.svc.{zone}"
        b.exists(f"{ns}.svc.{zone}")
        if spec.get("type") == "ExternalName":
            target = str(spec.get("externalName") or "").strip()
            if target:
                b.add(base, "CNAME", fqdn(target))
            continue
        ips = _cluster_ips(spec)
        if ips:
            for ip in ips:
                b.add(base, _addr_type(ip), ip)
                b.ptr(ip, base)
            if (ns, name) == dns_service:
                for ip in ips:
                    b.add(f"ns.dns.{zone}", _addr_type(ip), ip)
            for p in spec.get("ports") or []:
                if p.get("name"):
                    srv = f"_{p['name']}._{str(p.get('protocol', 'TCP')).lower()}.{base}"
                    b.add(srv, "SRV", f"0 100 {p['port']} {base}")
            continue
        if spec.get("clusterIP") != "None":
            continue  # no address yet
        _headless(b, base, by_service.get((ns, name), []))

    for pod in pods:
        meta, status = pod["metadata"], pod.get("status") or {}
        if status.get("phase") in ("Succeeded", "Failed"):
            continue
        ns = meta.get("namespace", "default")
        pod_ips = [str(p.get("ip")) for p in status.get("podIPs") or []]
        if not pod_ips and status.get("podIP"):
            pod_ips = [str(status["podIP"])]
        for ip in pod_ips:
            if ip and _is_ip(ip):
                b.add(f"{dashed(ip)}.{ns}.pod.{zone}", _addr_type(ip), ip)

    soa = Record(
        zone,
        "SOA",
        f"ns.dns.{zone} hostmaster.{zone} {serial} {SOA_TIMERS[0]} {SOA_TIMERS[1]} {SOA_TIMERS[2]} {ttl}",
        ttl,
    )
    b.records.setdefault(zone, {})["SOA"] = [soa]
    return Zone(
        domain=zone,
        records={n: {t: tuple(rs) for t, rs in types.items()} for n, types in b.records.items()},
        existing=frozenset(b.existing),
        soa=soa,
        reverse={n: tuple(rs) for n, rs in b.reverse.items()},
    )


def _headless(b: _Builder, base: str, slices: list[Obj]) -> None:
    srvs: dict[str, list[tuple[int, str]]] = {}
    for s in sorted(slices, key=lambda s: s["metadata"]["name"]):
        ports = [p for p in s.get("ports") or [] if p.get("name") and p.get("port") is not None]
        for ep in s.get("endpoints") or []:
            if not _ready(ep):
                continue
            for ip in ep.get("addresses") or []:
                if not _is_ip(ip):
                    continue
                host = f"{str(ep.get('hostname') or dashed(ip)).lower()}.{base}"
                b.add(base, _addr_type(ip), ip)
                b.add(host, _addr_type(ip), ip)
                b.ptr(ip, host)
                for p in ports:
                    srv = f"_{p['name']}._{str(p.get('protocol', 'TCP')).lower()}.{base}"
                    if (p["port"], host) not in srvs.setdefault(srv, []):
                        srvs[srv].append((p["port"], host))
    for srv, targets in srvs.items():
        weight = max(1, 100 // len(targets))
        for port, host in targets:
            b.add(srv, "SRV", f"0 {weight} {port} {host}")
