"""The lab's control plane process: the store, the API server, the
controllers, and one kubelet per node, over the lab network. `podnet up`
starts it in the background; `podnet down` stops it."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import platform
import signal
import socket
import threading
from typing import Any

from podnet import __version__
from podnet.api.errors import AlreadyExists
from podnet.config import ClusterConfig, load
from podnet.controllers import ipam
from podnet.controllers.endpointslice_controller import EndpointSliceController
from podnet.controllers.manager import ControllerManager
from podnet.controllers.nodelifecycle import NodeLifecycleController
from podnet.dns import bootstrap as dns_bootstrap
from podnet.dns.upstream import InternetResolver
from podnet.ingress.controller import IngressController
from podnet.lab import netns, network, podfiles, topology
from podnet.lab.cloud import CloudController
from podnet.lab.kubelet import Kubelet
from podnet.lab.workload import Responder
from podnet.policy.agent import PolicyAgent
from podnet.proxy.agent import ServiceProxy
from podnet.proxy.render import ProxyConfig
from podnet.server import tls
from podnet.server.http import APIHTTPServer
from podnet.server.registry import Registry
from podnet.store.store import Store, now_rfc3339

log = logging.getLogger("podnet")
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
INTERNET_PORTS = [(80, "TCP"), (80, "UDP"), (8080, "TCP"), (8080, "UDP")]
STATE_FILE = "state.json"
CONTROL_PLANE_PORT = 6443  # where nodes reach the API, on the router


def node_object(cfg: ClusterConfig, node: topology.NodePlan) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node.name,
            "labels": {
                "kubernetes.io/hostname": node.name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": "amd64",
            },
        },
        "spec": {"podCIDR": node.pod_cidr, "podCIDRs": [node.pod_cidr]},
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": node.internal_ip},
                {"type": "ExternalIP", "address": node.external_ip},
                {"type": "Hostname", "address": node.name},
            ],
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "kubelet is posting ready status",
                    "lastHeartbeatTime": now_rfc3339(),
                    "lastTransitionTime": now_rfc3339(),
                }
            ],
            "nodeInfo": {
                "kubeletVersion": f"v1.31.0-podnet.{__version__}",
                "kubeProxyVersion": f"v1.31.0-podnet.{__version__}",
                "osImage": "podnet lab",
                "kernelVersion": platform.release(),
                "containerRuntimeVersion": f"podnet://{__version__}",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        },
    }


def bootstrap(reg: Registry, cfg: ClusterConfig, plan: topology.LabPlan) -> None:
    for ns in SYSTEM_NAMESPACES:
        with contextlib.suppress(AlreadyExists):
            reg.create(
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": ns},
                    "status": {"phase": "Active"},
                }
            )
    for node in plan.nodes:
        want = node_object(cfg, node)
        try:
            reg.create(want)
        except AlreadyExists:
            cur = reg.get("Node", None, node.name)
            cur["status"] = want["status"]
            reg.update(cur, subresource="status")


class ControlPlane:
    def __init__(self, cfg: ClusterConfig) -> None:
        self.cfg = cfg
        self.plan = topology.plan(cfg)
        os.makedirs(cfg.state_dir, exist_ok=True)
        self.store = Store(os.path.join(cfg.state_dir, "store.db"))
        self.registry = Registry(self.store, cfg)
        self.responder = Responder()
        self.http: APIHTTPServer | None = None
        self.node_http: APIHTTPServer | None = None
        self.https: APIHTTPServer | None = None  # for kubectl: TLS, client certificates
        self.node_lifecycle = NodeLifecycleController(self.registry, cfg.node_grace_period)
        self.controllers = ControllerManager(self.registry)
        self.endpointslices = EndpointSliceController(self.registry)
        self.proxies: list[ServiceProxy] = []
        self.sources: list[Any] = []  # agent.source.KubeSource, imported with the agents
        self.policy_agents: list[PolicyAgent] = []
        self.cloud: CloudController | None = None
        self.ingress = IngressController(self.registry, cfg.state_dir)
        self.kubelets = [
            Kubelet(
                self.registry,
                cfg.name,
                n,
                self.responder,
                os.path.join(cfg.state_dir, "pods"),
                api_endpoint=(self.plan.router_ip, CONTROL_PLANE_PORT),
            )
            for n in self.plan.nodes
        ]
        self.internet_dns: InternetResolver | None = None
        self.done = threading.Event()

    def start(self) -> None:
        if not all(netns.exists(n) for n in self.plan.all_netns):
            log.info("building the lab network")
            network.teardown(self.cfg.name)
            network.build(self.plan)
        else:
            log.info("lab network found; resuming")
            self._remove_orphans()
        self.responder.start()
        self.responder.add_pod("internet", "internet", self.plan.internet_netns, INTERNET_PORTS)
        self.internet_dns = InternetResolver(self.plan.internet_netns, self.plan.internet_ip)
        self.internet_dns.start()
        bootstrap(self.registry, self.cfg, self.plan)
        dns_bootstrap.ensure(self.registry, self.cfg, (self.plan.router_ip, CONTROL_PLANE_PORT))
        self.ingress.bootstrap()  # the default IngressClass; the data plane comes on first use
        self.http = APIHTTPServer(("127.0.0.1", 0), self.registry, metrics=self.metrics)
        threading.Thread(target=self.http.serve_forever, name="apiserver", daemon=True).start()
        # The same API where nodes reach it: on the router, over the lab network.
        # HTTPS too there (told apart by the first byte), and on loopback for
        # kubectl: a CA, server and admin certificates in STATE_DIR/pki, and
        # the kubeconfigs that use them (server/tls.py).
        pki = tls.ensure(
            os.path.join(self.cfg.state_dir, "pki"),
            self.cfg.cluster_domain,
            [self.plan.router_ip, ipam.nth_address(self.cfg.service_cidr, 1)],
        )
        tls_ctx = tls.server_context(pki)
        self.node_http = APIHTTPServer(("", 0), self.registry, sock=self._listen_in_router(), tls_context=tls_ctx)
        threading.Thread(target=self.node_http.serve_forever, name="apiserver-nodes", daemon=True).start()
        self.https = APIHTTPServer(
            ("127.0.0.1", 0), self.registry, metrics=self.metrics, tls_context=tls_ctx, plain=False
        )
        threading.Thread(target=self.https.serve_forever, name="apiserver-https", daemon=True).start()
        https_url = f"https://127.0.0.1:{self.https.server_address[1]}"
        kubeconfig = tls.write_kubeconfigs(
            pki, self.cfg.state_dir, self.cfg.name, https_url, f"https://{self.plan.router_ip}:{CONTROL_PLANE_PORT}"
        )
        self.node_lifecycle.start()
        self.controllers.start()
        self.endpointslices.start()
        self.cloud = CloudController(self.registry, self.plan, self.cfg)
        self.cloud.start()
        self.ingress.start()
        for kubelet in self.kubelets:
            kubelet.start()
        host, port = str(self.http.server_address[0]), int(self.http.server_address[1])
        state = {
            "pid": os.getpid(),
            "api": f"http://{host}:{port}",
            "api_https": https_url,
            "kubeconfig": kubeconfig,
            "config": self.cfg.to_dict(),
        }
        tmp = os.path.join(self.cfg.state_dir, STATE_FILE + ".tmp")
        with open(tmp, "w") as f:
            json.dump(state, f)
        os.replace(tmp, os.path.join(self.cfg.state_dir, STATE_FILE))
        # The node agents start once the control plane answers: importing the
        # Kubernetes client library costs a good part of a second that
        # `podnet up` need not wait for.
        threading.Thread(target=self._start_agents, args=(kubeconfig,), name="agents", daemon=True).start()
        log.info("control plane serving on %s:%s", host, port)

    def _start_agents(self, kubeconfig: str) -> None:
        from podnet.agent.source import KubeSource, api_client

        # The node agents are Kubernetes clients, as on a real cluster (podnet
        # agent): list-then-watch through the `kubernetes` library, over HTTPS
        # with the kubeconfig's client certificate, one cache per node shared
        # by its proxy and policy parts.
        self.sources = [
            KubeSource(api_client(kubeconfig), ["Service", "EndpointSlice", "NetworkPolicy", "Pod", "Namespace"])
            for _ in self.plan.nodes
        ]
        for source in self.sources:
            source.start()
        proxy_cfg = ProxyConfig(cluster_cidr=self.cfg.cluster_cidr, egress_interface="eth0")
        self.proxies = [
            ServiceProxy(source, n.name, n.netns, dataclasses.replace(proxy_cfg, pod_cidr=n.pod_cidr))
            for n, source in zip(self.plan.nodes, self.sources, strict=True)
        ]
        self.policy_agents = [
            PolicyAgent(source, n.name, n.netns) for n, source in zip(self.plan.nodes, self.sources, strict=True)
        ]
        for proxy in self.proxies:
            proxy.start()
        for agent in self.policy_agents:
            agent.start()

    def _listen_in_router(self) -> socket.socket:
        with netns.entered(self.plan.router_netns):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.plan.router_ip, CONTROL_PLANE_PORT))
        sock.listen(128)
        return sock

    def metrics(self) -> str:
        """Prometheus text: the node agents' figures, as kube-proxy names them."""
        lines = [
            "# TYPE kubeproxy_sync_proxy_rules_duration_seconds histogram",
            "# TYPE kubeproxy_network_programming_duration_seconds histogram",
        ]
        for proxy in self.proxies:
            lines += proxy.metrics()
        for agent in self.policy_agents:
            lines += agent.metrics()
        return "\n".join(lines) + "\n"

    def _remove_orphans(self) -> None:
        """Pod namespaces whose pod is gone from the store (deleted while
        the control plane was down) are removed."""
        wanted = {
            topology.pod_netns(
                self.cfg.name, p["metadata"]["namespace"], p["metadata"]["name"], p["metadata"]["uid"]
            )
            for p in self.store.list("Pod")[0]
        }
        pod_prefix = topology.netns_prefix(self.cfg.name) + "pod."
        for name in netns.list_names():
            if name.startswith(pod_prefix) and name not in wanted:
                network.kill_processes(name)
                netns.delete(name)
                podfiles.remove(name, os.path.join(self.cfg.state_dir, "pods"))

    def stop(self) -> None:
        # Every loop told to stop first, then woken from its wait on the
        # store, so that the joins below are quick.
        loops: list[Any] = [self.node_lifecycle, self.controllers, self.endpointslices, *self.proxies,
                            *self.policy_agents, *self.kubelets]
        if self.cloud:
            loops.append(self.cloud)
        loops.append(self.ingress)
        for loop in loops:
            loop.stop.set()
        for source in self.sources:
            source.stop()
        self.store.wake()
        if self.http:
            self.http.shutdown()
        if self.node_http:
            self.node_http.shutdown()
        if self.https:
            self.https.shutdown()
        self.node_lifecycle.shutdown()
        self.controllers.shutdown()
        self.endpointslices.shutdown()
        if self.cloud:
            self.cloud.shutdown()
        self.ingress.shutdown()
        for proxy in self.proxies:
            proxy.shutdown()
        for agent in self.policy_agents:
            agent.shutdown()
        for kubelet in self.kubelets:
            kubelet.shutdown()
        self.responder.stop()
        if self.internet_dns:
            self.internet_dns.stop()
        self.store.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="podnet-controlplane")
    parser.add_argument("--config-json", required=True)
    args = parser.parse_args(argv)
    cfg = load(None, **json.loads(args.config_json))
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    cp = ControlPlane(cfg)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    try:
        cp.start()
    except Exception:
        log.exception("control plane failed to start")
        raise SystemExit(1) from None
    done.wait()
    log.info("stopping")
    cp.stop()


if __name__ == "__main__":
    main()
