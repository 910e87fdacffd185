"""Cluster DNS speed: podnet's DNS server against NSD, same records, same
run, same machine, measured with dnsperf. Figures, never pass/fail.

Run as root: ``python bench/dns_speed.py [--services 10000] [--duration 10]
[--runs 1] [--clients 4] [--outstanding 200] [--latency-rates goal,10000]``.
Needs the Debian packages ``dnsperf`` and ``nsd``.

No lab cluster. Synthetic objects shaped as Kubernetes serialises them:
``--services`` ClusterIP Services (one named TCP port each, so one SRV
name each) over 100 namespaces, 50 headless Services with 4 ready
endpoints each, 1,000 pods, and the kube-dns Service. The zone is built by
``podnet.dns.records.build``; podnet serves it with its real serving loop
(``podnet.dns.server.serve`` over a ``Resolver``, in a subprocess: this
file run with ``--serve-podnet``); NSD serves the same records, written
from that zone object as a zone file. The query file: 75% A of ClusterIP
Services, 10% SRV of their named ports, 5% A of headless Services, 10%
names that do not exist (NXDOMAIN), in a fixed random order.

Everything runs in one network namespace, ``pnt-dnsb-0``, on its
loopback: podnet on 127.0.0.1:5300, NSD on 127.0.0.1:5301 with its own
config, pid file, zone directory and no database, all in a temporary
directory (never /etc/nsd, never a system service). dnsperf runs there
too. The namespace, the processes and the directory are always removed.

Per server, per run: a warm-up pass over the query file (both servers
then answer from memory), then dnsperf for ``--duration`` seconds with
``--clients`` sockets and ``--outstanding`` queries in flight (saturating:
queries per second, dnsperf's average and maximum latency, the server's
CPU), then for each of ``--latency-rates`` a paced run (``-Q``) with
dnsperf's per-query verbose output, for p50/p99/p99.9 at that offered
rate. ``goal`` is half of NSD's saturated rate in the same run, the
issue's target.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

import dns.exception
import dns.message
import dns.rcode
import dns.rrset
from machine import describe

from podnet.dns import records

Obj = dict[str, Any]

NS = "pnt-dnsb-0"
PODNET_PORT = 5300
NSD_PORT = 5301
ADDR = "127.0.0.1"
NAMESPACES = 100
HEADLESS = 50
HEADLESS_ENDPOINTS = 4
PODS = 1000
QUERY_LINES = 50_000
SEED = 6


# -- the synthetic cluster ----------------------------------------------------------


def vip(i: int) -> str:
    return str(ipaddress.ip_address("10.96.16.0") + i)


def pod_ip(i: int) -> str:
    return str(ipaddress.ip_address("10.244.1.0") + 1 + i)


def cluster(services: int) -> tuple[list[Obj], list[Obj], list[Obj], list[str]]:
    """Services, EndpointSlices, Pods and namespace names, the same every time."""
    nss = [f"ns-{n:03d}" for n in range(NAMESPACES)] + ["kube-system"]
    svcs: list[Obj] = [
        {
            "metadata": {"name": "kube-dns", "namespace": "kube-system"},
            "spec": {
                "clusterIP": "10.96.0.10",
                "clusterIPs": ["10.96.0.10"],
                "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}],
            },
        }
    ]
    for i in range(services):
        svcs.append(
            {
                "metadata": {"name": f"svc-{i:05d}", "namespace": nss[i % NAMESPACES]},
                "spec": {
                    "type": "ClusterIP",
                    "clusterIP": vip(i),
                    "clusterIPs": [vip(i)],
                    "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
                },
            }
        )
    slices: list[Obj] = []
    for h in range(HEADLESS):
        ns, name = nss[h % NAMESPACES], f"db-{h:03d}"
        svcs.append(
            {
                "metadata": {"name": name, "namespace": ns},
                "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]},
            }
        )
        slices.append(
            {
                "metadata": {
                    "name": f"{name}-abcde",
                    "namespace": ns,
                    "labels": {records.SERVICE_NAME_LABEL: name},
                },
                "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
                "endpoints": [
                    {
                        "addresses": [pod_ip(h * HEADLESS_ENDPOINTS + e)],
                        "hostname": f"{name}-{e}",
                        "conditions": {"ready": True},
                    }
                    for e in range(HEADLESS_ENDPOINTS)
                ],
            }
        )
    pods = [
        {
            "metadata": {"name": f"pod-{p}", "namespace": nss[p % NAMESPACES]},
            "status": {"phase": "Running", "podIP": pod_ip(p), "podIPs": [{"ip": pod_ip(p)}]},
        }
        for p in range(PODS)
    ]
    return svcs, slices, pods, nss


def build_zone(services: int) -> records.Zone:
    svcs, slices, pods, nss = cluster(services)
    return records.build(svcs, slices, pods, nss, serial=1)


def zone_file(zone: records.Zone) -> str:
    """The zone's records (not the reverse names) in RFC 1035 master format, SOA first."""
    lines = [zone.soa.text()]
    for name in sorted(zone.records):
        for rtype, recs in sorted(zone.records[name].items()):
            if rtype != "SOA":
                lines.extend(r.text() for r in recs)
    return "\n".join(lines) + "\n"


