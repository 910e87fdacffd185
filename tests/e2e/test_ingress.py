"""Ingress end to end: real HTTP(S) requests from the internet namespace,
through the cloud load balancer, the NodePort, the in-cluster nginx, to
the backend pods, compared with the pure model (`podnet.ingress.model`)
row by row."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from podnet.ingress import model
from tests.e2e.conftest import Lab, wait_for

Obj = dict[str, Any]
INTERNET = "198.51.100.100"
PORTS = range(8081, 8090)  # one Service per port: the echo's "port" says which route answered

BACKENDS = (
    """
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo}
spec:
  replicas: 1
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      containers:
      - name: echo
        image: agnhost
        ports: [ECHO_PORTS]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 10
      containers:
      - name: web
        image: agnhost
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /healthz, port: http}, periodSeconds: 1}
        lifecycle: {preStop: {sleep: {seconds: 2}}}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
""".replace("ECHO_PORTS", ", ".join(f"{{name: p{p}, containerPort: {p}}}" for p in PORTS))
) + "".join(
    f"""---
apiVersion: v1
kind: Service
metadata: {{name: s{p - 8080}}}
spec:
  selector: {{app: echo}}
  ports: [{{name: web, port: 80, targetPort: {p}}}]
"""
    for p in PORTS
)


def backend(svc: str, port: int | str = 80) -> Obj:
    return {"service": {"name": svc, "port": {"name": port} if isinstance(port, str) else {"number": port}}}


def ingress(name: str, spec: Obj, **meta: Any) -> Obj:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, **meta},
        "spec": spec,
    }


def rules(host: str, *paths: tuple[str, str, Obj]) -> Obj:
    return {
        "host": host,
        "http": {"paths": [{"path": p, "pathType": t, "backend": b} for p, t, b in paths]},
    }


PATHS_INGRESS = ingress(
    "paths",
    {
        "rules": [
            rules(
                "paths.example.com",
                ("/", "Prefix", backend("s1")),
                ("/aaa", "Prefix", backend("s2")),
                ("/aaa/bbb/", "Prefix", backend("s3")),
                ("/foo", "Exact", backend("s4")),
                ("/foo", "Prefix", backend("s5")),
                ("/exact/", "Exact", backend("s6")),
                ("/impl", "ImplementationSpecific", backend("s7")),
            ),
            rules(
                "exact.example.com", ("/aaa/bb", "Prefix", backend("s2")), ("/only", "Exact", backend("s4"))
            ),
            rules("*.apps.example.com", ("/", "Prefix", backend("s8"))),
        ]
    },
)

SHOP_INGRESS = ingress(
    "shop",
    {
        "tls": [
            {"hosts": ["shop.example.com"], "secretName": "shop-tls"},
            {"hosts": ["*.apps.example.com"], "secretName": "apps-tls"},
        ],
        "rules": [
            rules(
                "shop.example.com",
                ("/cart", "Prefix", backend("web", "http")),  # a Service port by name
                ("/", "Prefix", backend("s1", 80)),
            )
        ],
    },
)

CLIENT = r"""
import http.client, json, socket, ssl, sys, time

class TLS(http.client.HTTPSConnection):
    # TCP to the address, SNI and the certificate check for the name (curl --resolve)

    def __init__(self, addr, host, ca):
        super().__init__(host, 443, timeout=5, context=ssl.create_default_context(cafile=ca))
        self.addr = addr

    def connect(self):
        sock = socket.create_connection((self.addr, 443), 5)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)

def one(addr, req, ca):
    host = req["host"]
    if req.get("tls"):
        conn = TLS(addr, host, ca)
    else:
        conn = http.client.HTTPConnection(addr, 80, timeout=5)
    conn.request("GET", req["path"], headers={"Host": host})
    r = conn.getresponse()
    body = r.read()
    conn.close()
    doc = None
    if r.headers.get("content-type") == "application/json":
        doc = json.loads(body)
    return {"status": r.status, "echo": doc}

def main():
    mode, addr, ca = sys.argv[1], sys.argv[2], sys.argv[3]
    if mode == "batch":
        out = []
        for req in json.loads(sys.stdin.read()):
            try:
                out.append(one(addr, req, ca))
            except Exception as exc:
                out.append({"status": 0, "error": repr(exc)})
        print(json.dumps(out))
        return
    host, seconds = sys.argv[4], float(sys.argv[5])
    ok, failed, errors, pods = 0, 0, [], {}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            r = one(addr, {"host": host, "path": "/cart/loop"}, ca)
            if r["status"] == 200:
                ok += 1
                pods[r["echo"]["pod"]] = pods.get(r["echo"]["pod"], 0) + 1
            else:
                failed += 1
                errors.append(r["status"])
        except Exception as exc:
            failed += 1
            errors.append(repr(exc))
    print(json.dumps({"ok": ok, "failed": failed, "errors": errors[:10], "pods": pods}))

