"""The lab cluster, end to end: real namespaces, real packets, driven
through the `podnet` command as a user drives it."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest

from podnet.lab import netns, network
from tests.e2e.conftest import Lab, is_ready, wait_for

TWO_PODS = """
apiVersion: v1
kind: Pod
metadata: {name: a, labels: {app: pair}}
spec:
  nodeName: node-1
  containers:
  - name: c
    image: agnhost
    ports: [{containerPort: 8080}, {containerPort: 8081, protocol: UDP}]
---
apiVersion: v1
kind: Pod
metadata: {name: b, labels: {app: pair}}
spec:
  nodeName: node-2
  containers:
  - name: c
    image: agnhost
    ports: [{containerPort: 8080}, {containerPort: 8081, protocol: UDP}]
"""

DEPLOY = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: agnhost
        ports: [{name: http, containerPort: 8080}]
        readinessProbe:
          httpGet: {path: /healthz, port: http}
          periodSeconds: 1
          failureThreshold: 1
"""


def _pair(lab: Lab) -> tuple[dict, dict]:
    lab.apply(TWO_PODS)
    pods = {p["metadata"]["name"]: p for p in lab.wait_ready("app=pair", 2)}
    return pods["a"], pods["b"]


def test_nodes_show_their_internal_and_external_addresses_and_pod_cidrs(lab: Lab) -> None:
    nodes = lab.json("get", "nodes")["items"]
    assert [n["metadata"]["name"] for n in nodes] == ["node-1", "node-2"]
    n1 = nodes[0]
    addrs = {a["type"]: a["address"] for a in n1["status"]["addresses"]}
    assert addrs["InternalIP"] == "172.18.0.11"
    assert addrs["ExternalIP"] == "203.0.113.11"
    assert n1["spec"]["podCIDR"] == "10.244.1.0/24"
    table = lab.run("get", "nodes", "-o", "wide").stdout
    assert "172.18.0.12" in table and "203.0.113.12" in table and "Ready" in table


def test_pods_on_different_nodes_reach_each_other_over_tcp_with_the_source_address_unchanged(
    lab: Lab,
) -> None:
    a, b = _pair(lab)
    assert a["spec"]["nodeName"] != b["spec"]["nodeName"]
    [r] = lab.probe("a", b["status"]["podIP"], 8080)
    assert r["ok"], r
    assert r["pod"] == "b"
    assert r["client"].split(":")[0] == a["status"]["podIP"]


def test_pods_on_different_nodes_reach_each_other_over_udp_with_the_source_address_unchanged(
    lab: Lab,
) -> None:
    _a, b = _pair(lab)
    [r] = lab.probe("b", "a", 8081, protocol="udp")
    assert r["ok"], r
    assert r["pod"] == "a"
    assert r["client"].split(":")[0] == b["status"]["podIP"]


def test_a_port_nobody_listens_on_is_refused(lab: Lab) -> None:
    _a, _b = _pair(lab)
    [r] = lab.probe("a", "b", 9999)
    assert not r["ok"] and r["error"] == "refused"


def test_pod_addresses_come_from_their_nodes_pod_cidr(lab: Lab) -> None:
    a, b = _pair(lab)
    assert a["status"]["podIP"].startswith("10.244.1.")
    assert b["status"]["podIP"].startswith("10.244.2.")
    assert a["status"]["hostIP"] == "172.18.0.11"


def test_a_node_reaches_the_internet_from_its_public_address_through_the_cloud_nat(lab: Lab) -> None:
    [r] = lab.probe("node/node-2", "internet", 80)
    assert r["ok"] and r["pod"] == "internet"
    assert r["client"].split(":")[0] == "203.0.113.12"


def test_the_cloud_drops_a_source_address_it_does_not_know(lab: Lab) -> None:
    # Only node addresses are NATed by the cloud; anything else (say, a pod
    # address its node did not masquerade) is dropped at the router.
    node_ns = f"pn.{lab.name}.node-1"
    with network.rtnl(node_ns) as ipr:
        ipr.addr("add", index=ipr.link_lookup(ifname="eth0")[0], address="172.18.0.99", prefixlen=24)
    try:
        with netns.entered(node_ns):
            sock = socket.socket()
        sock.settimeout(0.5)
        sock.bind(("172.18.0.99", 0))
        with pytest.raises(TimeoutError):
            sock.connect(("198.51.100.100", 80))
        sock.close()
        [known] = lab.probe("node/node-1", "internet", 80)  # the node's own address gets out
        assert known["ok"]
    finally:
        with network.rtnl(node_ns) as ipr:
            ipr.addr("del", index=ipr.link_lookup(ifname="eth0")[0], address="172.18.0.99", prefixlen=24)


def test_a_deployment_scaled_up_and_down_gets_and_loses_pods(lab: Lab) -> None:
    lab.apply(DEPLOY)
    pods = lab.wait_ready("app=web", 2)
    assert {p["spec"]["nodeName"] for p in pods} == {"node-1", "node-2"}  # spread
    lab.run("scale", "deployment/web", "--replicas", "5")
    lab.wait_ready("app=web", 5)
    lab.run("scale", "deployment/web", "--replicas", "1")
    [left] = lab.wait_ready("app=web", 1)
    [r] = lab.probe("node/node-1", left["status"]["podIP"], 8080)
    assert r["pod"] == left["metadata"]["name"]
    deploy = lab.json("get", "deploy", "web")
    assert deploy["status"]["readyReplicas"] == 1


