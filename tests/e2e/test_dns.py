"""Service discovery end to end: the cluster DNS running as pods behind
kube-dns (10.96.0.10), asked from inside pods with getent, curl and dig
over UDP and TCP; the resolv.conf, hosts and environment a pod gets; and
forwarding to the lab internet's resolver."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import time
from typing import Any

import pytest

from podnet.dns.podconf import hosts_file, resolv_conf
from podnet.lab.topology import pod_netns
from tests.e2e.conftest import Lab, is_ready, wait_for

Obj = dict[str, Any]

SHOP = """
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: cart, namespace: shop}
spec:
  replicas: 2
  selector: {matchLabels: {app: cart}}
  template:
    metadata: {labels: {app: cart}}
    spec:
      containers:
      - name: cart
        image: agnhost
        ports: [{name: http, containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: cart, namespace: shop}
spec:
  selector: {app: cart}
  ports:
  - {name: http, port: 8080, targetPort: http}
  - {name: metrics, port: 9102, targetPort: 8080, protocol: UDP}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{name: pg, port: 5432, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: db-0, namespace: shop, labels: {app: db}}
spec:
  hostname: db-0
  subdomain: db
  nodeName: node-2
  containers:
  - name: db
    image: agnhost
    ports: [{containerPort: 8080}]
    readinessProbe:
      httpGet: {path: /healthz, port: 8080}
      periodSeconds: 1
      failureThreshold: 1
---
apiVersion: v1
kind: Service
metadata: {name: search, namespace: shop}
spec:
  type: ExternalName
  externalName: www.example.com
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: shop}
spec:
  nodeName: node-1
  containers:
  - name: c
    image: agnhost
    env:
    - {name: MY_POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: MY_POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
    - {name: CART_URL, value: "http://$(CART_SERVICE_HOST):$(CART_SERVICE_PORT)"}
---
apiVersion: v1
kind: Pod
metadata: {name: nolinks, namespace: shop}
spec:
  enableServiceLinks: false
  dnsPolicy: None
  dnsConfig:
    nameservers: [10.96.0.10]
    searches: [shop.svc.cluster.local]
    options: [{name: ndots, value: "2"}]
  containers: [{name: c, image: agnhost}]
---
apiVersion: v1
kind: Pod
metadata:
  name: runner
  namespace: shop
  annotations:
    # (retries, as a real client would, while the cluster DNS or its Service rules come up)
    podnet.io/command: "echo HOST=$CART_SERVICE_HOST; for i in $(seq 100); do getent hosts cart && break; sleep 0.2; done; exec sleep 600"
spec:
  nodeName: node-2
  containers: [{name: c, image: agnhost}]
"""


def dns_ready(lab: Lab) -> bool:
    slices = lab.json(
        "get", "endpointslices", "-n", "kube-system", "-l", "kubernetes.io/service-name=kube-dns"
    )
    ready = [e for s in slices["items"] for e in s["endpoints"] if e["conditions"]["ready"]]
    return len(ready) == 2


@pytest.fixture(scope="module")
def shop(lab: Lab) -> Obj:
    lab.apply(SHOP)
    lab.wait_ready("app=cart", 2, namespace="shop")
    for name in ("client", "db-0", "nolinks", "runner"):
        wait_for(f"{name} ready", lambda n=name: is_ready(lab.json("get", "pod", n, "-n", "shop")))
    wait_for("the cluster DNS ready", lambda: dns_ready(lab), timeout=20)
    return {
        "cart": lab.json("get", "svc", "cart", "-n", "shop")["spec"]["clusterIP"],
        "client": lab.json("get", "pod", "client", "-n", "shop"),
    }


def sh(lab: Lab, pod: str, *cmd: str, check: bool = True) -> str:
    return lab.run("exec", "-n", "shop", pod, "--", *cmd, check=check).stdout


def dig(lab: Lab, *args: str, pod: str = "client") -> str:
    return sh(lab, pod, "dig", "+time=2", "+tries=1", *args, check=False)


def short(lab: Lab, *args: str, pod: str = "client") -> list[str]:
    return sorted(dig(lab, "+short", *args, pod=pod).split("\n")[:-1])


def shorts(lab: Lab, *queries: tuple[str, ...], pod: str = "client") -> list[list[str]]:
    """Several `dig +short` queries in one exec (each CLI call costs a Python start)."""
    script = "; echo ---; ".join(shlex.join(["dig", "+time=2", "+tries=1", "+short", *q]) for q in queries)
    out = sh(lab, pod, "sh", "-c", script + "; echo ---", check=False)
    return [sorted(part.splitlines()) for part in out.split("---\n")[: len(queries)]]


def status(lab: Lab, *args: str) -> tuple[str, int, int]:
    """(rcode, answer count, authority count) of a dig query."""
    text = dig(lab, "+noall", "+comments", *args)
    m = re.search(r"status: (\w+).*ANSWER: (\d+), AUTHORITY: (\d+)", text, re.S)
    assert m, text
    return m.group(1), int(m.group(2)), int(m.group(3))


def test_the_cluster_dns_runs_as_pods_behind_kube_dns(lab: Lab, shop: Obj) -> None:
    svc = lab.json("get", "svc", "kube-dns", "-n", "kube-system")
    assert svc["spec"]["clusterIP"] == "10.96.0.10"
    assert {(p["name"], p["port"], p["protocol"]) for p in svc["spec"]["ports"]} == {
        ("dns", 53, "UDP"),
        ("dns-tcp", 53, "TCP"),
    }
    pods = lab.ready_pods("k8s-app=kube-dns", namespace="kube-system")
    assert len(pods) == 2
    assert lab.json("get", "svc", "kubernetes")["spec"]["clusterIP"] == "10.96.0.1"
    # Real processes, in the pods' own namespaces.
    ps = lab.run("exec", "-n", "kube-system", pods[0]["metadata"]["name"], "--", "ss", "-Hlun", "sport = :53")
    assert ps.stdout.strip()


def test_a_pod_gets_the_resolv_conf_and_hosts_the_kubelet_writes(lab: Lab, shop: Obj) -> None:
    client = shop["client"]
    assert sh(lab, "client", "cat", "/etc/resolv.conf") == resolv_conf(
        client, ["10.96.0.10"], "cluster.local", ["198.51.100.100"]
    )
    assert sh(lab, "client", "cat", "/etc/resolv.conf").startswith("nameserver 10.96.0.10\nsearch shop.svc")
    assert sh(lab, "client", "cat", "/etc/hosts") == hosts_file(
        client, client["status"]["podIP"], "cluster.local"
    )
    db = lab.json("get", "pod", "db-0", "-n", "shop")
    assert f"{db['status']['podIP']}\tdb-0.db.shop.svc.cluster.local\tdb-0" in sh(
        lab, "db-0", "cat", "/etc/hosts"
    )
    assert sh(lab, "nolinks", "cat", "/etc/resolv.conf") == (
        "nameserver 10.96.0.10\nsearch shop.svc.cluster.local\noptions ndots:2\n"
    )


def test_short_names_resolve_through_the_search_path(lab: Lab, shop: Obj) -> None:
    for name in ("cart", "cart.shop", "cart.shop.svc", "cart.shop.svc.cluster.local"):
        out = sh(lab, "client", "getent", "hosts", name).split()
        assert out == [shop["cart"], "cart.shop.svc.cluster.local"], name
    assert sh(lab, "client", "getent", "hosts", "nope", check=False) == ""


def test_curl_reaches_a_service_by_name(lab: Lab, shop: Obj) -> None:
    carts = {p["metadata"]["name"] for p in lab.ready_pods("app=cart", namespace="shop")}
    assert sh(lab, "client", "curl", "-sf", "http://cart:8080/hostname") in carts
    assert sh(lab, "client", "curl", "-sf", "http://cart.shop:8080/hostname") in carts


def test_probe_takes_a_dns_name_as_seen_from_the_source(lab: Lab, shop: Obj) -> None:
    results = lab.probe("client", "cart", 8080, count=4, namespace="shop")
    assert all(r["ok"] for r in results)
    proc = lab.run("probe", "-n", "shop", "client", "nosuch", "--port", "80", check=False)
    assert proc.returncode == 1 and "NXDOMAIN" in proc.stderr


def test_srv_ptr_txt_and_pod_records_over_udp_and_tcp(lab: Lab, shop: Obj) -> None:
    ip = shop["client"]["status"]["podIP"]
    queries: list[tuple[str, ...]] = []
    for transport in ("+notcp", "+tcp"):
        queries += [
            (transport, "_http._tcp.cart.shop.svc.cluster.local", "SRV"),
            (transport, "_metrics._udp.cart.shop.svc.cluster.local", "SRV"),
            (transport, "-x", shop["cart"]),
            (transport, "dns-version.cluster.local", "TXT"),
            (transport, f"{ip.replace('.', '-')}.shop.pod.cluster.local"),
        ]
    got = shorts(lab, *queries)
    want = [
        ["0 100 8080 cart.shop.svc.cluster.local."],
        ["0 100 9102 cart.shop.svc.cluster.local."],
        ["cart.shop.svc.cluster.local."],
        ['"1.1.0"'],
        [ip],
    ]
    assert got == want + want
    answer = dig(lab, "+noall", "+answer", "cart.shop.svc.cluster.local")
    assert re.search(r"cart\.shop\.svc\.cluster\.local\.\s+5\s+IN\s+A\s+" + re.escape(shop["cart"]), answer)


def test_nxdomain_and_nodata(lab: Lab, shop: Obj) -> None:
    assert status(lab, "nope.shop.svc.cluster.local") == ("NXDOMAIN", 0, 1)
    assert status(lab, "cart.shop.svc.cluster.local", "AAAA") == ("NOERROR", 0, 1)
    assert status(lab, "shop.svc.cluster.local") == ("NOERROR", 0, 1)
    assert status(lab, "nonamespace.svc.cluster.local") == ("NXDOMAIN", 0, 1)


def test_a_headless_service_follows_its_ready_endpoints(lab: Lab, shop: Obj) -> None:
    db = lab.json("get", "pod", "db-0", "-n", "shop")
    ip = db["status"]["podIP"]
    assert short(lab, "db.shop.svc.cluster.local") == [ip]
    assert short(lab, "db-0.db.shop.svc.cluster.local") == [ip]
    assert short(lab, "_pg._tcp.db.shop.svc.cluster.local", "SRV") == [
        "0 100 8080 db-0.db.shop.svc.cluster.local."
    ]
    assert short(lab, "-x", ip) == ["db-0.db.shop.svc.cluster.local."]
    lab.run("exec", "node/node-2", "--", "curl", "-sf", "-X", "POST", f"http://{ip}:8080/healthz/fail")
    try:
        wait_for(
            "NXDOMAIN without ready endpoints",
            lambda: status(lab, "db.shop.svc.cluster.local")[0] == "NXDOMAIN",
        )
    finally:
        lab.run("exec", "node/node-2", "--", "curl", "-sf", "-X", "POST", f"http://{ip}:8080/healthz/pass")
    wait_for("the endpoint back", lambda: short(lab, "db.shop.svc.cluster.local") == [ip])


POLL = "until dig +time=1 +tries=1 +short {name} | grep -q {want}; do sleep 0.02; done; date +%s.%N"


def test_answers_follow_a_service_created_changed_and_deleted(lab: Lab, shop: Obj) -> None:
    svc = "apiVersion: v1\nkind: Service\nmetadata: {name: late, namespace: shop}\nspec:\n"
    cluster_ip = "  selector: {app: cart}\n  ports: [{port: 80, targetPort: 8080}]\n"
    # A poller inside the pod notes when the name first resolves; the
    # time from the API's answer to the create until then is the delay.
    client = shop["client"]["metadata"]
    ns = pod_netns(lab.name, "shop", "client", client["uid"])
    poller = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            ns,
            "sh",
            "-c",
            POLL.format(name="late.shop.svc.cluster.local", want="'^10\\.'"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        lab.apply(svc + cluster_ip)
        applied = time.time()
        resolved = float(poller.communicate(timeout=20)[0].strip())
    finally:
        poller.kill()
    assert resolved - applied < 1.0, resolved - applied
    ip = lab.json("get", "svc", "late", "-n", "shop")["spec"]["clusterIP"]
    assert short(lab, "late.shop.svc.cluster.local") == [ip]
    lab.apply(svc + "  type: ExternalName\n  externalName: www.example.com\n")
    wait_for(
        "late to be a CNAME",
        lambda: short(lab, "late.shop.svc.cluster.local") == ["198.51.100.100", "www.example.com."],
    )
    lab.apply(svc + "  type: ClusterIP\n" + cluster_ip)
    ip2 = lab.json("get", "svc", "late", "-n", "shop")["spec"]["clusterIP"]
    wait_for("late back to an address", lambda: short(lab, "late.shop.svc.cluster.local") == [ip2])
    lab.run("delete", "svc", "late", "-n", "shop")
    wait_for("late gone", lambda: status(lab, "late.shop.svc.cluster.local")[0] == "NXDOMAIN")


def test_names_outside_the_cluster_go_to_the_internets_resolver(lab: Lab, shop: Obj) -> None:
    assert sh(lab, "client", "getent", "hosts", "www.example.com").split() == [
        "198.51.100.100",
        "www.example.com",
    ]
    assert short(lab, "+tcp", "alias.example.com") == ["198.51.100.100", "www.example.com."]
    assert status(lab, "nothing.example.org") == ("NXDOMAIN", 0, 1)
    # An ExternalName Service: the CNAME from the cluster, the address from upstream.
    assert short(lab, "search.shop.svc.cluster.local") == ["198.51.100.100", "www.example.com."]
    assert sh(lab, "client", "curl", "-sf", "http://search/hostname") == "internet"


def test_a_pod_sees_its_service_variables_and_env(lab: Lab, shop: Obj) -> None:
    env = dict(line.split("=", 1) for line in sh(lab, "client", "env").splitlines() if "=" in line)
    cart = shop["cart"]
    assert env["CART_SERVICE_HOST"] == cart
    assert env["CART_SERVICE_PORT"] == "8080"
    assert env["CART_SERVICE_PORT_HTTP"] == "8080"
    assert env["CART_SERVICE_PORT_METRICS"] == "9102"
    assert env["CART_PORT"] == f"tcp://{cart}:8080"
    assert env["CART_PORT_9102_UDP"] == f"udp://{cart}:9102"
    assert env["CART_PORT_9102_UDP_PROTO"] == "udp"
    assert env["CART_PORT_8080_TCP_ADDR"] == cart
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    assert env["KUBERNETES_SERVICE_PORT_HTTPS"] == "443"
    assert "DB_SERVICE_HOST" not in env and "SEARCH_SERVICE_HOST" not in env  # headless, ExternalName
    assert env["MY_POD_NAME"] == "client"
    assert env["MY_POD_IP"] == shop["client"]["status"]["podIP"]
    assert env["CART_URL"] == f"http://{cart}:8080"
    nolinks = sh(lab, "nolinks", "env")
    assert "KUBERNETES_SERVICE_HOST=10.96.0.1" in nolinks and "CART_SERVICE_HOST" not in nolinks
    # The exit code still passes through.
    assert lab.run("exec", "-n", "shop", "client", "--", "sh", "-c", "exit 3", check=False).returncode == 3


def test_a_command_pod_sees_the_same_env_and_names(lab: Lab, shop: Obj) -> None:
    log = lab.state_dir / "pods" / "shop_runner.log"
    wait_for("the runner's output", lambda: "cart.shop.svc.cluster.local" in log.read_text())
    text = log.read_text()
    assert f"HOST={shop['cart']}" in text
    assert f"{shop['cart']}" in text.split("HOST=", 1)[1]


def test_the_dns_files_go_with_the_pod(lab: Lab, shop: Obj) -> None:
    lab.apply(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: brief}\nspec:\n  containers: [{name: c, image: x}]\n"
    )
    wait_for("brief ready", lambda: is_ready(lab.json("get", "pod", "brief")))

    def mine() -> list[str]:
        return [p for p in os.listdir("/etc/netns") if p.startswith(f"pn.{lab.name}.pod.default.brief.")]

    assert mine()
    lab.run("delete", "pod", "brief")
    wait_for("brief's /etc/netns entry removed", lambda: not mine())
