"""The defaults the Kubernetes API server fills in on create, for the kinds the
lab serves (Kubernetes' `SetDefaults_*` functions for core/v1, apps/v1 and
discovery/v1, plus the Service registry's IP-family defaults).

Objects are plain JSON-shaped dicts. Defaulting never drops or rewrites a field
the caller set, and leaves anything malformed for validation to report, so a
value of the wrong type is skipped here rather than raising.
"""

from __future__ import annotations

import copy
import re
from typing import Any

Obj = dict[str, Any]

_LABEL_VALUE_RE = re.compile("([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]")
_PROBES = ("livenessProbe", "readinessProbe", "startupProbe")


def apply_defaults(obj: Obj) -> Obj:
    """A deep copy of `obj` with the API server's defaults filled in."""
    out = copy.deepcopy(obj)
    kind = out.get("kind")
    if kind == "Namespace":
        _default_namespace(out)
    elif kind == "Pod":
        spec = out.get("spec")
        if isinstance(spec, dict):
            _default_pod_spec(spec, is_pod=True)
    elif kind == "Deployment":
        _default_deployment(out)
    elif kind == "Service":
        _default_service(out)
    elif kind == "EndpointSlice":
        _default_endpoint_slice(out)
    elif kind == "NetworkPolicy":
        from podnet.policy.defaults import default_network_policy

        default_network_policy(out)
    elif kind in ("IngressClass", "Secret"):
        from podnet.ingress.validation import default_ingress_class, default_secret

        (default_secret if kind == "Secret" else default_ingress_class)(out)
    return out


def apply_update_defaults(obj: Obj, old: Obj) -> Obj:
    """Defaults for an update (a PUT that replaces `old` with `obj`): like
    `apply_defaults`, then carry over what the server allocated on create and the
    client may have left out (a Service's clusterIP/clusterIPs/ipFamilies,
    nodePorts, healthCheckNodePort), as the real Service registry does. Without
    this a `kubectl replace` of a Service would look like a clusterIP change."""
    out = apply_defaults(obj)
    if out.get("kind") == "Service" and old.get("kind") == "Service":
        _carry_over_service_allocations(out, old)
        _drop_type_dependent_fields(out, old)
    return out


def _drop_type_dependent_fields(new: Obj, old: Obj) -> None:
    """A Service turning into ExternalName loses the address fields it kept
    unchanged from before (the registry's dropTypeDependentFields), so that
    `kubectl apply` of `type: ExternalName` over a ClusterIP Service works."""
    spec, old_spec = new.get("spec"), old.get("spec")
    if not isinstance(spec, dict) or not isinstance(old_spec, dict):
        return
    if old_spec.get("type") == "ExternalName" or spec.get("type") != "ExternalName":
        return
    for field in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
        if field in spec and spec.get(field) == old_spec.get(field):
            del spec[field]


# --- Namespace -----------------------------------------------------------------


def _default_namespace(ns: Obj) -> None:
    meta = ns.get("metadata")
    if not isinstance(meta, dict):
        return
    name = meta.get("name")
    labels = meta.get("labels")
    if labels is None:
        labels = meta["labels"] = {}
    # Since 1.21 every namespace carries its own name as a label, which is what
    # lets a NetworkPolicy namespaceSelector pick a namespace by name.
    # (Skipped for a name too bad to be a label value: validation reports the name.)
    if isinstance(labels, dict) and isinstance(name, str) and _LABEL_VALUE_RE.fullmatch(name):
        labels["kubernetes.io/metadata.name"] = name


# --- Pod -----------------------------------------------------------------------


def _default_pod_spec(spec: Obj, *, is_pod: bool) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    if is_pod:
        # SetDefaults_Pod, not SetDefaults_PodSpec: templates do not get it.
        spec.setdefault("enableServiceLinks", True)
    host_network = spec.get("hostNetwork") is True
    for key in ("initContainers", "containers"):
        containers = spec.get(key)
        if not isinstance(containers, list):
            continue
        for container in containers:
            if isinstance(container, dict):
                _default_container(container, host_network=host_network and is_pod)


