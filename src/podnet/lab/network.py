"""Turns a LabPlan into namespaces, veth pairs, addresses and routes, and
takes them away again. No decisions here: the plan says what to make."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING

from podnet.lab import netns
from podnet.lab.rtnl import Netlink
from podnet.lab.topology import LabPlan, NodePlan, netns_prefix, router_ruleset

if TYPE_CHECKING:
    from pyroute2 import IPRoute

RT_SCOPE_LINK = 253


@contextmanager
def rtnl(ns: str) -> Iterator[IPRoute]:
    """A netlink socket bound to namespace `ns`."""
    from pyroute2 import IPRoute  # here: importing pyroute2 costs a quarter second the CLI need not pay

    with netns.entered(ns):
        ipr = IPRoute()
    try:
        yield ipr
    finally:
        ipr.close()


def _index(ipr: IPRoute, ifname: str) -> int:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise RuntimeError(f"interface {ifname} not found")
    return int(found[0])


def veth(ns_a: str, name_a: str, ns_b: str, name_b: str) -> None:
    """A veth pair from `name_a` in `ns_a` to `name_b` in `ns_b`, both up."""
    fd = os.open(netns.path(ns_b), os.O_RDONLY)
    try:
        with rtnl(ns_a) as ipr:
            ipr.link("add", ifname=name_a, kind="veth", peer={"ifname": name_b, "net_ns_fd": fd})
            ipr.link("set", index=_index(ipr, name_a), state="up")
    finally:
        os.close(fd)
    with rtnl(ns_b) as ipr:
        ipr.link("set", index=_index(ipr, name_b), state="up")


def nft(ns: str, ruleset: str) -> None:
    """Load a ruleset in namespace `ns` in one atomic `nft -f` transaction."""
    subprocess.run(
        ["ip", "netns", "exec", ns, "nft", "-f", "-"], input=ruleset.encode(), check=True, capture_output=True
    )


def build(p: LabPlan) -> None:
    """Make the whole lab network of a plan. On failure, the caller tears down."""
    for ns in p.all_netns:
        netns.create(ns)
    # The fabric: one bridge, a port per node and one for the router.
    with rtnl(p.fabric_netns) as ipr:
        ipr.link("add", ifname="br0", kind="bridge")
        ipr.link("set", index=_index(ipr, "br0"), state="up")
    ports = [(n.netns, n.fabric_port) for n in p.nodes] + [(p.router_netns, "router")]
    for ns, port in ports:
        veth(p.fabric_netns, port, ns, "eth0")
        with rtnl(p.fabric_netns) as ipr:
            ipr.link("set", index=_index(ipr, port), master=_index(ipr, "br0"))
    # The router: the cloud's edge between the fabric and the internet.
    veth(p.router_netns, "wan", p.internet_netns, "eth0")
    with rtnl(p.router_netns) as ipr:
        ipr.addr("add", index=_index(ipr, "eth0"), address=p.router_ip, prefixlen=p.node_prefixlen)
        ipr.addr("add", index=_index(ipr, "wan"), address=p.router_wan_ip, prefixlen=p.internet_prefixlen)
    netns.write_sysctl(p.router_netns, "net.ipv4.ip_forward", "1")
    nft(p.router_netns, router_ruleset(p))
    with rtnl(p.internet_netns) as ipr:
        ipr.addr("add", index=_index(ipr, "eth0"), address=p.internet_ip, prefixlen=p.internet_prefixlen)
        ipr.route("add", dst=p.public_network, gateway=p.router_wan_ip)
    for node in p.nodes:
        _build_node(p, node)


def _build_node(p: LabPlan, node: NodePlan) -> None:
    with rtnl(node.netns) as ipr:
        eth0 = _index(ipr, "eth0")
        ipr.addr("add", index=eth0, address=node.internal_ip, prefixlen=p.node_prefixlen)
        ipr.route("add", dst="0.0.0.0/0", gateway=p.router_ip)
        for other in p.nodes:
            if other is not node:
                # host-gw style: the other nodes' pods are one hop away on the fabric
                ipr.route("add", dst=other.pod_cidr, gateway=other.internal_ip)
    netns.write_sysctl(node.netns, "net.ipv4.ip_forward", "1")


def add_pod(node: NodePlan, pod_ns: str, host_if: str, ip: str) -> None:
    """A pod's network, as the CNI ptp plugin makes it: a namespace, a veth
    pair, the pod's /32 on eth0 with the node's gateway address as next hop,
    and a /32 route to the pod on the node. Raw netlink requests (rtnl.py):
    this runs once a pod, and pyroute2 would cost more than the kernel."""
    netns.create(pod_ns)
    try:
        fd = os.open(netns.path(pod_ns), os.O_RDONLY)
        try:
            with netns.entered(node.netns):
                nl = Netlink()
            with nl:
                # The same name may linger a moment from a pod namespace the
                # kernel is still destroying (see remove_pod): take it away.
                nl.link_del(host_if)
                nl.veth(host_if, "eth0", fd)
                idx = nl.link_index(host_if)
                nl.link_up(idx)
                nl.addr_add(idx, node.pod_gateway, 32)
                nl.route_add(ip, 32, oif=idx, scope=RT_SCOPE_LINK, prefsrc=node.pod_gateway, replace=True)
        finally:
            os.close(fd)
        with netns.entered(pod_ns):
            nl = Netlink()
        with nl:
            eth0 = nl.link_index("eth0")
            nl.link_up(eth0)
            nl.addr_add(eth0, ip, 32)
            nl.route_add(node.pod_gateway, 32, oif=eth0, scope=RT_SCOPE_LINK)
            nl.route_add("0.0.0.0", 0, gateway=node.pod_gateway, oif=eth0)
    except BaseException:
        remove_pod(node, pod_ns, host_if)
        raise


def remove_pod(node: NodePlan, pod_ns: str, host_if: str) -> None:
    """Undo add_pod. Removing the namespace is enough: the kernel then
    destroys its eth0, which takes the node's end of the veth pair and the
    node's route to the pod with it. It does so in the background, for many
    namespaces at once; deleting the link here instead costs ~30 ms a pod
    of waiting for the kernel (add_pod replaces a lingering route)."""
    kill_processes(pod_ns)
    netns.delete(pod_ns)


def pod_address(pod_ns: str) -> str | None:
    """The IPv4 address on a pod namespace's eth0, if any."""
    try:
        with rtnl(pod_ns) as ipr:
            for msg in ipr.get_addr(family=2, label="eth0"):
                return str(msg.get_attr("IFA_ADDRESS"))
    except Exception:
        return None
    return None


