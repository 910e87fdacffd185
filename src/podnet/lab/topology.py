"""The lab's network, planned as plain data: which namespaces exist, which
addresses they hold, and the cloud router's NAT rules. Pure: `network.py`
turns a plan into kernel state."""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass

from podnet.config import ClusterConfig

PREFIX = "pn"


def netns_prefix(cluster: str) -> str:
    """Every namespace of cluster `cluster` starts with this; cluster names
    are DNS labels, so the dot keeps `a` from matching `a-2`."""
    return f"{PREFIX}.{cluster}."


def pod_netns(cluster: str, namespace: str, name: str, uid: str) -> str:
    # The uid part keeps a re-created pod of the same name from meeting the old one.
    return f"{netns_prefix(cluster)}pod.{namespace}.{name}.{uid[:8]}"


def host_veth(uid: str) -> str:
    """The node-side name of a pod's veth: 15 characters at most, as CNI makes them."""
    return "veth" + hashlib.sha1(uid.encode()).hexdigest()[:8]


@dataclass(frozen=True)
class NodePlan:
    name: str
    index: int
    netns: str
    internal_ip: str
    external_ip: str
    pod_cidr: str

    @property
    def pod_gateway(self) -> str:
        """The node's address towards its pods (the first of its pod CIDR),
        set on every pod veth as the CNI ptp plugin does."""
        return str(ipaddress.ip_network(self.pod_cidr).network_address + 1)

    @property
    def fabric_port(self) -> str:
        return f"n{self.index}"


@dataclass(frozen=True)
class LabPlan:
    cluster: str
    nodes: tuple[NodePlan, ...]
    fabric_netns: str
    router_netns: str
    internet_netns: str
    node_prefixlen: int
    router_ip: str  # on the fabric
    router_wan_ip: str
    internet_ip: str
    internet_prefixlen: int
    public_network: str

    def node(self, name: str) -> NodePlan:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    @property
    def all_netns(self) -> list[str]:
        return [self.fabric_netns, self.router_netns, self.internet_netns, *(n.netns for n in self.nodes)]


def plan(cfg: ClusterConfig) -> LabPlan:
    prefix = netns_prefix(cfg.name)
    node_net = ipaddress.IPv4Network(cfg.node_network)
    public = ipaddress.IPv4Network(cfg.public_network)
    inet = ipaddress.IPv4Network(cfg.internet_network)
    nodes = tuple(
        NodePlan(
            name=cfg.node_name(i),
            index=i,
            netns=f"{prefix}{cfg.node_name(i)}",
            internal_ip=str(node_net.network_address + 10 + i),
            external_ip=str(public.network_address + 10 + i),
            pod_cidr=cfg.pod_cidr(i),
        )
        for i in range(1, cfg.nodes + 1)
    )
    return LabPlan(
        cluster=cfg.name,
        nodes=nodes,
        fabric_netns=f"{prefix}fabric",
        router_netns=f"{prefix}router",
        internet_netns=f"{prefix}internet",
        node_prefixlen=node_net.prefixlen,
        router_ip=str(node_net.network_address + 1),
        router_wan_ip=str(inet.network_address + 1),
        internet_ip=str(inet.network_address + 100),
        internet_prefixlen=inet.prefixlen,
        public_network=cfg.public_network,
    )


@dataclass(frozen=True)
class LoadBalancerPort:
    """One frontend of a cloud load balancer and the nodes behind it."""

    ip: str
    protocol: str  # "tcp" / "udp"
    port: int
    backends: tuple[tuple[str, int], ...]  # healthy (node address, nodePort)
    source_ranges: tuple[str, ...] = ()  # loadBalancerSourceRanges; empty: everyone