def queries(services: int, domain: str = "cluster.local") -> list[str]:
    """dnsperf's input: one "NAME TYPE" a line."""
    rnd = random.Random(SEED)
    out = []
    for _ in range(QUERY_LINES):
        x = rnd.random()
        i = rnd.randrange(services)
        ns = f"ns-{i % NAMESPACES:03d}"
        if x < 0.75:
            out.append(f"svc-{i:05d}.{ns}.svc.{domain} A")
        elif x < 0.85:
            out.append(f"_http._tcp.svc-{i:05d}.{ns}.svc.{domain} SRV")
        elif x < 0.90:
            h = rnd.randrange(HEADLESS)
            out.append(f"db-{h:03d}.ns-{h % NAMESPACES:03d}.svc.{domain} A")
        else:
            out.append(f"missing-{rnd.randrange(1000):03d}.{ns}.svc.{domain} A")
    return out


# -- podnet's server, in its own process --------------------------------------------


def serve_podnet(services: int, port: int) -> None:
    """The `--serve-podnet` mode: podnet's serving loop over the synthetic zone."""
    from podnet.dns.server import Resolver, bind_sockets, serve

    zone = build_zone(services)
    resolver = Resolver(lambda: zone, upstream=None)
    udp, tcp = bind_sockets(ADDR, port)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        task = asyncio.ensure_future(serve(resolver, udp, tcp, stop))
        await asyncio.sleep(0.05)
        print("ready", flush=True)
        await task

    asyncio.run(run())


# -- NSD ----------------------------------------------------------------------------

NSD_CONF = """\
server:
    ip-address: {addr}@{port}
    port: {port}
    username: ""
    chroot: ""
    zonesdir: "{dir}"
    database: ""
    zonelistfile: "{dir}/zone.list"
    xfrdfile: "{dir}/xfrd.state"
    xfrdir: "{dir}"
    pidfile: "{dir}/nsd.pid"
    logfile: "{dir}/nsd.log"
    server-count: {servers}
    verbosity: 1
    hide-version: yes
    minimal-responses: yes
    refuse-any: yes
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0
remote-control:
    control-enable: no
zone:
    name: "{zone}"
    zonefile: "{dir}/{zone}.zone"
"""


def write_nsd(tmp: str, zone: records.Zone, servers: int) -> str:
    name = zone.domain.rstrip(".")
    with open(os.path.join(tmp, f"{name}.zone"), "w") as f:
        f.write(zone_file(zone))
    conf = os.path.join(tmp, "nsd.conf")
    with open(conf, "w") as f:
        f.write(NSD_CONF.format(addr=ADDR, port=NSD_PORT, dir=tmp, servers=servers, zone=name))
    subprocess.run(["nsd-checkconf", conf], check=True)
    return conf


# -- processes in the bench namespace -----------------------------------------------


def in_ns(cmd: list[str]) -> list[str]:
    return ["ip", "netns", "exec", NS, *cmd]


