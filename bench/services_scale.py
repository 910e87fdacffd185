"""How the Service proxy scales with the number of Services.

Run as root: ``python bench/services_scale.py [--scales 1000,10000] [--changes 50]
[--connects 3000] [--churn 20x10,100x10]``. Prints figures, never pass/fail.

It does not start a lab cluster (too slow for 10,000 Services). It makes
three namespaces wired as the lab wires a node and its pods (a ``node``
holding the rules, a ``client`` pod and a ``server`` pod, all named
``pnt-bench-*``), a TCP server on ports 8080-8089 of the server pod, and
synthetic Service and EndpointSlice objects shaped as Kubernetes
serialises them: VIPs from 10.96.0.0/12, one port each, 10 ready endpoints
each on addresses from 10.244.2.0-10.244.255.255 (none of which exist).
One Service, the one the client connects through, has the server pod on
ports 8080-8089 as its 10 endpoints.

Figures, per Service count:
* full sync: ``model.service_ports`` of every Service + ``render.full``
  (render), ``Nftables.run`` of that text into an empty namespace (apply),
  and again over the loaded table (re-apply, as a resync does);
* one endpoint of one Service replaced, N times: compute (service_ports of
  that Service, the hairpin reference counts, ``render.delta``), the
  transaction's size and element count, and its apply;
* TCP connect + close latency from the client pod, through the VIP and
  straight to the pod IP (taking turns), with 10, then the largest count,
  then 10 Services again loaded (the client closes with SO_LINGER 0, so
  no TIME_WAIT piles up; each VIP connection costs a conntrack entry and
  a DNAT);
* the agent: ``ServiceProxy`` fed by a fake Source holding the largest
  count of Services, one-endpoint changes pushed at a steady rate; its
  full sync at start and its network programming latency.

Always removes every namespace it made, even on failure.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import gc
import ipaddress
import math
import os
import random
import resource
import selectors
import socket
import statistics
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from machine import describe

from podnet.lab import netns
from podnet.lab.network import add_pod
from podnet.lab.topology import NodePlan
from podnet.proxy import model, render
from podnet.proxy.agent import ServiceProxy
from podnet.proxy.nftables import Nftables
from podnet.store.store import Event

Obj = dict[str, Any]

PREFIX = "pnt-bench-"
NODE_NS = f"{PREFIX}node"
CLIENT_NS = f"{PREFIX}client"
SERVER_NS = f"{PREFIX}server"
NODE = NodePlan(
    name="bench",
    index=1,
    netns=NODE_NS,
    internal_ip="10.250.0.11",
    external_ip="10.251.0.11",
    pod_cidr="10.244.1.0/24",
)
CLIENT_IP = "10.244.1.2"
SERVER_IP = "10.244.1.3"
SERVER_PORTS = tuple(range(8080, 8090))
ENDPOINTS_PER_SERVICE = 10
SERVICE_PORT = 80
VIP_BASE = int(ipaddress.IPv4Address("10.96.0.10"))
# Made-up endpoint addresses: 10.244.2.0 onwards, never the real pods' /24.
POOL_BASE = int(ipaddress.IPv4Address("10.244.2.0"))
POOL_SIZE = 60_000
CFG = render.ProxyConfig()


# -- the machine ---------------------------------------------------------------


def machine() -> list[str]:
    return describe([["nft", "--version"]])


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    xs = sorted(values)
    return xs[max(0, min(len(xs) - 1, math.ceil(p / 100 * len(xs)) - 1))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.0f} µs"


def count_elements(text: str) -> int:
    n = 0
    for line in text.splitlines():
        if line.startswith(("add element", "delete element")):
            body = line[line.index("{") + 1 : line.rindex("}")]
            n += len(body.split(", "))
    return n


# -- synthetic objects -------------------------------------------------------------


def pool_ip(i: int) -> str:
    return str(ipaddress.IPv4Address(POOL_BASE + i % POOL_SIZE))


def vip(i: int) -> str:
    return str(ipaddress.IPv4Address(VIP_BASE + i))


def service(i: int) -> Obj:
    ip = vip(i)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": f"svc-{i}",
            "namespace": "bench",
            "uid": f"00000000-0000-4000-8000-{i:012d}",
            "resourceVersion": str(i + 1),
            "creationTimestamp": "2024-01-01T00:00:00Z",
        },
        "spec": {
            "type": "ClusterIP",
            "selector": {"app": f"svc-{i}"},
            "clusterIP": ip,
            "clusterIPs": [ip],
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "sessionAffinity": "None",
            "internalTrafficPolicy": "Cluster",
            "ports": [{"name": "http", "protocol": "TCP", "port": SERVICE_PORT, "targetPort": 8080}],
        },
        "status": {"loadBalancer": {}},
    }


def endpoint_slice(i: int, suffix: str, port: int, addresses: list[str]) -> Obj:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"svc-{i}-{suffix}",
            "namespace": "bench",
            "generateName": f"svc-{i}-",
            "labels": {
                model.SERVICE_NAME_LABEL: f"svc-{i}",
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
            },
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Service", "name": f"svc-{i}", "controller": True}
            ],
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "protocol": "TCP", "port": port}],
        "endpoints": [
            {
                "addresses": [a],
                "conditions": {"ready": True, "serving": True, "terminating": False},
                "nodeName": "bench",
                "targetRef": {"kind": "Pod", "namespace": "bench", "name": f"pod-{a}"},
            }
            for a in addresses
        ],
    }


def slices_of(i: int) -> list[Obj]:
    if i == 0:
        # The Service the client uses: the real server pod on 10 ports
        # (one slice per port, as Kubernetes groups endpoints by port set).
        return [endpoint_slice(0, f"p{p}", p, [SERVER_IP]) for p in SERVER_PORTS]
    return [endpoint_slice(i, "x0001", 8080, [pool_ip(i * ENDPOINTS_PER_SERVICE + j) for j in range(10)])]


def make_cluster(n: int) -> tuple[list[Obj], list[list[Obj]]]:
    return [service(i) for i in range(n)], [slices_of(i) for i in range(n)]


def changed_slice(rng: random.Random, i: int, current: Obj) -> Obj:
    """`current` with one endpoint's address replaced by another one."""
    eps = [dict(ep) for ep in current["endpoints"]]
    taken = {ep["addresses"][0] for ep in eps}
    while True:
        new = pool_ip(rng.randrange(POOL_SIZE))
        if new not in taken:
            break
    j = rng.randrange(len(eps))
    eps[j] = {
        **eps[j],
        "addresses": [new],
        "targetRef": {"kind": "Pod", "namespace": "bench", "name": f"pod-{new}"},
    }
    meta = dict(current["metadata"])
    meta["resourceVersion"] = str(int(meta.get("resourceVersion", "0")) + 1)
    return {**current, "metadata": meta, "endpoints": eps}


