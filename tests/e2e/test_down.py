"""`podnet down`, `podnet up` and the control plane's life: nothing is left
behind whatever state the cluster was in, clusters run side by side, and a
restarted control plane picks up the pods it left.

Each test makes its own clusters (the module-wide `lab` would not survive
these tests), and downs them however the test ends."""

from __future__ import annotations

import json
import os
import signal
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from podnet.lab import netns
from podnet.lab.topology import pod_netns
from tests.e2e.conftest import Lab, is_ready, wait_for

SLEEPER = """
apiVersion: v1
kind: Pod
metadata:
  name: sleeper
  annotations: {podnet.io/command: "exec sleep 600"}
spec:
  nodeName: node-2
  containers: [{name: c, image: busybox}]
"""

PAIR = """
apiVersion: v1
kind: Pod
metadata: {name: a, labels: {app: pair}}
spec:
  nodeName: node-1
  containers:
  - name: c
    image: agnhost
    ports: [{name: http, containerPort: 8080}]
    readinessProbe: {httpGet: {path: /healthz, port: http}, periodSeconds: 1}
---
apiVersion: v1
kind: Pod
metadata: {name: b, labels: {app: pair}}
spec:
  nodeName: node-2
  containers:
  - name: c
    image: agnhost
    ports: [{name: http, containerPort: 8080}]
    readinessProbe: {httpGet: {path: /healthz, port: http}, periodSeconds: 1}
"""

DEPLOY = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 6
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: agnhost, ports: [{containerPort: 8080}]}]
"""

MakeLab = Callable[..., Lab]
# How long a control plane may take to stop on SIGTERM. Its threads notice
# their stop flag only when their store wait times out (the controllers'
# after 5 s), so a stop takes about 12 s today; `podnet down` gives it 10.
STOP_TIMEOUT = 30.0


@pytest.fixture
def make_lab(tmp_path: Path) -> Iterator[MakeLab]:
    """Clusters for one test, brought down at its end whatever happened."""
    made: list[Lab] = []

    def make(name: str | None = None) -> Lab:
        lab = Lab(name or "dn" + uuid.uuid4().hex[:6], tmp_path / "state")
        made.append(lab)
        return lab

    try:
        yield make
    finally:
        for lab in made:
            lab.run("down", check=False)
        left = [n for lab in made for n in lab.netns_left()]
        assert left == [], "podnet down left namespaces behind"


def running(pid: int) -> bool:
    """A live process (a zombie has exited: only its exit status is left)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def state(lab: Lab) -> dict:
    return json.loads((Path(lab.env["PODNET_STATE_DIR"]) / lab.name / "state.json").read_text())


def control_plane_pid(lab: Lab) -> int:
    return int(state(lab)["pid"])


def lab_processes(lab: Lab) -> set[int]:
    """The control plane and every live process inside one of the lab's namespaces."""
    pids = {control_plane_pid(lab)}
    for name in lab.netns_left():
        pids.update(netns.pids(name))
    return {p for p in pids if running(p)}