def group_cpu(pgid: int) -> float:
    """CPU seconds (user + system) used so far by the live processes of a process group."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields[0] is field 3 (state); pgrp is field 5
            total += int(fields[11]) + int(fields[12])
    return total / tick


def ask(port: int, name: str, rdtype: str, timeout: float = 1.0) -> dns.message.Message:
    """One UDP query from inside the bench namespace."""
    from podnet.lab import netns

    with netns.entered(NS):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with sock:
        sock.settimeout(timeout)
        q = dns.message.make_query(name, rdtype)
        sock.sendto(q.to_wire(), (ADDR, port))
        return dns.message.from_wire(sock.recv(65535))


def wait_answering(port: int, name: str, proc: subprocess.Popen[str], what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        with contextlib.suppress(OSError, dns.exception.DNSException):
            if ask(port, name, "A", 0.2).answer:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer on port {port}")


def stop(proc: subprocess.Popen[str] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


# -- dnsperf ------------------------------------------------------------------------


@dataclass
class Result:
    qps: float = 0.0
    sent: int = 0
    completed: int = 0
    lost: int = 0
    avg_ms: float = 0.0
    max_ms: float = 0.0
    cpu: float = 0.0  # server CPU, fraction of one core
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    p999_ms: float = 0.0
    rcodes: str = ""


def pct(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of sorted values."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, round(p / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


def dnsperf(
    port: int,
    qfile: str,
    duration: float,
    clients: int,
    outstanding: int,
    pgid: int,
    rate: int | None = None,
    verbose_file: str | None = None,
    runs_over_file: int | None = None,
) -> Result:
    cmd = ["dnsperf", "-s", ADDR, "-p", str(port), "-d", qfile, "-c", str(clients), "-q", str(outstanding)]
    cmd += ["-t", "2"]
    if runs_over_file is not None:
        cmd += ["-n", str(runs_over_file)]
    else:
        cmd += ["-l", str(duration)]
    if rate is not None:
        cmd += ["-Q", str(rate)]
    if verbose_file is not None:
        cmd += ["-v"]
    cpu0, t0 = group_cpu(pgid), time.monotonic()
    if verbose_file is not None:
        with open(verbose_file, "w") as out:
            p = subprocess.run(in_ns(cmd), stdout=out, stderr=subprocess.PIPE, text=True)
        with open(verbose_file) as f:
            text = f.read()
    else:
        p = subprocess.run(in_ns(cmd), capture_output=True, text=True)
        text = p.stdout
    cpu = (group_cpu(pgid) - cpu0) / max(1e-9, time.monotonic() - t0)
    if p.returncode != 0:
        raise RuntimeError(f"dnsperf failed ({p.returncode}): {p.stderr.strip()}")
    r = Result(cpu=cpu)

    def grab(pattern: str) -> re.Match[str]:
        m = re.search(pattern, text, re.M)
        if m is None:
            raise RuntimeError(f"no {pattern!r} in dnsperf's output:\n{text[-2000:]}")
        return m

    r.sent = int(grab(r"^\s*Queries sent:\s+(\d+)").group(1))
    r.completed = int(grab(r"^\s*Queries completed:\s+(\d+)").group(1))
    r.lost = int(grab(r"^\s*Queries lost:\s+(\d+)").group(1))
    r.qps = float(grab(r"^\s*Queries per second:\s+([\d.]+)").group(1))
    m = grab(r"^\s*Average Latency \(s\):\s+([\d.]+) \(min [\d.]+, max ([\d.]+)\)")
    r.avg_ms, r.max_ms = float(m.group(1)) * 1000, float(m.group(2)) * 1000
    r.rcodes = grab(r"^\s*Response codes:\s+(.*)$").group(1).strip()
    if verbose_file is not None:
        lat = sorted(
            float(line.split()[-1]) * 1000
            for line in text.splitlines()
            if line.startswith("> ") and not line.startswith(("> T ", "> I "))
        )
        r.p50_ms, r.p99_ms, r.p999_ms = pct(lat, 50), pct(lat, 99), pct(lat, 99.9)
    return r


# -- comparing answers --------------------------------------------------------------


PARTS = ("rcode", "answer", "authority", "additional")


def sections(m: dns.message.Message) -> list[list[dns.rrset.RRset]]:
    return [m.answer, m.authority, m.additional]


def agree(sample: list[str]) -> tuple[int, list[str]]:
    """Ask both servers; count identical answers (rcode and the three sections as sets)."""
    same, diffs = 0, list[str]()
    for line in sample:
        name, rdtype = line.split()
        got = []
        for port in (PODNET_PORT, NSD_PORT):
            m = ask(port, name, rdtype)
            got.append(
                (
                    dns.rcode.to_text(m.rcode()),
                    *(
                        sorted(line for rr in sec for line in rr.to_text().splitlines())
                        for sec in sections(m)
                    ),
                )
            )
        if got[0] == got[1]:
            same += 1
        elif len(diffs) < 3:
            where = [part for part, a, b in zip(PARTS, got[0], got[1], strict=True) if a != b]
            diffs.append(f"{line}: {', '.join(where)} differ: podnet {got[0]} / NSD {got[1]}")
    return same, diffs


# -- main ---------------------------------------------------------------------------


def machine() -> list[str]:
    return describe([["dnsperf", "-h"], ["nsd", "-v"]])


def table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for n, r in enumerate(rows):
        out.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def median_result(rs: list[Result]) -> Result:
    """The run with the median rate (the table shows one real run, not a mix)."""
    return sorted(rs, key=lambda r: r.qps)[len(rs) // 2]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--services", type=int, default=10_000)
    p.add_argument("--duration", type=float, default=10.0, help="seconds per dnsperf run")
    p.add_argument("--runs", type=int, default=1, help="saturated runs per server, taking turns")
    p.add_argument("--clients", type=int, default=4, help="dnsperf -c")
    p.add_argument("--outstanding", type=int, default=200, help="dnsperf -q")
    p.add_argument("--nsd-servers", type=int, default=1, help="NSD server-count (podnet is one process)")
    p.add_argument(
        "--latency-rates",
        default="goal,10000",
        help="offered rates (queries/s) for the paced latency runs; goal: half NSD's rate",
    )
    p.add_argument("--serve-podnet", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve_podnet is not None:
        serve_podnet(args.services, args.serve_podnet)
        return
    if os.geteuid() != 0:
        sys.exit("run as root (it makes a network namespace)")
    for tool in ("dnsperf", "nsd", "ip"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found: apt-get install -y dnsperf nsd")

    from podnet.lab import netns

    print("\n".join(machine()))
    t = time.perf_counter()
    zone = build_zone(args.services)
    build_s = time.perf_counter() - t
    names = len(zone.records)
    rrs = sum(len(rs) for types in zone.records.values() for rs in types.values())
    print(
        f"zone: {args.services} ClusterIP Services + {HEADLESS} headless + {PODS} pods: "
        f"{names} names, {rrs} records (+{len(zone.reverse)} PTR), built in {build_s * 1000:.0f} ms"
    )

    tmp = tempfile.mkdtemp(prefix="pnt-dnsb-")
    procs: dict[str, subprocess.Popen[str]] = {}
    made_ns = False
    try:
        qfile = os.path.join(tmp, "queries.txt")
        qlines = queries(args.services)
        with open(qfile, "w") as f:
            f.write("\n".join(qlines) + "\n")
        conf = write_nsd(tmp, zone, args.nsd_servers)
        if netns.exists(NS):
            netns.delete(NS)
        netns.create(NS)
        made_ns = True

        here = os.path.abspath(__file__)
        procs["podnet"] = subprocess.Popen(
            in_ns(
                [sys.executable, here, "--services", str(args.services), "--serve-podnet", str(PODNET_PORT)]
            ),
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        procs["nsd"] = subprocess.Popen(
            in_ns(["nsd", "-d", "-c", conf]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        probe = "svc-00000.ns-000.svc.cluster.local"
        wait_answering(PODNET_PORT, probe, procs["podnet"], "podnet's server")
        wait_answering(NSD_PORT, probe, procs["nsd"], "NSD")
        ports = {"podnet": PODNET_PORT, "nsd": NSD_PORT}

        sample = random.Random(SEED + 1).sample(qlines, 200)
        same, diffs = agree(sample)
        print(f"answers: {same}/{len(sample)} sampled queries answered alike (rcode and sections)")
        for d in diffs:
            print("  differs:", d)

        common = dict(clients=args.clients, outstanding=args.outstanding)
        for who in ("nsd", "podnet"):  # warm-up: one pass over the query file
            dnsperf(ports[who], qfile, 0, pgid=procs[who].pid, runs_over_file=1, **common)

        sat: dict[str, list[Result]] = {"nsd": [], "podnet": []}
        for run in range(args.runs):
            for who in ("nsd", "podnet"):
                r = dnsperf(ports[who], qfile, args.duration, pgid=procs[who].pid, **common)
                sat[who].append(r)
                print(
                    f"run {run + 1} {who:7s} {r.qps:10,.0f} q/s  avg {r.avg_ms:.3f} ms  "
                    f"max {r.max_ms:.1f} ms  lost {r.lost}  cpu {r.cpu * 100:.0f}%"
                )
        nsd, pod = median_result(sat["nsd"]), median_result(sat["podnet"])
        goal = int(nsd.qps / 2)

        paced: list[tuple[str, int, Result]] = []
        for item in args.latency_rates.split(","):
            rate = goal if item.strip() == "goal" else int(item)
            for who in ("nsd", "podnet"):
                vfile = os.path.join(tmp, f"verbose-{who}-{rate}.txt")
                r = dnsperf(
                    ports[who],
                    qfile,
                    args.duration,
                    pgid=procs[who].pid,
                    rate=rate,
                    verbose_file=vfile,
                    **common,
                )
                os.unlink(vfile)
                paced.append((who, rate, r))

        print()
        print(
            f"saturated: dnsperf -c {args.clients} -q {args.outstanding} -l {args.duration:g}, "
            f"{args.runs} run(s) each (median shown); NSD server-count {args.nsd_servers}"
        )
        rows: list[tuple[str, ...]] = [
            ("server", "queries/s", "avg ms", "max ms", "lost", "server CPU", "response codes")
        ]
        for who, r in (("NSD", nsd), ("podnet", pod)):
            rows.append(
                (
                    who,
                    f"{r.qps:,.0f}",
                    f"{r.avg_ms:.3f}",
                    f"{r.max_ms:.1f}",
                    str(r.lost),
                    f"{r.cpu * 100:.0f}%",
                    r.rcodes,
                )
            )
        print(table(rows))
        ratio = pod.qps / nsd.qps if nsd.qps else float("nan")
        print(f"podnet / NSD: {ratio:.2f} (goal >= 0.50: {goal:,} q/s)")
        print()
        print(f"paced (dnsperf -Q RATE -v), {args.duration:g} s each")
        rows = [("server", "offered q/s", "answered q/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "lost")]
        for who, rate, r in paced:
            rows.append(
                (
                    "NSD" if who == "nsd" else who,
                    f"{rate:,}",
                    f"{r.qps:,.0f}",
                    f"{r.p50_ms:.3f}",
                    f"{r.p99_ms:.3f}",
                    f"{r.p999_ms:.3f}",
                    f"{r.max_ms:.1f}",
                    str(r.lost),
                )
            )
        print(table(rows))
        spread = {
            who: f"{min(r.qps for r in rs):,.0f}-{max(r.qps for r in rs):,.0f}"
            for who, rs in sat.items()
            if len(rs) > 1
        }
        if spread:
            print("saturated range over runs:", ", ".join(f"{k} {v}" for k, v in spread.items()))
        if len(sat["nsd"]) > 1:
            ratios = [a.qps / b.qps for a, b in zip(sat["podnet"], sat["nsd"], strict=True)]
            print(f"median ratio over runs: {statistics.median(ratios):.2f}")
    finally:
        for proc in procs.values():
            stop(proc)
        if made_ns:
            for pid in netns.pids(NS):  # only what runs in our namespace: ours
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            netns.delete(NS)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