# -- namespaces and the server pod ---------------------------------------------------


def cleanup_namespaces() -> list[str]:
    gone = [n for n in netns.list_names() if n.startswith(PREFIX)]
    for name in gone:
        netns.delete(name)
    return gone


def build_namespaces() -> None:
    netns.create(NODE_NS)
    netns.write_sysctl(NODE_NS, "net.ipv4.ip_forward", "1")
    add_pod(NODE, CLIENT_NS, "pntb-client", CLIENT_IP)
    add_pod(NODE, SERVER_NS, "pntb-server", SERVER_IP)


class Server:
    """Accepts and closes TCP connections on SERVER_PORTS inside the server pod."""

    def __init__(self) -> None:
        self.socks: list[socket.socket] = []
        with netns.entered(SERVER_NS):
            for port in SERVER_PORTS:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                self.socks.append(s)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("0.0.0.0", port))
                s.listen(4096)
                s.setblocking(False)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="bench-server", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        for s in self.socks:
            sel.register(s, selectors.EVENT_READ)
        try:
            while not self.stop.is_set():
                for key, _ in sel.select(timeout=0.2):
                    sock: socket.socket = key.fileobj  # type: ignore[assignment]
                    while True:
                        try:
                            conn, _ = sock.accept()
                        except (BlockingIOError, InterruptedError):
                            break
                        except OSError:
                            break
                        conn.close()
        finally:
            sel.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        for s in self.socks:
            s.close()


LINGER_0 = struct.pack("ii", 1, 0)


def connect_latency(
    targets: list[tuple[str, int]], count: int, rounds: int = 10, warmup: int = 500
) -> list[list[float]]:
    """connect() + close() from the client pod, `count` times per target,
    in seconds; the targets take turns in `rounds` rounds, so a drift of
    the machine's load hits them alike."""
    out: list[list[float]] = [[] for _ in targets]
    with netns.entered(CLIENT_NS):
        for r in range(rounds + 1):
            for t, (ip, port) in enumerate(targets):
                for _ in range(warmup if r == 0 else count // rounds):
                    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_0)
                    t0 = time.perf_counter()
                    s.connect((ip, port))
                    s.close()
                    t1 = time.perf_counter()
                    if r > 0:
                        out[t].append(t1 - t0)
    return out