main()
"""


class Client:
    def __init__(self, lab: Lab, address: str, tmp: Path) -> None:
        self.lab, self.address, self.tmp = lab, address, tmp
        self.script = tmp / "client.py"
        self.script.write_text(CLIENT)
        self.ca = tmp / "ca.pem"

    def batch(self, reqs: list[Obj]) -> list[Obj]:
        proc = self.lab.run(
            "exec",
            "internet",
            "--",
            sys.executable,
            str(self.script),
            "batch",
            self.address,
            str(self.ca),
            input=json.dumps(reqs),
        )
        return list(json.loads(proc.stdout))

    def get(self, host: str, path: str, tls: bool = False) -> Obj:
        return self.batch([{"host": host, "path": path, "tls": tls}])[0]

    def loop(self, host: str, seconds: float) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "podnet",
                "exec",
                "internet",
                "--",
                sys.executable,
                str(self.script),
                "loop",
                self.address,
                str(self.ca),
                host,
                str(seconds),
            ],
            env=self.lab.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


def apply_obj(lab: Lab, *objs: Obj) -> None:
    lab.apply("\n---\n".join(json.dumps(o) for o in objs))


def route_of(r: Obj) -> str | None:
    """Which Service answered: s1..s9 from the echo's port, web by name, None for 404."""
    if r["status"] == 404:
        return None
    assert r["status"] == 200, r
    echo = r["echo"]
    if echo["pod"].startswith("web-"):
        return "web"
    return f"s{echo['port'] - 8080}"


# --- certificates --------------------------------------------------------------


def make_certs(tmp: Path) -> dict[str, tuple[bytes, bytes]]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.now(UTC)

    def pem_key(k: ec.EllipticCurvePrivateKey) -> bytes:
        return k.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "podnet test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    (tmp / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    out = {}
    for secret, host in (("shop-tls", "shop.example.com"), ("apps-tls", "*.apps.example.com")):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        out[secret] = (cert.public_bytes(serialization.Encoding.PEM), pem_key(key))
    return out


def tls_secret(name: str, pair: tuple[bytes, bytes]) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "type": "kubernetes.io/tls",
        "data": {
            "tls.crt": base64.b64encode(pair[0]).decode(),
            "tls.key": base64.b64encode(pair[1]).decode(),
        },
    }


# --- fixtures ------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Client:
    tmp = tmp_path_factory.mktemp("ingress")
    certs = make_certs(tmp)
    lab.apply(BACKENDS)
    apply_obj(lab, *(tls_secret(n, p) for n, p in certs.items()), PATHS_INGRESS, SHOP_INGRESS)
    lab.wait_ready("app=web", 2, timeout=30)
    lab.wait_ready("app=echo", 1, timeout=30)
    lab.wait_ready("app.kubernetes.io/name=ingress-nginx", 2, namespace="ingress-nginx", timeout=30)

    def address() -> str | None:
        lb = (lab.json("get", "ingress", "shop").get("status") or {}).get("loadBalancer") or {}
        return lb["ingress"][0]["ip"] if lb.get("ingress") else None

    c = Client(lab, str(wait_for("the Ingress address", address, timeout=20)), tmp)
    wait_for(
        "the ingress to answer through the load balancer",
        lambda: all(r["status"] == 200 for r in c.batch([{"host": "shop.example.com", "path": "/"}] * 6)),
        timeout=20,
        interval=0.3,
    )
    return c


