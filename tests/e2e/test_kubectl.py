"""The real kubectl against the lab, through `podnet kubeconfig`: HTTPS with
the lab's certificates, apply (client-side and server-side), get with
-o json and -o wide, -w, scale, label, annotate, describe, delete, and
errors for invalid objects as kubectl shows them; anonymous requests
refused."""

from __future__ import annotations

import json
import os
import select
import shutil
import ssl
import stat
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import Lab, wait_for

KUBECTL = shutil.which("kubectl")


def _kubectl_minor() -> int:
    """kubectl's minor version; 0 when there is none. The lab's API serves
    OpenAPI v3 only, which kubectl uses from 1.27 on (older ones validate
    with OpenAPI v2)."""
    if KUBECTL is None:
        return 0
    proc = subprocess.run(
        [KUBECTL, "version", "--client", "-o", "json"],
        capture_output=True,
        text=True,
        env=dict(os.environ, KUBECONFIG="/dev/null"),
        timeout=30,
    )
    try:
        return int(json.loads(proc.stdout)["clientVersion"]["minor"].rstrip("+"))
    except (ValueError, KeyError):
        return 0


pytestmark = pytest.mark.skipif(
    _kubectl_minor() < 27, reason="needs kubectl 1.27 or later (make deps installs kubectl)"
)

Kubectl = Callable[..., subprocess.CompletedProcess[str]]

APP = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: agnhost
        ports:
        - containerPort: 8080
        env:
        - {name: MODE, value: one}
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - name: http
    port: 80
    targetPort: 8080