# -- direct measurements ---------------------------------------------------------------


class Loaded:
    """What the bench programmed: per Service its ports, and the refs."""

    def __init__(self, services: list[Obj], slices: list[list[Obj]]) -> None:
        self.services = services
        self.slices = slices
        self.state: list[dict[model.PortKey, model.ServicePort]] = []
        self.refs: Counter[str] = Counter()
        self.chains: set[int] = set()


def render_full(services: list[Obj], slices: list[list[Obj]]) -> tuple[Loaded, str, float]:
    loaded = Loaded(services, slices)
    t0 = time.perf_counter()
    loaded.state = [model.service_ports(svc, sl) for svc, sl in zip(services, slices, strict=True)]
    merged = {pk: sp for ports in loaded.state for pk, sp in ports.items()}
    text = render.full(merged, CFG)
    took = time.perf_counter() - t0
    loaded.refs = Counter(ip for sp in merged.values() for ip, _ in sp.endpoints)
    loaded.chains = set(range(1, render.chain_capacity(merged) + 1))
    return loaded, text, took


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def one_change(nft: Nftables, loaded: Loaded, rng: random.Random) -> tuple[float, int, int, float]:
    """Replace one endpoint of one Service (never the one the client uses);
    return (compute s, bytes, elements, apply s). Compute is service_ports
    of that Service, the hairpin bookkeeping (reference counts of the
    touched addresses only) and render.delta."""
    i = rng.randrange(1, len(loaded.services))
    new_slices = [changed_slice(rng, i, loaded.slices[i][0])]
    t0 = time.perf_counter()
    before = loaded.state[i]
    after = model.service_ports(loaded.services[i], new_slices)
    diff: Counter[str] = Counter()
    for sp in before.values():
        for ip, _ in sp.endpoints:
            diff[ip] -= 1
    for sp in after.values():
        for ip, _ in sp.endpoints:
            diff[ip] += 1
    add = [ip for ip, d in diff.items() if loaded.refs[ip] <= 0 < loaded.refs[ip] + d]
    remove = [ip for ip, d in diff.items() if loaded.refs[ip] + d <= 0 < loaded.refs[ip]]
    text = render.delta(before, after, loaded.chains, add, remove)
    compute = time.perf_counter() - t0
    apply = timed(lambda: nft.run(text))
    loaded.slices[i] = new_slices
    loaded.state[i] = after
    for ip, d in diff.items():
        loaded.refs[ip] += d
        if loaded.refs[ip] <= 0:
            del loaded.refs[ip]
    return compute, len(text.encode()), count_elements(text), apply


def delete_table(nft: Nftables) -> None:
    nft.run(f"table {render.FAMILY} {render.TABLE}\ndelete table {render.FAMILY} {render.TABLE}\n")


def bench_scale(nft: Nftables, n: int, changes: int, full_runs: int, rng: random.Random) -> dict[str, Any]:
    services, slices = make_cluster(n)
    gc.collect()
    loaded, text, render_s = render_full(services, slices)
    applies = []
    for _ in range(full_runs):
        delete_table(nft)
        applies.append(timed(lambda: nft.run(text)))
    apply_s = statistics.median(applies)
    reapply_s = timed(lambda: nft.run(text))
    row: dict[str, Any] = {
        "n": n,
        "render": render_s,
        "apply": apply_s,
        "reapply": reapply_s,
        "applies": applies,
        "bytes": len(text.encode()),
        "elements": count_elements(text),
    }
    print(
        f"{n:6d} Services: full render {ms(render_s)}, apply {ms(apply_s)} median of"
        f" {', '.join(f'{a * 1000:.0f}' for a in applies)} ms (over the loaded table"
        f" {ms(reapply_s)}), {row['bytes'] / 1e6:.2f} MB, {row['elements']} elements",
        flush=True,
    )
    results = [one_change(nft, loaded, rng) for _ in range(changes)]
    comp, size, elems, app = (list(x) for x in zip(*results, strict=True))
    row.update(
        comp50=statistics.median(comp),
        comp99=pct(comp, 99),
        size50=statistics.median(size),
        elems50=statistics.median(elems),
        elems_max=max(elems),
        apply50=statistics.median(app),
        apply99=pct(app, 99),
    )
    print(
        f"        one-endpoint change x{changes}: compute p50 {ms(row['comp50'])} p99 {ms(row['comp99'])};"
        f" {row['size50']:.0f} B, {row['elems50']:.0f} elements (max {row['elems_max']});"
        f" apply p50 {ms(row['apply50'])} p99 {ms(row['apply99'])}",
        flush=True,
    )
    row["loaded"] = loaded
    return row


