"""What `kubectl get` prints: tables for the lab's kinds, and `-o json|yaml`.

The columns and cell formats follow kubernetes/kubernetes
pkg/printers/internalversion/printers.go; the layout follows kubectl's tabwriter
(minimum width 6, padding 3, left-aligned, no padding after the last column);
ages follow apimachinery's duration.HumanDuration. Pure: the clock is a parameter.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import yaml

from podnet.api import kinds, selectors

__all__ = ["Column", "cells", "columns", "dump", "human_duration", "table", "to_list"]

Obj = Mapping[str, Any]
Row = list[str]

# kubectl's tabwriter settings (printers.GetNewTabWriter).
_MIN_WIDTH = 6
_PADDING = 3
# Non-wide LoadBalancer addresses are clipped to this many characters.
_LOAD_BALANCER_WIDTH = 16
_NODE_ROLE_PREFIX = "node-role.kubernetes.io/"
_NODE_ROLE_LABEL = "kubernetes.io/role"


# --- durations and timestamps ---------------------------------------------------


def human_duration(seconds: float) -> str:
    """duration.HumanDuration: about 2-3 significant figures, e.g. `45s`, `2m3s`, `3h4m`, `2d5h`."""
    s = math.trunc(seconds)  # Go's int(d.Seconds()) truncates toward zero
    if s < -1:
        # More than a second in the future: clocks disagree too much to say anything.
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 60 * 2:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m" if s % 60 == 0 else f"{minutes}m{s % 60}s"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h" if minutes % 60 == 0 else f"{hours}h{minutes % 60}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d" if hours % 24 == 0 else f"{hours // 24}d{hours % 24}h"
    days = hours // 24
    if hours < 24 * 365 * 2:
        return f"{days}d"
    if hours < 24 * 365 * 8:
        return f"{days // 365}y" if days % 365 == 0 else f"{days // 365}y{days % 365}d"
    return f"{days // 365}y"


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _since(value: Any, now: datetime) -> str:
    """translateTimestampSince: `<unknown>` for a missing timestamp."""
    t = _parse_time(value)
    if t is None:
        return "<unknown>"
    return human_duration((now - t).total_seconds())


# --- small helpers over plain dicts ---------------------------------------------


def _get(obj: Any, *path: str) -> Any:
    """obj[path[0]][path[1]]..., or None as soon as a step is missing."""
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _format_labels(labels: Any) -> str:
    """labels.FormatLabels: sorted `k=v` pairs, `<none>` when empty."""
    if not labels:
        return "<none>"
    return str(selectors.from_map(labels))


def _with_more(items: list[str], total: int, limit: int = 3) -> str:
    """kubectl's `a,b,c + N more...` for long lists, `<unset>` for empty ones."""
    if total > limit:
        return f"{','.join(items[:limit])} + {total - limit} more..."
    return ",".join(items) or "<unset>"


# --- Pods -----------------------------------------------------------------------


def _is_restartable_init(container: Any) -> bool:
    # Sidecar containers: init containers with restartPolicy Always count as regular ones.
    return isinstance(container, Mapping) and container.get("restartPolicy") == "Always"


def _later(a: datetime | None, b: Any) -> datetime | None:
    t = _parse_time(b)
    if t is None:
        return a
    return t if a is None or t > a else a


def _condition_true(conditions: Any, ctype: str) -> bool:
    return any(c.get("type") == ctype and c.get("status") == "True" for c in _list(conditions))


