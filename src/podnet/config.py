"""A lab cluster's settings: the defaults of ARCHITECTURE.md, overridable
from a YAML file (`podnet up --config FILE`)."""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import asdict, dataclass, fields
from typing import Any

import yaml

STATE_ROOT = os.environ.get("PODNET_STATE_DIR", "/var/lib/podnet")
NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,18}[a-z0-9])?$")


class ConfigError(ValueError):
    pass


@dataclass
class ClusterConfig:
    name: str = "podnet"
    nodes: int = 2
    cluster_cidr: str = "10.244.0.0/16"  # node N gets 10.244.N.0/24
    node_cidr_mask: int = 24
    service_cidr: str = "10.96.0.0/12"
    node_port_range: str = "30000-32767"
    node_network: str = "172.18.0.0/24"  # the fabric: router .1, node N .(10+N)
    public_network: str = "203.0.113.0/24"  # the cloud's public addresses: node N .(10+N)
    internet_network: str = "198.51.100.0/24"  # outside: router .1, internet .100
    cluster_domain: str = "cluster.local"
    load_balancer_pool: str = "203.0.113.128/25"  # the cloud's LoadBalancer addresses
    node_grace_period: float = 5.0  # seconds without a kubelet heartbeat before a node is NotReady
    cluster_dns: bool = True  # run the cluster DNS (kube-system/cluster-dns behind kube-dns)
    dns_upstream: str = ""  # HOST[:PORT] for names outside the cluster; "": the lab's internet resolver

    @property
    def node_port_bounds(self) -> tuple[int, int]:
        lo, _, hi = self.node_port_range.partition("-")
        return int(lo), int(hi)

    @property
    def state_dir(self) -> str:
        return os.path.join(STATE_ROOT, self.name)

    def node_name(self, index: int) -> str:
        return f"node-{index}"

    def pod_cidr(self, index: int) -> str:
        net = ipaddress.ip_network(self.cluster_cidr)
        subnets = net.subnets(new_prefix=self.node_cidr_mask)
        for i, sub in enumerate(subnets):
            if i == index:
                return str(sub)
        raise ConfigError(f"cluster_cidr {self.cluster_cidr} has no room for node {index}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def validate(self) -> None:
        if not NAME_RE.match(self.name):
            raise ConfigError(
                f'name: Invalid value: "{self.name}": a lowercase DNS label of at most 20 characters'
            )
        if not 1 <= self.nodes <= 50:
            raise ConfigError(f"nodes: Invalid value: {self.nodes}: must be between 1 and 50")
        for f in ("cluster_cidr", "service_cidr", "node_network", "public_network", "internet_network",
                  "load_balancer_pool"):
            try:
                ipaddress.IPv4Network(getattr(self, f))
            except ValueError as exc:
                raise ConfigError(f"{f}: Invalid value: {getattr(self, f)!r}: {exc}") from None
        self.pod_cidr(self.nodes)  # room for every node
        lo, _, hi = self.node_port_range.partition("-")
        if not (lo.isdigit() and hi.isdigit() and 1 <= int(lo) <= int(hi) <= 65535):
            raise ConfigError(f"node_port_range: Invalid value: {self.node_port_range!r}: want LOW-HIGH")
        if not self.node_grace_period > 0:
            raise ConfigError(f"node_grace_period: Invalid value: {self.node_grace_period}: must be positive")


def load(path: str | None, **overrides: Any) -> ClusterConfig:
    data: dict[str, Any] = {}
    if path:
        with open(path) as f:
            loaded = yaml.safe_load(f) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: want a mapping of settings")
        data.update({k.replace("-", "_"): v for k, v in loaded.items()})
    data.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in fields(ClusterConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    cfg = ClusterConfig(**data)
    cfg.validate()
    return cfg
