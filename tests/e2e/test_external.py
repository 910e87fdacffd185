"""Traffic from outside: NodePort, LoadBalancer (the lab's cloud) and the
Service fields that shape it, with real packets from the internet
namespace."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from tests.e2e.conftest import Lab, is_ready, wait_for

APP = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      nodeSelector: {kubernetes.io/hostname: node-2}
      terminationGracePeriodSeconds: 10
      containers:
      - name: web
        image: agnhost
        ports: [{name: http, containerPort: 8080}, {name: dns, containerPort: 5353, protocol: UDP}]
        readinessProbe:
          httpGet: {path: /healthz, port: http}
          periodSeconds: 1
          failureThreshold: 1
        lifecycle:
          preStop:
            sleep: {seconds: 3}
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  nodeName: node-1
  containers: [{name: c, image: agnhost}]
"""

INTERNET = "198.51.100.100"
NODE1, NODE2 = "203.0.113.11", "203.0.113.12"


def service(lab: Lab, name: str, spec: str) -> dict:
    lab.apply(f"""
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
  selector: {{app: web}}
{spec}
""")
    return lab.json("get", "svc", name)


def lb_ip(lab: Lab, name: str) -> str:
    def ingress() -> str | None:
        items = lab.json("get", "svc", name).get("status", {}).get("loadBalancer", {}).get("ingress") or []
        return items[0]["ip"] if items else None

    return str(wait_for(f"a load balancer address for {name}", ingress))


def answers(
    lab: Lab, target: str, port: int, count: int = 1, protocol: str = "tcp", timeout: float = 1.0
) -> list[dict]:
    return lab.probe("internet", target, port, protocol=protocol, count=count, timeout=timeout)


def all_ok(lab: Lab, target: str, port: int, count: int = 10) -> list[dict] | None:
    results = answers(lab, target, port, count)
    return results if all(r["ok"] for r in results) else None


def ok_within(lab: Lab, what: str, target: str, port: int, timeout: float = 10.0) -> dict:
    return dict(wait_for(what, lambda: (r := answers(lab, target, port)[0])["ok"] and r, timeout=timeout))


@pytest.fixture(scope="module")
def app(lab: Lab) -> list[dict]:
    lab.apply(APP)
    wait_for("client ready", lambda: is_ready(lab.json("get", "pod", "client")))
    return lab.wait_ready("app=web", 1)


def web_pods(lab: Lab, n: int) -> list[dict]:
    lab.run("scale", "deployment/web", "--replicas", str(n))
    return lab.wait_ready("app=web", n)


def test_a_nodeport_answers_on_every_node_even_one_without_pods(lab: Lab, app: list[dict]) -> None:
    svc = service(lab, "np", "  type: NodePort\n  ports: [{port: 80, targetPort: http, nodePort: 30080}]")
    assert svc["spec"]["ports"][0]["nodePort"] == 30080
    assert "80:30080/TCP" in lab.run("get", "svc", "np").stdout
    [pod] = web_pods(lab, 1)  # on node-2 only
    for node in (NODE1, NODE2):
        r = ok_within(lab, f"the nodePort on {node}", node, 30080)
        assert r["pod"] == pod["metadata"]["name"]


def test_external_traffic_policy_cluster_shows_the_pod_a_node_address(lab: Lab, app: list[dict]) -> None:
    service(lab, "np", "  type: NodePort\n  ports: [{port: 80, targetPort: http, nodePort: 30080}]")
    # Through node-1 (no local pod): SNAT to node-1's address on the fabric.
    r = ok_within(lab, "nodePort through node-1", NODE1, 30080)
    assert r["client"].split(":")[0] == "172.18.0.11"
    assert not r["client"].startswith(INTERNET)