def _pod_row(pod: Obj, wide: bool, now: datetime) -> Row:
    spec: Obj = pod.get("spec") or {}
    status: Obj = pod.get("status") or {}
    meta: Obj = pod.get("metadata") or {}
    init_specs = {c.get("name"): c for c in _list(spec.get("initContainers"))}
    total = len(_list(spec.get("containers"))) + sum(
        1 for c in init_specs.values() if _is_restartable_init(c)
    )
    ready = 0
    restarts = 0
    sidecar_restarts = 0
    last_restart: datetime | None = None
    last_sidecar_restart: datetime | None = None

    # The API server defaults phase to Pending, so a bare object reads as Pending.
    phase = status.get("phase") or "Pending"
    reason = status.get("reason") or phase
    for cond in _list(status.get("conditions")):
        if cond.get("type") == "PodScheduled" and cond.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"

    init_statuses = _list(status.get("initContainerStatuses"))
    initializing = False
    for i, cs in enumerate(init_statuses):
        restarts += int(cs.get("restartCount") or 0)
        finished = _get(cs, "lastState", "terminated", "finishedAt")
        last_restart = _later(last_restart, finished)
        sidecar = _is_restartable_init(init_specs.get(cs.get("name")))
        if sidecar:
            sidecar_restarts += int(cs.get("restartCount") or 0)
            last_sidecar_restart = _later(last_sidecar_restart, finished)
        terminated = _get(cs, "state", "terminated")
        waiting = _get(cs, "state", "waiting")
        if terminated is not None and int(terminated.get("exitCode") or 0) == 0:
            continue
        if sidecar and cs.get("started"):
            if cs.get("ready"):
                ready += 1
            continue
        if terminated is not None:
            if terminated.get("reason"):
                reason = "Init:" + terminated["reason"]
            elif terminated.get("signal"):
                reason = f"Init:Signal:{terminated['signal']}"
            else:
                reason = f"Init:ExitCode:{terminated.get('exitCode') or 0}"
        elif waiting is not None and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{i}/{len(init_specs)}"
        initializing = True
        break

    if not initializing or _condition_true(status.get("conditions"), "Initialized"):
        restarts = sidecar_restarts
        last_restart = last_sidecar_restart
        has_running = False
        # Reversed, as kubectl does, so the first container's reason wins.
        for cs in reversed(_list(status.get("containerStatuses"))):
            restarts += int(cs.get("restartCount") or 0)
            last_restart = _later(last_restart, _get(cs, "lastState", "terminated", "finishedAt"))
            waiting = _get(cs, "state", "waiting")
            terminated = _get(cs, "state", "terminated")
            if waiting is not None and waiting.get("reason"):
                reason = waiting["reason"]
            elif terminated is not None and terminated.get("reason"):
                reason = terminated["reason"]
            elif terminated is not None:
                if terminated.get("signal"):
                    reason = f"Signal:{terminated['signal']}"
                else:
                    reason = f"ExitCode:{terminated.get('exitCode') or 0}"
            elif cs.get("ready") and _get(cs, "state", "running") is not None:
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            reason = "Running" if _condition_true(status.get("conditions"), "Ready") else "NotReady"

    if meta.get("deletionTimestamp"):
        if status.get("reason") == "NodeLost":
            reason = "Unknown"
        elif phase not in ("Succeeded", "Failed"):
            reason = "Terminating"

    restarts_cell = str(restarts)
    if restarts and last_restart is not None:
        restarts_cell = f"{restarts} ({human_duration((now - last_restart).total_seconds())} ago)"

    row = [
        str(meta.get("name", "")),
        f"{ready}/{total}",
        reason,
        restarts_cell,
        _since(meta.get("creationTimestamp"), now),
    ]
    if wide:
        ips = _list(status.get("podIPs"))
        pod_ip = (ips[0].get("ip") if ips else None) or status.get("podIP") or "<none>"
        gates = _list(spec.get("readinessGates"))
        gates_cell = "<none>"
        if gates:
            by_type: dict[Any, Any] = {}
            for c in _list(status.get("conditions")):
                by_type.setdefault(c.get("type"), c)  # the first condition of a type counts
            met = [g for g in gates if _get(by_type.get(g.get("conditionType")), "status") == "True"]
            gates_cell = f"{len(met)}/{len(gates)}"
        row += [
            pod_ip,
            spec.get("nodeName") or "<none>",
            status.get("nominatedNodeName") or "<none>",
            gates_cell,
        ]
    return row


# --- Services -------------------------------------------------------------------


def _load_balancer_addresses(svc: Obj, wide: bool) -> str:
    found = set()
    for ing in _list(_get(svc, "status", "loadBalancer", "ingress")):
        addr = ing.get("ip") or ing.get("hostname")
        if addr:
            found.add(addr)
    text = ",".join(sorted(found))
    if not wide and len(text) > _LOAD_BALANCER_WIDTH:
        text = text[: _LOAD_BALANCER_WIDTH - 3] + "..."
    return text


def _external_ip(svc: Obj, svc_type: str, wide: bool) -> str:
    external_ips = [str(ip) for ip in _list(_get(svc, "spec", "externalIPs"))]
    if svc_type in ("ClusterIP", "NodePort"):
        return ",".join(external_ips) or "<none>"
    if svc_type == "LoadBalancer":
        lb = _load_balancer_addresses(svc, wide)
        if external_ips:
            return ",".join([*(lb.split(",") if lb else []), *external_ips])
        return lb or "<pending>"
    if svc_type == "ExternalName":
        return str(_get(svc, "spec", "externalName") or "")
    return "<unknown>"


