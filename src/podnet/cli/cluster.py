"""Finding a running lab cluster from the CLI: its state file, its API,
and the namespace behind a name a user types (a pod, node/NAME, router,
internet)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from podnet.api.kinds import BY_KIND
from podnet.client import Client
from podnet.config import STATE_ROOT, ClusterConfig, load
from podnet.lab import topology

DEFAULT_CLUSTER = "podnet"


class CLIError(Exception):
    """An error to print as `error: ...` with exit code 1."""


def cluster_name(arg: str | None) -> str:
    return arg or os.environ.get("PODNET_CLUSTER") or DEFAULT_CLUSTER


def state_path(name: str) -> str:
    return os.path.join(STATE_ROOT, name, "state.json")


def pid_alive(pid: int, cluster: str | None = None) -> bool:
    """Whether `pid` is a live process, and, given `cluster`, that cluster's
    control plane: after a crash the number may belong to anything else."""
    if cluster is not None:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = f.read().decode(errors="replace").split("\0")
        except OSError:
            return False
        if "podnet.daemon" not in args or not any(f'"name": "{cluster}"' in a for a in args):
            return False
    if pid <= 0:
        return False  # kill(0) would signal our own process group
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie has exited: the control plane is reparented when `podnet up`
    # returns, and an init that does not reap (some containers') leaves it so.
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


@dataclass
class Cluster:
    name: str
    pid: int
    api: str
    config: ClusterConfig

    @property
    def client(self) -> Client:
        host, _, port = self.api.removeprefix("http://").rpartition(":")
        return Client(host, int(port))

    @property
    def plan(self) -> topology.LabPlan:
        return topology.plan(self.config)

    def netns_of(self, target: str, namespace: str) -> tuple[str, str]:
        """The network namespace behind SOURCE/TARGET names, and a label for it."""
        plan = self.plan
        if target.startswith(("node/", "nodes/", "no/")):
            node = target.split("/", 1)[1]
            try:
                return plan.node(node).netns, target
            except KeyError:
                raise CLIError(f'nodes "{node}" not found') from None
        if target == "router":
            return plan.router_netns, target
        if target == "internet":
            return plan.internet_netns, target
        name = target.split("/", 1)[1] if target.startswith(("pod/", "pods/", "po/")) else target
        pod = self.client.get(BY_KIND["Pod"], name, namespace)
        meta = pod["metadata"]
        if not pod.get("status", {}).get("podIP"):
            raise CLIError(
                f"pod {name} has no network yet (phase {pod.get('status', {}).get('phase', 'Pending')})"
            )
        return topology.pod_netns(self.name, meta["namespace"], meta["name"], meta["uid"]), name


def read_state(name: str) -> dict[str, Any] | None:
    try:
        with open(state_path(name)) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def find(name: str | None) -> Cluster:
    cname = cluster_name(name)
    state = read_state(cname)
    if state is None or not pid_alive(int(state.get("pid", 0)), cname):
        raise CLIError(f'cluster "{cname}" is not running (start it with: podnet up --name {cname})')
    return Cluster(cname, int(state["pid"]), state["api"], load(None, **state["config"]))