def bench_connect(label: str, count: int) -> list[tuple[str, list[float]]]:
    targets = [("direct pod IP", SERVER_IP, SERVER_PORTS[0]), ("VIP", vip(0), SERVICE_PORT)]
    results = connect_latency([(ip, port) for _, ip, port in targets], count)
    rows = []
    for (what, _, _), lat in zip(targets, results, strict=True):
        rows.append((f"{what}, {label}", lat))
        print(
            f"  connect+close, {what:13s} {label}: p50 {us(pct(lat, 50))} p90 {us(pct(lat, 90))}"
            f" p99 {us(pct(lat, 99))}",
            flush=True,
        )
    return rows


# -- the agent, fed by a fake Source ----------------------------------------------------


class FakeSource:
    """The list/watch shape the agent reads, from memory."""

    def __init__(self, services: list[Obj], slices: list[list[Obj]]) -> None:
        self.services = services
        self.slices = slices
        self.rv = 1
        self.events: list[Event] = []
        self.cond = threading.Condition()

    @property
    def resource_version(self) -> int:
        return self.rv

    def list(self, kind: str, namespace: str | None = None) -> tuple[list[Obj], int]:
        with self.cond:
            if kind == "Service":
                return list(self.services), self.rv
            if kind == "EndpointSlice":
                return [s for sl in self.slices for s in sl], self.rv
            return [], self.rv

    def events_since(self, rv: int, timeout: float | None = None) -> list[Event]:
        with self.cond:
            self.cond.wait_for(lambda: self.rv > rv, timeout)
            start = bisect.bisect_right(self.events, rv, key=lambda e: e.rv)
            return self.events[start:]

    def push_slice(self, i: int, new: Obj) -> None:
        with self.cond:
            self.rv += 1
            self.slices[i] = [new]
            self.events.append(Event("MODIFIED", new, self.rv, at=time.time()))
            self.cond.notify_all()


def bench_agent(n: int, churn: list[tuple[float, float]], rng: random.Random) -> list[dict[str, Any]]:
    services, slices = make_cluster(n)
    source = FakeSource(services, slices)
    proxy = ServiceProxy(source, "bench", NODE_NS, CFG)
    rows = []
    try:
        t0 = time.perf_counter()
        proxy.start()
        if not proxy.ready.wait(120):
            raise RuntimeError("the agent did not finish its first full sync in 120 s")
        ready = time.perf_counter() - t0
        full = proxy.sync_duration.recent[0] if proxy.sync_duration.recent else float("nan")
        print(f"agent, {n} Services: start to ready {ms(ready)} (its full sync: {ms(full)})", flush=True)
        for rate, seconds in churn:
            proxy.programming_latency.recent.clear()
            syncs_before = proxy.syncs
            total = int(rate * seconds)
            start = time.perf_counter()
            for k in range(total):
                due = start + k / rate
                pause = due - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                i = rng.randrange(1, n)
                source.push_slice(i, changed_slice(rng, i, source.slices[i][0]))
            deadline = time.monotonic() + 10
            while len(proxy.programming_latency.recent) < total and time.monotonic() < deadline:
                time.sleep(0.01)
            lat = list(proxy.programming_latency.recent)
            row = {
                "rate": rate,
                "seconds": seconds,
                "changes": total,
                "observed": len(lat),
                "syncs": proxy.syncs - syncs_before,
                "p50": pct(lat, 50) if lat else float("nan"),
                "p99": pct(lat, 99) if lat else float("nan"),
                "max": max(lat) if lat else float("nan"),
            }
            rows.append(row)
            print(
                f"  churn {rate:g}/s for {seconds:g} s: {row['observed']}/{total} changes programmed in"
                f" {row['syncs']} transactions; programming latency p50 {ms(row['p50'])}"
                f" p99 {ms(row['p99'])} max {ms(row['max'])}; failures {proxy.failures}",
                flush=True,
            )
        rows.insert(0, {"ready": ready, "full": full})
    finally:
        proxy.shutdown()
    return rows


