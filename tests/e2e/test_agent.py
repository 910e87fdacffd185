"""`podnet agent` on "another machine": a fresh namespace joins the lab's
fabric as a new node, runs nothing of the lab but `podnet agent` pointed
at the lab's API, and programs its own kernel like a lab node."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from podnet.client import Client
from podnet.lab import netns, network, probe
from podnet.lab.topology import NodePlan
from podnet.lab.workload import Responder
from tests.e2e.conftest import Lab, wait_for

EXTRA_IP = "172.18.0.19"
EXTRA_CIDR = "10.244.9.0/24"
HAND_IP = "10.244.9.2"

APP = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: agnhost, ports: [{name: http, containerPort: 8080}]}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
---
apiVersion: v1
kind: Pod
metadata: {name: client, labels: {app: client}}
spec:
  nodeName: node-1
  containers: [{name: c, image: agnhost}]
---
apiVersion: v1
kind: Node
metadata:
  name: extra
  labels: {kubernetes.io/hostname: extra}
spec:
  podCIDR: 10.244.9.0/24
  podCIDRs: [10.244.9.0/24]
"""


class Extra:
    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.ns = f"pn.{lab.name}.extra"
        self.node = NodePlan("extra", 9, self.ns, EXTRA_IP, "", EXTRA_CIDR)
        self.agent: subprocess.Popen[str] | None = None
        self.responder = Responder()

    def build(self) -> None:
        """Wire the namespace to the fabric like a machine plugged into the
        switch: its own address, routes to the other nodes' pods."""
        fabric = f"pn.{self.lab.name}.fabric"
        netns.create(self.ns)
        network.veth(fabric, "n9", self.ns, "eth0")
        with network.rtnl(fabric) as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="n9")[0], master=ipr.link_lookup(ifname="br0")[0])
        with network.rtnl(self.ns) as ipr:
            ipr.addr("add", index=ipr.link_lookup(ifname="eth0")[0], address=EXTRA_IP, prefixlen=24)
            ipr.route("add", dst="0.0.0.0/0", gateway="172.18.0.1")
            ipr.route("add", dst="10.244.1.0/24", gateway="172.18.0.11")
            ipr.route("add", dst="10.244.2.0/24", gateway="172.18.0.12")
        netns.write_sysctl(self.ns, "net.ipv4.ip_forward", "1")
        for node_ns in (f"pn.{self.lab.name}.node-1", f"pn.{self.lab.name}.node-2"):
            with network.rtnl(node_ns) as ipr:
                ipr.route("add", dst=EXTRA_CIDR, gateway=EXTRA_IP)

    def start_agent(self) -> None:
        self.agent = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.ns,
                sys.executable,
                "-m",
                "podnet",
                "agent",
                # HTTPS with the lab's client certificate, to the API on the
                # router: what a real node's kubeconfig gives the agent.
                "--kubeconfig",
                str(self.lab.state_dir / "kubeconfig.lab"),
                "--node",
                "extra",
                "--metrics-bind-address",
                "0.0.0.0:10249",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for("the agent's healthz", lambda: self.curl("http://127.0.0.1:10256/healthz"), timeout=20)

    def curl(self, url: str) -> str | None:
        proc = subprocess.run(
            ["ip", "netns", "exec", self.ns, "curl", "-sf", "-m", "1", url], capture_output=True, text=True
        )
        return proc.stdout if proc.returncode == 0 else None

    def stop(self) -> None:
        if self.agent and self.agent.poll() is None:
            self.agent.terminate()
            try:
                self.agent.wait(10)
            except subprocess.TimeoutExpired:
                self.agent.kill()
        self.responder.stop()
        for node_ns in (f"pn.{self.lab.name}.node-1", f"pn.{self.lab.name}.node-2"):
            with network.rtnl(node_ns) as ipr, contextlib.suppress(Exception):
                ipr.route("del", dst=EXTRA_CIDR, gateway=EXTRA_IP)
        for name in netns.list_names():
            if name.startswith(f"pn.{self.lab.name}.pod.default.hand."):
                netns.delete(name)
        netns.delete(self.ns)
        with network.rtnl(f"pn.{self.lab.name}.fabric") as ipr, contextlib.suppress(Exception):
            ipr.link("del", index=ipr.link_lookup(ifname="n9")[0])


@pytest.fixture(scope="module")
def extra(lab: Lab) -> Iterator[Extra]:
    lab.apply(APP)
    lab.wait_ready("app=web", 2)
    x = Extra(lab)
    try:
        x.build()
        x.start_agent()
        yield x
    finally:
        x.stop()


def vip(lab: Lab) -> str:
    return str(lab.json("get", "svc", "web")["spec"]["clusterIP"])


def from_extra(
    target: str, port: int, count: int = 1, timeout: float = 1.0, ns: str = ""
) -> list[probe.ProbeResult]:
    return list(probe.probe(target, port, "tcp", count, timeout, netns=ns))


