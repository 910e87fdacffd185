"""Names as a pod sees them, for the CLI: a probe TARGET that is a DNS
name is resolved through the cluster DNS from the source's namespace,
with the source's own resolv.conf (its search path and ndots), and
`podnet exec` gives a pod's command the environment its kubelet made."""

from __future__ import annotations

import os

from podnet.cli.cluster import CLIError, Cluster
from podnet.dns import lookup
from podnet.lab import podfiles


def pod_env(c: Cluster, netns: str) -> dict[str, str]:
    """The environment the kubelet stored for the pod in `netns` ({} for nodes, router, internet)."""
    return podfiles.read_env(os.path.join(c.config.state_dir, "pods"), netns)


def source_resolv_conf(c: Cluster, netns: str, namespace: str) -> lookup.ResolvConf:
    """A pod's resolv.conf as its kubelet wrote it; for a node, the router
    or the internet, a ClusterFirstWithHostNet view from `namespace`."""
    try:
        with open(os.path.join(podfiles.ETC_NETNS, netns, "resolv.conf")) as f:
            return lookup.ResolvConf.parse(f.read())
    except OSError:
        zone = c.config.cluster_domain
        return lookup.ResolvConf(
            nameservers=[podfiles.cluster_dns_ip(c.config)],
            search=[f"{namespace}.svc.{zone}", f"svc.{zone}", zone],
            ndots=5,
        )


def resolve(c: Cluster, name: str, source_netns: str, namespace: str) -> str:
    rc = source_resolv_conf(c, source_netns, namespace)
    try:
        _, addrs = lookup.resolve(name, rc, source_netns)
    except lookup.LookupError_ as exc:
        raise CLIError(
            f'target "{name}" is not an IP address, "internet", a pod in namespace "{namespace}", '
            f"or a name the cluster DNS resolves ({exc})"
        ) from None
    return addrs[0]