def test_the_controller_lives_in_the_cluster(lab: Lab, client: Client) -> None:
    classes = lab.run("get", "ingressclass").stdout.splitlines()
    assert classes[1].split()[:2] == ["nginx", "k8s.io/ingress-nginx"]
    ic = lab.json("get", "ingressclass", "nginx")
    assert ic["metadata"]["annotations"][model.DEFAULT_CLASS_ANNOTATION] == "true"
    svc = lab.json("get", "svc", "ingress-nginx-controller", "-n", "ingress-nginx")
    assert svc["spec"]["type"] == "LoadBalancer"
    assert svc["status"]["loadBalancer"]["ingress"][0]["ip"] == client.address
    pods = lab.ready_pods("app.kubernetes.io/name=ingress-nginx", namespace="ingress-nginx")
    assert all("exec nginx" in p["metadata"]["annotations"]["podnet.io/command"] for p in pods)
    # kubectl's columns; the class came from the default-class admission.
    rows = [r.split() for r in lab.run("get", "ing").stdout.splitlines()]
    assert rows[0] == ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"]
    by_name = {r[0]: r for r in rows[1:]}
    assert by_name["shop"][1:5] == ["nginx", "shop.example.com", client.address, "80,"]
    assert by_name["paths"][2] == "paths.example.com,exact.example.com,*.apps.example.com"
    # The real nginx, with its files under the cluster's state dir.
    masters = subprocess.run(["pgrep", "-a", "nginx"], capture_output=True, text=True).stdout
    assert str(lab.state_dir / "ingress" / "nginx.conf") in masters


# Requests to paths.example.com and the route the docs' table gives for each.
PATH_ROWS = [
    "/anything",
    "/aaa",
    "/aaa/",
    "/aaa/ccc",
    "/aaa/bbb",
    "/aaa/bbb/",
    "/aaa/bbb/ccc",
    "/aaa/bbbxyz",
    "/aaabc",
    "/foo",
    "/foo/",
    "/foo/x",
    "/foobar",
    "/exact/",
    "/exact",
    "/impl",
    "/implx",
    "/impl/y",
]
HOST_ROWS = [
    ("exact.example.com", "/aaa/bbb"),
    ("exact.example.com", "/aaa/bb"),
    ("exact.example.com", "/aaa/bb/c"),
    ("exact.example.com", "/only"),
    ("exact.example.com", "/only/"),
    ("exact.example.com", "/"),
    ("a.apps.example.com", "/x"),
    ("b.apps.example.com", "/"),
    ("a.b.apps.example.com", "/"),
    ("apps.example.com", "/"),
    ("PATHS.example.com:80", "/aaa/x"),
    ("unknown.example.com", "/"),
]


def test_paths_and_hosts_route_as_the_docs_tables_say(lab: Lab, client: Client) -> None:
    table = model.merge(
        [o for o in lab.json("get", "ingress")["items"] if o["metadata"]["name"] in ("paths", "shop")]
    )
    reqs = [("paths.example.com", p) for p in PATH_ROWS] + HOST_ROWS
    results = client.batch([{"host": h, "path": p} for h, p in reqs])
    got = {(h, p): route_of(r) for (h, p), r in zip(reqs, results, strict=True)}
    want = {(h, p): (b.service if (b := model.route(table, h, p)) else None) for h, p in reqs}
    assert got == want
    # A few rows spelled out, so that the model cannot drift with nginx unnoticed.
    assert got[("paths.example.com", "/aaa/bbbxyz")] == "s2"  # element-wise, not a string prefix
    assert got[("paths.example.com", "/aaa/bbb")] == "s3"  # Prefix "/aaa/bbb/" ignores its trailing slash
    assert got[("paths.example.com", "/foo")] == "s4"  # Exact before Prefix
    assert got[("paths.example.com", "/foo/")] == "s5"
    assert got[("paths.example.com", "/exact")] == "s1"  # Exact "/exact/" does not match "/exact"
    assert got[("paths.example.com", "/implx")] == "s7"  # ImplementationSpecific: a string prefix
    assert got[("exact.example.com", "/aaa/bbb")] is None  # 404: no default backend
    assert got[("a.apps.example.com", "/x")] == "s8"
    assert got[("a.b.apps.example.com", "/")] is None  # a wildcard covers one label
    assert got[("apps.example.com", "/")] is None


def test_the_backend_sees_the_request_and_the_forwarded_headers(client: Client) -> None:
    r = client.get("shop.example.com", "/cart/items?x=1")
    assert route_of(r) == "web"  # the Service port by name
    echo = r["echo"]
    assert (
        echo["path"] == "/cart/items?x=1" and echo["host"] == "shop.example.com" and echo["method"] == "GET"
    )
    h = echo["headers"]
    assert h["x-forwarded-for"] == INTERNET == h["x-real-ip"]  # externalTrafficPolicy Local keeps the client
    assert h["x-forwarded-host"] == "shop.example.com" and h["x-forwarded-proto"] == "http"
    assert echo["client"].startswith("10.244.")  # the proxy pod called the backend pod directly


