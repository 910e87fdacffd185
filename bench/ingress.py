"""Requests per second and latency through the ingress (internet -> cloud
load balancer -> NodePort -> nginx pod -> backend pod) and, in the same
run, straight to the backend pod (from a node) and through an L4
LoadBalancer Service, with a fast backend (nginx in the pod, not the
Python responder); then the time for a change to one of 1,000 Ingress
paths to take effect. Prints figures; never passes or fails on time.

    python bench/ingress.py [--seconds 5] [--conns 8] [--rules 1000]

Needs root; brings up its own lab cluster and removes it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

from podnet.api.kinds import BY_KIND
from podnet.client import Client

LOADGEN = r"""
import multiprocessing, socket, sys, time, json

def connect(addr, port):
    while True:
        try:
            s = socket.create_connection((addr, port), 5)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return s
        except OSError:
            time.sleep(0.01)

def worker(addr, port, host, path, seconds, q):
    req = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    s = connect(addr, port)
    lat, errors, end = [], 0, time.monotonic() + seconds
    buf = b""
    while time.monotonic() < end:
        t = time.perf_counter()
        close = False
        try:
            s.sendall(req)
            while True:
                head, sep, rest = buf.partition(b"\r\n\r\n")
                if sep:
                    length = 0
                    for line in head.split(b"\r\n"):
                        low = line.lower()
                        if low.startswith(b"content-length:"):
                            length = int(line.split(b":")[1])
                        elif low.startswith(b"connection:") and b"close" in low:
                            close = True
                    if len(rest) >= length:
                        ok = head.startswith(b"HTTP/1.1 200")
                        buf = rest[length:]
                        break
                chunk = s.recv(65536)
                if not chunk:
                    raise ConnectionError("closed")
                buf += chunk
        except OSError:
            errors += 1
            s.close()
            s, buf = connect(addr, port), b""
            continue
        lat.append(time.perf_counter() - t)
        if not ok:
            errors += 1
        if close:  # the server's keepalive_requests: a new connection, not an error
            s.close()
            s, buf = connect(addr, port), b""
    q.put((lat, errors))

if __name__ == "__main__":
    addr, port, host, path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    seconds, conns = float(sys.argv[5]), int(sys.argv[6])
    q = multiprocessing.Queue()
    ps = [multiprocessing.Process(target=worker, args=(addr, port, host, path, seconds, q)) for _ in range(conns)]
    for p in ps: p.start()
    lat, errors = [], 0
    for _ in ps:
        l, e = q.get(); lat += l; errors += e
    for p in ps: p.join()
    lat.sort()
    pct = lambda x: lat[min(len(lat) - 1, int(len(lat) * x))] * 1000 if lat else float("nan")
    print(json.dumps({"rps": len(lat) / seconds, "p50": pct(0.5), "p99": pct(0.99), "errors": errors}))
"""

BACKEND_CONF = """
worker_processes 1;
pid nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path tmp/b; proxy_temp_path tmp/p; fastcgi_temp_path tmp/f; uwsgi_temp_path tmp/u; scgi_temp_path tmp/s;
  keepalive_requests 100000;
  server { listen 8080; location / { return 200 "ok\\n"; } }
}
"""


def podnet(env: dict[str, str], *args: str, input: str | None = None) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "podnet", *args],
        env=env,
        input=input,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode != 0:
        raise SystemExit(f"podnet {' '.join(args)} failed: {proc.stdout}{proc.stderr}")
    return proc.stdout


def get(env: dict[str, str], *args: str) -> Any:
    return json.loads(podnet(env, "get", *args, "-o", "json"))


def wait(what: str, check: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}")


def manifests(tmp: str, rules: int) -> tuple[str, str]:
    cmd = (
        f'P={tmp}/pods/"$POD_NAME"; mkdir -p "$P/tmp" && '
        f'exec nginx -p "$P/" -c {tmp}/backend.conf -e "$P/error.log" -g \'daemon off;\''
    )
    app = f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: fast}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: fast}}}}
  template:
    metadata:
      labels: {{app: fast}}
      annotations: {{podnet.io/command: {json.dumps(cmd)}}}
    spec:
      nodeSelector: {{kubernetes.io/hostname: node-2}}
      containers:
      - name: fast
        image: nginx
        ports: [{{name: http, containerPort: 8080}}]
        readinessProbe: {{tcpSocket: {{port: 8080}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Service
metadata: {{name: fast}}
spec:
  selector: {{app: fast}}
  ports: [{{name: http, port: 80, targetPort: http}}]
---
apiVersion: v1
kind: Service
metadata: {{name: fast-lb}}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  selector: {{app: fast}}
  ports: [{{name: http, port: 80, targetPort: http}}]
"""
    paths = [
        {
            "path": f"/r{i}",
            "pathType": "Prefix",
            "backend": {"service": {"name": "fast", "port": {"number": 80}}},
        }
        for i in range(rules - 1)
    ] + [
        {
            "path": "/",
            "pathType": "Prefix",
            "backend": {"service": {"name": "fast", "port": {"name": "http"}}},
        }
    ]
    ing = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "bench"},
        "spec": {"rules": [{"host": "bench.example.com", "http": {"paths": paths}}]},
    }
    return app, json.dumps(ing)


