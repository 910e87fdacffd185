"""The objects the control plane creates at `podnet up` for service
discovery, as kubeadm and the API server make them:

* Service `default/kubernetes`: the first address of the service CIDR,
  port 443 named https, and its EndpointSlice to the control plane where
  the lab network reaches it (the router's fabric address, port 6443).
* Deployment `kube-system/cluster-dns` (2 replicas, label
  `k8s-app: kube-dns`): each pod runs `python -m podnet.dns` through the
  `podnet.io/command` annotation, with dnsPolicy Default (it forwards to
  its node's resolver), and a readiness probe on :8181/ready.
* Service `kube-system/kube-dns` at the 10th address of the service CIDR
  (10.96.0.10 by default), ports dns 53/UDP and dns-tcp 53/TCP.

Existing objects are left as they are (a user may have changed them).
"""

from __future__ import annotations

import contextlib
import shlex
import sys
from typing import Any

from podnet.api.errors import AlreadyExists
from podnet.config import ClusterConfig
from podnet.controllers import ipam
from podnet.lab.podfiles import cluster_dns_ip
from podnet.server.registry import Registry

Obj = dict[str, Any]
DNS_NAMESPACE = "kube-system"
DNS_DEPLOYMENT = "cluster-dns"
DNS_SERVICE = "kube-dns"
DNS_LABELS = {"k8s-app": "kube-dns"}
READY_PORT = 8181


def kubernetes_service(cfg: ClusterConfig, api: tuple[str, int]) -> list[Obj]:
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "kubernetes",
                "namespace": "default",
                "labels": {"component": "apiserver", "provider": "kubernetes"},
            },
            "spec": {
                "type": "ClusterIP",
                "clusterIP": ipam.nth_address(cfg.service_cidr, 1),
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": api[1]}],
                "sessionAffinity": "None",
            },
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "kubernetes",
                "namespace": "default",
                "labels": {"kubernetes.io/service-name": "kubernetes"},
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [api[0]], "conditions": {"ready": True}}],
            "ports": [{"name": "https", "port": api[1], "protocol": "TCP"}],
        },
    ]


def dns_command(cfg: ClusterConfig, api: tuple[str, int], python: str = sys.executable) -> str:
    cmd = [python, "-m", "podnet.dns", "--api", f"{api[0]}:{api[1]}", "--zone", cfg.cluster_domain]
    if cfg.dns_upstream:
        cmd += ["--upstream", cfg.dns_upstream]
    return "exec " + shlex.join(cmd)


def cluster_dns(cfg: ClusterConfig, api: tuple[str, int], replicas: int = 2) -> list[Obj]:
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": DNS_DEPLOYMENT, "namespace": DNS_NAMESPACE, "labels": dict(DNS_LABELS)},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": dict(DNS_LABELS)},
                "template": {
                    "metadata": {
                        "labels": dict(DNS_LABELS),
                        "annotations": {"podnet.io/command": dns_command(cfg, api)},
                    },
                    "spec": {
                        "dnsPolicy": "Default",
                        "containers": [
                            {
                                "name": "dns",
                                "image": "podnet/dns",
                                "ports": [
                                    {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                                    {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                                    {"name": "ready", "containerPort": READY_PORT, "protocol": "TCP"},
                                ],
                                "readinessProbe": {
                                    "httpGet": {"path": "/ready", "port": READY_PORT},
                                    "periodSeconds": 1,
                                    "failureThreshold": 3,
                                },
                            }
                        ],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": DNS_SERVICE, "namespace": DNS_NAMESPACE, "labels": dict(DNS_LABELS)},
            "spec": {
                "type": "ClusterIP",
                "clusterIP": cluster_dns_ip(cfg),
                "selector": dict(DNS_LABELS),
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                ],
            },
        },
    ]


def ensure(reg: Registry, cfg: ClusterConfig, api: tuple[str, int]) -> None:
    """Create what is missing (called at every start of the control plane)."""
    objs = kubernetes_service(cfg, api)
    if cfg.cluster_dns:
        objs += cluster_dns(cfg, api)
    for obj in objs:
        meta = obj["metadata"]
        if reg.store.exists(obj["kind"], meta.get("namespace", ""), meta["name"]):
            continue  # (checked first: a create would fail on the taken clusterIP before the name)
        with contextlib.suppress(AlreadyExists):
            reg.create(obj)
