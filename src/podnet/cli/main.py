"""`podnet`: the lab's command line, shaped like kubectl where kubectl has
the same verb."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from typing import Any

from podnet.api import manifests
from podnet.api.defaults import apply_defaults
from podnet.api.errors import APIError, Invalid, NotFound
from podnet.api.kinds import BY_KIND, Kind, for_object, lookup
from podnet.api.validation import validate
from podnet.cli import kubeconfig as kubeconfig_cli
from podnet.cli import names, printers
from podnet.cli import policy as policy_cli
from podnet.cli.cluster import CLIError, Cluster, cluster_name, find, pid_alive, read_state
from podnet.client import Unreachable
from podnet.config import ConfigError, load
from podnet.lab import network, podfiles, probe

Obj = dict[str, Any]
# Namespaces before what lives in them, as kubectl's apply order does.
APPLY_ORDER = {
    "Namespace": 0,
    "NetworkPolicy": 1,
    "Service": 1,
    "IngressClass": 1,
    "Secret": 1,
    "Ingress": 2,
    "EndpointSlice": 2,
    "Deployment": 3,
    "Pod": 4,
}


def out(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def err(text: str) -> None:
    sys.stderr.write(text + "\n")


def require_root() -> None:
    if os.geteuid() != 0:
        raise CLIError("podnet needs root: it creates network namespaces (run it with sudo)")


# -- up / down / status -------------------------------------------------------


def cmd_up(args: argparse.Namespace) -> int:
    require_root()
    try:
        cfg = load(
            args.config,
            name=cluster_name(args.name),
            nodes=args.nodes,
            node_grace_period=args.node_grace_period,
        )
    except (ConfigError, OSError, TypeError) as exc:
        raise CLIError(f"invalid cluster configuration: {exc}") from None
    state = read_state(cfg.name)
    if state and pid_alive(int(state.get("pid", 0)), cfg.name):
        raise CLIError(f'cluster "{cfg.name}" is already running (podnet down --name {cfg.name} first)')
    start = time.monotonic()
    out(f'Creating cluster "{cfg.name}" ...')
    os.makedirs(cfg.state_dir, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(cfg.state_dir, "state.json"))
    log_path = os.path.join(cfg.state_dir, "controlplane.log")
    with open(log_path, "ab") as logf:
        proc = subprocess.Popen(
            [sys.executable, "-m", "podnet.daemon", "--config-json", json.dumps(cfg.to_dict())],
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 60
    cluster: Cluster | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err(f"error: the control plane exited (code {proc.returncode}); its log, {log_path}, ends with:")
            err(_tail(log_path))
            network.teardown(cfg.name)
            return 1
        st = read_state(cfg.name)
        if st and st.get("pid") == proc.pid:
            cluster = find(cfg.name)
            break
        time.sleep(0.02)
    if cluster is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        network.teardown(cfg.name)  # nothing of a cluster that never came up stays
        raise CLIError(f"the control plane did not start in time; see {log_path}")
    plan = cluster.plan
    out(f" ✓ Network: {len(plan.nodes)} nodes on {cfg.node_network}, router, internet ({plan.internet_ip})")
    out(f" ✓ Control plane: {cluster.api} (log: {log_path})")
    nodes = cluster.client.list(BY_KIND["Node"])["items"]
    ready = [n for n in nodes if _node_ready(n)]
    out(f" ✓ Nodes ready: {len(ready)}/{len(plan.nodes)}")
    out(f'Cluster "{cfg.name}" is up in {time.monotonic() - start:.2f}s. Try: podnet status')
    return 0


def _tail(path: str, lines: int = 20) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def _node_ready(node: Obj) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in node.get("status", {}).get("conditions", [])
    )


def cmd_down(args: argparse.Namespace) -> int:
    require_root()
    name = cluster_name(args.name)
    out(f'Deleting cluster "{name}" ...')
    state = read_state(name)
    if state:
        pid = int(state.get("pid", 0))
        if pid and pid_alive(pid, name):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while pid_alive(pid, name) and time.monotonic() < deadline:
                time.sleep(0.05)
            if pid_alive(pid, name):
                os.kill(pid, signal.SIGKILL)
    removed = network.teardown(name)
    podfiles.sweep(name)  # /etc/netns/ files of pods whose namespace was already gone
    cfg_dir = os.path.dirname(os.path.join(os.environ.get("PODNET_STATE_DIR", "/var/lib/podnet"), name, "x"))
    shutil.rmtree(cfg_dir, ignore_errors=True)
    out(f"Deleted {len(removed)} network namespaces.")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    c = find(args.name)
    plan = c.plan
    healthy = "ok"
    try:
        nodes = c.client.list(BY_KIND["Node"])["items"]
    except Unreachable as exc:
        healthy, nodes = f"unreachable ({exc})", []
    out(f"Cluster:        {c.name}")
    out(f"Control plane:  {c.api} (pid {c.pid}) {healthy}")
    out(f"Service CIDR:   {c.config.service_cidr}    NodePort range: {c.config.node_port_range}")
    out(f"Router:         {plan.router_ip} (fabric), {plan.router_wan_ip} (internet side)")
    out(f"Internet:       {plan.internet_ip} (server on 80, 8080 TCP/UDP)")
    rows = [["NAME", "STATUS", "INTERNAL-IP", "EXTERNAL-IP", "POD-CIDR", "NETNS"]]
    by_name = {n["metadata"]["name"]: n for n in nodes}
    for n in plan.nodes:
        obj = by_name.get(n.name)
        rows.append(
            [
                n.name,
                "Ready" if obj and _node_ready(obj) else "NotReady",
                n.internal_ip,
                n.external_ip,
                n.pod_cidr,
                n.netns,
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out("\n".join("   ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows))
    return 0


# -- apply / get / delete / scale -------------------------------------------


def _ns_for(kind: Kind, obj: Obj, default: str) -> str | None:
    if not kind.namespaced:
        return None
    return obj.get("metadata", {}).get("namespace") or default


def _load_checked(paths: list[str], default_ns: str) -> list[tuple[Kind, Obj]]:
    """Parse and validate every document before anything is applied."""
    docs = manifests.load_paths(paths)
    checked: list[tuple[Kind, Obj]] = []
    problems: list[str] = []
    for doc in docs:
        kind = for_object(doc)
        obj = apply_defaults(doc)
        if kind.namespaced:
            obj["metadata"].setdefault("namespace", default_ns)
        try:
            validate(obj)
        except Invalid as exc:
            problems.append(f"The {exc.message}")
            continue
        checked.append((kind, doc))
    if problems:
        raise CLIError("\n".join(problems) + "\nnothing was applied")
    return checked


def cmd_apply(args: argparse.Namespace) -> int:
    c = find(args.name)
    items = _load_checked(args.filename, args.namespace)
    items.sort(key=lambda ko: APPLY_ORDER.get(ko[0].kind, 9))
    client = c.client
    # A server-side dry run of the whole set first, so that a clash the
    # server finds (a taken clusterIP) refuses everything, not a tail.
    plan: list[tuple[Kind, Obj, Obj | None]] = []
    problems = []
    created_ns = set()
    for kind, doc in items:
        ns = _ns_for(kind, doc, args.namespace)
        try:
            current: Obj | None = client.get(kind, doc["metadata"]["name"], ns)
        except NotFound:
            current = None
        if kind.kind == "Namespace":
            created_ns.add(doc["metadata"]["name"])
        try:
            if ns and ns in created_ns and current is None:
                pass  # its namespace comes with this apply: nothing to dry-run against yet
            elif current is None:
                client.request("POST", kind.collection_path(ns), doc, query={"dryRun": "All"})
            else:
                client.request(
                    "PUT",
                    kind.object_path(doc["metadata"]["name"], ns),
                    _updated(doc, current),
                    query={"dryRun": "All"},
                )
        except APIError as exc:
            problems.append(_error_text(exc))
        plan.append((kind, doc, current))
    if problems:
        raise CLIError("\n".join(problems) + "\nnothing was applied")
    for kind, doc, current in plan:
        ns = _ns_for(kind, doc, args.namespace)
        name = doc["metadata"]["name"]
        label = f"{kind.singular}.{kind.group}/{name}" if kind.group else f"{kind.singular}/{name}"
        if current is None:
            client.create(kind, doc, ns)
            out(f"{label} created")
        elif _same(doc, current):
            out(f"{label} unchanged")
        else:
            client.update(kind, _updated(doc, current), ns)
            out(f"{label} configured")
    return 0


def _updated(doc: Obj, current: Obj) -> Obj:
    new = json.loads(json.dumps(doc))
    new["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
    return new


def _same(doc: Obj, current: Obj) -> bool:
    want = apply_defaults(doc)
    for field in ("spec", "data"):
        if field in want:
            have = dict(current.get(field) or {})
            mine = dict(want[field])
            for k in have:
                if k not in mine:
                    mine[k] = have[k]  # filled by the server
            if mine != have:
                return False
    for field in ("labels", "annotations"):
        if (want["metadata"].get(field) or {}) != (current["metadata"].get(field) or {}):
            return False
    return True


def _error_text(exc: APIError) -> str:
    reason = {404: "NotFound", 409: exc.reason, 422: "Invalid", 400: "BadRequest"}.get(exc.code, exc.reason)
    return f"Error from server ({reason}): {exc.message}"


def cmd_get(args: argparse.Namespace) -> int:
    c = find(args.name)
    kinds = (
        [lookup(k) for k in args.kind.split(",")]
        if "/" not in args.kind
        else [lookup(args.kind.split("/")[0])]
    )
    names = list(args.names)
    if "/" in args.kind:
        names.insert(0, args.kind.split("/", 1)[1])
    namespace = None if args.all_namespaces else args.namespace
    status = 0
    found: list[Obj] = []
    texts: list[str] = []
    for kind in kinds:
        objs: list[Obj] = []
        if names:
            for n in names:
                try:
                    objs.append(c.client.get(kind, n, namespace or args.namespace))
                except NotFound as exc:
                    err(_error_text(exc))
                    status = 1
        else:
            objs = c.client.list(kind, namespace, args.selector)["items"]
        for o in objs:
            o.setdefault("apiVersion", kind.api_version)
            o.setdefault("kind", kind.kind)
        found.extend(objs)
        if args.output in ("", "wide") and objs:
            texts.append(
                printers.table(
                    kind.kind, objs, wide=args.output == "wide", all_namespaces=args.all_namespaces
                )
            )
    if args.output in ("json", "yaml"):
        doc: Obj = found[0] if (len(found) == 1 and names and len(kinds) == 1) else printers.to_list(found)
        out(printers.dump(doc, args.output))
    elif args.output == "name":
        for o in found:
            k = BY_KIND[o["kind"]]
            out(
                f"{k.singular}.{k.group}/{o['metadata']['name']}"
                if k.group
                else f"{k.singular}/{o['metadata']['name']}"
            )
    elif args.output not in ("", "wide"):
        raise CLIError(
            f'unable to match a printer suitable for the output format "{args.output}", '
            "allowed formats are: json,name,wide,yaml"
        )
    else:
        if texts:
            out("\n".join(t.rstrip("\n") for t in texts))
        elif not names:
            where = (
                "" if args.all_namespaces or not kinds[0].namespaced else f" in {args.namespace} namespace"
            )
            err(f"No resources found{where}.")
    return status


def cmd_delete(args: argparse.Namespace) -> int:
    c = find(args.name)
    targets: list[tuple[Kind, str, str | None]] = []
    if args.filename:
        for kind, doc in _load_checked(args.filename, args.namespace):
            targets.append((kind, doc["metadata"]["name"], _ns_for(kind, doc, args.namespace)))
    else:
        if not args.kind:
            raise CLIError("You must provide one or more resources by argument or filename.")
        spec = args.kind
        names = list(args.names)
        if "/" in spec:
            spec, first = spec.split("/", 1)
            names.insert(0, first)
        kind = lookup(spec)
        if not names:
            raise CLIError("resource(s) were provided, but no name was specified")
        targets = [(kind, n, args.namespace if kind.namespaced else None) for n in names]
    status = 0
    for kind, name, ns in targets:
        try:
            c.client.delete(kind, name, ns, args.grace_period)
        except NotFound as exc:
            err(_error_text(exc))
            status = 1
            continue
        label = f"{kind.plural}.{kind.group}" if kind.group else kind.singular
        out(f'{label} "{name}" deleted')
        if args.wait:
            _wait_gone(c, kind, name, ns, args.timeout)
    return status


def _wait_gone(c: Cluster, kind: Kind, name: str, ns: str | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            c.client.get(kind, name, ns)
        except NotFound:
            return
        time.sleep(0.05)
    raise CLIError(f"timed out waiting for {kind.singular} {name} to be deleted")


def cmd_scale(args: argparse.Namespace) -> int:
    c = find(args.name)
    spec, names = args.target, list(args.names)
    if "/" in spec:
        spec, first = spec.split("/", 1)
        names.insert(0, first)
    kind = lookup(spec)
    if kind.kind != "Deployment":
        raise CLIError(f"cannot scale {kind.plural}: only deployments can be scaled in the lab")
    if args.replicas < 0:
        raise CLIError("The --replicas=COUNT flag is required, and COUNT must be greater than or equal to 0")
    for name in names:
        c.client.patch(kind, name, {"spec": {"replicas": args.replicas}}, args.namespace)
        out(f"deployment.apps/{name} scaled")
    return 0


# -- exec / probe ---------------------------------------------------------------


def cmd_exec(args: argparse.Namespace) -> int:
    require_root()
    c = find(args.name)
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise CLIError("you must specify at least one command for the container")
    ns, _ = c.netns_of(args.target, args.namespace)
    env = {**os.environ, **names.pod_env(c, ns)}  # the pod's Service variables and env
    os.execvpe("ip", ["ip", "netns", "exec", ns, *command], env)
    return 1  # not reached


def resolve_target(c: Cluster, target: str, namespace: str, source_netns: str | None = None) -> str:
    import ipaddress

    try:
        return str(ipaddress.ip_address(target))
    except ValueError:
        pass
    if target == "internet":
        return c.plan.internet_ip
    name = target.split("/", 1)[1] if target.startswith(("pod/", "po/", "pods/")) else target
    try:
        pod = c.client.get(BY_KIND["Pod"], name, namespace)
    except NotFound:
        if source_netns is not None and "/" not in target:
            return names.resolve(c, target, source_netns, namespace)  # a DNS name, as the source sees it
        raise CLIError(
            f'target "{target}" is not an IP address, "internet", or a pod in namespace "{namespace}"'
        ) from None
    ip = pod.get("status", {}).get("podIP")
    if not ip:
        raise CLIError(f"pod {name} has no IP yet")
    return str(ip)


def cmd_probe(args: argparse.Namespace) -> int:
    require_root()
    c = find(args.name)
    src_ns, _ = c.netns_of(args.source, args.namespace)
    ip = resolve_target(c, args.target, args.namespace, src_ns)
    results = []
    for r in probe.probe(ip, args.port, args.protocol, args.count, args.timeout, netns=src_ns):
        results.append(r)
        if args.output == "json":
            out(json.dumps(r.to_json()))
        else:
            if r.ok:
                out(
                    f"ok       {args.protocol}://{ip}:{args.port}  pod={r.pod or '-'}  client={r.client or '-'}  "
                    f"{r.ms:.1f}ms"
                )
            else:
                out(f"failed   {args.protocol}://{ip}:{args.port}  {r.error}  {r.ms:.1f}ms")
    if args.output != "json" and len(results) > 1:
        ok = sum(1 for r in results if r.ok)
        counts: dict[str, int] = {}
        for r in results:
            if r.ok:
                counts[r.pod or "?"] = counts.get(r.pod or "?", 0) + 1
        spread = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
        out(f"{ok}/{len(results)} answered" + (f" ({spread})" if spread else ""))
    return 0 if results and all(r.ok for r in results) else 1


def cmd_rules(args: argparse.Namespace) -> int:
    """What the kernel holds for the service proxy on a node, read from
    the kernel itself (not from the agent's idea of it)."""
    require_root()
    c = find(args.name)
    node = args.node.split("/", 1)[-1]
    try:
        ns = c.plan.node(node).netns
    except KeyError:
        raise CLIError(f'nodes "{node}" not found') from None
    proc = subprocess.run(
        ["ip", "netns", "exec", ns, "nft", "list", "table", "ip", args.table], capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise CLIError(proc.stderr.strip() or f"nft list table failed on {node}")
    out(proc.stdout)
    return 0


def cmd_node(args: argparse.Namespace) -> int:
    """`podnet node stop|start NODE`: a node off the network and back."""
    require_root()
    c = find(args.name)
    node = args.node.split("/", 1)[-1]
    try:
        plan = c.plan.node(node)
    except KeyError:
        raise CLIError(f'nodes "{node}" not found') from None
    network.set_node_link(c.plan, plan, up=args.action == "start")
    if args.action == "stop":
        out(
            f"node/{node} is off the network; it turns NotReady after {c.config.node_grace_period:g}s without a heartbeat"
        )
    else:
        out(f"node/{node} is back on the network")
    return 0


# -- wiring ---------------------------------------------------------------------


def _flag(text: str) -> bool:
    """kubectl's boolean flags: --wait, --wait=true, --wait=false."""
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean value {text!r}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="podnet", description="A Kubernetes cluster's network on one machine.")
    p.add_argument("--name", help="cluster name (default: $PODNET_CLUSTER or podnet)")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    def cmd(name: str, fn: Any, help_: str, namespaced: bool = False) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("--name", default=argparse.SUPPRESS, help="cluster name")
        if namespaced:
            sp.add_argument("-n", "--namespace", default="default")
        sp.set_defaults(fn=fn)
        return sp

    up = cmd("up", cmd_up, "create a lab cluster and start its control plane")
    up.add_argument("--nodes", type=int)
    up.add_argument("--config", help="YAML file of cluster settings")
    up.add_argument(
        "--node-grace-period", type=float, help="seconds without heartbeat before a node is NotReady"
    )
    cmd("down", cmd_down, "remove a lab cluster: every namespace, link and process")
    cmd("status", cmd_status, "nodes, addresses and control-plane health")

    ap = cmd("apply", cmd_apply, "create or update objects from YAML", namespaced=True)
    ap.add_argument("-f", "--filename", action="append", required=True)

    g = cmd("get", cmd_get, "list objects, as kubectl get", namespaced=True)
    g.add_argument("kind")
    g.add_argument("names", nargs="*")
    g.add_argument("-A", "--all-namespaces", action="store_true")
    g.add_argument("-l", "--selector")
    g.add_argument("-o", "--output", default="")

    d = cmd("delete", cmd_delete, "delete objects", namespaced=True)
    d.add_argument("kind", nargs="?")
    d.add_argument("names", nargs="*")
    d.add_argument("-f", "--filename", action="append")
    d.add_argument("--grace-period", type=int)
    d.add_argument("--wait", type=_flag, nargs="?", const=True, default=True, help="--wait=false returns at once")
    d.add_argument("--timeout", type=float, default=60.0)

    s = cmd("scale", cmd_scale, "set a Deployment's replicas", namespaced=True)
    s.add_argument("target", help="deployment/NAME")
    s.add_argument("names", nargs="*")
    s.add_argument("--replicas", type=int, required=True)

    e = cmd(
        "exec",
        cmd_exec,
        "run a command in a pod's (or node/NAME, router, internet) network namespace",
        namespaced=True,
    )
    e.add_argument("target")
    e.add_argument("command", nargs=argparse.REMAINDER)

    pr = cmd("probe", cmd_probe, "send real packets and show who answered", namespaced=True)
    pr.add_argument("source", help="a pod, node/NAME or internet")
    pr.add_argument("target", help="an IP, a pod, internet, or a DNS name (resolved by the cluster DNS as the source would)")
    pr.add_argument("--port", type=int, required=True)
    pr.add_argument("--protocol", choices=["tcp", "udp"], default="tcp")
    pr.add_argument("--count", type=int, default=1)
    pr.add_argument("--timeout", type=float, default=2.0)
    pr.add_argument("-o", "--output", choices=["text", "json"], default="text")
    no = cmd("node", cmd_node, "take a node off the network (stop) and back (start), as a crash would")
    no.add_argument("action", choices=["stop", "start"])
    no.add_argument("node", help="NODE or node/NAME")

    ru = cmd("rules", cmd_rules, "print a node's programmed nftables table (the service proxy's)")
    ru.add_argument("node", help="NODE or node/NAME")
    ru.add_argument("--table", default="podnet")
    policy_cli.register(cmd)
    kubeconfig_cli.register(cmd)
    from podnet.agent.main import add_parser as add_agent_parser

    add_agent_parser(sub)
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        code = args.fn(args)
    except CLIError as exc:
        err(f"error: {exc}")
        code = 1
    except APIError as exc:
        err(_error_text(exc))
        code = 1
    except KeyError as exc:
        err(f"error: {exc.args[0]}")
        code = 1
    except Unreachable as exc:
        err(f"error: {exc}")
        code = 1
    except BrokenPipeError:
        code = 0
    sys.exit(code)


if __name__ == "__main__":
    main()
