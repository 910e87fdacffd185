"""`podnet kubeconfig [--path] [--lab]`: the cluster's kubeconfig for
kubectl and other Kubernetes clients (HTTPS, the admin's client
certificate), or its path: `export KUBECONFIG=$(podnet kubeconfig --path)`."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

from podnet.cli.cluster import CLIError, find


def cmd_kubeconfig(args: argparse.Namespace) -> int:
    from podnet.server import tls  # here: it imports cryptography, which `podnet get` need not pay for

    c = find(args.name)
    path = os.path.join(c.config.state_dir, tls.KUBECONFIG_LAB if args.lab else tls.KUBECONFIG)
    if not os.path.exists(path):
        raise CLIError(f'cluster "{c.name}" has no kubeconfig (restart it: podnet down; podnet up)')
    if args.path:
        sys.stdout.write(path + "\n")
        return 0
    with open(path) as f:
        sys.stdout.write(f.read())
    return 0


def register(cmd: Callable[..., argparse.ArgumentParser]) -> None:
    k: Any = cmd("kubeconfig", cmd_kubeconfig, "print the cluster's kubeconfig for kubectl (or its --path)")
    k.add_argument("--path", action="store_true", help="print the file's path, not its content")
    k.add_argument(
        "--lab",
        action="store_true",
        help="the API where the lab's nodes and pods reach it (the router), not loopback",
    )