def _service_ports(ports: list[Any]) -> str:
    pieces = []
    for p in ports:
        proto = p.get("protocol") or "TCP"
        node_port = p.get("nodePort") or 0
        pieces.append(f"{p.get('port')}:{node_port}/{proto}" if node_port > 0 else f"{p.get('port')}/{proto}")
    return ",".join(pieces) or "<none>"


def _service_row(svc: Obj, wide: bool, now: datetime) -> Row:
    spec: Obj = svc.get("spec") or {}
    svc_type = spec.get("type") or "ClusterIP"
    cluster_ips = _list(spec.get("clusterIPs"))
    cluster_ip = (cluster_ips[0] if cluster_ips else None) or spec.get("clusterIP") or "<none>"
    row = [
        str(_get(svc, "metadata", "name") or ""),
        svc_type,
        cluster_ip,
        _external_ip(svc, svc_type, wide),
        _service_ports(_list(spec.get("ports"))),
        _since(_get(svc, "metadata", "creationTimestamp"), now),
    ]
    if wide:
        row.append(_format_labels(spec.get("selector")))
    return row


# --- Deployments ----------------------------------------------------------------


def _deployment_row(dep: Obj, wide: bool, now: datetime) -> Row:
    spec: Obj = dep.get("spec") or {}
    status: Obj = dep.get("status") or {}
    # The API server defaults replicas to 1.
    desired = spec.get("replicas", 1)
    row = [
        str(_get(dep, "metadata", "name") or ""),
        f"{status.get('readyReplicas') or 0}/{desired if desired is not None else 1}",
        str(status.get("updatedReplicas") or 0),
        str(status.get("availableReplicas") or 0),
        _since(_get(dep, "metadata", "creationTimestamp"), now),
    ]
    if wide:
        containers = _list(_get(spec, "template", "spec", "containers"))
        try:
            selector = str(selectors.from_label_selector(spec.get("selector")))
        except ValueError:
            selector = "<invalid>"
        row += [
            ",".join(str(c.get("name", "")) for c in containers),
            ",".join(str(c.get("image", "")) for c in containers),
            selector,
        ]
    return row


# --- Nodes ----------------------------------------------------------------------


def _node_row(node: Obj, wide: bool, now: datetime) -> Row:
    status: Obj = node.get("status") or {}
    info: Obj = status.get("nodeInfo") or {}
    ready = [c for c in _list(status.get("conditions")) if c.get("type") == "Ready"]
    state = ["Unknown"] if not ready else ["Ready" if ready[-1].get("status") == "True" else "NotReady"]
    if _get(node, "spec", "unschedulable"):
        state.append("SchedulingDisabled")
    roles = set()
    for key, value in (_get(node, "metadata", "labels") or {}).items():
        if key.startswith(_NODE_ROLE_PREFIX) and key[len(_NODE_ROLE_PREFIX) :]:
            roles.add(key[len(_NODE_ROLE_PREFIX) :])
        elif key == _NODE_ROLE_LABEL and value:
            roles.add(value)
    row = [
        str(_get(node, "metadata", "name") or ""),
        ",".join(state),
        ",".join(sorted(roles)) or "<none>",
        _since(_get(node, "metadata", "creationTimestamp"), now),
        str(info.get("kubeletVersion") or ""),
    ]
    if wide:

        def address(kind: str) -> str:
            for a in _list(status.get("addresses")):
                if a.get("type") == kind:
                    return str(a.get("address"))
            return "<none>"

        row += [
            address("InternalIP"),
            address("ExternalIP"),
            info.get("osImage") or "<unknown>",
            info.get("kernelVersion") or "<unknown>",
            info.get("containerRuntimeVersion") or "<unknown>",
        ]
    return row


# --- Namespaces and EndpointSlices ----------------------------------------------


def _namespace_row(ns: Obj, wide: bool, now: datetime) -> Row:
    return [
        str(_get(ns, "metadata", "name") or ""),
        str(_get(ns, "status", "phase") or "Active"),
        _since(_get(ns, "metadata", "creationTimestamp"), now),
    ]


def _endpoint_slice_row(eps: Obj, wide: bool, now: datetime) -> Row:
    ports = []
    for p in _list(eps.get("ports")):
        # A port with no number means "all ports": kubectl shows `*` (or the name).
        if p.get("port") is not None:
            ports.append(str(p["port"]))
        elif p.get("name") is not None:
            ports.append(str(p["name"]))
        else:
            ports.append("*")
    addresses = [str(a) for e in _list(eps.get("endpoints")) for a in _list(e.get("addresses"))]
    return [
        str(_get(eps, "metadata", "name") or ""),
        str(eps.get("addressType") or ""),
        _with_more(ports, len(ports)),
        _with_more(addresses, len(addresses)),
        _since(_get(eps, "metadata", "creationTimestamp"), now),
    ]