def test_a_nodeport_is_allocated_from_the_range_and_a_clash_is_refused(lab: Lab, app: list[dict]) -> None:
    svc = service(lab, "np-auto", "  type: NodePort\n  ports: [{port: 80, targetPort: http}]")
    assert 30000 <= svc["spec"]["ports"][0]["nodePort"] <= 32767
    service(lab, "np", "  type: NodePort\n  ports: [{port: 80, targetPort: http, nodePort: 30080}]")
    clash = lab.run(
        "apply",
        "-f",
        "-",
        check=False,
        input="""
apiVersion: v1
kind: Service
metadata: {name: np-clash}
spec:
  type: NodePort
  ports: [{port: 80, nodePort: 30080}]
""",
    )
    assert (
        clash.returncode == 1
        and "spec.ports[0].nodePort" in clash.stderr
        and "already allocated" in clash.stderr
    )
    far = lab.run(
        "apply",
        "-f",
        "-",
        check=False,
        input="""
apiVersion: v1
kind: Service
metadata: {name: np-far}
spec:
  type: NodePort
  ports: [{port: 80, nodePort: 40000}]
""",
    )
    assert far.returncode == 1 and "30000-32767" in far.stderr


def test_a_load_balancer_gets_an_address_and_forwards_to_the_nodeport(lab: Lab, app: list[dict]) -> None:
    service(lab, "lb", "  type: LoadBalancer\n  ports: [{port: 80, targetPort: http}]")
    ip = lb_ip(lab, "lb")
    assert ip.startswith("203.0.113.")
    row = lab.run("get", "svc", "lb").stdout.splitlines()[1].split()
    assert row[1] == "LoadBalancer" and row[3] == ip
    [pod] = web_pods(lab, 1)
    results = wait_for("the load balancer to answer", lambda: all_ok(lab, ip, 80))
    assert {r["pod"] for r in results} == {pod["metadata"]["name"]}


def test_local_policy_keeps_the_client_address_and_only_nodes_with_endpoints_accept(
    lab: Lab, app: list[dict]
) -> None:
    svc = service(
        lab,
        "lb-local",
        "  type: LoadBalancer\n  externalTrafficPolicy: Local\n  ports: [{port: 80, targetPort: http}]",
    )
    np = svc["spec"]["ports"][0]["nodePort"]
    web_pods(lab, 1)  # on node-2
    ip = lb_ip(lab, "lb-local")
    results = wait_for("the local load balancer", lambda: all_ok(lab, ip, 80))
    assert {r["client"].split(":")[0] for r in results} == {INTERNET}  # the source reaches the pod unchanged
    direct = ok_within(lab, "node-2's nodePort", NODE2, np)
    assert direct["client"].startswith(INTERNET)
    [dropped] = answers(lab, NODE1, np, timeout=0.5)  # node-1 has no local endpoint
    assert not dropped["ok"] and dropped["error"] == "timeout"


def test_the_health_check_node_port_answers_as_kube_proxys_does(lab: Lab, app: list[dict]) -> None:
    svc = service(
        lab,
        "lb-local",
        "  type: LoadBalancer\n  externalTrafficPolicy: Local\n  ports: [{port: 80, targetPort: http}]",
    )
    hc = svc["spec"]["healthCheckNodePort"]
    web_pods(lab, 1)

    def check(node_ip: str) -> tuple[int, dict]:
        proc = lab.run(
            "exec",
            "router",
            "--",
            "curl",
            "-s",
            "-o",
            "/dev/stdout",
            "-w",
            "\n%{http_code}",
            f"http://{node_ip}:{hc}/",
            check=False,
        )
        body, _, code = proc.stdout.rpartition("\n")
        return int(code), json.loads(body) if body else {}

    code, body = wait_for("node-2 healthy", lambda: (c := check("172.18.0.12"))[0] == 200 and c)
    assert body["localEndpoints"] == 1 and body["service"] == {"namespace": "default", "name": "lb-local"}
    code, body = check("172.18.0.11")
    assert code == 503 and body["localEndpoints"] == 0


