"""Traffic from outside at scale: TCP connect latency from the lab's
internet namespace through a NodePort and through a LoadBalancer, with 10
and with 10,000 Services programmed on every node. Figures, never
pass/fail.

Run as root: python bench/external_latency.py [--services 10000] [--connects 3000]
It brings up its own lab cluster in a temporary state directory and always
removes it.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
sys.path.insert(0, os.path.dirname(__file__))

from lab_scale import machine

from podnet.lab import netns

CLUSTER = "pnbext"
LINGER_0 = struct.pack("ii", 1, 0)
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
      containers: [{name: web, image: agnhost, ports: [{containerPort: 8080}]}]
---
apiVersion: v1
kind: Service
metadata: {name: web-np}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080, nodePort: 30080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-lb}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
"""


def podnet(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    return subprocess.run(
        [sys.executable, "-m", "podnet", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def latency(target: tuple[str, int], count: int) -> list[float]:
    """connect() + close() from the internet namespace, in seconds."""
    out = []
    with netns.entered(f"pn.{CLUSTER}.internet"):
        for i in range(count + 300):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_0)
            t0 = time.perf_counter()
            s.connect(target)
            s.close()
            if i >= 300:  # warm-up first
                out.append(time.perf_counter() - t0)
    return out


def row(label: str, samples: list[float]) -> str:
    samples = sorted(samples)
    p = lambda q: samples[min(len(samples) - 1, int(q * len(samples)))] * 1e6  # noqa: E731
    return f"| {label} | {statistics.median(samples) * 1e6:.0f} µs | {p(0.9):.0f} µs | {p(0.99):.0f} µs |"


def service_ports(api: str) -> int:
    text = urllib.request.urlopen(api + "/metrics").read().decode()
    counts = [
        int(float(line.split()[-1]))
        for line in text.splitlines()
        if line.startswith("kubeproxy_sync_proxy_rules_service_ports")
    ]
    return min(counts) if counts else 0


def add_services(api: str, n: int) -> float:
    """n ClusterIP Services over the same pod, through the REST API on one
    keep-alive connection."""
    host, port = api.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port))
    t = time.monotonic()
    for i in range(n):
        body = json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": f"bulk-{i}"},
                "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
            }
        )
        conn.request(
            "POST", "/api/v1/namespaces/default/services", body, {"Content-Type": "application/json"}
        )
        resp = conn.getresponse()
        resp.read()
        if resp.status != 201:
            raise RuntimeError(f"create bulk-{i}: {resp.status}")
    return time.monotonic() - t


def measure(label: str, targets: dict[str, tuple[str, int]], count: int) -> list[str]:
    return [row(f"{name}, {label}", latency(t, count)) for name, t in targets.items()]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--connects", type=int, default=3000)
    args = parser.parse_args()
    print("\n".join(machine()))
    state = tempfile.mkdtemp(prefix="pnbext-")
    env = dict(os.environ, PODNET_STATE_DIR=state, PODNET_CLUSTER=CLUSTER)
    rows = []
    try:
        podnet(env, "up")
        podnet(env, "apply", "-f", "-", stdin=APP)
        with open(os.path.join(state, CLUSTER, "state.json")) as f:
            api = json.load(f)["api"]
        deadline = time.monotonic() + 60
        lb = ""
        while time.monotonic() < deadline and not lb:
            svc = json.loads(podnet(env, "get", "svc", "web-lb", "-o", "json"))
            lb = (svc.get("status", {}).get("loadBalancer", {}).get("ingress") or [{}])[0].get("ip", "")
            time.sleep(0.2)
        targets = {
            "NodePort on node-2 (local pod)": ("203.0.113.12", 30080),
            "NodePort on node-1 (pod on node-2, SNAT)": ("203.0.113.11", 30080),
            "LoadBalancer": (lb, 80),
        }
        for t in targets.values():  # until each answers
            while True:
                try:
                    latency(t, 1)
                    break
                except OSError:
                    time.sleep(0.2)
        rows += measure(f"{service_ports(api)} service ports", targets, args.connects)
        took = add_services(api, args.services - 3)
        print(f"created {args.services - 3} more Services through the API in {took:.1f}s")
        t = time.monotonic()
        while service_ports(api) < args.services:
            time.sleep(0.5)
            if time.monotonic() - t > 600:
                raise SystemExit("the nodes never programmed every Service")
        print(f"every node programmed {service_ports(api)} service ports {time.monotonic() - t:.1f}s later")
        rows += measure(f"{service_ports(api)} service ports", targets, args.connects)
    finally:
        subprocess.run([sys.executable, "-m", "podnet", "down"], env=env, capture_output=True)
    print("\n| path (internet → …), Services programmed | p50 | p90 | p99 |\n|---|---:|---:|---:|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