def router_ruleset(
    p: LabPlan, frontends: tuple[LoadBalancerPort, ...] = (), routed: tuple[str, ...] = ()
) -> str:
    """The cloud's edge: 1:1 NAT between each node's private and public
    address, and nothing forwarded from any source the cloud does not know
    (a pod address that was not masqueraded by its node is dropped, as the
    seed's cloud NAT does). Load balancer frontends DNAT each new connection
    to a random healthy node's nodePort (the client's address is kept, as a
    pass-through cloud load balancer does); `routed` addresses (externalIPs,
    load balancers without nodePorts) are forwarded unchanged to a node."""
    pub_to_node = ", ".join(f"{n.external_ip} : {n.internal_ip}" for n in p.nodes)
    node_to_pub = ", ".join(f"{n.internal_ip} : {n.external_ip}" for n in p.nodes)
    nodes = ", ".join(n.internal_ip for n in p.nodes)
    counts = sorted({len(f.backends) for f in frontends if f.backends})
    lb_chains = "".join(
        f"""	chain lb_{n} {{
		dnat ip to ip daddr . meta l4proto . th dport . numgen random mod {n} map @lb_backends
	}}
"""
        for n in counts
    )
    elements = ""
    dispatch = [
        f"{f.ip} . {f.protocol} . {f.port} : " + (f"goto lb_{len(f.backends)}" if f.backends else "drop")
        for f in frontends
    ]
    backends = [
        f"{f.ip} . {f.protocol} . {f.port} . {i} : {ip} . {port}"
        for f in frontends
        for i, (ip, port) in enumerate(f.backends)
    ]
    restricted = [f"{f.ip} . {f.protocol} . {f.port}" for f in frontends if f.source_ranges]
    allowed = [f"{f.ip} . {f.protocol} . {f.port} . {r}" for f in frontends for r in f.source_ranges]
    for name, items in (
        ("lb_frontends", dispatch),
        ("lb_backends", backends),
        ("lb_restricted", restricted),
        ("lb_allowed", allowed),
        ("routed", list(routed)),
    ):
        if items:
            elements += f"add element ip podnet-cloud {name} {{ {', '.join(items)} }}\n"
    return f"""\
table ip podnet-cloud
delete table ip podnet-cloud
table ip podnet-cloud {{
	comment "the lab's cloud: NAT and load balancers, owned by podnet"
	map public_to_node {{
		type ipv4_addr : ipv4_addr
		elements = {{ {pub_to_node} }}
	}}
	map node_to_public {{
		type ipv4_addr : ipv4_addr
		elements = {{ {node_to_pub} }}
	}}
	set nodes {{
		type ipv4_addr
		elements = {{ {nodes} }}
	}}
	set routed {{
		type ipv4_addr
	}}
	map lb_frontends {{
		typeof ip daddr . meta l4proto . th dport : verdict
	}}
	map lb_backends {{
		typeof ip daddr . meta l4proto . th dport . numgen random mod 1 : ip daddr . th dport
	}}
	set lb_restricted {{
		typeof ip daddr . meta l4proto . th dport
	}}
	set lb_allowed {{
		typeof ip daddr . meta l4proto . th dport . ip saddr
		flags interval
	}}
	chain source_ranges {{
		type filter hook prerouting priority -150; policy accept;
		iifname "wan" ip daddr . meta l4proto . th dport @lb_restricted ip daddr . meta l4proto . th dport . ip saddr != @lb_allowed drop comment "loadBalancerSourceRanges"
	}}
	chain prerouting {{
		type nat hook prerouting priority dstnat; policy accept;
		iifname "wan" ip daddr . meta l4proto . th dport vmap @lb_frontends
		iifname "wan" dnat ip to ip daddr map @public_to_node
	}}
	chain postrouting {{
		type nat hook postrouting priority srcnat; policy accept;
		oifname "wan" snat ip to ip saddr map @node_to_public
	}}
	chain forward {{
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		iifname "eth0" oifname "wan" ip saddr @nodes accept
		iifname "wan" oifname "eth0" ip daddr @nodes accept
		iifname "wan" oifname "eth0" ip daddr @routed accept
		counter comment "dropped: unknown source or destination"
	}}
{lb_chains}}}
{elements}"""