def test_a_service_answers_through_the_new_nodes_own_rules(lab: Lab, extra: Extra) -> None:
    web = {p["metadata"]["name"] for p in lab.ready_pods("app=web")}
    results = wait_for(
        "the VIP from the new node",
        lambda: (rs := from_extra(vip(lab), 80, 20, ns=extra.ns)) and all(r.ok for r in rs) and rs,
    )
    assert {r.pod for r in results} == web  # spread over both pods
    assert {r.client.split(":")[0] for r in results if r.client} == {EXTRA_IP}
    rules = subprocess.run(
        ["ip", "netns", "exec", extra.ns, "nft", "list", "table", "ip", "podnet"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"{vip(lab)} . tcp . 80 : goto endpoints_2" in rules


def test_the_agent_reports_health_and_metrics(lab: Lab, extra: Extra) -> None:
    assert json.loads(extra.curl("http://127.0.0.1:10256/healthz") or "{}")["nodeName"] == "extra"
    metrics = extra.curl("http://127.0.0.1:10249/metrics") or ""
    assert 'kubeproxy_sync_proxy_rules_duration_seconds_count{node="extra"}' in metrics
    assert 'kubeproxy_network_programming_duration_seconds_count{node="extra"}' in metrics


def test_network_policy_holds_for_a_pod_on_the_new_node(lab: Lab, extra: Extra) -> None:
    # A pod on the new node, made by hand (no kubelet runs there): its
    # namespace, its address, a server, and its object in the API.
    state = json.loads((lab.state_dir / "state.json").read_text())
    host, port = state["api"].removeprefix("http://").rsplit(":", 1)
    api = Client(host, int(port))
    from podnet.api.kinds import BY_KIND

    pod = api.create(
        BY_KIND["Pod"],
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "hand", "namespace": "default", "labels": {"app": "hand"}},
            "spec": {
                "nodeName": "extra",
                "containers": [{"name": "c", "image": "x", "ports": [{"containerPort": 8080}]}],
            },
        },
        "default",
    )
    pod_ns = f"pn.{lab.name}.pod.default.hand.{pod['metadata']['uid'][:8]}"
    network.add_pod(extra.node, pod_ns, "vethhand", HAND_IP)
    extra.responder.start()
    extra.responder.add_pod("hand", "hand", pod_ns, [(8080, "TCP")])
    pod["status"] = {
        "phase": "Running",
        "podIP": HAND_IP,
        "podIPs": [{"ip": HAND_IP}],
        "hostIP": EXTRA_IP,
        "conditions": [{"type": "Ready", "status": "True"}],
    }
    api.update(BY_KIND["Pod"], pod, "default", subresource="status")
    [ok] = wait_for(
        "the hand pod reachable", lambda: (rs := lab.probe("client", HAND_IP, 8080)) and rs[0]["ok"] and rs
    )
    assert ok["pod"] == "hand"
    lab.apply("""
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-hand}
spec:
  podSelector: {matchLabels: {app: hand}}
  policyTypes: [Ingress]
""")
    # The new node's agent is the only one that can refuse it: the pod lives there.
    wait_for(
        "the policy enforced on the new node",
        lambda: not lab.probe("client", HAND_IP, 8080, timeout=0.5)[0]["ok"],
    )
    lab.run("delete", "networkpolicy", "deny-hand")
    wait_for("the policy lifted", lambda: lab.probe("client", HAND_IP, 8080)[0]["ok"])


def test_the_agent_converges_after_its_api_connection_is_cut_mid_churn(lab: Lab, extra: Extra) -> None:
    cut = (
        "table ip cut {\n chain out {\n  type filter hook output priority filter;\n"
        "  ip daddr 172.18.0.1 tcp dport 6443 reject with tcp reset\n }\n}\n"
    )
    subprocess.run(["ip", "netns", "exec", extra.ns, "nft", "-f", "-"], input=cut, text=True, check=True)
    try:
        lab.run("scale", "deployment/web", "--replicas", "3")
        lab.wait_ready("app=web", 3)
        lab.run("scale", "deployment/web", "--replicas", "1")
        [left] = lab.wait_ready("app=web", 1)
    finally:
        subprocess.run(["ip", "netns", "exec", extra.ns, "nft", "delete", "table", "ip", "cut"], check=True)
    name = left["metadata"]["name"]
    wait_for(
        "the new node to converge on the one pod left",
        lambda: {r.pod for r in from_extra(vip(lab), 80, 10, ns=extra.ns)} == {name},
        timeout=30,
    )
    metrics = extra.curl("http://127.0.0.1:10249/metrics") or ""
    disconnects = [
        line for line in metrics.splitlines() if line.startswith("podnet_agent_watch_disconnects_total")
    ]
    assert disconnects and float(disconnects[0].split()[-1]) > 0


def test_agent_cleanup_removes_only_its_own_tables(lab: Lab, extra: Extra) -> None:
    # A table of somebody else's in the same namespace must survive the clean-up.
    subprocess.run(["ip", "netns", "exec", extra.ns, "nft", "add", "table", "ip", "someone-else"], check=True)
    if extra.agent:
        extra.agent.terminate()
        extra.agent.wait(10)
    out = subprocess.run(
        ["ip", "netns", "exec", extra.ns, sys.executable, "-m", "podnet", "agent", "--cleanup"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "ip podnet" in out
    tables = subprocess.run(
        ["ip", "netns", "exec", extra.ns, "nft", "list", "tables"], capture_output=True, text=True, check=True
    ).stdout
    assert "podnet" not in tables.replace("someone-else", "")
    assert "someone-else" in tables