def test_a_pod_failing_its_readiness_probe_turns_not_ready_and_back(lab: Lab) -> None:
    lab.apply(DEPLOY)
    lab.run("scale", "deployment/web", "--replicas", "1")
    [pod] = lab.wait_ready("app=web", 1)
    name, ip = pod["metadata"]["name"], pod["status"]["podIP"]
    lab.run("exec", "node/node-1", "--", "curl", "-sf", "-X", "POST", f"http://{ip}:8080/healthz/fail")
    wait_for("the pod to turn not ready", lambda: not is_ready(lab.json("get", "pod", name)))
    assert "0/1" in lab.run("get", "pod", name).stdout
    lab.run("exec", "node/node-1", "--", "curl", "-sf", "-X", "POST", f"http://{ip}:8080/healthz/pass")
    wait_for("the pod to be ready again", lambda: is_ready(lab.json("get", "pod", name)))


def test_a_template_change_replaces_every_pod(lab: Lab) -> None:
    lab.apply(DEPLOY)
    lab.run("scale", "deployment/web", "--replicas", "2")
    before = {p["metadata"]["name"] for p in lab.wait_ready("app=web", 2)}
    lab.apply(DEPLOY.replace("image: agnhost", "image: agnhost:v2").replace("replicas: 2", "replicas: 2"))
    after = wait_for(
        "a rolled-out deployment",
        lambda: (
            (names := {p["metadata"]["name"] for p in lab.ready_pods("app=web")})
            and not names & before
            and len(lab.pods("app=web")) == 2
            and names
        ),
        timeout=20,
    )
    assert len(after) == 2
    assert all(p["spec"]["containers"][0]["image"] == "agnhost:v2" for p in lab.pods("app=web"))


def test_a_bad_manifest_is_refused_naming_the_field_and_changes_nothing(lab: Lab) -> None:
    bad = """
apiVersion: v1
kind: Pod
metadata: {name: fine}
spec:
  containers: [{name: c, image: x}]
---
apiVersion: v1
kind: Service
metadata: {name: broken}
spec:
  selector: {app: x}
  ports: [{port: 70000}]
"""
    proc = lab.run("apply", "-f", "-", input=bad, check=False)
    assert proc.returncode == 1
    assert 'Service "broken" is invalid' in proc.stderr
    assert "spec.ports[0].port" in proc.stderr
    assert lab.run("get", "pod", "fine", check=False).returncode == 1  # nothing applied


def test_a_pod_carries_the_fields_kubernetes_fills_in(lab: Lab) -> None:
    a, _ = _pair(lab)
    assert a["status"]["phase"] == "Running"
    assert a["metadata"]["uid"] and a["metadata"]["resourceVersion"]
    types = {c["type"]: c["status"] for c in a["status"]["conditions"]}
    assert types["Ready"] == "True" and types["PodScheduled"] == "True"
    assert a["status"]["containerStatuses"][0]["ready"] is True
    assert a["spec"]["dnsPolicy"] == "ClusterFirst"  # defaulted


def test_exec_runs_in_the_pods_namespace_and_passes_the_exit_code_on(lab: Lab) -> None:
    a, _ = _pair(lab)
    proc = lab.run("exec", "a", "--", "ip", "-4", "-o", "addr", "show", "eth0")
    assert a["status"]["podIP"] in proc.stdout
    assert lab.run("exec", "a", "--", "sh", "-c", "exit 7", check=False).returncode == 7


def test_a_pod_can_run_a_real_command_in_its_namespace(lab: Lab) -> None:
    lab.apply("""
apiVersion: v1
kind: Pod
metadata:
  name: real
  annotations: {podnet.io/command: "exec python3 -m http.server 9000"}
spec:
  containers: [{name: c, image: python, ports: [{containerPort: 9000}]}]
""")
    pod = wait_for("pod real running", lambda: is_ready(p := lab.json("get", "pod", "real")) and p)
    ip = pod["status"]["podIP"]
    [r] = wait_for(
        "the http server to answer", lambda: (rs := lab.probe("node/node-1", ip, 9000)) and rs[0]["ok"] and rs
    )
    assert r["pod"] is None  # a real server, not the built-in responder: it does not name itself
    assert lab.run("exec", "real", "--", "ss", "-Htln", "sport = :9000").stdout.strip()


def test_deleting_a_pod_removes_its_namespace(lab: Lab) -> None:
    _a, _ = _pair(lab)
    before = [n for n in lab.netns_left() if ".pod.default.a." in n]
    assert len(before) == 1
    lab.run("delete", "pod", "a")
    assert lab.run("get", "pod", "a", check=False).returncode == 1
    assert [n for n in lab.netns_left() if ".pod.default.a." in n] == []


def test_get_prints_kubectl_columns(lab: Lab) -> None:
    _pair(lab)
    out = lab.run("get", "pods", "-o", "wide").stdout.splitlines()
    assert out[0].split() == [
        "NAME",
        "READY",
        "STATUS",
        "RESTARTS",
        "AGE",
        "IP",
        "NODE",
        "NOMINATED",
        "NODE",
        "READINESS",
        "GATES",
    ]
    missing = lab.run("get", "pod", "nope", check=False)
    assert missing.returncode == 1
    assert 'Error from server (NotFound): pods "nope" not found' in missing.stderr


def test_get_json_of_a_list_is_a_kubernetes_list(lab: Lab) -> None:
    doc = json.loads(lab.run("get", "ns", "-o", "json").stdout)
    assert doc["kind"] == "List"
    assert {"default", "kube-system"} <= {i["metadata"]["name"] for i in doc["items"]}


def test_the_api_speaks_kubernetes_rest_paths(lab: Lab) -> None:
    state_file = Path(lab.env["PODNET_STATE_DIR"]) / lab.name / "state.json"
    state = json.loads(state_file.read_text())
    out = subprocess.run(
        ["curl", "-sf", state["api"] + "/api/v1/namespaces/default/pods"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(out)["kind"] == "PodList"
