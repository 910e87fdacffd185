"""Services end to end: a virtual IP over changing pods, programmed by each
node's agent in nftables, checked with real packets."""

from __future__ import annotations

import ipaddress
import json
import time
from collections import Counter

import pytest

from tests.e2e.conftest import Lab, is_ready, wait_for

WEB = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: agnhost
        ports:
        - {name: http, containerPort: 8080}
        - {name: dns, containerPort: 5353, protocol: UDP}
        - {name: admin, containerPort: 9090}
        readinessProbe:
          httpGet: {path: /healthz, port: http}
          periodSeconds: 1
          failureThreshold: 1
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http}
  - {name: dns, port: 53, targetPort: 5353, protocol: UDP}
  - {name: admin, port: 9000, targetPort: 9090}
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  nodeName: node-1
  containers: [{name: c, image: agnhost}]
"""


@pytest.fixture(scope="module")
def web(lab: Lab) -> dict:
    lab.apply(WEB)
    lab.wait_ready("app=web", 3)
    wait_for("client ready", lambda: is_ready(lab.json("get", "pod", "client")))
    return lab.json("get", "svc", "web")


def vip(svc: dict) -> str:
    return str(svc["spec"]["clusterIP"])


def scale(lab: Lab, n: int) -> list[dict]:
    lab.run("scale", "deployment/web", "--replicas", str(n))
    return lab.wait_ready("app=web", n)


def spread(results: list[dict]) -> Counter[str]:
    return Counter(r["pod"] for r in results if r["ok"])


def test_a_service_gets_a_cluster_ip_from_the_service_cidr(lab: Lab, web: dict) -> None:
    assert ipaddress.ip_address(vip(web)) in ipaddress.ip_network("10.96.0.0/12")
    assert web["spec"]["clusterIPs"] == [vip(web)]
    row = lab.run("get", "svc", "web").stdout.splitlines()[1].split()
    assert row[:3] == ["web", "ClusterIP", vip(web)]
    assert row[4] == "80/TCP,53/UDP,9000/TCP"


def test_endpointslices_list_every_ready_pod_with_its_conditions(lab: Lab, web: dict) -> None:
    pods = {p["metadata"]["name"]: p for p in scale(lab, 3)}

    def published() -> list[dict] | None:
        slices = lab.json("get", "endpointslices", "-l", "kubernetes.io/service-name=web")["items"]
        eps = [e for s in slices for e in s["endpoints"]]
        return slices if {e["targetRef"]["name"] for e in eps} == set(pods) else None

    [s] = wait_for("the slice to list the three pods", published)
    assert s["addressType"] == "IPv4"
    assert {(p["name"], p["port"], p["protocol"]) for p in s["ports"]} == {
        ("http", 8080, "TCP"),
        ("dns", 5353, "UDP"),
        ("admin", 9090, "TCP"),
    }
    for ep in s["endpoints"]:
        pod = pods[ep["targetRef"]["name"]]
        assert ep["addresses"] == [pod["status"]["podIP"]]
        assert ep["nodeName"] == pod["spec"]["nodeName"]
        assert ep["conditions"] == {"ready": True, "serving": True, "terminating": False}


def test_connections_spread_over_all_ready_endpoints_at_random(lab: Lab, web: dict) -> None:
    pods = {p["metadata"]["name"] for p in scale(lab, 3)}
    results = lab.probe("client", vip(web), 80, count=300)
    assert all(r["ok"] for r in results)
    counts = spread(results)
    assert set(counts) == pods
    # Chi-square against uniform, df=2: 13.8 is p=0.001; a loose bound keeps this from flaking.
    chi2 = sum((c - 100) ** 2 / 100 for c in counts.values())
    assert chi2 < 20, counts


def test_the_backend_sees_the_client_pods_own_address(lab: Lab, web: dict) -> None:
    client_ip = lab.json("get", "pod", "client")["status"]["podIP"]
    results = lab.probe("client", vip(web), 80, count=20)
    assert {r["client"].split(":")[0] for r in results} == {client_ip}


def test_the_port_is_remapped_by_name_and_by_number(lab: Lab, web: dict) -> None:
    [by_name] = lab.probe("client", vip(web), 80)  # targetPort: http -> 8080
    [by_number] = lab.probe("client", vip(web), 9000)  # targetPort: 9090
    assert by_name["ok"] and by_number["ok"]
    assert by_name["pod"] and by_number["pod"]


def test_a_port_the_service_does_not_declare_is_not_forwarded(lab: Lab, web: dict) -> None:
    [r] = lab.probe("client", vip(web), 8080, timeout=0.5)
    assert not r["ok"]


def test_udp_through_the_virtual_ip(lab: Lab, web: dict) -> None:
    pods = {p["metadata"]["name"] for p in scale(lab, 3)}
    results = lab.probe("client", vip(web), 53, protocol="udp", count=60)
    assert all(r["ok"] for r in results), results
    assert set(spread(results)) <= pods and len(spread(results)) >= 2


def test_backends_on_the_same_node_and_on_another_node_both_answer(lab: Lab, web: dict) -> None:
    nodes = {p["metadata"]["name"]: p["spec"]["nodeName"] for p in scale(lab, 3)}
    assert set(nodes.values()) == {"node-1", "node-2"}  # the scheduler spread them
    answered = set(spread(lab.probe("client", vip(web), 80, count=60)))
    assert {nodes[p] for p in answered} == {"node-1", "node-2"}


def test_a_node_reaches_the_service_too(lab: Lab, web: dict) -> None:
    [r] = lab.probe("node/node-2", vip(web), 80)
    assert r["ok"] and r["client"].startswith("172.18.0.12:")


def test_a_pod_reaches_itself_through_its_own_service(lab: Lab, web: dict) -> None:
    [only] = scale(lab, 1)
    name = only["metadata"]["name"]
    results = lab.probe(name, vip(web), 80, count=5)
    assert all(r["ok"] and r["pod"] == name for r in results), results
    # Hairpin traffic is masqueraded, or the pod would answer itself directly.
    gateway = only["status"]["podIP"].rsplit(".", 1)[0] + ".1"
    assert {r["client"].split(":")[0] for r in results} == {gateway}


def test_scaling_up_and_down_is_followed_within_about_a_second(lab: Lab, web: dict) -> None:
    [only] = scale(lab, 1)
    assert set(spread(lab.probe("client", vip(web), 80, count=10))) == {only["metadata"]["name"]}
    pods = scale(lab, 4)
    names = {p["metadata"]["name"] for p in pods}
    start = time.monotonic()
    wait_for(
        "new pods to receive traffic",
        lambda: set(spread(lab.probe("client", vip(web), 80, count=40))) == names,
    )
    assert time.monotonic() - start < 10  # about a second when idle; room for a loaded CI machine
    [left] = scale(lab, 1)
    counts = wait_for(
        "traffic only to the pod left",
        lambda: (
            (c := spread(lab.probe("client", vip(web), 80, count=10)))
            and set(c) == {left["metadata"]["name"]}
        ),
        timeout=3,
    )
    assert counts


def test_a_pod_that_fails_readiness_stops_getting_new_connections(lab: Lab, web: dict) -> None:
    pods = scale(lab, 2)
    sick, well = pods[0], pods[1]
    lab.run(
        "exec",
        "node/node-1",
        "--",
        "curl",
        "-sf",
        "-X",
        "POST",
        f"http://{sick['status']['podIP']}:8080/healthz/fail",
    )
    try:
        wait_for(
            "traffic only to the ready pod",
            lambda: set(spread(lab.probe("client", vip(web), 80, count=20))) == {well["metadata"]["name"]},
        )
    finally:
        lab.run(
            "exec",
            "node/node-1",
            "--",
            "curl",
            "-sf",
            "-X",
            "POST",
            f"http://{sick['status']['podIP']}:8080/healthz/pass",
        )
    wait_for("both pods back", lambda: len(spread(lab.probe("client", vip(web), 80, count=30))) == 2)


def test_a_service_with_no_ready_endpoints_refuses_at_once(lab: Lab, web: dict) -> None:
    lab.run("scale", "deployment/web", "--replicas", "0")
    wait_for("no web pods", lambda: not lab.pods("app=web"))
    try:
        r = wait_for(
            "a refusal", lambda: (rs := lab.probe("client", vip(web), 80))[0]["error"] == "refused" and rs[0]
        )
        assert r["ms"] < 1000  # refused, not left to time out (the probe's timeout is 2 s)
        [u] = lab.probe("client", vip(web), 53, protocol="udp")
        assert u["error"] == "refused"
    finally:
        scale(lab, 2)


UDP_CLIENT = r"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 41000))
s.settimeout(0.3)
deadline = time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline:
    s.sendto(b"hostname", (sys.argv[1], 53))
    try:
        print(s.recv(100).decode(), flush=True)
        if len(sys.argv) > 3:
            break
    except OSError:
        print("-", flush=True)
"""


