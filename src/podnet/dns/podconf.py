"""The /etc/resolv.conf and /etc/hosts the kubelet writes for a pod, pure
(as pkg/kubelet/network/dns and the kubelet's managed hosts file).

dnsPolicy:

* ClusterFirst (the default): the cluster DNS address, the search path
  ``<ns>.svc.<zone> svc.<zone> <zone>`` then the node's own search
  domains, ``options ndots:5``. On a hostNetwork pod it falls back to
  Default, as in Kubernetes.
* ClusterFirstWithHostNet: ClusterFirst, also for hostNetwork pods.
* Default: the node's resolver configuration (in the lab: the upstream
  resolver, see `ClusterConfig.dns_upstream`).
* None: nothing but the pod's dnsConfig.

A pod's dnsConfig is merged in as the kubelet merges it: nameservers and
searches appended without duplicates, options overriding by name. The
kubelet's limits hold: 3 nameservers, 32 search domains.
"""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]
MAX_NAMESERVERS = 3
MAX_SEARCHES = 32
HOSTNAME_MAX = 63


def _dedup(items: list[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for i in items:
        if i and i not in seen:
            seen.add(i)
            out.append(i)
    return out


def resolv_conf(
    pod: Obj,
    cluster_dns: list[str],
    cluster_domain: str,
    node_nameservers: list[str],
    node_searches: list[str] | None = None,
) -> str:
    """The resolv.conf text for `pod`."""
    spec = pod.get("spec") or {}
    ns = pod["metadata"].get("namespace", "default")
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    host_network = spec.get("hostNetwork") is True
    if policy == "ClusterFirst" and host_network:
        policy = "Default"
    node_searches = list(node_searches or [])
    nameservers: list[str] = []
    searches: list[str] = []
    options: dict[str, str | None] = {}
    if policy in ("ClusterFirst", "ClusterFirstWithHostNet"):
        nameservers = list(cluster_dns)
        zone = cluster_domain.rstrip(".")
        searches = [f"{ns}.svc.{zone}", f"svc.{zone}", zone, *node_searches]
        options = {"ndots": "5"}
    elif policy == "Default":
        nameservers = list(node_nameservers)
        searches = node_searches
    cfg = spec.get("dnsConfig") or {}
    nameservers = _dedup(nameservers + [str(n) for n in cfg.get("nameservers") or []])
    searches = _dedup(searches + [str(s).rstrip(".") for s in cfg.get("searches") or []])
    for opt in cfg.get("options") or []:
        if opt.get("name"):
            options[str(opt["name"])] = None if opt.get("value") is None else str(opt["value"])
    lines = [f"nameserver {n}" for n in nameservers[:MAX_NAMESERVERS]]
    if searches:
        lines.append("search " + " ".join(searches[:MAX_SEARCHES]))
    if options:
        lines.append("options " + " ".join(k if v is None else f"{k}:{v}" for k, v in options.items()))
    return "\n".join(lines) + "\n"


def hostname(pod: Obj) -> str:
    """The pod's hostname: spec.hostname, else its name (63 characters at most)."""
    spec = pod.get("spec") or {}
    name = str(spec.get("hostname") or pod["metadata"]["name"])
    return name[:HOSTNAME_MAX].rstrip("-.") or name[:HOSTNAME_MAX]


def hosts_file(pod: Obj, ip: str, cluster_domain: str) -> str:
    """The kubelet-managed /etc/hosts of a pod with address `ip`."""
    spec = pod.get("spec") or {}
    host = hostname(pod)
    lines = [
        "# Kubernetes-managed hosts file.",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "fe00::0\tip6-localnet",
        "fe00::0\tip6-mcastprefix",
        "fe00::1\tip6-allnodes",
        "fe00::2\tip6-allrouters",
    ]
    sub = spec.get("subdomain")
    if sub:
        ns = pod["metadata"].get("namespace", "default")
        lines.append(f"{ip}\t{host}.{sub}.{ns}.svc.{cluster_domain.rstrip('.')}\t{host}")
    else:
        lines.append(f"{ip}\t{host}")
    aliases = spec.get("hostAliases") or []
    if aliases:
        lines += ["", "# Entries added by HostAliases."]
        for a in aliases:
            if a.get("ip") and a.get("hostnames"):
                lines.append(f"{a['ip']}\t" + "\t".join(a["hostnames"]))
    return "\n".join(lines) + "\n"