def _default_container(c: Obj, *, host_network: bool) -> None:
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    if not c.get("imagePullPolicy"):
        image = c.get("image")
        c["imagePullPolicy"] = image_pull_policy(image if isinstance(image, str) else "")
    ports = c.get("ports")
    if isinstance(ports, list):
        for port in ports:
            if not isinstance(port, dict):
                continue
            if not port.get("protocol"):
                port["protocol"] = "TCP"
            # With hostNetwork the container port *is* the host port.
            if host_network and not port.get("hostPort") and isinstance(port.get("containerPort"), int):
                port["hostPort"] = port["containerPort"]
    for key in _PROBES:
        probe = c.get(key)
        if isinstance(probe, dict):
            _default_probe(probe)
    c.setdefault("resources", {})


def _default_probe(probe: Obj) -> None:
    # Zero means unset for these int32 fields, as in Go.
    for key, value in (
        ("timeoutSeconds", 1),
        ("periodSeconds", 10),
        ("successThreshold", 1),
        ("failureThreshold", 3),
    ):
        if not probe.get(key):
            probe[key] = value
    http = probe.get("httpGet")
    if isinstance(http, dict):
        if not http.get("path"):
            http["path"] = "/"
        if not http.get("scheme"):
            http["scheme"] = "HTTP"


def image_pull_policy(image: str) -> str:
    """The pull policy Kubernetes picks for an image reference: Always for the
    `latest` tag, which an image without a tag or digest implicitly has."""
    ref = image.split("@", 1)
    if len(ref) == 2:
        name, has_digest = ref[0], True
    else:
        name, has_digest = image, False
    last = name.rsplit("/", 1)[-1]
    # A colon in the last path segment is a tag; one earlier is a registry port.
    tag = last.rsplit(":", 1)[1] if ":" in last else ""
    if not tag and not has_digest and image:
        tag = "latest"
    return "Always" if tag == "latest" else "IfNotPresent"


# --- Deployment ----------------------------------------------------------------


def _default_deployment(d: Obj) -> None:
    spec = d.get("spec")
    if not isinstance(spec, dict):
        return
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    strategy = spec.get("strategy")
    if strategy is None:
        strategy = spec["strategy"] = {}
    if isinstance(strategy, dict):
        if not strategy.get("type"):
            strategy["type"] = "RollingUpdate"
        if strategy["type"] == "RollingUpdate":
            rolling = strategy.get("rollingUpdate")
            if rolling is None:
                rolling = strategy["rollingUpdate"] = {}
            if isinstance(rolling, dict):
                if rolling.get("maxUnavailable") is None:
                    rolling["maxUnavailable"] = "25%"
                if rolling.get("maxSurge") is None:
                    rolling["maxSurge"] = "25%"
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10
    if spec.get("progressDeadlineSeconds") is None:
        spec["progressDeadlineSeconds"] = 600
    template = spec.get("template")
    if isinstance(template, dict):
        pod_spec = template.get("spec")
        if isinstance(pod_spec, dict):
            _default_pod_spec(pod_spec, is_pod=False)


# --- Service -------------------------------------------------------------------


