"""How fast the lab comes up and scales, and what the control plane costs.

Run as root: ``python bench/lab_scale.py [--pods 10,100,500] [--up-runs 3]``.
Uses its own cluster name and a temporary PODNET_STATE_DIR, and always
tears the cluster down. Prints figures, never pass/fail.

Figures:
* ``podnet up`` of a 2-node cluster, wall time of the CLI (median of runs);
* for each pod count N: from starting ``podnet apply`` of a one-container
  Deployment with a containerPort and no readiness probe, to N pods Ready
  (seen on a watch of the API); then from starting ``podnet scale`` to 0
  to every pod gone from the API and every pod namespace gone;
* the control plane's memory (VmRSS of the daemon and any children).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from machine import describe

CLUSTER = "pnbench"
NETNS_DIR = "/run/netns"

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: bench
spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app: bench
  template:
    metadata:
      labels:
        app: bench
    spec:
      containers:
        - name: web
          image: registry.k8s.io/e2e-test-images/agnhost:2.53
          ports:
            - containerPort: 8080
"""


def podnet(*args: str, env: dict[str, str], check: bool = True) -> float:
    """Run the CLI; return its wall time in seconds."""
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "podnet", *args, "--name", CLUSTER],
        env=env,
        capture_output=True,
        text=True,
    )
    took = time.monotonic() - start
    if check and proc.returncode != 0:
        raise RuntimeError(f"podnet {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return took


def machine() -> list[str]:
    return describe(None)


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def control_plane_rss_mb(pid: int) -> float:
    """The control plane process alone: the pods it runs (the cluster DNS,
    command pods) are workloads, counted apart."""
    return _rss_kb(pid) / 1024


def tree_rss_mb(pid: int) -> tuple[float, int]:
    """RSS of `pid` and all its descendants, in MB, and how many processes."""
    kids = _children()
    todo, total, count = [pid], 0, 0
    while todo:
        p = todo.pop()
        total += _rss_kb(p)
        count += 1
        todo.extend(kids.get(p, []))
    return total / 1024, count


# -- watching the pods ---------------------------------------------------------


class PodWatch:
    """Follows the bench pods through a watch on the API: which exist and
    which are Ready. Cheaper for the control plane than polling lists."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.pods: dict[str, bool] = {}  # name -> Ready
        self.cond = threading.Condition()
        self.conn: http.client.HTTPConnection | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        if self.conn is not None and self.conn.sock is not None:
            with contextlib.suppress(OSError):
                self.conn.sock.shutdown(2)

    def _events(self) -> Iterator[dict[str, Any]]:
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=None)
        self.conn.request("GET", "/api/v1/namespaces/default/pods?watch=true&labelSelector=app%3Dbench")
        resp = self.conn.getresponse()
        while line := resp.readline():
            if line.strip():
                yield json.loads(line)

    def _run(self) -> None:
        with contextlib.suppress(OSError, http.client.HTTPException, ValueError):
            for ev in self._events():
                obj = ev.get("object", {})
                name = obj.get("metadata", {}).get("name")
                if not name:
                    continue
                with self.cond:
                    if ev["type"] == "DELETED":
                        self.pods.pop(name, None)
                    else:
                        self.pods[name] = any(
                            c.get("type") == "Ready" and c.get("status") == "True"
                            for c in obj.get("status", {}).get("conditions", [])
                        )
                    self.cond.notify_all()

    def wait(self, what: Callable[[dict[str, bool]], bool], timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: what(self.pods), timeout)


def pod_namespaces() -> int:
    prefix = f"pn.{CLUSTER}.pod.default."  # the bench's pods (kube-system runs the cluster DNS)
    try:
        return sum(1 for n in os.listdir(NETNS_DIR) if n.startswith(prefix))
    except FileNotFoundError:
        return 0


def wait_for(check: Callable[[], bool], timeout: float, step: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(step)
    return check()


# -- the runs --------------------------------------------------------------------


def bench_up(env: dict[str, str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        try:
            times.append(podnet("up", "--nodes", "2", env=env))
        finally:
            podnet("down", env=env, check=False)
    return times


def bench_pods(env: dict[str, str], state_dir: str, counts: list[int], timeout: float) -> None:
    podnet("up", "--nodes", "2", env=env)
    with open(os.path.join(state_dir, CLUSTER, "state.json")) as f:
        state = json.load(f)
    pid = int(state["pid"])
    host, _, port = state["api"].removeprefix("http://").rpartition(":")
    time.sleep(0.5)  # let the start-up settle before measuring idle memory
    rss, procs = tree_rss_mb(pid)
    print(
        f"control plane RSS, idle:             {control_plane_rss_mb(pid):7.1f} MB "
        f"(with its {procs - 1} workload processes, the cluster DNS: {rss:.1f} MB)"
    )
    watch = PodWatch(host, int(port))
    watch.start()
    manifest = os.path.join(state_dir, "bench.yaml")
    rows = []
    try:
        for n in counts:
            with open(manifest, "w") as f:
                f.write(DEPLOYMENT.format(replicas=n))
            start = time.monotonic()
            podnet("apply", "-f", manifest, env=env)
            ok = watch.wait(lambda pods, n=n: sum(pods.values()) >= n, timeout)
            up = time.monotonic() - start
            up_rss = control_plane_rss_mb(pid)
            start = time.monotonic()
            podnet("scale", "deployment/bench", "--replicas", "0", env=env)
            gone = watch.wait(lambda pods: not pods, timeout) and wait_for(
                lambda: pod_namespaces() == 0, timeout
            )
            down = time.monotonic() - start
            rows.append((n, up if ok else None, down if gone else None, up_rss))
            print(
                f"{n:4d} pods: Ready in {_fmt(up if ok else None)},"
                f" scaled to 0 and namespaces gone in {_fmt(down if gone else None)},"
                f" RSS with {n} pods {up_rss:.1f} MB",
                flush=True,
            )
            if not (ok and gone):
                break
        rss, procs = tree_rss_mb(pid)
        print(
            f"control plane RSS, after the runs:   {control_plane_rss_mb(pid):7.1f} MB (with workloads {rss:.1f} MB)"
        )
    finally:
        watch.close()
    print()
    print("| pods | apply → all Ready | scale to 0 → namespaces gone | control plane RSS |")
    print("|---:|---:|---:|---:|")
    for n, up, down, r in rows:
        print(f"| {n} | {_fmt(up)} | {_fmt(down)} | {r:.0f} MB |")


def _fmt(t: float | None) -> str:
    return "timeout" if t is None else f"{t:.2f} s"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--pods", default="10,100,500", help="pod counts, comma-separated (default 10,100,500)"
    )
    parser.add_argument("--up-runs", type=int, default=3, help="runs of `podnet up` to take the median of")
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="give up on a step after this many seconds"
    )
    args = parser.parse_args()
    counts = [int(c) for c in args.pods.split(",") if c.strip()]
    if os.geteuid() != 0:
        print("bench/lab_scale.py needs root (it creates network namespaces)", file=sys.stderr)
        return 2
    for line in machine():
        print(line)
    print(f"command: python bench/lab_scale.py --pods {','.join(map(str, counts))} --up-runs {args.up_runs}")
    print()
    state_dir = tempfile.mkdtemp(prefix="podnet-bench-")
    env = dict(os.environ, PODNET_STATE_DIR=state_dir)
    env.pop("PODNET_CLUSTER", None)
    try:
        if args.up_runs > 0:
            times = bench_up(env, args.up_runs)
            print(
                f"podnet up, 2 nodes:                  {statistics.median(times):7.2f} s median"
                f" ({', '.join(f'{t:.2f}' for t in times)})"
            )
        if counts:
            bench_pods(env, state_dir, counts, args.timeout)
    finally:
        podnet("down", env=env, check=False)
        import shutil

        shutil.rmtree(state_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