def test_udp_clients_keeping_their_source_port_move_off_a_removed_endpoint(lab: Lab, web: dict) -> None:
    pods = {p["metadata"]["name"] for p in scale(lab, 2)}
    first = lab.run("exec", "client", "--", "python3", "-c", UDP_CLIENT, vip(web), "3", "once").stdout.split()
    assert first and first[0] in pods
    victim = first[0]
    lab.run("delete", "pod", victim)  # its Deployment makes another
    lab.wait_ready("app=web", 2)
    # The same source port: conntrack would pin this flow to the dead pod, had the agent not cleared it.
    answers = lab.run(
        "exec", "client", "--", "python3", "-c", UDP_CLIENT, vip(web), "2", "once"
    ).stdout.split()
    assert answers and answers[0] not in ("-", victim), answers


def test_a_headless_service_gets_no_virtual_ip_but_publishes_endpoints(lab: Lab, web: dict) -> None:
    lab.apply("""
apiVersion: v1
kind: Service
metadata: {name: web-headless}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
""")
    svc = lab.json("get", "svc", "web-headless")
    assert svc["spec"]["clusterIP"] == "None"
    assert lab.run("get", "svc", "web-headless").stdout.splitlines()[1].split()[2] == "None"
    slices = wait_for(
        "headless endpoints",
        lambda: [
            s
            for s in lab.json("get", "endpointslices", "-l", "kubernetes.io/service-name=web-headless")[
                "items"
            ]
            if s["endpoints"]
        ],
    )
    assert slices[0]["ports"][0]["port"] == 8080
    assert "None" not in lab.run("rules", "node-1").stdout


