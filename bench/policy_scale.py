"""How NetworkPolicy enforcement scales: 1,000 policies over 500 pods.

Run as root: ``python bench/policy_scale.py [--connects 3000] [--changes 20]``.
Prints figures, never pass/fail.

No lab cluster: a ``node`` namespace holding the rules and two real pods
on it (``client`` 10.244.1.2 and ``server`` 10.244.1.3, a TCP server on
8080), wired as the lab wires pods, all named ``pnt-npbench-*``. The other
498 pods exist only as objects (their addresses are in the sets and maps,
as a node's own pods and remote pods would be). 50 namespaces of 10 pods;
20 policies per namespace, each selecting one of five `app` labels and
allowing ingress from pods of one `team` of namespaces on a port and a
named port; one in four also isolates egress. The server is selected by
4 of them; the client is allowed by one.

Figures: the full sync (compile, nft apply); one policy changed, one pod's
labels changed, one pod added (each: index update + compile + delta +
apply, as the agent does it); TCP connect latency client -> server with
no policy and with the 1,000. Always removes every namespace it made.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import selectors
import socket
import statistics
import struct
import threading
import time
from collections.abc import Callable

from podnet.lab import netns
from podnet.lab.network import add_pod
from podnet.lab.topology import NodePlan
from podnet.policy import model, render
from podnet.proxy.nftables import Nftables

PREFIX = "pnt-npbench-"
NODE_NS = f"{PREFIX}node"
CLIENT_NS = f"{PREFIX}client"
SERVER_NS = f"{PREFIX}server"
NODE = NodePlan("node-1", 1, NODE_NS, "10.250.0.11", "10.251.0.11", "10.244.1.0/24")
CLIENT_IP, SERVER_IP, PORT = "10.244.1.2", "10.244.1.3", 8080
NAMESPACES, PODS_PER_NS, POLICIES_PER_NS = 50, 10, 20
LINGER_0 = struct.pack("ii", 1, 0)
PORTS = (("http", "TCP", 8080),)


def cluster() -> tuple[dict[str, dict[str, str]], list[model.Pod], list[model.Policy]]:
    ns_labels = {
        f"ns-{i}": {"team": f"t{i % 5}", "kubernetes.io/metadata.name": f"ns-{i}"} for i in range(NAMESPACES)
    }
    pods = []
    n = 0
    for i in range(NAMESPACES):
        for j in range(PODS_PER_NS):
            node = "node-1" if n % 2 == 0 else "node-2"
            ip = f"10.244.{1 if node == 'node-1' else 2}.{4 + n // 2}"
            pods.append(model.Pod(f"ns-{i}", f"pod-{j}", {"app": f"app-{j % 5}"}, ip, node, PORTS))
            n += 1
    # the two real pods
    pods[0] = model.Pod("ns-0", "pod-0", {"app": "app-0"}, CLIENT_IP, "node-1", PORTS)
    pods[PODS_PER_NS] = model.Pod("ns-1", "pod-0", {"app": "app-0"}, SERVER_IP, "node-1", PORTS)
    policies = [policy(i, k) for i in range(NAMESPACES) for k in range(POLICIES_PER_NS)]
    return ns_labels, pods, policies


def policy(i: int, k: int, port: int | None = None) -> model.Policy:
    spec: dict = {
        "podSelector": {"matchLabels": {"app": f"app-{k % 5}"}},
        "ingress": [
            {
                "from": [
                    {
                        "namespaceSelector": {"matchLabels": {"team": f"t{(i + k) % 5 if k else 0}"}},
                        "podSelector": {"matchLabels": {"app": f"app-{k % 5}"}},
                    }
                ],
                "ports": [
                    {"port": port or 8080 + k % 10, "protocol": "TCP"},
                    {"port": "http", "protocol": "TCP"},
                ],
            }
        ],
    }
    if k % 4 == 3:
        spec["egress"] = [{"to": [{"namespaceSelector": {}}], "ports": [{"port": 8080, "endPort": 8089}]}]
        spec["policyTypes"] = ["Ingress", "Egress"]
    return model.parse_policy({"metadata": {"name": f"np-{k}", "namespace": f"ns-{i}"}, "spec": spec})


class Server:
    def __init__(self) -> None:
        with netns.entered(SERVER_NS):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("0.0.0.0", PORT))
        self.sock.listen(4096)
        self.sock.setblocking(False)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ)
        while not self.stop.is_set():
            for _ in sel.select(timeout=0.2):
                with contextlib.suppress(OSError):
                    while True:
                        conn, _ = self.sock.accept()
                        conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.sock.close()


def connect_latency(count: int, warmup: int = 300) -> list[float]:
    out = []
    with netns.entered(CLIENT_NS):
        for i in range(warmup + count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_0)
            t0 = time.perf_counter()
            s.connect((SERVER_IP, PORT))
            s.close()
            if i >= warmup:
                out.append(time.perf_counter() - t0)
    return out


def pct(xs: list[float], p: float) -> float:
    ys = sorted(xs)
    return ys[min(len(ys) - 1, int(p / 100 * len(ys)))]


def us(x: float) -> str:
    return f"{x * 1e6:.0f} µs"


def ms(x: float) -> str:
    return f"{x * 1e3:.1f} ms"


def cleanup() -> None:
    for name in netns.list_names():
        if name.startswith(PREFIX):
            netns.delete(name)


def timed_change(
    nft: Nftables, idx: render.Index, current: list[render.Ruleset], change: Callable[[], None]
) -> tuple[float, float, int]:
    """(compute, apply, transaction lines) of one change as the agent makes it."""
    t0 = time.perf_counter()
    change()
    new = render.compile_ruleset(idx, "node-1")
    text = render.delta(current[0], new)
    t1 = time.perf_counter()
    nft.run(text)
    t2 = time.perf_counter()
    current[0] = new
    return t1 - t0, t2 - t1, len(text.splitlines())


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--connects", type=int, default=3000)
    ap.add_argument("--changes", type=int, default=20)
    args = ap.parse_args()
    print(f"kernel {platform.release()}, python {platform.python_version()}")
    cleanup()
    server = None
    try:
        netns.create(NODE_NS)
        netns.write_sysctl(NODE_NS, "net.ipv4.ip_forward", "1")
        add_pod(NODE, CLIENT_NS, "pntnp-client", CLIENT_IP)
        add_pod(NODE, SERVER_NS, "pntnp-server", SERVER_IP)
        server = Server()
        nft = Nftables(NODE_NS)
        ns_labels, pods, policies = cluster()
        idx = render.Index()
        for name, labels in ns_labels.items():
            idx.set_namespace(name, labels)
        for p in pods:
            idx.set_pod(p)
        nft.run(render.full(render.compile_ruleset(idx, "node-1")))
        base = connect_latency(args.connects)
        print(f"pods: {len(pods)} ({sum(p.node == 'node-1' for p in pods)} on this node), policies: 0")
        print(f"  connect latency: p50 {us(pct(base, 50))}  p90 {us(pct(base, 90))}  p99 {us(pct(base, 99))}")

        t0 = time.perf_counter()
        for pol in policies:
            idx.set_policy(pol)
        rs = render.compile_ruleset(idx, "node-1")
        t1 = time.perf_counter()
        text = render.full(rs)
        t2 = time.perf_counter()
        nft.run(text)
        t3 = time.perf_counter()
        server_chain = rs.ingress_pods[SERVER_IP]
        print(f"policies: {len(policies)}; on this node: {rs.counts()}")
        print(f"  the server is selected by {len(rs.set_chains[server_chain].policies)} policies")
        print(
            f"  full sync: compile {ms(t1 - t0)}, render {ms(t2 - t1)} ({len(text) // 1024} KiB), apply {ms(t3 - t2)}"
        )
        loaded = connect_latency(args.connects)
        print(
            f"  connect latency: p50 {us(pct(loaded, 50))}  p90 {us(pct(loaded, 90))}  p99 {us(pct(loaded, 99))}"
        )

        current = [rs]
        rows = []
        for label, make in (
            ("one policy's port changed", lambda r: lambda: idx.set_policy(policy(1, 5, 9000 + r))),
            (
                "one pod's labels changed",
                lambda r: (
                    lambda: idx.set_pod(
                        model.Pod("ns-7", "pod-2", {"app": f"app-{r % 5}"}, pods[72].ip, pods[72].node, PORTS)
                    )
                ),
            ),
            (
                "one pod added",
                lambda r: (
                    lambda: idx.set_pod(
                        model.Pod("ns-9", f"new-{r}", {"app": "app-1"}, f"10.244.3.{10 + r}", "node-1", PORTS)
                    )
                ),
            ),
        ):
            results = [timed_change(nft, idx, current, make(r)) for r in range(args.changes)]
            compute = statistics.median(r[0] for r in results)
            apply = statistics.median(r[1] for r in results)
            lines = statistics.median(r[2] for r in results)
            rows.append((label, compute, apply, lines))
        print("  change                       compute    apply     transaction lines (median)")
        for label, compute, apply, lines in rows:
            print(f"  {label:28} {ms(compute):>9}  {ms(apply):>8}  {lines:.0f}")
        nft.run(f"delete table {render.FAMILY} {render.TABLE}")
        nft.close()
    finally:
        if server:
            server.close()
        cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
