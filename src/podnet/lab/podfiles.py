"""What a pod's processes see besides its network: the /etc/resolv.conf
and /etc/hosts the kubelet writes for it, and its environment.

The files go where iproute2 looks for them: `ip netns exec NAME cmd`
bind-mounts every file of /etc/netns/NAME/ over the one of the same name
in /etc/ (in a mount namespace of the command's own), so `podnet exec`,
`podnet.io/command` pods and exec probes see them, and the machine's own
/etc is never touched. The environment goes to the cluster's state
directory (pods/NETNS.env, JSON), where the kubelet's spawn and the CLI's
`exec` read it. All of it is removed when the pod goes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from typing import Any

from podnet.config import ClusterConfig
from podnet.controllers import ipam
from podnet.dns import podconf
from podnet.lab import envvars, topology

Obj = dict[str, Any]
ETC_NETNS = "/etc/netns"
CLUSTER_DNS_INDEX = 10  # kube-dns takes the 10th address of the service CIDR, as kubeadm does


def cluster_dns_ip(cfg: ClusterConfig) -> str:
    return ipam.nth_address(cfg.service_cidr, CLUSTER_DNS_INDEX)


def node_nameservers(cfg: ClusterConfig) -> list[str]:
    """The nodes' own resolver (dnsPolicy Default): the configured upstream,
    else the lab's internet resolver."""
    if cfg.dns_upstream:
        host = cfg.dns_upstream.rsplit(":", 1)[0] if cfg.dns_upstream.count(":") == 1 else cfg.dns_upstream
        return [host]
    return [topology.plan(cfg).internet_ip]


def env_path(state_dir: str, netns: str) -> str:
    return os.path.join(state_dir, f"{netns}.env")


def read_env(state_dir: str, netns: str) -> dict[str, str]:
    try:
        with open(env_path(state_dir, netns)) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in doc.items()} if isinstance(doc, dict) else {}


def _write(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write(
    pod: Obj, ip: str, host_ip: str, netns: str, cfg: ClusterConfig, services: list[Obj], state_dir: str
) -> dict[str, str]:
    """Write the pod's resolv.conf, hosts and environment; return the environment."""
    etc = os.path.join(ETC_NETNS, netns)
    os.makedirs(etc, exist_ok=True)
    _write(
        os.path.join(etc, "resolv.conf"),
        podconf.resolv_conf(pod, [cluster_dns_ip(cfg)], cfg.cluster_domain, node_nameservers(cfg)),
    )
    _write(os.path.join(etc, "hosts"), podconf.hosts_file(pod, ip, cfg.cluster_domain))
    seen = dict(pod)
    seen["status"] = {
        **(pod.get("status") or {}),
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
    }
    env = envvars.pod_env(seen, services)
    env.setdefault("HOSTNAME", podconf.hostname(pod))
    os.makedirs(state_dir, exist_ok=True)
    _write(env_path(state_dir, netns), json.dumps(env, indent=1, sort_keys=True))
    return env


def remove(netns: str, state_dir: str) -> None:
    shutil.rmtree(os.path.join(ETC_NETNS, netns), ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(env_path(state_dir, netns))


def sweep(cluster: str) -> None:
    """Remove /etc/netns entries of every pod of `cluster` (after a crash)."""
    prefix = topology.netns_prefix(cluster)
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(ETC_NETNS):
            if name.startswith(prefix):
                shutil.rmtree(os.path.join(ETC_NETNS, name), ignore_errors=True)