"""


@pytest.fixture(scope="module")
def kubeconfig(lab: Lab) -> str:
    return lab.run("kubeconfig", "--path").stdout.strip()


@pytest.fixture(scope="module")
def kubectl(lab: Lab, kubeconfig: str, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    cache = str(tmp_path_factory.mktemp("kubectl-cache"))
    env = dict(os.environ, KUBECONFIG=kubeconfig, HOME=cache)

    def run(*args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        assert KUBECTL is not None
        proc = subprocess.run(
            [KUBECTL, "--cache-dir", cache, *args],
            env=env,
            input=input,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
            )
        return proc

    run.env = env  # type: ignore[attr-defined]
    run.cache = cache  # type: ignore[attr-defined]
    return run


def objects(kubectl: Kubectl, *args: str) -> list[dict[str, Any]]:
    return list(json.loads(kubectl("get", *args, "-o", "json").stdout)["items"])


def ready_pods(kubectl: Kubectl, selector: str) -> list[dict[str, Any]]:
    return [
        p
        for p in objects(kubectl, "pods", "-l", selector)
        if not p["metadata"].get("deletionTimestamp")
        and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
    ]


# -- the kubeconfig and authentication ----------------------------------------------------


def test_the_kubeconfig_is_private_and_names_an_https_server(lab: Lab, kubeconfig: str) -> None:
    assert stat.S_IMODE(os.stat(kubeconfig).st_mode) == 0o600
    assert Path(kubeconfig).parent == lab.state_dir
    doc = yaml.safe_load(lab.run("kubeconfig").stdout)
    assert doc["clusters"][0]["cluster"]["server"].startswith("https://127.0.0.1:")


def test_anonymous_requests_are_refused(kubectl: Kubectl, kubeconfig: str) -> None:
    doc = yaml.safe_load(Path(kubeconfig).read_text())
    server = doc["clusters"][0]["cluster"]["server"]
    ca = Path(kubectl.cache) / "ca.crt"  # type: ignore[attr-defined]
    import base64

    ca.write_bytes(base64.b64decode(doc["clusters"][0]["cluster"]["certificate-authority-data"]))
    ctx = ssl.create_default_context(cafile=str(ca))
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(server + "/api/v1/pods", context=ctx, timeout=10)
    assert exc.value.code == 401
    assert json.loads(exc.value.read())["reason"] == "Unauthorized"
    # kubectl with a credential the server does not accept
    proc = kubectl(
        "--server", server, "--certificate-authority", str(ca), "--token", "nope", "--kubeconfig", "/dev/null",
        "get", "pods", check=False,
    )  # fmt: skip
    assert proc.returncode != 0 and "error: You must be logged in to the server" in proc.stderr


# -- apply, get, scale, watch -------------------------------------------------------------


def test_client_side_apply_then_get_wide(lab: Lab, kubectl: Kubectl) -> None:
    out = kubectl("apply", "-f", "-", input=APP).stdout
    assert out.splitlines() == ["deployment.apps/web created", "service/web created"]
    wait_for("2 ready web pods", lambda: len(ready_pods(kubectl, "app=web")) == 2, timeout=30)
    assert kubectl("apply", "-f", "-", input=APP).stdout.splitlines() == [
        "deployment.apps/web unchanged",
        "service/web unchanged",
    ]
    wide = kubectl("get", "pods", "-l", "app=web", "-o", "wide").stdout.splitlines()
    assert wide[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED", "NODE",
                               "READINESS", "GATES"]  # fmt: skip
    for line in wide[1:]:
        cells = line.split()
        assert (
            cells[1:3] == ["1/1", "Running"]
            and cells[5].startswith("10.244.")
            and cells[6].startswith("node-")
        )
    # podnet get prints the same table (ages aside)
    mine = lab.run("get", "pods", "-l", "app=web", "-o", "wide").stdout.splitlines()
    assert [line.split()[:3] + line.split()[5:] for line in mine] == [
        line.split()[:3] + line.split()[5:] for line in wide
    ]
    svc = kubectl("get", "svc", "web", "-o", "wide").stdout.splitlines()
    assert svc[0].split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR"]
    assert svc[1].split()[4] == "80/TCP" and svc[1].split()[-1] == "app=web"
    slices = kubectl("get", "endpointslices", "-l", "kubernetes.io/service-name=web").stdout
    assert "IPv4" in slices and "8080" in slices


def test_client_side_apply_changes_merge_with_what_others_set(kubectl: Kubectl) -> None:
    kubectl("label", "deployment", "web", "owner=ops")
    changed = APP.replace("value: one", "value: two")
    assert "deployment.apps/web configured" in kubectl("apply", "-f", "-", input=changed).stdout
    (dep,) = [d for d in objects(kubectl, "deployments") if d["metadata"]["name"] == "web"]
    assert dep["metadata"]["labels"] == {"owner": "ops"}  # kept: not in the applied configuration
    assert dep["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "MODE", "value": "two"}]
    assert "kubectl.kubernetes.io/last-applied-configuration" in dep["metadata"]["annotations"]


def test_get_o_json_of_one_object_and_of_a_list(kubectl: Kubectl) -> None:
    svc = json.loads(kubectl("get", "svc", "web", "-o", "json").stdout)
    assert svc["kind"] == "Service" and svc["spec"]["clusterIP"].startswith("10.")
    lst = json.loads(kubectl("get", "svc,deploy", "-o", "json").stdout)
    assert lst["kind"] == "List" and {i["kind"] for i in lst["items"]} == {"Service", "Deployment"}


def test_the_kubernetes_service(kubectl: Kubectl) -> None:
    svc = json.loads(kubectl("get", "svc", "kubernetes", "-n", "default", "-o", "json").stdout)
    assert svc["spec"]["clusterIP"] == "10.96.0.1" and svc["spec"]["ports"][0]["port"] == 443


def _read_lines(proc: subprocess.Popen[str], until: Callable[[list[str]], bool], timeout: float) -> list[str]:
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not until(lines):
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip("\n"))
    return lines


def test_scale_seen_through_get_w(kubectl: Kubectl) -> None:
    assert KUBECTL is not None
    cmd = [KUBECTL, "--cache-dir", kubectl.cache, "get", "pods", "-l", "app=web", "-w",  # type: ignore[attr-defined]
           "--output-watch-events"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=kubectl.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # type: ignore[attr-defined]
    try:
        header = _read_lines(proc, lambda ls: len(ls) >= 3, 15)  # header + the 2 pods
        assert header[0].split()[:3] == ["EVENT", "NAME", "READY"]
        assert (
            kubectl("scale", "deployment/web", "--replicas", "3").stdout.strip()
            == "deployment.apps/web scaled"
        )
        events = _read_lines(proc, lambda ls: any(line.startswith("ADDED") for line in ls), 15)
        assert any(line.startswith("ADDED") and "web-" in line for line in events), events
    finally:
        proc.kill()
        proc.wait()
    wait_for("3 ready web pods", lambda: len(ready_pods(kubectl, "app=web")) == 3, timeout=30)
    assert json.loads(kubectl("get", "deploy", "web", "-o", "json").stdout)["spec"]["replicas"] == 3


def test_label_and_annotate(kubectl: Kubectl) -> None:
    assert kubectl("label", "svc", "web", "tier=front").stdout.strip() == "service/web labeled"
    assert kubectl("annotate", "svc", "web", "note=hi").stdout.strip() == "service/web annotated"
    shown = kubectl("get", "svc", "-l", "tier=front", "--show-labels").stdout
    assert "tier=front" in shown
    assert kubectl("label", "svc", "web", "tier-").stdout.strip() == "service/web unlabeled"
    svc = json.loads(kubectl("get", "svc", "web", "-o", "json").stdout)
    assert "tier" not in svc["metadata"].get("labels", {}) and svc["metadata"]["annotations"]["note"] == "hi"


def test_server_side_apply(kubectl: Kubectl) -> None:
    manifest = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "ssa", "labels": {"team": "a"}},
        "spec": {
            "selector": {"app": "web"},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080}, {"name": "alt", "port": 81}],
        },
    }
    out = kubectl("apply", "--server-side", "-f", "-", input=json.dumps(manifest)).stdout
    assert out.strip() == "service/ssa serverside-applied"
    manifest["spec"]["ports"] = manifest["spec"]["ports"][:1]  # type: ignore[index]
    kubectl("apply", "--server-side", "-f", "-", input=json.dumps(manifest))
    svc = json.loads(kubectl("get", "svc", "ssa", "-o", "json", "--show-managed-fields").stdout)
    assert [p["port"] for p in svc["spec"]["ports"]] == [80]
    assert svc["metadata"]["managedFields"][0]["manager"] == "kubectl"


def test_describe(kubectl: Kubectl) -> None:
    def describe(*args: str) -> str:
        return " ".join(kubectl("describe", *args).stdout.split())  # the column widths vary

    pod = ready_pods(kubectl, "app=web")[0]["metadata"]["name"]
    text = describe("pod", pod)
    assert (
        f"Name: {pod}" in text and "Node: node-" in text and "Status: Running" in text and "Events:" in text
    )
    text = describe("svc", "web")
    assert "Selector: app=web" in text and "TargetPort: 8080/TCP" in text
    text = describe("deploy", "web")
    assert "Replicas: 3 desired" in text
    text = describe("node", "node-1")
    assert "Name: node-1" in text and "PodCIDR: 10.244." in text


def test_invalid_objects_are_shown_as_kubectl_shows_them(kubectl: Kubectl) -> None:
    bad = "apiVersion: v1\nkind: Service\nmetadata:\n  name: bad\nspec:\n  ports:\n  - port: 70000\n"
    proc = kubectl("apply", "-f", "-", input=bad, check=False)
    assert proc.returncode == 1
    assert (
        'The Service "bad" is invalid: spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535'
        in (proc.stderr.replace("\n", " "))
        or "spec.ports[0].port: Invalid value: 70000" in proc.stderr
    )
    proc = kubectl("apply", "--server-side", "-f", "-", input=bad, check=False)
    assert proc.returncode == 1 and 'The Service "bad" is invalid' in proc.stderr
    proc = kubectl("get", "pods", "nope", check=False)
    assert (
        proc.returncode == 1 and proc.stderr.strip() == 'Error from server (NotFound): pods "nope" not found'
    )


def test_delete_waits_for_graceful_pod_deletion(kubectl: Kubectl) -> None:
    pod = ready_pods(kubectl, "app=web")[0]["metadata"]["name"]
    out = kubectl("delete", "pod", pod).stdout
    assert out.strip() == f'pod "{pod}" deleted'
    assert kubectl("get", "pod", pod, check=False).returncode == 1
    assert kubectl("delete", "-f", "-", input=APP).stdout.splitlines() == [
        'deployment.apps "web" deleted',
        'service "web" deleted',
    ]
    wait_for("web pods gone", lambda: objects(kubectl, "pods", "-l", "app=web") == [], timeout=30)
