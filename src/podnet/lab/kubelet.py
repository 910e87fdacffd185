"""The lab's kubelet, one per node: it brings the pods bound to its node to
life (a network namespace wired by the CNI steps in network.py, an
address from the node's pod CIDR, a workload answering on the declared
ports), runs their readiness probes, reports their status, and tears them
down when they are deleted."""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import queue
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from podnet.api.errors import APIError, Conflict, NotFound
from podnet.controllers import ipam
from podnet.lab import netns, network, podfiles, readiness
from podnet.lab.topology import NodePlan, host_veth, pod_netns
from podnet.lab.workload import Responder
from podnet.server.registry import Registry
from podnet.store.store import now_rfc3339

log = logging.getLogger("podnet.kubelet")
Obj = dict[str, Any]
COMMAND_ANNOTATION = "podnet.io/command"
BACKOFF_START, BACKOFF_MAX, BACKOFF_RESET = 10.0, 300.0, 600.0
POD_WORKERS = 4
HEARTBEAT_INTERVAL = 1.0
HEARTBEAT_TIMEOUT = 0.5


def _pre_stop(pod: Obj) -> list[Obj]:
    """The preStop hooks of a pod's containers (exec, httpGet, sleep)."""
    return [
        c["lifecycle"]["preStop"]
        for c in pod.get("spec", {}).get("containers", [])
        if (c.get("lifecycle") or {}).get("preStop")
    ]


@dataclass
class ContainerProbe:
    container: str
    probe: Obj
    state: readiness.ProbeState
    due: float = 0.0
    running: bool = False


@dataclass
class LocalPod:
    """What the kubelet knows of a pod it runs."""

    key: str  # namespace/name
    uid: str
    netns: str
    host_if: str
    ip: str
    containers: list[str]
    ports: dict[str, int]  # named container ports
    probes: list[ContainerProbe] = field(default_factory=list)
    ready: dict[str, bool] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    command: str | None = None
    restarts: int = 0
    started: str = ""
    started_monotonic: float = field(default_factory=time.monotonic)
    env: dict[str, str] = field(default_factory=dict)  # Service variables and the container's env
    stopping: bool = False  # being torn down: its process is not to be restarted
    exited_at: float = 0.0  # when its process was last seen dead (0: running)
    backoff: float = 0.0  # the current crash back-off, as the kubelet's (10 s doubling to 5 min)