def test_load_balancer_source_ranges_refuse_an_outsider(lab: Lab, app: list[dict]) -> None:
    service(
        lab,
        "lb-open",
        "  type: LoadBalancer\n  loadBalancerSourceRanges: [198.51.100.0/24]\n"
        "  ports: [{port: 80, targetPort: http}]",
    )
    service(
        lab,
        "lb-closed",
        "  type: LoadBalancer\n  loadBalancerSourceRanges: [192.0.2.0/24]\n"
        "  ports: [{port: 80, targetPort: http}]",
    )
    web_pods(lab, 1)
    ok_within(lab, "the allowed range gets in", lb_ip(lab, "lb-open"), 80)
    closed = lb_ip(lab, "lb-closed")

    def programmed() -> bool:
        # The cloud has this load balancer, healthy backends and its source range in the router's table.
        table = lab.run("exec", "router", "--", "nft", "list", "table", "ip", "podnet-cloud").stdout
        return f"{closed} . tcp . 80 : goto lb_" in table and f"{closed} . tcp . 80 . 192.0.2.0/24" in table

    wait_for("the closed load balancer programmed", programmed)
    [r] = answers(lab, closed, 80, timeout=0.5)
    assert not r["ok"] and r["error"] == "timeout"


def test_external_ips_are_served_by_the_nodes(lab: Lab, app: list[dict]) -> None:
    service(lab, "ext", "  externalIPs: [203.0.113.100]\n  ports: [{port: 8000, targetPort: http}]")
    web_pods(lab, 1)
    assert "203.0.113.100" in lab.run("get", "svc", "ext").stdout
    ok_within(lab, "the external IP", "203.0.113.100", 8000)


def test_a_load_balancer_without_node_ports_still_reaches_the_pods(lab: Lab, app: list[dict]) -> None:
    svc = service(
        lab,
        "lb-direct",
        "  type: LoadBalancer\n  allocateLoadBalancerNodePorts: false\n"
        "  ports: [{port: 80, targetPort: http}]",
    )
    assert "nodePort" not in svc["spec"]["ports"][0]
    web_pods(lab, 1)
    ok_within(lab, "the load balancer without nodePorts", lb_ip(lab, "lb-direct"), 80)


def test_internal_traffic_policy_local_keeps_traffic_on_the_node(lab: Lab, app: list[dict]) -> None:
    svc = service(lab, "itp", "  internalTrafficPolicy: Local\n  ports: [{port: 80, targetPort: http}]")
    web_pods(lab, 1)  # on node-2; the client is on node-1
    [r] = lab.probe("client", svc["spec"]["clusterIP"], 80, timeout=0.5)
    assert not r["ok"]  # no endpoint on node-1: dropped, not sent across
    [r2] = wait_for(
        "node-2 local", lambda: (rs := lab.probe("node/node-2", svc["spec"]["clusterIP"], 80))[0]["ok"] and rs
    )
    assert r2["ok"]


def test_session_affinity_holds_a_client_and_releases_after_its_timeout(lab: Lab, app: list[dict]) -> None:
    svc = service(
        lab,
        "sticky",
        "  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 2}}\n"
        "  ports: [{port: 80, targetPort: http}]",
    )
    pods = web_pods(lab, 4)
    vip = svc["spec"]["clusterIP"]
    wait_for(
        "all endpoints programmed",
        lambda: (
            len(
                lab.json("get", "endpointslices", "-l", "kubernetes.io/service-name=sticky")["items"][0][
                    "endpoints"
                ]
            )
            == 4
        ),
    )
    picks = []
    for _ in range(6):
        results = lab.probe("client", vip, 80, count=8)
        assert all(r["ok"] for r in results)
        assert len({r["pod"] for r in results}) == 1, results  # held to one pod
        picks.append(results[0]["pod"])
        time.sleep(2.5)  # past the timeout: the next pick is random again
    # Six independent picks among four pods all the same: p = (1/4)^5, about 0.1%.
    assert len(set(picks)) > 1, picks
    assert len(pods) == 4