def _default_service(svc: Obj) -> None:
    spec = svc.get("spec")
    if spec is None:
        spec = svc["spec"] = {}
    if not isinstance(spec, dict):
        return
    if not spec.get("type"):
        spec["type"] = "ClusterIP"
    svc_type = spec["type"]
    if not spec.get("sessionAffinity"):
        spec["sessionAffinity"] = "None"
    if spec["sessionAffinity"] == "ClientIP":
        _default_client_ip_timeout(spec)
    ports = spec.get("ports")
    if isinstance(ports, list):
        for port in ports:
            if not isinstance(port, dict):
                continue
            if not port.get("protocol"):
                port["protocol"] = "TCP"
            # 0 and "" are the IntOrString zero values, i.e. unset.
            if port.get("targetPort") in (None, 0, "") and port.get("port") is not None:
                port["targetPort"] = port["port"]
    # externalIPs make a Service externally reachable too (as the API server sees it).
    external = svc_type in ("NodePort", "LoadBalancer") or bool(spec.get("externalIPs"))
    if external and not spec.get("externalTrafficPolicy"):
        spec["externalTrafficPolicy"] = "Cluster"
    if svc_type != "ExternalName" and spec.get("internalTrafficPolicy") is None:
        spec["internalTrafficPolicy"] = "Cluster"
    if svc_type == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is None:
        spec["allocateLoadBalancerNodePorts"] = True
    headless_without_selector = spec.get("clusterIP") == "None" and not spec.get("selector")
    # The lab is single-stack IPv4; a headless Service without a selector gets
    # its families from the cluster, which the real server handles separately.
    if svc_type != "ExternalName" and not headless_without_selector:
        if spec.get("ipFamilyPolicy") is None:
            spec["ipFamilyPolicy"] = "SingleStack"
        if spec.get("ipFamilies") is None:
            spec["ipFamilies"] = ["IPv4"]


def _default_client_ip_timeout(spec: Obj) -> None:
    config = spec.get("sessionAffinityConfig")
    if config is None:
        config = spec["sessionAffinityConfig"] = {}
    if not isinstance(config, dict):
        return
    client_ip = config.get("clientIP")
    if client_ip is None:
        client_ip = config["clientIP"] = {}
    if isinstance(client_ip, dict) and client_ip.get("timeoutSeconds") is None:
        client_ip["timeoutSeconds"] = 10800  # 3 hours, v1.DefaultClientIPServiceAffinitySeconds


def _carry_over_service_allocations(new: Obj, old: Obj) -> None:
    spec, old_spec = new.get("spec"), old.get("spec")
    if not isinstance(spec, dict) or not isinstance(old_spec, dict):
        return
    keeps_ip = "ExternalName" not in (spec.get("type"), old_spec.get("type"))
    if keeps_ip and not spec.get("clusterIP") and old_spec.get("clusterIP"):
        spec["clusterIP"] = old_spec["clusterIP"]
        if "clusterIPs" in old_spec and not spec.get("clusterIPs"):
            spec["clusterIPs"] = copy.deepcopy(old_spec["clusterIPs"])
        if "ipFamilies" in old_spec:
            spec["ipFamilies"] = copy.deepcopy(old_spec["ipFamilies"])
    node_port_types = ("NodePort", "LoadBalancer")
    if spec.get("type") in node_port_types and old_spec.get("type") in node_port_types:
        old_ports = old_spec.get("ports")
        new_ports = spec.get("ports")
        if isinstance(old_ports, list) and isinstance(new_ports, list):
            allocated = {
                (p.get("port"), p.get("protocol") or "TCP"): p["nodePort"]
                for p in old_ports
                if isinstance(p, dict) and p.get("nodePort")
            }
            for p in new_ports:
                if isinstance(p, dict) and not p.get("nodePort"):
                    key = (p.get("port"), p.get("protocol") or "TCP")
                    if key in allocated:
                        p["nodePort"] = allocated[key]
        if not spec.get("healthCheckNodePort") and old_spec.get("healthCheckNodePort"):
            local = spec.get("externalTrafficPolicy") == "Local"
            if local and spec.get("type") == "LoadBalancer":
                spec["healthCheckNodePort"] = old_spec["healthCheckNodePort"]


# --- EndpointSlice -------------------------------------------------------------


def _default_endpoint_slice(es: Obj) -> None:
    ports = es.get("ports")
    if not isinstance(ports, list):
        return
    for port in ports:
        if not isinstance(port, dict):
            continue
        if port.get("name") is None:
            port["name"] = ""
        if port.get("protocol") is None:
            port["protocol"] = "TCP"