def set_node_link(p: LabPlan, node: NodePlan, up: bool) -> None:
    """Take a node off the fabric (its switch port down) or back, as a
    crash or a cut cable would: nothing reaches it, nothing leaves it."""
    with rtnl(p.fabric_netns) as ipr:
        ipr.link("set", index=_index(ipr, node.fabric_port), state="up" if up else "down")


def kill_processes(ns: str, grace: float = 2.0) -> None:
    """End every process living in namespace `ns`: TERM, then KILL."""
    pids = netns.pids(ns)
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if _alive(p)]
        time.sleep(0.05)
    for pid in pids:
        _signal(pid, signal.SIGKILL)


def _signal(pid: int, sig: int) -> None:
    if pid == os.getpid():
        return
    with suppress(ProcessLookupError):
        os.kill(pid, sig)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def teardown(cluster: str) -> list[str]:
    """Remove every namespace of `cluster` (and so every link in them), and
    every process still inside one. Works from nothing but the names, so it
    cleans up after a crashed control plane too."""
    prefix = netns_prefix(cluster)
    names = [n for n in netns.list_names() if n.startswith(prefix)]
    for name in names:
        kill_processes(name, grace=0.5)
    for name in names:
        netns.delete(name)
    for name in names:
        _rmtree(f"/etc/netns/{name}")
    return names


def _rmtree(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
