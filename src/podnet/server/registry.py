"""The API server's logic, without HTTP: what happens to an object on
create, update and delete (defaulting, validation, allocation, graceful
deletion), in front of the store. The HTTP layer and the in-process
controllers both go through here, so they see the same semantics.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from podnet.api import selectors
from podnet.api.defaults import apply_defaults, apply_update_defaults
from podnet.api.errors import AlreadyExists, BadRequest, Invalid, NotFound
from podnet.api.kinds import BY_KIND, Kind, for_object
from podnet.api.validation import validate
from podnet.config import ClusterConfig
from podnet.controllers import ipam
from podnet.server import patch as patches
from podnet.store.store import Obj, Store, clone

# Fields the server fills in; an update that leaves them out keeps them,
# as a client-side `kubectl apply` (which never sent them) expects.
SERVER_FILLED_SPEC = {
    "Service": ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"),
    "Pod": ("nodeName",),
}
# Kinds whose status is written only through the status subresource.
HAS_STATUS = {"Pod", "Service", "Deployment", "Node", "Namespace", "Ingress"}
# Kinds whose status a create ignores, as the API server's PrepareForCreate
# does (a Node's kubelet and the namespace bootstrap do create with status).
STATUS_RESET_ON_CREATE = {"Pod", "Service", "Deployment", "Ingress"}


def _random_suffix(n: int = 5) -> str:
    # kube's rand.String alphabet: no vowels, no look-alike digits
    return "".join(random.choices("bcdfghjklmnpqrstvwxz2456789", k=n))


class Registry:
    def __init__(self, store: Store, config: ClusterConfig) -> None:
        self.store = store
        self.config = config
        self._alloc_lock = threading.Lock()

    # -- reads ---------------------------------------------------------------

    def get(self, kind: str, namespace: str | None, name: str) -> Obj:
        return self.store.get(kind, (namespace or "") if BY_KIND[kind].namespaced else "", name)

    def list(
        self,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> tuple[list[Obj], int]:
        where = _filter(label_selector, field_selector)
        return self.store.list(kind, namespace if BY_KIND[kind].namespaced else None, where)

    # -- writes --------------------------------------------------------------

    def create(self, obj: Obj, namespace: str | None = None, dry_run: bool = False) -> Obj:
        kind = self._kind_of(obj)
        obj = clone(obj)
        meta = obj.setdefault("metadata", {})
        if kind.namespaced:
            ns = meta.get("namespace") or namespace or "default"
            if namespace and meta.get("namespace") and meta["namespace"] != namespace:
                raise BadRequest(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = ns
            self._require_namespace(ns)
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + _random_suffix()
        for server_owned in (
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "deletionTimestamp",
            "generation",
        ):
            meta.pop(server_owned, None)
        if kind.kind in STATUS_RESET_ON_CREATE:
            obj.pop("status", None)  # a copied manifest's status (podIP, phase) means nothing here
        if kind.kind == "Ingress":  # the DefaultIngressClass admission plugin
            from podnet.ingress.validation import admit_ingress

            admit_ingress(obj, self.store.list("IngressClass", shared=True)[0])
        obj = apply_defaults(obj)
        validate(obj)
        with self._alloc_lock:  # allocation and create are one step
            self._allocate(obj)
            if dry_run:
                if self.store.exists(kind.kind, meta.get("namespace", ""), meta["name"]):
                    raise AlreadyExists(kind.resource, meta["name"])
                return obj
            return self.store.create(obj)

    def update(
        self, obj: Obj, namespace: str | None = None, subresource: str | None = None, dry_run: bool = False
    ) -> Obj:
        kind = self._kind_of(obj)
        meta = obj.get("metadata", {})
        ns = (meta.get("namespace") or namespace or "default") if kind.namespaced else ""
        old = self.store.get(kind.kind, ns, meta.get("name", ""))
        new = clone(obj)
        new["metadata"]["namespace"] = ns
        if not kind.namespaced:
            new["metadata"].pop("namespace")
        if subresource == "status":
            # Only the status changes; everything else stays as stored.
            merged = old  # a copy already: store.get returns one
            merged["status"] = new.get("status", {})
            merged["metadata"]["resourceVersion"] = new["metadata"].get("resourceVersion")
            return self.store.update(merged)
        # Server-owned: what the stored object has, and nothing a client sends.
        for field in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"):
            if field in old["metadata"]:
                new["metadata"][field] = old["metadata"][field]
            else:
                new["metadata"].pop(field, None)
        if kind.kind in HAS_STATUS:
            if "status" in old:
                new["status"] = old["status"]
            else:
                new.pop("status", None)
        for field in SERVER_FILLED_SPEC.get(kind.kind, ()):
            if field in old.get("spec", {}) and not new.get("spec", {}).get(field):
                new.setdefault("spec", {})[field] = old["spec"][field]
        new = apply_update_defaults(apply_defaults(new), old)
        validate(new, old)
        if kind.kind == "Pod":
            _check_pod_update(old, new)
        changed = new.get("spec") != old.get("spec")
        with self._alloc_lock:
            if kind.kind == "Service":
                self._allocate(new)
            if dry_run:
                return new
            return self.store.update(new, bump_generation=changed)

    def patch(
        self, kind: str, namespace: str | None, name: str, patch: Obj, subresource: str | None = None
    ) -> Obj:
        """A JSON merge patch (RFC 7386)."""
        current = self.get(kind, namespace, name)
        merged = patches.merge_patch(current, patch)
        merged["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        return self.update(merged, namespace, subresource)

    def delete(self, kind: str, namespace: str | None, name: str, grace_period: int | None = None) -> Obj:
        k = BY_KIND[kind]
        ns = (namespace or "default") if k.namespaced else ""
        obj = self.store.get(kind, ns, name)
        meta = obj["metadata"]
        if kind == "Pod" and obj.get("spec", {}).get("nodeName"):
            # Graceful: mark it; the node's kubelet stops it and then removes it.
            grace = (
                obj["spec"].get("terminationGracePeriodSeconds", 30) if grace_period is None else grace_period
            )
            if grace > 0 or meta.get("deletionTimestamp"):
                if meta.get("deletionTimestamp"):
                    if grace_period == 0:
                        return self.store.delete(kind, ns, name)
                    return obj
                meta["deletionTimestamp"] = _rfc3339(datetime.now(UTC) + timedelta(seconds=grace))
                meta["deletionGracePeriodSeconds"] = grace
                return self.store.update(obj)
        if kind == "Namespace":
            if name in ("default", "kube-system", "kube-public", "kube-node-lease"):
                raise BadRequest(f'namespace "{name}" is a system namespace and cannot be deleted')
            if not meta.get("deletionTimestamp"):
                meta["deletionTimestamp"] = _rfc3339(datetime.now(UTC))
                obj.setdefault("status", {})["phase"] = "Terminating"
                return self.store.update(obj)  # the namespace controller empties it
            return obj
        return self.store.delete(kind, ns, name)

    # -- helpers -------------------------------------------------------------

    def _kind_of(self, obj: Obj) -> Kind:
        try:
            return for_object(obj)
        except KeyError as exc:
            raise BadRequest(str(exc.args[0])) from None

    def _require_namespace(self, ns: str) -> None:
        try:
            nso = self.store.get("Namespace", "", ns)
        except NotFound:
            raise NotFound("namespaces", ns) from None
        if nso["metadata"].get("deletionTimestamp"):
            raise BadRequest(f'namespace "{ns}" is being terminated; no new content can be created in it')

    def _allocate(self, obj: Obj) -> None:
        if obj["kind"] == "Service":
            self._allocate_cluster_ip(obj)
            self._allocate_node_ports(obj)

    def _allocate_node_ports(self, svc: Obj) -> None:
        """nodePorts for NodePort and LoadBalancer Services (unless
        allocateLoadBalancerNodePorts is false), and a healthCheckNodePort for
        a LoadBalancer with externalTrafficPolicy Local: the port asked for,
        or a random free one of the range; a clash or a port out of range is
        refused naming the field, as the API server does."""
        spec = svc["spec"]
        name = svc["metadata"]["name"]
        kind = spec.get("type", "ClusterIP")
        lo, hi = self.config.node_port_bounds
        uid = svc["metadata"].get("uid")
        used: set[int] = set()
        for other in self.store.list("Service", shared=True)[0]:
            if other["metadata"]["uid"] == uid:
                continue
            used.update(p["nodePort"] for p in other["spec"].get("ports") or [] if p.get("nodePort"))
            if other["spec"].get("healthCheckNodePort"):
                used.add(other["spec"]["healthCheckNodePort"])
        wants_ports = kind == "NodePort" or (
            kind == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts", True) is not False
        )
        problems: list[tuple[str, str]] = []

        def take(asked: int | None, field: str) -> int | None:
            if asked:
                if not lo <= asked <= hi:
                    problems.append(
                        (
                            field,
                            f"Invalid value: {asked}: provided port is not in the valid range. "
                            f"The range of valid ports is {lo}-{hi}",
                        )
                    )
                    return None
                if asked in used:
                    problems.append((field, f"Invalid value: {asked}: provided port is already allocated"))
                    return None
                used.add(asked)
                return asked
            free = [p for p in range(lo, hi + 1) if p not in used]
            if not free:
                problems.append((field, f"Internal error: range {lo}-{hi} of nodePorts is full"))
                return None
            port = random.choice(free)
            used.add(port)
            return port

        for i, p in enumerate(spec.get("ports") or []):
            if kind not in ("NodePort", "LoadBalancer"):
                p.pop("nodePort", None)
            elif wants_ports or p.get("nodePort"):
                # Two ports with the same number (TCP and UDP) may share one nodePort.
                same = [
                    q.get("nodePort")
                    for q in spec["ports"][:i]
                    if q["port"] == p["port"] and q.get("nodePort")
                ]
                p["nodePort"] = (
                    same[0]
                    if same and not p.get("nodePort")
                    else take(p.get("nodePort"), f"spec.ports[{i}].nodePort")
                )
        if kind == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local":
            spec["healthCheckNodePort"] = take(spec.get("healthCheckNodePort"), "spec.healthCheckNodePort")
        else:
            spec.pop("healthCheckNodePort", None)
        if problems:
            raise Invalid("Service", name, problems)

    def _allocate_cluster_ip(self, svc: Obj) -> None:
        spec = svc["spec"]
        if spec.get("type") == "ExternalName":
            return
        name = svc["metadata"]["name"]
        asked = spec.get("clusterIP")
        if asked == "None":
            spec["clusterIPs"] = ["None"]
            return
        cidr = self.config.service_cidr
        services, _ = self.store.list("Service", shared=True)
        used = {
            s["spec"].get("clusterIP")
            for s in services
            if s["metadata"]["uid"] != svc["metadata"].get("uid") and s["spec"].get("clusterIP")
        }
        if asked:
            if not ipam.in_range(cidr, asked):
                raise Invalid(
                    "Service",
                    name,
                    [
                        (
                            "spec.clusterIPs",
                            f'Invalid value: ["{asked}"]: failed to allocate IP {asked}: the provided IP ({asked}) '
                            f"is not in the valid range. The range of valid IPs is {cidr}",
                        )
                    ],
                )
            if asked in used:
                raise Invalid(
                    "Service",
                    name,
                    [
                        (
                            "spec.clusterIPs",
                            f'Invalid value: ["{asked}"]: failed to allocate IP {asked}: provided IP is already allocated',
                        )
                    ],
                )
            ip = asked
        else:
            try:
                ip = ipam.random_ip(cidr, {u for u in used if u})
            except ipam.RangeExhausted as exc:
                raise Invalid(
                    "Service", name, [("spec.clusterIPs", f"failed to allocate a serviceIP: {exc}")]
                ) from None
        spec["clusterIP"] = ip
        spec["clusterIPs"] = [ip]


def _check_pod_update(old: Obj, new: Obj) -> None:
    # Kubernetes lets few pod spec fields change; podnet allows what it can honour.
    o, n = dict(old.get("spec", {})), dict(new.get("spec", {}))
    if not o.get("nodeName"):
        o.pop("nodeName", None)
        n.pop("nodeName", None)  # binding: the scheduler sets it once
    if o != n:
        raise Invalid(
            "Pod",
            new["metadata"]["name"],
            [
                (
                    "spec",
                    "Forbidden: pod updates may not change fields other than `spec.containers[*].image`, "
                    "`spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, `spec.tolerations` "
                    "(only additions to existing tolerations) or `spec.terminationGracePeriodSeconds`",
                )
            ],
        )


def _rfc3339(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _field_value(obj: Obj, path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    return "" if cur is None else str(cur)


def _filter(label_selector: str | None, field_selector: str | None) -> Callable[[Obj], bool] | None:
    checks: list[Callable[[Obj], bool]] = []
    if label_selector:
        try:
            sel = selectors.parse(label_selector)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        checks.append(lambda o: sel.matches(o.get("metadata", {}).get("labels") or {}))
    if field_selector:
        for term in field_selector.split(","):
            negate = "!=" in term
            field, _, value = term.replace("!=", "=").replace("==", "=").partition("=")
            if not field:
                raise BadRequest(f"invalid field selector: {field_selector!r}")
            f, v, neg = field.strip(), value.strip(), negate
            checks.append(lambda o, f=f, v=v, neg=neg: (_field_value(o, f) == v) != neg)  # type: ignore[misc]
    if not checks:
        return None
    return lambda o: all(c(o) for c in checks)