def test_a_terminating_pod_keeps_its_open_connections_while_new_ones_go_to_ready_pods(
    lab: Lab, app: list[dict]
) -> None:
    svc = service(lab, "grace", "  ports: [{port: 80, targetPort: http}]")
    vip = svc["spec"]["clusterIP"]
    [old] = web_pods(lab, 1)
    # A client holding one HTTP keep-alive connection open across the deletion.
    script = r"""
import http.client, sys, time, subprocess
c = http.client.HTTPConnection(sys.argv[1], 80, timeout=2)
c.request("GET", "/hostname"); print(c.getresponse().read().decode(), flush=True)
time.sleep(float(sys.argv[2]))
c.request("GET", "/hostname"); print(c.getresponse().read().decode(), flush=True)
"""
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "podnet", "exec", "client", "--", "python3", "-c", script, vip, "2.0"],
        env=lab.env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline().strip()  # the connection is open and has answered once
    lab.run("delete", "pod", old["metadata"]["name"], "--wait=false")
    rest, _ = proc.communicate(timeout=20)
    assert [first, *rest.split()] == [old["metadata"]["name"]] * 2  # the open connection kept working
    # Meanwhile a replacement came up; new connections go there, not to the terminating pod.
    new = wait_for(
        "the replacement",
        lambda: [p for p in lab.ready_pods("app=web") if p["metadata"]["name"] != old["metadata"]["name"]],
    )
    results = lab.probe("client", vip, 80, count=10)
    assert {r["pod"] for r in results} == {new[0]["metadata"]["name"]}


def test_only_terminating_but_serving_endpoints_are_still_used(lab: Lab, app: list[dict]) -> None:
    svc = service(lab, "last", "  ports: [{port: 80, targetPort: http}]")
    vip = svc["spec"]["clusterIP"]
    [pod] = web_pods(lab, 1)
    lab.run("scale", "deployment/web", "--replicas", "0")
    # During its 3 s preStop the pod is terminating but serving: with nothing ready, it still answers.
    slices = wait_for(
        "a terminating endpoint",
        lambda: [
            e
            for s in lab.json("get", "endpointslices", "-l", "kubernetes.io/service-name=last")["items"]
            for e in s["endpoints"]
            if e["conditions"].get("terminating")
        ],
    )
    assert slices[0]["conditions"] == {"ready": False, "serving": True, "terminating": True}
    [r] = lab.probe("client", vip, 80)
    assert r["ok"] and r["pod"] == pod["metadata"]["name"]
    wait_for("the pod gone", lambda: not lab.pods("app=web"), timeout=15)
    web_pods(lab, 1)


def test_traffic_recovers_after_a_node_stops(lab: Lab, app: list[dict]) -> None:
    service(lab, "lb", "  type: LoadBalancer\n  ports: [{port: 80, targetPort: http}]")
    ip = lb_ip(lab, "lb")
    lab.apply(APP.replace("nodeSelector: {kubernetes.io/hostname: node-2}", "nodeSelector: {}"))
    pods = web_pods(lab, 4)
    assert {p["spec"]["nodeName"] for p in pods} == {"node-1", "node-2"}
    lab.run("node", "stop", "node-2")
    try:
        wait_for("node-2 NotReady", lambda: "NotReady" in lab.run("get", "node", "node-2").stdout, timeout=15)
        on_node1 = {p["metadata"]["name"] for p in pods if p["spec"]["nodeName"] == "node-1"}
        results = wait_for(
            "the load balancer to answer from node-1's pods only",
            lambda: (rs := all_ok(lab, ip, 80)) and {r["pod"] for r in rs} <= on_node1 and rs,
            timeout=15,
        )
        assert results
    finally:
        lab.run("node", "start", "node-2")
    wait_for(
        "node-2 Ready again", lambda: "NotReady" not in lab.run("get", "node", "node-2").stdout, timeout=15
    )
    lab.wait_ready("app=web", 4)


def test_the_agents_health_endpoint_answers(lab: Lab, app: list[dict]) -> None:
    out = lab.run("exec", "router", "--", "curl", "-sf", "http://172.18.0.11:10256/healthz").stdout
    assert json.loads(out)["nodeName"] == "node-1"
    state = json.loads((lab.state_dir / "state.json").read_text())
    assert (
        "kubeproxy_sync_proxy_rules_total"
        in urllib.request.urlopen(state["api"] + "/metrics").read().decode()
    )