def test_a_service_without_selector_uses_the_endpointslices_the_user_writes(lab: Lab, web: dict) -> None:
    [target] = lab.json("get", "pods", "-l", "app=web")["items"][:1]
    lab.apply(f"""
apiVersion: v1
kind: Service
metadata: {{name: manual}}
spec:
  ports: [{{name: web, port: 8000}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: manual-1
  labels: {{kubernetes.io/service-name: manual}}
addressType: IPv4
ports: [{{name: web, port: 8080, protocol: TCP}}]
endpoints:
- addresses: ["{target["status"]["podIP"]}"]
""")
    ip = lab.json("get", "svc", "manual")["spec"]["clusterIP"]
    r = wait_for(
        "the manual service to answer", lambda: (rs := lab.probe("client", ip, 8000))[0]["ok"] and rs[0]
    )
    assert r["pod"] == target["metadata"]["name"]


def test_a_requested_cluster_ip_is_honoured_and_a_taken_one_refused(lab: Lab, web: dict) -> None:
    doc = """
apiVersion: v1
kind: Service
metadata: {name: NAME}
spec:
  clusterIP: 10.96.100.100
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
"""
    lab.apply(doc.replace("NAME", "fixed"))
    assert lab.json("get", "svc", "fixed")["spec"]["clusterIP"] == "10.96.100.100"
    clash = lab.run("apply", "-f", "-", input=doc.replace("NAME", "clash"), check=False)
    assert clash.returncode == 1
    assert "spec.clusterIPs" in clash.stderr and "already allocated" in clash.stderr
    outside = lab.run(
        "apply",
        "-f",
        "-",
        input=doc.replace("NAME", "far").replace("10.96.100.100", "192.168.0.1"),
        check=False,
    )
    assert outside.returncode == 1 and "not in the valid range" in outside.stderr


def test_pods_reach_the_internet_from_their_nodes_public_address(lab: Lab, web: dict) -> None:
    [r] = lab.probe("client", "internet", 80)
    assert r["ok"] and r["client"].startswith("203.0.113.11:")  # client runs on node-1


def test_podnet_rules_shows_what_the_kernel_holds(lab: Lab, web: dict) -> None:
    pods = scale(lab, 2)

    def programmed() -> bool:
        text = lab.run("rules", "node-2").stdout
        return (
            all(f"{p['status']['podIP']} . 8080" in text for p in pods)
            and f"{vip(web)} . tcp . 80 : goto endpoints_2" in text
        )

    wait_for("node-2's table to hold the two endpoints", programmed)
    out = lab.run(
        "exec", "node/node-2", "--", "nft", "-j", "list", "map", "ip", "podnet", "service_ips"
    ).stdout
    assert vip(web) in json.dumps(json.loads(out))


def test_the_agents_report_network_programming_latency(lab: Lab, web: dict) -> None:
    state = json.loads((lab.state_dir / "state.json").read_text())
    import urllib.request

    text = urllib.request.urlopen(state["api"] + "/metrics").read().decode()
    counts = [
        line
        for line in text.splitlines()
        if line.startswith("kubeproxy_network_programming_duration_seconds_count")
    ]
    assert len(counts) == 2 and all(int(float(c.split()[-1])) > 0 for c in counts)