def test_tls_is_terminated_with_the_certificate_sni_picks(client: Client) -> None:
    shop, apps, plain, unknown = client.batch(
        [
            {"host": "shop.example.com", "path": "/cart/tls", "tls": True},
            {"host": "x.apps.example.com", "path": "/", "tls": True},
            {"host": "paths.example.com", "path": "/", "tls": True},
            {"host": "nobody.example.com", "path": "/", "tls": True},
        ]
    )
    assert route_of(shop) == "web" and shop["echo"]["headers"]["x-forwarded-proto"] == "https"
    assert route_of(apps) == "s8"  # the wildcard certificate, verified against the CA
    assert plain["status"] == 0 and "SSL" in plain["error"]  # no certificate for that host: refused
    assert unknown["status"] == 0


def test_a_default_backend_takes_what_nothing_else_matches(lab: Lab, client: Client) -> None:
    fallback = ingress("fallback", {"defaultBackend": backend("s9")})
    apply_obj(lab, fallback)
    try:
        wait_for(
            "the default backend",
            lambda: route_of(client.get("unknown.example.com", "/x")) == "s9",
            timeout=5,
            interval=0.1,
        )
        assert route_of(client.get("exact.example.com", "/nothing")) == "s9"
        assert route_of(client.get("paths.example.com", "/aaa")) == "s2"  # rules still first
    finally:
        lab.run("delete", "ingress", "fallback")
    wait_for("404 again", lambda: client.get("unknown.example.com", "/x")["status"] == 404, timeout=5)


def test_a_conflict_is_resolved_for_the_oldest_and_reported(lab: Lab, client: Client) -> None:
    dup = ingress("dup", {"rules": [rules("paths.example.com", ("/aaa", "Prefix", backend("s9")))]})
    apply_obj(lab, dup)
    try:

        def conditions() -> list[Obj]:
            return list((lab.json("get", "ingress", "dup").get("status") or {}).get("conditions") or [])

        [cond] = wait_for("the conflict reported", conditions, timeout=5)
        assert cond["type"] == "Conflicted" and cond["reason"] == "PathConflict"
        assert "path /aaa (Prefix)" in cond["message"] and "default/paths" in cond["message"]
        assert route_of(client.get("paths.example.com", "/aaa/x")) == "s2"
        log = (lab.state_dir / "controlplane.log").read_text()
        assert "Ingress default/dup: host paths.example.com path /aaa (Prefix) is already defined" in log
    finally:
        lab.run("delete", "ingress", "dup")


def test_a_change_is_live_within_about_a_second(lab: Lab, client: Client) -> None:
    changed = json.loads(json.dumps(PATHS_INGRESS))
    changed["spec"]["rules"][1]["http"]["paths"].append(
        {"path": "/new", "pathType": "Prefix", "backend": backend("s9")}
    )
    start = time.monotonic()
    apply_obj(lab, changed)
    wait_for(
        "the new path",
        lambda: route_of(client.get("exact.example.com", "/new/x")) == "s9",
        timeout=10,
        interval=0.05,
    )
    took = time.monotonic() - start
    # The figure is the benchmark's (bench/ingress.py); here only a loose bound.
    print(f"change live after {took:.2f}s (including the apply and the client's process start)")
    assert took < 10


def test_no_request_fails_while_backends_scale_and_nginx_reloads(lab: Lab, client: Client) -> None:
    loop = client.loop("shop.example.com", 12)
    time.sleep(1)
    lab.run("scale", "deployment/web", "--replicas", "4")
    lab.wait_ready("app=web", 4, timeout=15)
    # More reloads: a configuration change, then back.
    changed = json.loads(json.dumps(SHOP_INGRESS))
    changed["spec"]["rules"][0]["http"]["paths"].append(
        {"path": "/x", "pathType": "Exact", "backend": backend("s2")}
    )
    apply_obj(lab, changed)
    time.sleep(1)
    lab.run("scale", "deployment/web", "--replicas", "1")
    out, _ = loop.communicate(timeout=30)
    lab.run("scale", "deployment/web", "--replicas", "2")
    result = json.loads(out)
    print(result)
    assert result["failed"] == 0, result
    assert result["ok"] > 50
    assert len(result["pods"]) >= 3  # the new pods took traffic too
    log = (lab.state_dir / "controlplane.log").read_text()
    assert "reloaded nginx" in log
