"""`podnet agent`: the node agent on a node of a real Kubernetes cluster (or
anything that speaks its API). It programs the network namespace it runs
in, owning only its own nftables tables, so it can run beside kube-proxy
in another mode or replace it. Exposes kube-proxy's `/healthz` (10256) and
`/metrics` (10249)."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from podnet.agent.source import KubeSource, api_client
from podnet.proxy import render as proxy_render
from podnet.proxy.agent import ServiceProxy
from podnet.proxy.nftables import Nftables, NftError

log = logging.getLogger("podnet.agent")
OWNED_TABLES = (("ip", proxy_render.TABLE), ("ip", "podnet-policy"))


def cleanup() -> list[str]:
    """Remove every table podnet made in this namespace; nothing else."""
    nft = Nftables(None, host=True)
    removed = []
    try:
        for family, table in OWNED_TABLES:
            with contextlib.suppress(NftError):
                nft.run(f"delete table {family} {table}")
                removed.append(f"{family} {table}")
    finally:
        nft.close()
    return removed


def node_info(api: Any, name: str, timeout: float) -> dict[str, Any]:
    """The agent's Node object (pod CIDR, addresses), waiting for it."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    deadline = time.monotonic() + timeout
    while True:
        try:
            resp: Any = client.CoreV1Api(api).read_node(name, _preload_content=False, _request_timeout=10)
            return dict(json.loads(resp.data))
        except (ApiException, OSError) as exc:
            if time.monotonic() > deadline:
                raise SystemExit(f"error: cannot read node {name!r} from the API server: {exc}") from None
            log.warning("waiting for node %s: %s", name, exc)
            time.sleep(1)


class _Metrics(BaseHTTPRequestHandler):
    server: Any

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.startswith("/metrics"):
            code, body, ctype = 200, self.server.render().encode(), "text/plain; version=0.0.4"
        elif self.path.startswith(("/healthz", "/livez")):
            code, body, ctype = 200, b"ok", "text/plain"
        else:
            code, body, ctype = 404, b"not found", "text/plain"
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.cleanup:
        removed = cleanup()
        print("removed: " + (", ".join(removed) if removed else "nothing (no podnet tables here)"))
        return 0
    if not args.node:
        raise SystemExit("error: --node is required (the name of this node's Node object)")
    parts = {"proxy": args.proxy, "network-policy": args.network_policy}
    if not any(parts.values()):
        parts = {"proxy": True, "network-policy": True}
    api = api_client(args.kubeconfig, args.server)
    node = node_info(api, args.node, timeout=60)
    pod_cidr = node.get("spec", {}).get("podCIDR", "")
    kinds = []
    if parts["proxy"]:
        kinds += ["Service", "EndpointSlice"]
    if parts["network-policy"]:
        kinds += ["NetworkPolicy", "Pod", "Namespace"]
    source = KubeSource(api, kinds)
    source.start()
    if not source.wait_synced(60):
        log.warning("not every kind listed yet; starting anyway")
    components: list[Any] = []
    if parts["proxy"]:
        cfg = proxy_render.ProxyConfig(
            cluster_cidr=args.cluster_cidr, egress_interface=args.masquerade_interface, pod_cidr=pod_cidr
        )
        components.append(ServiceProxy(source, args.node, None, cfg, host=True))
    if parts["network-policy"]:
        from podnet.policy.agent import PolicyAgent

        components.append(PolicyAgent(source, args.node, None, host=True))
    for c in components:
        c.start()

    def render_metrics() -> str:
        lines = [
            "# TYPE kubeproxy_sync_proxy_rules_duration_seconds histogram",
            "# TYPE kubeproxy_network_programming_duration_seconds histogram",
        ]
        for c in components:
            lines += c.metrics()
        lines.append(f"podnet_agent_watch_relists_total {source.relists}")
        lines.append(f"podnet_agent_watch_disconnects_total {source.disconnects}")
        return "\n".join(lines) + "\n"

    host, _, port = args.metrics_bind_address.rpartition(":")
    metrics = ThreadingHTTPServer((host or "0.0.0.0", int(port)), _Metrics)
    metrics.daemon_threads = True
    metrics.render = render_metrics  # type: ignore[attr-defined]
    threading.Thread(target=metrics.serve_forever, name="metrics", daemon=True).start()
    log.info("agent for node %s running (%s); pod CIDR %s", args.node,
             ", ".join(k for k, v in parts.items() if v), pod_cidr or "unknown")
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    for c in components:
        c.stop.set()
    source.stop()
    for c in components:
        c.shutdown()
    metrics.shutdown()
    return 0


def add_parser(sub: Any) -> None:
    ag = sub.add_parser("agent", help="run the node agent against a Kubernetes API server (a real node)")
    ag.add_argument("--kubeconfig", help="kubeconfig file for the API server")
    ag.add_argument("--server", help="API server URL, without a kubeconfig (plain HTTP, tests)")
    ag.add_argument("--node", help="this node's name (its Node object gives the pod CIDR)")
    ag.add_argument("--proxy", action="store_true", help="run the service proxy")
    ag.add_argument("--network-policy", action="store_true", help="enforce NetworkPolicies")
    ag.add_argument("--cluster-cidr", default="10.244.0.0/16", help="the pods' address range")
    ag.add_argument("--masquerade-interface", default="",
                    help="masquerade pods' traffic leaving the cluster through this interface")
    ag.add_argument("--metrics-bind-address", default="127.0.0.1:10249")
    ag.add_argument("--cleanup", action="store_true", help="remove every rule podnet made on this node, then exit")
    ag.set_defaults(fn=run)
