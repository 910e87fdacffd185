"""The environment the kubelet gives a container, pure: the Service
variables (as kubelet's getServiceEnvVarMap and pkg/kubelet/envvars make
them) and the container's own `env`.

* Services: every Service of the pod's namespace that has a cluster IP
  (not headless, not ExternalName) when `enableServiceLinks` is not false,
  and always the `kubernetes` Service of `default` (the master service).
  Per Service ``{SVC}_SERVICE_HOST``, ``{SVC}_SERVICE_PORT`` (the first
  port), ``{SVC}_SERVICE_PORT_{NAME}`` per named port, and the Docker
  links variables ``{SVC}_PORT`` (``tcp://ip:port`` of the first port) and
  per port ``{SVC}_PORT_{port}_{PROTO}`` with ``_PROTO``, ``_PORT`` and
  ``_ADDR``. ``{SVC}`` is the name upper-cased, dashes to underscores.
* The container's `env`: `value` (with ``$(VAR)`` references expanded
  against the variables defined before it and the Service variables,
  ``$$`` an escaped dollar, an unknown reference left as written) and
  `valueFrom.fieldRef` (metadata.name, metadata.namespace, metadata.uid,
  metadata.labels['k'], metadata.annotations['k'], spec.nodeName,
  spec.serviceAccountName, status.podIP, status.podIPs, status.hostIP,
  status.hostIPs). It overrides a Service variable of the same name.
  Other sources (configMapKeyRef, secretKeyRef, resourceFieldRef) the lab
  has nothing for: such a variable is left out.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

Obj = dict[str, Any]
MASTER_NAMESPACE = "default"
MASTER_SERVICES = ("kubernetes",)


def env_name(name: str) -> str:
    return name.upper().replace("-", "_")


def _join(ip: str, port: int) -> str:
    try:
        v6 = ipaddress.ip_address(ip).version == 6
    except ValueError:
        v6 = False
    return f"[{ip}]:{port}" if v6 else f"{ip}:{port}"


def _ip_set(svc: Obj) -> bool:
    ip = (svc.get("spec") or {}).get("clusterIP")
    return bool(ip) and ip != "None"


def service_vars(service: Obj) -> dict[str, str]:
    """The variables of one Service (envvars.FromServices), in kubelet order."""
    spec = service.get("spec") or {}
    if not _ip_set(service) or not spec.get("ports"):
        return {}
    prefix = env_name(service["metadata"]["name"])
    ip = str(spec["clusterIP"])
    ports = spec["ports"]
    out = {f"{prefix}_SERVICE_HOST": ip, f"{prefix}_SERVICE_PORT": str(ports[0]["port"])}
    for p in ports:
        if p.get("name"):
            out[f"{prefix}_SERVICE_PORT_{env_name(p['name'])}"] = str(p["port"])
    for i, p in enumerate(ports):
        proto = str(p.get("protocol") or "TCP")
        url = f"{proto.lower()}://{_join(ip, int(p['port']))}"
        if i == 0:
            out[f"{prefix}_PORT"] = url
        pp = f"{prefix}_PORT_{p['port']}_{proto.upper()}"
        out[pp] = url
        out[f"{pp}_PROTO"] = proto.lower()
        out[f"{pp}_PORT"] = str(p["port"])
        out[f"{pp}_ADDR"] = ip
    return out


def services_env(pod: Obj, services: list[Obj]) -> dict[str, str]:
    """The Service variables for `pod`, given every Service of the cluster
    (or at least those of its namespace and default)."""
    ns = pod["metadata"].get("namespace", "default")
    links = (pod.get("spec") or {}).get("enableServiceLinks") is not False
    chosen: dict[str, Obj] = {}
    for svc in services:
        meta = svc["metadata"]
        if not _ip_set(svc):
            continue
        if meta.get("namespace") == ns and links:
            chosen[meta["name"]] = svc
        elif meta.get("namespace") == MASTER_NAMESPACE and meta["name"] in MASTER_SERVICES:
            chosen.setdefault(meta["name"], svc)
    out: dict[str, str] = {}
    for name in sorted(chosen):
        out.update(service_vars(chosen[name]))
    return out


_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(value: str, known: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: `$$` -> `$`, a known `$(VAR)` -> its
    value, an unknown one left as written."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return known.get(m.group(1), m.group(0))

    return _REF.sub(sub, value)


_SUBSCRIPT = re.compile(r"^metadata\.(labels|annotations)\['([^']*)'\]$")


def field_value(pod: Obj, path: str) -> str | None:
    """A downward-API fieldRef of `pod`, or None when the lab has no value."""
    meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    simple: dict[str, Any] = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName") or "default",
        "status.podIP": status.get("podIP"),
        "status.hostIP": status.get("hostIP"),
        "status.podIPs": ",".join(p.get("ip", "") for p in status.get("podIPs") or []) or status.get("podIP"),
        "status.hostIPs": ",".join(p.get("ip", "") for p in status.get("hostIPs") or [])
        or status.get("hostIP"),
    }
    if path in simple:
        v = simple[path]
        return None if v is None else str(v)
    m = _SUBSCRIPT.match(path)
    if m:
        v = (meta.get(m.group(1)) or {}).get(m.group(2))
        return "" if v is None else str(v)
    return None


def container_env(pod: Obj, container: Obj, base: dict[str, str]) -> dict[str, str]:
    """`base` (the Service variables) then the container's own `env`."""
    out = dict(base)
    for item in container.get("env") or []:
        name = item.get("name")
        if not name:
            continue
        if "valueFrom" in item:
            ref = (item.get("valueFrom") or {}).get("fieldRef")
            value = field_value(pod, ref.get("fieldPath", "")) if ref else None
            if value is None:
                continue
            out[name] = value
        else:
            out[name] = expand(str(item.get("value", "")), out)
    return out


def pod_env(pod: Obj, services: list[Obj], container: str | None = None) -> dict[str, str]:
    """The environment of a pod's container (the first when not named):
    its Service variables and its own env. `pod` should carry its
    status.podIP for the fieldRefs that read it."""
    containers = (pod.get("spec") or {}).get("containers") or [{}]
    chosen = next((c for c in containers if c.get("name") == container), containers[0])
    return container_env(pod, chosen, services_env(pod, services))