class Kubelet:
    def __init__(
        self,
        registry: Registry,
        cluster: str,
        node: NodePlan,
        responder: Responder,
        log_dir: str,
        api_endpoint: tuple[str, int] | None = None,
    ) -> None:
        self.reg = registry
        # The control plane as the node reaches it over the lab network:
        # heartbeats go there, so a node taken off the network stops them.
        self.api_endpoint = api_endpoint
        self.connected = True
        self.terminating: set[str] = set()
        self.cluster = cluster
        self.node = node
        self.responder = responder
        self.log_dir = log_dir
        self.pods: dict[str, LocalPod] = {}
        self.last_ip: str | None = None
        self.inflight: set[str] = set()
        self.again: set[str] = set()
        self.reserved: set[str] = set()  # addresses handed out to pods still being set up
        self.stop = threading.Event()
        self.queue: queue.Queue[str] = queue.Queue()
        self.lock = threading.Lock()
        self.probe_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix=f"probe-{node.name}")
        self.threads = [
            threading.Thread(target=self._watch, name=f"kubelet-watch-{node.name}", daemon=True),
            *(
                threading.Thread(target=self._work, name=f"kubelet-{node.name}-{i}", daemon=True)
                for i in range(POD_WORKERS)
            ),
            threading.Thread(target=self._probe_loop, name=f"kubelet-probes-{node.name}", daemon=True),
            threading.Thread(target=self._heartbeat_loop, name=f"kubelet-heartbeat-{node.name}", daemon=True),
        ]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def shutdown(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=5)
        self.probe_pool.shutdown(wait=False, cancel_futures=True)

    # -- event intake ----------------------------------------------------------

    def _mine(self, pod: Obj) -> bool:
        return bool(pod.get("spec", {}).get("nodeName") == self.node.name)

    def _watch(self) -> None:
        rv = self.reg.store.resource_version
        self._resync()
        while not self.stop.is_set():
            try:
                events = self.reg.store.events_since(rv, timeout=2.0)
            except APIError:
                rv = self.reg.store.resource_version
                self._resync()
                continue
            if events:
                rv = events[-1].rv
            for ev in events:
                if ev.kind == "Pod" and (self._mine(ev.object) or self._key(ev.object) in self.pods):
                    self.queue.put(self._key(ev.object))

    def _resync(self) -> None:
        for pod in self.reg.store.list("Pod", where=self._mine)[0]:
            self.queue.put(self._key(pod))
        for key in list(self.pods):
            self.queue.put(key)

    @staticmethod
    def _key(pod: Obj) -> str:
        return f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"

    def _work(self) -> None:
        # Several workers overlap the kernel's share of pod set-up; a pod is
        # synced by one worker at a time (a key arriving meanwhile is done
        # again after).
        while not self.stop.is_set():
            try:
                key = self.queue.get(timeout=0.5)
            except queue.Empty:
                continue
            with self.lock:
                if key in self.inflight:
                    self.again.add(key)
                    continue
                self.inflight.add(key)
            try:
                self._sync(key)
            except Exception:
                log.exception("syncing pod %s failed", key)
            finally:
                with self.lock:
                    self.inflight.discard(key)
                    if key in self.again:
                        self.again.discard(key)
                        self.queue.put(key)

    # -- the pod lifecycle -----------------------------------------------------

    def _sync(self, key: str) -> None:
        ns, name = key.split("/", 1)
        try:
            pod: Obj | None = self.reg.store.get("Pod", ns, name)
        except NotFound:
            pod = None
        local = self.pods.get(key)
        if local and (pod is None or pod["metadata"]["uid"] != local.uid or not self._mine(pod)):
            self._teardown(local)
            local = None
        if pod is None or not self._mine(pod):
            return
        if pod["metadata"].get("deletionTimestamp"):
            uid = pod["metadata"]["uid"]
            if local and _pre_stop(pod) and uid not in self.terminating:
                # Graceful: the pod keeps serving its open connections while
                # its preStop hook runs, bounded by the grace period.
                self.terminating.add(uid)
                threading.Thread(target=self._terminate, args=(pod, local), daemon=True).start()
                return
            if uid in self.terminating:
                return
            if local:
                self._teardown(local)
            self._finalize(pod)
            return
        if local is None and pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            return
        if local is None:
            self._setup(pod)

    def _setup(self, pod: Obj) -> None:
        exhausted = ""
        with self.lock:
            used = {p.ip for p in self.pods.values()} | self.reserved
            previous = pod.get("status", {}).get("podIP")
            if previous and ipam.in_range(self.node.pod_cidr, previous) and previous not in used:
                ip = previous  # a restarted control plane gives the pod its address back
            else:
                try:
                    ip = ipam.next_pod_ip(self.node.pod_cidr, used, self.last_ip, {self.node.pod_gateway})
                except ipam.RangeExhausted as exc:
                    ip = ""
                    exhausted = str(exc)
                self.last_ip = ip or self.last_ip
            if ip:
                self.reserved.add(ip)
        if not ip:
            self._fail(pod, "FailedCreatePodSandBox", f"failed to allocate an address for the pod: {exhausted}")
            return
        try:
            self._setup_with(pod, ip)
        finally:
            with self.lock:
                self.reserved.discard(ip)

    def _setup_with(self, pod: Obj, ip: str) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        key = self._key(pod)
        ns_name = pod_netns(self.cluster, meta["namespace"], meta["name"], meta["uid"])
        # A namespace left by an earlier run of the control plane: adopt it
        # when it still holds the pod's address (open connections survive),
        # else start afresh.
        adopted = netns.exists(ns_name) and network.pod_address(ns_name) == ip
        if netns.exists(ns_name) and not adopted:
            network.remove_pod(self.node, ns_name, host_veth(meta["uid"]))
        local = LocalPod(
            key=key,
            uid=meta["uid"],
            netns=ns_name,
            host_if=host_veth(meta["uid"]),
            ip=ip,
            containers=[c["name"] for c in spec.get("containers", [])],
            ports={
                p["name"]: p["containerPort"]
                for c in spec.get("containers", [])
                for p in c.get("ports", [])
                if p.get("name")
            },
            started=now_rfc3339(),
        )
        try:
            if adopted:
                network.kill_processes(ns_name)  # the previous run's command, if any: it is started anew
            else:
                network.add_pod(self.node, ns_name, local.host_if, ip)
        except Exception as exc:
            log.exception("pod %s: network setup failed", key)
            self._fail(pod, "FailedCreatePodSandBox", f"failed to set up the pod network: {exc}")
            return
        with self.lock:
            self.pods[key] = local
        try:
            local.env = self._pod_files(pod, local)
            self._start_workload(pod, local)
        except Exception as exc:
            log.exception("pod %s: workload failed to start", key)
            self._teardown(local)
            self._fail(pod, "CreateContainerError", str(exc))
            return
        for c in spec.get("containers", []):
            probe = c.get("readinessProbe")
            if probe:
                delay = probe.get("initialDelaySeconds", 0)
                st = readiness.ProbeState(probe.get("successThreshold", 1), probe.get("failureThreshold", 3))
                local.probes.append(ContainerProbe(c["name"], probe, st, due=time.monotonic() + delay))
                local.ready[c["name"]] = False
            else:
                local.ready[c["name"]] = True
        self._report(key)

    def _pod_files(self, pod: Obj, local: LocalPod) -> dict[str, str]:
        """resolv.conf, hosts and the environment (podfiles.py), from the
        Services that exist now, as a kubelet starting the pod sees them."""
        ns = pod["metadata"]["namespace"]
        services = self.reg.store.list("Service", ns)[0]
        if ns != "default":  # the kubernetes Service's variables go to every pod
            services += self.reg.store.list("Service", "default")[0]
        return podfiles.write(
            pod, local.ip, self.node.internal_ip, local.netns, self.reg.config, services, self.log_dir
        )

    def _start_workload(self, pod: Obj, local: LocalPod) -> None:
        command = pod["metadata"].get("annotations", {}).get(COMMAND_ANNOTATION)
        if command:
            local.command = command
            self._spawn(local)
            return
        ports = [
            (p["containerPort"], p.get("protocol", "TCP"))
            for c in pod["spec"].get("containers", [])
            for p in c.get("ports", [])
        ]
        self.responder.add_pod(local.key, pod["metadata"]["name"], local.netns, ports)

    def _spawn(self, local: LocalPod) -> None:
        local.started_monotonic = time.monotonic()
        os.makedirs(self.log_dir, exist_ok=True)
        logf = open(os.path.join(self.log_dir, local.key.replace("/", "_") + ".log"), "ab")  # noqa: SIM115
        ns, name = local.key.split("/", 1)
        env = {**os.environ, "HOSTNAME": name, "POD_NAME": name, "POD_NAMESPACE": ns, "POD_IP": local.ip, **local.env}
        local.process = subprocess.Popen(
            ["ip", "netns", "exec", local.netns, "sh", "-c", local.command or "true"],
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        logf.close()

    def _terminate(self, pod: Obj, local: LocalPod) -> None:
        grace = float(pod["metadata"].get("deletionGracePeriodSeconds", 30))
        deadline = time.monotonic() + grace
        try:
            for hook in _pre_stop(pod):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                if "sleep" in hook:
                    self.stop.wait(min(left, float(hook["sleep"].get("seconds", 0))))
                elif "exec" in hook:
                    readiness.exec_command(local.netns, list(hook["exec"].get("command", [])), left)
                elif "httpGet" in hook:
                    h = hook["httpGet"]
                    port = h.get("port")
                    port = (
                        local.ports.get(port, 0)
                        if isinstance(port, str) and not port.isdigit()
                        else int(port or 0)
                    )
                    readiness.http_get(
                        self.node.netns, h.get("host") or local.ip, port, h.get("path", "/"), left
                    )
        finally:
            if self.pods.get(local.key) is local:
                self._teardown(local)
            self._finalize(pod)
            self.terminating.discard(pod["metadata"]["uid"])
            self.queue.put(local.key)  # a pod of the same name may be waiting

    def _finalize(self, pod: Obj) -> None:
        """The kubelet's last word on a deleted pod: remove the object."""
        if not self.connected:
            return  # the API is out of reach; the next resync after reconnecting does it
        with contextlib.suppress(NotFound):
            self.reg.store.delete(
                "Pod", pod["metadata"]["namespace"], pod["metadata"]["name"], uid=pod["metadata"]["uid"]
            )

    def _teardown(self, local: LocalPod) -> None:
        with self.lock:
            local.stopping = True
            self.pods.pop(local.key, None)
        self.responder.remove_pod(local.key)
        network.remove_pod(self.node, local.netns, local.host_if)
        podfiles.remove(local.netns, self.log_dir)
        if local.process:
            local.process.wait(timeout=5)

    # -- status ----------------------------------------------------------------

    def _report(self, key: str) -> None:
        """Write the pod's status from what the kubelet knows."""
        local = self.pods.get(key)
        if local is None or not self.connected:
            return  # off the network, the kubelet cannot tell the API anything
        ns, name = key.split("/", 1)
        for _ in range(5):
            try:
                pod = self.reg.store.get("Pod", ns, name)
            except NotFound:
                return
            if pod["metadata"]["uid"] != local.uid:
                return
            old = pod.get("status", {})
            new = self._status(pod, local, old)
            if new == old:
                return
            pod["status"] = new
            try:
                self.reg.update(pod, subresource="status")
                return
            except Conflict:
                continue

    def _status(self, pod: Obj, local: LocalPod, old: Obj) -> Obj:
        all_ready = all(local.ready.get(c, False) for c in local.containers)
        running = local.process is None or local.process.poll() is None

        def cond(type_: str, ok: bool) -> Obj:
            for c in old.get("conditions", []):
                if c.get("type") == type_ and (c.get("status") == "True") == ok:
                    return dict(c)  # unchanged: keep its transition time
            return {"type": type_, "status": "True" if ok else "False", "lastTransitionTime": now_rfc3339()}

        containers = []
        for c in pod["spec"].get("containers", []):
            state = (
                {"running": {"startedAt": local.started}}
                if running
                else {"waiting": {"reason": "CrashLoopBackOff"}}
            )
            containers.append(
                {
                    "name": c["name"],
                    "image": c.get("image", ""),
                    "imageID": "",
                    "containerID": f"podnet://{local.uid[:12]}-{c['name']}",
                    "ready": local.ready.get(c["name"], False) and running,
                    "started": running,
                    "restartCount": local.restarts,
                    "state": state,
                }
            )
        return {
            "phase": "Running",
            "hostIP": self.node.internal_ip,
            "hostIPs": [{"ip": self.node.internal_ip}],
            "podIP": local.ip,
            "podIPs": [{"ip": local.ip}],
            "startTime": old.get("startTime", local.started),
            "qosClass": "BestEffort",
            "conditions": [
                cond("PodReadyToStartContainers", True),
                cond("Initialized", True),
                cond("Ready", all_ready and running),
                cond("ContainersReady", all_ready and running),
                cond("PodScheduled", True),
            ],
            "containerStatuses": containers,
        }

    def _fail(self, pod: Obj, reason: str, message: str) -> None:
        pod["status"] = {
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "True"}],
            "containerStatuses": [
                {
                    "name": c["name"],
                    "ready": False,
                    "restartCount": 0,
                    "image": c.get("image", ""),
                    "state": {"waiting": {"reason": reason, "message": message}},
                }
                for c in pod["spec"].get("containers", [])
            ],
            "message": message,
            "reason": reason,
        }
        with contextlib.suppress(Conflict, NotFound):
            self.reg.update(pod, subresource="status")

    # -- probes and process supervision -----------------------------------------

    def _probe_loop(self) -> None:
        while not self.stop.wait(0.1):
            now = time.monotonic()
            with self.lock:
                pods = list(self.pods.values())
            for local in pods:
                if local.process is not None and local.process.poll() is not None and not self.stop.is_set():
                    self._restart(local, now)
                for cp in local.probes:
                    if not cp.running and cp.due <= now:
                        cp.running = True
                        self.probe_pool.submit(self._run_probe, local, cp)

    def _restart(self, local: LocalPod, now: float) -> None:
        """restartPolicy Always, with the kubelet's CrashLoopBackOff: the
        container comes back after 10 s, then 20 s, ... up to 5 min; a run
        of 10 min resets the back-off."""
        if not local.exited_at:
            local.exited_at = now
            ran = now - local.started_monotonic
            local.backoff = 0.0 if ran > BACKOFF_RESET else min(max(local.backoff * 2, BACKOFF_START), BACKOFF_MAX)
            self._report(local.key)  # waiting: CrashLoopBackOff
        if now - local.exited_at < local.backoff:
            return
        with self.lock:
            # Under the lock: a teardown either sees the new process (and
            # kills it with the namespace) or has marked the pod stopping.
            if local.stopping or self.pods.get(local.key) is not local:
                return
            local.restarts += 1
            local.exited_at = 0.0
            self._spawn(local)
        self._report(local.key)

    def _run_probe(self, local: LocalPod, cp: ContainerProbe) -> None:
        try:
            ok = self._check(local, cp.probe)
        except Exception:
            ok = False
        cp.due = time.monotonic() + cp.probe.get("periodSeconds", 10)
        cp.running = False
        changed = cp.state.observe(ok)
        if changed is not None and local.key in self.pods:
            local.ready[cp.container] = changed
            self._report(local.key)

    def _check(self, local: LocalPod, probe: Obj) -> bool:
        timeout = float(probe.get("timeoutSeconds", 1))
        if "exec" in probe:
            return readiness.exec_command(local.netns, list(probe["exec"].get("command", [])), timeout)
        handler = probe.get("httpGet") or probe.get("tcpSocket") or {}
        raw = handler.get("port")
        if isinstance(raw, str) and not raw.isdigit():
            if raw not in local.ports:
                return False  # a named port this pod does not declare
            port = local.ports[raw]
        else:
            port = int(raw or 0)
        host = handler.get("host") or local.ip
        # The kubelet probes from the node, as on a real node.
        if "httpGet" in probe:
            headers = {h["name"]: h["value"] for h in handler.get("httpHeaders", [])}
            return readiness.http_get(
                self.node.netns,
                host,
                port,
                handler.get("path", "/"),
                timeout,
                handler.get("scheme", "HTTP"),
                headers,
            )
        if "tcpSocket" in probe:
            return readiness.tcp_socket(self.node.netns, host, port, timeout)
        return False

    # -- heartbeats -------------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        while not self.stop.wait(HEARTBEAT_INTERVAL):
            if self.api_endpoint is None:
                continue
            ok = self._heartbeat()
            if ok and not self.connected:
                log.info("node %s: back in touch with the control plane", self.node.name)
                self.connected = True
                self._resync()
                for key in list(self.pods):
                    self._report(key)
            elif not ok and self.connected:
                log.warning("node %s: cannot reach the control plane", self.node.name)
                self.connected = False

    def _heartbeat(self) -> bool:
        """Post the node's Ready condition to the control plane, over the
        lab network from the node's namespace, as a kubelet does."""
        assert self.api_endpoint is not None
        host, port = self.api_endpoint
        try:
            node = self.reg.store.get("Node", "", self.node.name)
        except NotFound:
            return False
        now = now_rfc3339()
        ready = {
            "type": "Ready",
            "status": "True",
            "reason": "KubeletReady",
            "message": "kubelet is posting ready status",
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }
        for c in node.get("status", {}).get("conditions", []):
            if c.get("type") == "Ready" and c.get("status") == "True":
                ready["lastTransitionTime"] = c.get("lastTransitionTime", now)
        body = json.dumps({"status": {"conditions": [ready]}}).encode()
        try:
            with netns.entered(self.node.netns):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.settimeout(HEARTBEAT_TIMEOUT)
            sock.connect((host, port))
            conn = http.client.HTTPConnection(host, port, timeout=HEARTBEAT_TIMEOUT)
            conn.sock = sock
            conn.request(
                "PATCH",
                f"/api/v1/nodes/{self.node.name}/status",
                body=body,
                headers={"Content-Type": "application/merge-patch+json"},
            )
            ok = conn.getresponse().status == 200
            conn.close()
            return ok
        except OSError:
            return False

    # -- for the daemon ---------------------------------------------------------

    def teardown_all(self) -> None:
        for local in list(self.pods.values()):
            try:
                self._teardown(local)
            except Exception:
                log.exception("teardown of %s failed", local.key)