def processes_naming(lab: Lab) -> list[int]:
    """Live processes whose command line names the cluster (its control plane)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if f'"name": "{lab.name}"'.encode() in cmdline and running(int(entry)):
            found.append(int(entry))
    return found


def sleeper_pid(lab: Lab) -> int:
    pod = wait_for("the sleeper pod to run", lambda: is_ready(p := lab.json("get", "pod", "sleeper")) and p)
    ns = pod_netns(lab.name, "default", "sleeper", pod["metadata"]["uid"])

    def find() -> int | None:
        for pid in netns.pids(ns):
            try:
                with open(f"/proc/{pid}/comm") as f:
                    if f.read().strip() == "sleep":
                        return pid
            except OSError:
                continue
        return None

    return int(wait_for("the pod's sleep process", find))


def pods_by_name(lab: Lab) -> dict[str, dict]:
    return {p["metadata"]["name"]: p for p in lab.pods()}


# -- down ------------------------------------------------------------------------------------


def test_down_leaves_no_namespace_and_no_process_behind(make_lab: MakeLab) -> None:
    lab = make_lab()
    lab.run("up")
    lab.apply(SLEEPER)
    sleep = sleeper_pid(lab)
    before = lab_processes(lab)
    assert sleep in before and control_plane_pid(lab) in before
    out = lab.run("down").stdout
    assert "Deleted" in out and "network namespaces" in out
    assert lab.netns_left() == []
    assert [p for p in before if running(p)] == []
    assert processes_naming(lab) == []


def test_down_after_the_control_plane_was_killed_midway_leaves_nothing(make_lab: MakeLab) -> None:
    lab = make_lab()
    lab.run("up")
    lab.apply(SLEEPER)
    sleep = sleeper_pid(lab)
    lab.apply(DEPLOY)  # six pods on their way up while the control plane dies
    before = lab_processes(lab)
    os.kill(control_plane_pid(lab), signal.SIGKILL)
    wait_for("the control plane to die", lambda: not running(control_plane_pid(lab)))
    assert running(sleep), "the pod's process outlives its control plane until down"
    assert lab.netns_left(), "the namespaces outlive their control plane until down"
    lab.run("down")
    assert lab.netns_left() == []
    assert not running(sleep)
    assert [p for p in before if running(p)] == []
    assert processes_naming(lab) == []


def test_status_after_down_says_the_cluster_is_not_running(make_lab: MakeLab) -> None:
    lab = make_lab()
    lab.run("up")
    lab.run("down")
    proc = lab.run("status", check=False)
    assert proc.returncode == 1
    assert f'cluster "{lab.name}" is not running' in proc.stderr


def test_down_of_a_cluster_that_is_not_running_succeeds_and_removes_nothing_else(
    make_lab: MakeLab,
) -> None:
    other = make_lab()
    other.run("up")
    ghost = make_lab(other.name + "-2")  # shares the prefix text, not the namespaces
    proc = ghost.run("down")
    assert "Deleted 0 network namespaces" in proc.stdout
    assert len([n for n in other.netns_left() if ".pod." not in n]) == 5  # (its pods: the cluster DNS)
    assert other.run("status").returncode == 0


# -- clusters side by side ---------------------------------------------------------------------


def test_two_clusters_run_side_by_side_and_down_of_one_leaves_the_other_working(
    make_lab: MakeLab,
) -> None:
    a = make_lab()
    a2 = make_lab(a.name + "-2")  # `a` is a prefix of its name: down a must not touch it
    a.run("up")
    a2.run("up")
    a.apply(PAIR)
    a2.apply(PAIR)
    a.wait_ready("app=pair", 2)
    before = {p["metadata"]["name"]: p["status"]["podIP"] for p in a2.wait_ready("app=pair", 2)}
    namespaces = a2.netns_left()

    a.run("down")

    assert a.netns_left() == []
    assert a2.netns_left() == namespaces
    assert a2.run("status").returncode == 0
    [r] = a2.probe("a", "b", 8080)
    assert r["ok"] and r["pod"] == "b"
    assert r["client"].split(":")[0] == before["a"]
    a2.apply(SLEEPER)  # its control plane still does its work
    assert running(sleeper_pid(a2))


# -- up ----------------------------------------------------------------------------------------


def test_up_of_a_name_already_running_fails_with_exit_code_1_and_changes_nothing(
    make_lab: MakeLab,
) -> None:
    lab = make_lab()
    lab.run("up")
    pid = control_plane_pid(lab)
    proc = lab.run("up", check=False)
    assert proc.returncode == 1
    assert f'cluster "{lab.name}" is already running' in proc.stderr
    assert control_plane_pid(lab) == pid and running(pid)
    assert lab.run("status").returncode == 0


def test_a_restarted_control_plane_resumes_its_pods_with_their_addresses(make_lab: MakeLab) -> None:
    lab = make_lab()
    lab.run("up")
    lab.apply(PAIR)
    lab.wait_ready("app=pair", 2)
    before = pods_by_name(lab)
    pid = control_plane_pid(lab)

    os.kill(pid, signal.SIGTERM)
    wait_for("the control plane to stop", lambda: not running(pid), timeout=STOP_TIMEOUT)
    assert lab.run("status", check=False).returncode == 1
    lab.run("up")
    assert control_plane_pid(lab) != pid

    after = {p["metadata"]["name"]: p for p in lab.wait_ready("app=pair", 2)}
    assert set(after) == {"a", "b"}
    for name in ("a", "b"):
        assert after[name]["metadata"]["uid"] == before[name]["metadata"]["uid"]
        assert after[name]["status"]["podIP"] == before[name]["status"]["podIP"]
        assert after[name]["spec"]["nodeName"] == before[name]["spec"]["nodeName"]
    [r] = wait_for(
        "pod a to answer pod b again", lambda: (rs := lab.probe("a", "b", 8080)) and rs[0]["ok"] and rs
    )
    assert r["pod"] == "b" and r["client"].split(":")[0] == before["a"]["status"]["podIP"]
    [r] = lab.probe("node/node-2", before["a"]["status"]["podIP"], 8080)
    assert r["ok"] and r["pod"] == "a"


def test_a_restarted_control_plane_keeps_working(make_lab: MakeLab) -> None:
    lab = make_lab()
    lab.run("up")
    pid = control_plane_pid(lab)
    os.kill(pid, signal.SIGTERM)
    wait_for("the control plane to stop", lambda: not running(pid), timeout=STOP_TIMEOUT)
    lab.run("up")
    lab.apply(SLEEPER)
    assert running(sleeper_pid(lab))
    lab.apply(PAIR)
    [r] = wait_for("a new pod pair", lambda: lab.wait_ready("app=pair", 2) and lab.probe("a", "b", 8080))
    assert r["ok"] and r["pod"] == "b"