def _network_policy_row(np: Obj, wide: bool, now: datetime) -> Row:
    # kubectl prints the pod selector in its string form; `<none>` for {}.
    try:
        sel = str(selectors.from_label_selector(_get(np, "spec", "podSelector") or {}))
    except ValueError:
        sel = "<error>"
    return [
        str(_get(np, "metadata", "name") or ""),
        sel or "<none>",
        _since(_get(np, "metadata", "creationTimestamp"), now),
    ]


def _ingress_row(ing: Obj, wide: bool, now: datetime) -> Row:
    # printIngress: hosts (at most 3, `*` for none), address clipped unless wide, ports.
    rules = _list(_get(ing, "spec", "rules"))
    hosts: list[str] = []
    more = False
    for rule in rules:
        if len(hosts) == 3:
            more = True
        if not more and rule.get("host"):
            hosts.append(str(rule["host"]))
    hosts_cell = ",".join(hosts) or "*"
    if more:
        hosts_cell += f" + {len(rules) - 3} more..."
    return [
        str(_get(ing, "metadata", "name") or ""),
        str(_get(ing, "spec", "ingressClassName") or "<none>"),
        hosts_cell,
        _load_balancer_addresses(ing, wide),
        "80, 443" if _list(_get(ing, "spec", "tls")) else "80",
        _since(_get(ing, "metadata", "creationTimestamp"), now),
    ]


def _ingress_class_row(ic: Obj, wide: bool, now: datetime) -> Row:
    params = _get(ic, "spec", "parameters")
    cell = "<none>"
    if isinstance(params, Mapping):
        kind = str(params.get("kind") or "")
        if params.get("apiGroup"):
            kind = f"{kind}.{params['apiGroup']}"
        cell = f"{kind}/{params.get('name') or ''}"
    return [
        str(_get(ic, "metadata", "name") or ""),
        str(_get(ic, "spec", "controller") or ""),
        cell,
        _since(_get(ic, "metadata", "creationTimestamp"), now),
    ]


def _secret_row(secret: Obj, wide: bool, now: datetime) -> Row:
    data = secret.get("data")
    return [
        str(_get(secret, "metadata", "name") or ""),
        str(secret.get("type") or ""),
        str(len(data) if isinstance(data, Mapping) else 0),
        _since(_get(secret, "metadata", "creationTimestamp"), now),
    ]


_RowFn = Callable[[Obj, bool, datetime], Row]


@dataclass(frozen=True)
class Column:
    """A column as the API server's printers define it (metav1.TableColumnDefinition):
    kubectl shows `name` upper-cased; priority 1 columns only under `-o wide`."""

    name: str
    type: str = "string"
    format: str = ""
    description: str = ""
    priority: int = 0

    @property
    def header(self) -> str:
        return self.name.upper()


def _cols(names: Sequence[str], wide: Sequence[str] = (), **types: str) -> tuple[Column, ...]:
    def col(n: str, priority: int) -> Column:
        return Column(
            n,
            type=types.get(n.replace("-", "_").lower(), "string"),
            format="name" if n == "Name" else "",
            description=_DESCRIPTIONS.get(n, ""),
            priority=priority,
        )

    return (*(col(n, 0) for n in names), *(col(n, 1) for n in wide))


_DESCRIPTIONS = {
    "Name": "Name must be unique within a namespace. Is required when creating resources, although some "
    "resources may allow a client to request the generation of an appropriate name automatically. Name is "
    "primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
    "Age": "CreationTimestamp is a timestamp representing the server time when this object was created. It is "
    "not guaranteed to be set in happens-before order across separate operations. Clients may not set this "
    "value. It is represented in RFC3339 form and is in UTC.",
}

