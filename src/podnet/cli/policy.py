"""`podnet connectivity` and `podnet explain`: what NetworkPolicies do, with
real packets and from the objects alone."""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
from collections.abc import Callable
from typing import Any

from podnet.api.kinds import BY_KIND
from podnet.cli.cluster import CLIError, Cluster, find
from podnet.lab import topology
from podnet.policy import connectivity, model

Obj = dict[str, Any]


def _out(text: str) -> None:
    print(text.rstrip("\n"), flush=True)


def _cluster_view(
    c: Cluster,
) -> tuple[list[model.Pod], list[model.Policy], dict[str, dict[str, str]], dict[str, str]]:
    """Pods (with addresses), policies, namespace labels, and pod uids."""
    pods: list[model.Pod] = []
    uids: dict[str, str] = {}
    for obj in c.client.list(BY_KIND["Pod"])["items"]:
        if obj["metadata"].get("deletionTimestamp"):
            continue
        pod = model.parse_pod(obj)
        if pod is not None:
            pods.append(pod)
            uids[pod.key] = obj["metadata"]["uid"]
    policies = [model.parse_policy(o) for o in c.client.list(BY_KIND["NetworkPolicy"])["items"]]
    ns_labels = {
        o["metadata"]["name"]: model.namespace_labels(o) for o in c.client.list(BY_KIND["Namespace"])["items"]
    }
    pods.sort(key=lambda p: p.key)
    return pods, policies, ns_labels, uids


def cmd_connectivity(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        raise CLIError("podnet needs root: it creates network namespaces (run it with sudo)")
    c = find(args.name)
    pods, _, _, uids = _cluster_view(c)
    if not args.all_namespaces:
        pods = [p for p in pods if p.namespace == args.namespace]
    if not pods:
        raise CLIError(
            "no running pods to probe" + ("" if args.all_namespaces else f" in namespace {args.namespace}")
        )

    def netns_of(p: model.Pod) -> str:
        return topology.pod_netns(c.name, p.namespace, p.name, uids[p.key])

    matrix = connectivity.probe_matrix(pods, netns_of, args.port, args.protocol, args.timeout)
    keys = [p.key for p in pods]
    if args.output == "json":
        _out(
            json.dumps(
                {"port": args.port, "protocol": args.protocol, "pods": keys, "allowed": matrix}, indent=2
            )
        )
    else:
        _out(
            f"{args.protocol.upper()}/{args.port}: rows are sources, columns destinations; . allowed, X denied"
        )
        _out(connectivity.format_table(matrix, keys))
    return 0


def _endpoint(c: Cluster, text: str, namespace: str, pods: list[model.Pod]) -> model.Endpoint:
    plan = c.plan
    if text.startswith(("node/", "nodes/", "no/")):
        name = text.split("/", 1)[1]
        try:
            node = plan.node(name)
        except KeyError:
            raise CLIError(f'nodes "{name}" not found') from None
        return model.Endpoint(node.internal_ip, node=node.name)
    if text == "internet":
        return model.Endpoint(plan.internet_ip)
    try:
        ip = str(ipaddress.ip_address(text))
    except ValueError:
        ip = ""
    if ip:
        for p in pods:
            if p.ip == ip:
                return model.Endpoint(ip, p)
        for n in plan.nodes:
            if n.internal_ip == ip:
                return model.Endpoint(ip, node=n.name)
        return model.Endpoint(ip)
    name = text.split("/", 1)[1] if text.startswith(("pod/", "pods/", "po/")) else text
    ns, _, pod_name = name.rpartition("/")
    key = f"{ns or namespace}/{pod_name}"
    for p in pods:
        if p.key == key:
            return model.Endpoint(p.ip, p)
    raise CLIError(
        f'"{text}" is not a running pod (NAMESPACE/NAME, or NAME with -n), node/NAME, an IP or internet'
    )


def cmd_explain(args: argparse.Namespace) -> int:
    c = find(args.name)
    pods, policies, ns_labels, _ = _cluster_view(c)
    src = _endpoint(c, args.source, args.namespace, pods)
    dst = _endpoint(c, args.target, args.namespace, pods)
    verdict = model.evaluate(policies, ns_labels, src, dst, args.protocol, args.port)
    if args.output == "json":
        _out(json.dumps(verdict.to_json(), indent=2))
    else:
        _out(verdict.text())
    return 0 if verdict.allowed else 1


def register(cmd: Callable[..., argparse.ArgumentParser]) -> None:
    """Add the commands, through main.build_parser's `cmd` helper."""
    co = cmd(
        "connectivity",
        cmd_connectivity,
        "probe every pod from every pod with real packets; print the truth table",
        namespaced=True,
    )
    co.add_argument("-A", "--all-namespaces", action="store_true")
    co.add_argument("--port", type=int, required=True)
    co.add_argument("--protocol", choices=["tcp", "udp"], default="tcp")
    co.add_argument("--timeout", type=float, default=1.0)
    co.add_argument("-o", "--output", choices=["text", "json"], default="text")
    ex = cmd(
        "explain",
        cmd_explain,
        "which NetworkPolicies select two pods and which rule allows their traffic (no packets sent)",
        namespaced=True,
    )
    ex.add_argument("source", help="a pod (NAME or NAMESPACE/NAME), node/NAME, an IP, or internet")
    ex.add_argument("target", help="a pod (NAME or NAMESPACE/NAME), node/NAME, an IP, or internet")
    ex.add_argument("--port", type=int, required=True)
    ex.add_argument("--protocol", choices=["tcp", "udp", "sctp"], default="tcp")
    ex.add_argument("-o", "--output", choices=["text", "json"], default="text")