# -- main -----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scales", default="1000,10000", help="Service counts, comma-separated")
    parser.add_argument("--changes", type=int, default=50, help="one-endpoint changes per Service count")
    parser.add_argument("--full-runs", type=int, default=3, help="full applies into an empty table (median)")
    parser.add_argument("--connects", type=int, default=3000, help="TCP connects per latency row")
    parser.add_argument(
        "--churn", default="20x10,100x10", help="agent churn runs, RATExSECONDS comma-separated; '' for none"
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    scales = [int(s) for s in args.scales.split(",") if s.strip()]
    churn = [(float(r), float(s)) for r, s in (c.split("x") for c in args.churn.split(",") if c.strip())]
    if os.geteuid() != 0:
        print("bench/services_scale.py needs root (it creates network namespaces)", file=sys.stderr)
        return 2
    for line in machine():
        print(line)
    print(f"command: python bench/services_scale.py {' '.join(sys.argv[1:])}".rstrip())
    print()
    rng = random.Random(args.seed)
    leftovers = cleanup_namespaces()
    if leftovers:
        print(f"removed namespaces left by an earlier run: {', '.join(leftovers)}")
    nft: Nftables | None = None
    server: Server | None = None
    scale_rows: list[dict[str, Any]] = []
    connect_rows: list[tuple[str, list[float]]] = []
    agent_rows: list[dict[str, Any]] = []
    try:
        build_namespaces()
        server = Server()
        nft = Nftables(NODE_NS)
        # 10 Services, for the per-connection baseline.
        _, text, _ = render_full(*make_cluster(10))
        nft.run(text)
        connect_rows += bench_connect("10 Services", args.connects)
        for n in scales:
            scale_rows.append(bench_scale(nft, n, args.changes, args.full_runs, rng))
        if scales:
            connect_rows += bench_connect(f"{max(scales)} Services", args.connects)
            # 10 Services again: the machine drifts, so bracket the large run.
            nft.run(text)
            connect_rows += bench_connect("10 Services, again", args.connects)
        # Drop the bench's state before the agent builds its own.
        for row in scale_rows:
            row.pop("loaded", None)
        gc.collect()
        if churn and scales:
            agent_rows = bench_agent(max(scales), churn, rng)
    finally:
        if nft is not None:
            with contextlib.suppress(Exception):
                delete_table(nft)
            nft.close()
        if server is not None:
            server.close()
        cleanup_namespaces()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print()
    print(f"peak RSS of this process: {peak:.0f} MB")
    print()
    print_tables(scale_rows, connect_rows, agent_rows)
    return 0


def print_tables(
    scale_rows: list[dict[str, Any]],
    connect_rows: list[tuple[str, list[float]]],
    agent_rows: list[dict[str, Any]],
) -> None:
    print("| Services | full render | full apply (median) | full re-apply | text | elements |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in scale_rows:
        print(
            f"| {r['n']:,} | {ms(r['render'])} | {ms(r['apply'])} | {ms(r['reapply'])} |"
            f" {r['bytes'] / 1e6:.2f} MB | {r['elements']:,} |"
        )
    print()
    print("| Services | delta compute p50 / p99 | delta size | delta elements | delta apply p50 / p99 |")
    print("|---:|---:|---:|---:|---:|")
    for r in scale_rows:
        print(
            f"| {r['n']:,} | {ms(r['comp50'])} / {ms(r['comp99'])} | {r['size50']:.0f} B |"
            f" {r['elems50']:.0f} | {ms(r['apply50'])} / {ms(r['apply99'])} |"
        )
    print()
    print("| TCP connect + close | p50 | p90 | p99 |")
    print("|---|---:|---:|---:|")
    for label, lat in connect_rows:
        print(f"| {label} | {us(pct(lat, 50))} | {us(pct(lat, 90))} | {us(pct(lat, 99))} |")
    if agent_rows:
        head, *runs = agent_rows
        print()
        print(f"agent start to ready: {ms(head['ready'])} (full sync {ms(head['full'])})")
        print()
        print("| churn | changes programmed | transactions | latency p50 | p99 | max |")
        print("|---|---:|---:|---:|---:|---:|")
        for r in runs:
            print(
                f"| {r['rate']:g}/s for {r['seconds']:g} s | {r['observed']}/{r['changes']} | {r['syncs']} |"
                f" {ms(r['p50'])} | {ms(r['p99'])} | {ms(r['max'])} |"
            )


if __name__ == "__main__":
    sys.exit(main())
