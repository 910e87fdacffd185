"""The node agent as a Kubernetes client, at scale: `podnet agent` in its
own process and namespace, watching an API server (the lab's, in another
namespace, reached over a veth) that holds N Services with 10 endpoints
each. Prints the agent's memory and the time from an EndpointSlice change
at the API to the rule in the agent's kernel. Figures, never pass/fail.

Run as root: python bench/agent_scale.py [--services 10000] [--changes 30]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
sys.path.insert(0, os.path.dirname(__file__))

from services_scale import endpoint_slice, machine, pool_ip, service

from podnet.config import ClusterConfig
from podnet.controllers.endpointslice import TRIGGER_TIME
from podnet.controllers.endpointslice_controller import format_trigger_time
from podnet.lab import netns, network
from podnet.proxy.nftables import Nftables, NftError
from podnet.server.http import APIHTTPServer
from podnet.server.registry import Registry
from podnet.store.store import Store

API_NS, AGENT_NS = "pnt-agentb-api", "pnt-agentb-node"
API_IP, AGENT_IP = "192.0.2.1", "192.0.2.2"


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def agent_pid(wrapper: subprocess.Popen[bytes]) -> int:
    """The python process under `ip netns exec` (which execs, so the same pid)."""
    return wrapper.pid


def load(store: Store, n: int) -> None:
    store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}})
    store.create(
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "bench"},
            "spec": {"podCIDR": "10.250.0.0/24"},
            "status": {},
        }
    )
    for i in range(n):
        svc = service(i)
        for k in ("uid", "resourceVersion", "creationTimestamp"):
            svc["metadata"].pop(k)
        store.create(svc)
        store.create(endpoint_slice(i, "x0001", 8080, [pool_ip(i * 10 + j) for j in range(10)]))


def has_backend(nft: Nftables, vip: str, ip: str) -> bool:
    """Whether the kernel's backends map sends `vip` to `ip` (at any index:
    endpoints are kept sorted)."""
    for index in range(10):
        try:
            out = nft.run(f"get element ip podnet backends {{ {vip} . tcp . 80 . {index} }}")
        except NftError:
            continue
        if f": {ip} . 8080" in out:
            return True
    return False


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--changes", type=int, default=30)
    args = parser.parse_args()
    print("\n".join(machine()))
    for name in (API_NS, AGENT_NS):
        if netns.exists(name):
            netns.delete(name)
    store = Store()
    reg = Registry(store, ClusterConfig())
    agent: subprocess.Popen[bytes] | None = None
    server: APIHTTPServer | None = None
    try:
        netns.create(API_NS)
        netns.create(AGENT_NS)
        network.veth(API_NS, "eth0", AGENT_NS, "eth0")
        for ns, ip in ((API_NS, API_IP), (AGENT_NS, AGENT_IP)):
            with network.rtnl(ns) as ipr:
                ipr.addr("add", index=ipr.link_lookup(ifname="eth0")[0], address=ip, prefixlen=24)
        t = time.monotonic()
        load(store, args.services)
        print(
            f"loaded {args.services} Services + EndpointSlices into the store in {time.monotonic() - t:.1f}s"
        )
        with netns.entered(API_NS):
            sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((API_IP, 6443))
        sock.listen(64)
        server = APIHTTPServer(("", 0), reg, sock=sock)
        threading.Thread(target=server.serve_forever, daemon=True).start()

        t0 = time.monotonic()
        agent = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                AGENT_NS,
                sys.executable,
                "-m",
                "podnet",
                "agent",
                "--server",
                f"http://{API_IP}:6443",
                "--node",
                "bench",
                "--proxy",
                "--metrics-bind-address",
                "127.0.0.1:10249",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open("/tmp/agent_bench.log", "w"),  # noqa: SIM115
        )
        nft = Nftables(AGENT_NS)
        last = service(args.services - 1)["spec"]["clusterIP"]
        while not has_backend(nft, last, pool_ip((args.services - 1) * 10 + 9)):
            time.sleep(0.05)
            if time.monotonic() - t0 > 120 or agent.poll() is not None:
                raise SystemExit("the agent never programmed the last Service")
        startup = time.monotonic() - t0
        time.sleep(1)
        idle = rss_mb(agent_pid(agent))
        print(f"agent start to all {args.services} Services programmed: {startup:.2f}s")
        print(f"agent RSS with {args.services} Services: {idle:.0f} MB")

        latencies = []
        for c in range(args.changes):
            i = (c * 7919) % args.services
            name = f"svc-{i}-x0001"
            cur = store.get("EndpointSlice", "bench", name)
            new_ip = f"10.251.{c // 250}.{c % 250 + 1}"
            cur["endpoints"][3]["addresses"] = [new_ip]
            vip = service(i)["spec"]["clusterIP"]
            t = time.monotonic()
            # Stamped as the EndpointSlice controller stamps it: the agent's
            # network programming latency runs from here to its rule in the kernel.
            cur["metadata"].setdefault("annotations", {})[TRIGGER_TIME] = format_trigger_time(time.time())
            reg.update(cur)
            while not has_backend(nft, vip, new_ip):
                time.sleep(0.0005)
                if time.monotonic() - t > 10:
                    break
            latencies.append(time.monotonic() - t)
            time.sleep(0.05)
        latencies.sort()
        print(
            f"EndpointSlice change at the API -> rule in the kernel ({args.changes} changes, "
            f"{args.services} Services): p50 {statistics.median(latencies) * 1000:.1f} ms, "
            f"p90 {latencies[int(len(latencies) * 0.9)] * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms"
        )
        print(f"agent RSS after the changes: {rss_mb(agent_pid(agent)):.0f} MB")
        metrics = subprocess.run(
            ["ip", "netns", "exec", AGENT_NS, "curl", "-s", "http://127.0.0.1:10249/metrics"],
            capture_output=True,
            text=True,
        ).stdout
        buckets = []
        for line in metrics.splitlines():
            if line.startswith("kubeproxy_network_programming_duration_seconds_bucket"):
                le = line.split('le="')[1].split('"')[0]
                buckets.append((float("inf") if le == "+Inf" else float(le), float(line.split()[-1])))
        total = buckets[-1][1] if buckets else 0
        # The agent's own measure (Kubernetes' definition): from the change
        # at the API (the trigger time) to the rule in the kernel.
        for q in (0.5, 0.9, 0.99):
            bound = next((le for le, n in buckets if total and n >= q * total), float("nan"))
            print(
                f"  network programming latency p{int(q * 100)} <= {bound * 1000:.0f} ms (histogram bucket)"
            )
        print(
            "  (the times above include the bench's own polling of the kernel: one libnftables "
            "`get element` reads the whole 10,000-Service table)"
        )

        nft.close()
    finally:
        if agent is not None:
            agent.terminate()
            try:
                agent.wait(10)
            except subprocess.TimeoutExpired:
                agent.kill()
        if server is not None:
            server.shutdown()
        for name in (API_NS, AGENT_NS):
            netns.delete(name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