# kind -> (columns, row function); the row function gives the priority 0
# cells, then (wide) the priority 1 ones: `podnet get` and the API server's
# Table objects (server/tables.py) both print from these.
_PRINTERS: dict[str, tuple[tuple[Column, ...], _RowFn]] = {
    "Namespace": (_cols(("Name", "Status", "Age")), _namespace_row),
    "Node": (
        _cols(
            ("Name", "Status", "Roles", "Age", "Version"),
            ("Internal-IP", "External-IP", "OS-Image", "Kernel-Version", "Container-Runtime"),
        ),
        _node_row,
    ),
    "Pod": (
        _cols(
            ("Name", "Ready", "Status", "Restarts", "Age"),
            ("IP", "Node", "Nominated Node", "Readiness Gates"),
        ),
        _pod_row,
    ),
    "Service": (
        _cols(("Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age"), ("Selector",)),
        _service_row,
    ),
    "Deployment": (
        _cols(
            ("Name", "Ready", "Up-to-date", "Available", "Age"),
            ("Containers", "Images", "Selector"),
            up_to_date="integer",
            available="integer",
        ),
        _deployment_row,
    ),
    "EndpointSlice": (_cols(("Name", "AddressType", "Ports", "Endpoints", "Age")), _endpoint_slice_row),
    "NetworkPolicy": (_cols(("Name", "Pod-Selector", "Age")), _network_policy_row),
    "Ingress": (_cols(("Name", "Class", "Hosts", "Address", "Ports", "Age")), _ingress_row),
    "IngressClass": (_cols(("Name", "Controller", "Parameters", "Age")), _ingress_class_row),
    "Secret": (_cols(("Name", "Type", "Data", "Age"), data="integer"), _secret_row),
}


def columns(kind: str) -> tuple[Column, ...]:
    """The columns of `kind`'s table, wide ones (priority 1) last. KeyError
    for a kind with no printer."""
    return _PRINTERS[kind][0]


def cells(kind: str, obj: Obj, now: datetime | None = None) -> Row:
    """One row of `kind`'s table, every column (as the API server fills a
    Table: the wide form)."""
    return _PRINTERS[kind][1](obj, True, now or datetime.now(UTC))


def _tabulate(rows: list[Row]) -> str:
    """Go's text/tabwriter as kubectl configures it. The last cell of a line is not
    a column cell, so it is never padded (no trailing spaces)."""
    ncols = max(len(r) for r in rows)
    widths = [
        max(_MIN_WIDTH, *(len(r[i]) + _PADDING for r in rows if i < len(r) - 1)) for i in range(ncols - 1)
    ]
    lines = []
    for r in rows:
        cells = [c.ljust(widths[i]) for i, c in enumerate(r[:-1])]
        lines.append("".join(cells) + r[-1])
    return "\n".join(lines) + "\n"


def table(
    kind: str,
    objects: list[dict[str, Any]],
    wide: bool = False,
    all_namespaces: bool = False,
    now: datetime | None = None,
) -> str:
    """The table `kubectl get` prints for these objects, newline-terminated, header
    first. Empty string for no objects: kubectl then says "No resources found" on
    stderr, which is the caller's business. KeyError for a kind with no printer."""
    if kind not in _PRINTERS:
        raise KeyError(f"no table printer for kind {kind!r}")
    if not objects:
        return ""
    now = now or datetime.now(UTC)
    cols, row_fn = _PRINTERS[kind]
    header = [c.header for c in cols if wide or c.priority == 0]
    rows = [row_fn(obj, wide, now) for obj in objects]
    # kubectl never adds NAMESPACE for cluster-scoped kinds, even with -A.
    if all_namespaces and kinds.BY_KIND[kind].namespaced:
        header = ["NAMESPACE", *header]
        rows = [
            [str(_get(obj, "metadata", "namespace") or ""), *row]
            for obj, row in zip(objects, rows, strict=True)
        ]
    return _tabulate([header, *rows])


# --- -o json / -o yaml ----------------------------------------------------------


def to_list(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The v1 List kubectl wraps several objects in for -o json/yaml."""
    return {"apiVersion": "v1", "items": list(objects), "kind": "List", "metadata": {"resourceVersion": ""}}


# Go's encoding/json escapes these even with indentation; kubectl's output shows them.
_GO_JSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def dump(obj: Any, fmt: Literal["json", "yaml"]) -> str:
    """An object as `kubectl get -o json|yaml` prints it, newline-terminated."""
    if fmt == "json":
        text = json.dumps(obj, indent=4, ensure_ascii=False)
        # Those characters only ever occur inside JSON strings, so replacing is safe.
        for raw, escaped in _GO_JSON_ESCAPES.items():
            text = text.replace(raw, escaped)
        return text + "\n"
    if fmt == "yaml":
        # No line wrapping: Go's YAML encoder keeps long strings on one line.
        return yaml.safe_dump(obj, default_flow_style=False, sort_keys=False, allow_unicode=True, width=2**31)
    raise ValueError(f"unsupported output format {fmt!r}")