def run_load(
    env: dict[str, str], ns: str, script: str, addr: str, host: str, path: str, seconds: float, conns: int
) -> Any:
    out = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            ns,
            sys.executable,
            script,
            addr.split(":")[0],
            addr.split(":")[1] if ":" in addr else "80",
            host,
            path,
            str(seconds),
            str(conns),
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        env=env,
    )
    if out.returncode != 0:
        raise SystemExit(out.stderr)
    return json.loads(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--conns", type=int, default=8)
    ap.add_argument("--rules", type=int, default=1000)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="podnet-bench-ingress-")
    name = "bing"
    env = dict(os.environ, PODNET_STATE_DIR=tmp, PODNET_CLUSTER=name)
    with open(os.path.join(tmp, "backend.conf"), "w") as f:
        f.write(BACKEND_CONF)
    script = os.path.join(tmp, "loadgen.py")
    with open(script, "w") as f:
        f.write(LOADGEN)
    app, ing = manifests(tmp, args.rules)
    podnet(env, "up")
    try:
        podnet(env, "apply", "-f", "-", input=app)
        podnet(env, "apply", "-f", "-", input=ing)
        pod = wait(
            "the backend",
            lambda: [
                p for p in get(env, "pods", "-l", "app=fast")["items"] if p.get("status", {}).get("podIP")
            ],
        )[0]
        addr = wait(
            "the ingress address",
            lambda: (
                (get(env, "ingress", "bench").get("status") or {}).get("loadBalancer", {}).get("ingress")
                or [{}]
            )[0].get("ip"),
        )
        lb = wait(
            "the L4 address",
            lambda: (
                (get(env, "svc", "fast-lb").get("status") or {}).get("loadBalancer", {}).get("ingress")
                or [{}]
            )[0].get("ip"),
        )
        internet = f"pn.{name}.internet"
        node = f"pn.{name}.node-1"
        ok = lambda a, h: run_load(env, internet, script, a, h, "/", 0.5, 1)["errors"] == 0  # noqa: E731
        wait("the ingress to answer", lambda: ok(addr, "bench.example.com"))
        wait("the L4 load balancer to answer", lambda: ok(lb, "x"))
        rows = [
            ("through the ingress (internet -> LB -> nginx pod -> pod)", internet, addr, "bench.example.com"),
            ("L4 LoadBalancer Service (internet -> LB -> pod)", internet, lb, "x"),
            ("straight to the pod (node-1 -> pod)", node, f"{pod['status']['podIP']}:8080", "x"),
        ]
        print(f"{args.conns} keep-alive connections, {args.seconds:g}s each, nginx backend (return 200)")
        print(f"{'path':58} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
        figures = {}
        for label, ns, target, host in rows:
            r = run_load(env, ns, script, target, host, "/", args.seconds, args.conns)
            figures[label] = r
            print(f"{label:58} {r['rps']:9.0f} {r['p50']:8.2f} {r['p99']:8.2f} {r['errors']:7d}")
        via, direct = figures[rows[0][0]], figures[rows[2][0]]
        print(
            f"ingress / direct: {via['rps'] / direct['rps']:.0%} of the rate, "
            f"{via['p99'] - direct['p99']:+.2f} ms p99"
        )
        # A change to one of N paths: "/changed" (Exact) to a Service that does
        # not exist, so nginx answers 503 from the moment it is live.
        doc = json.loads(ing)
        doc["spec"]["rules"][0]["http"]["paths"][0] = {
            "path": "/changed",
            "pathType": "Exact",
            "backend": {"service": {"name": "nowhere", "port": {"number": 80}}},
        }
        poll = subprocess.Popen(
            ["ip", "netns", "exec", internet, sys.executable, "-c", POLL, addr],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        time.sleep(0.3)
        # Through the API directly (a PUT), so that the figure is the
        # controller's and nginx's time, not the CLI's start-up.
        with open(os.path.join(tmp, name, "state.json")) as f:
            host, port = json.load(f)["api"].removeprefix("http://").split(":")
        api = Client(host, int(port))
        kind = BY_KIND["Ingress"]
        doc["metadata"]["resourceVersion"] = api.get(kind, "bench", "default")["metadata"]["resourceVersion"]
        start = time.monotonic()
        api.update(kind, doc, "default")
        stored = time.monotonic()
        seen = float(poll.communicate(timeout=60)[0])
        print(
            f"change to one of {args.rules} paths: live {seen - start:.2f}s after the update was sent "
            f"(the API took {stored - start:.2f}s to store it)"
        )
    finally:
        podnet(env, "down")


POLL = r"""
import http.client, sys, time
while True:
    c = http.client.HTTPConnection(sys.argv[1], 80, timeout=2)
    c.request("GET", "/changed", headers={"Host": "bench.example.com"})
    if c.getresponse().status == 503:
        print(time.monotonic())
        break
    c.close()
    time.sleep(0.005)
"""


if __name__ == "__main__":
    main()
