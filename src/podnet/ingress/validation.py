"""The API server's part for Ingress, IngressClass (networking.k8s.io/v1)
and Secret (v1): defaulting and validation with the same field paths and
wording as k8s.io/kubernetes pkg/apis/networking/validation and
pkg/apis/core/validation. Called through podnet.api.defaults and
podnet.api.validation, which own the dispatch and the error list type."""

from __future__ import annotations

import base64
import binascii
import re
from typing import TYPE_CHECKING, Any

from podnet.api.validation import (
    Verbatim,
    _validate_meta,
    dns1035_label_errors,
    dns1123_subdomain_errors,
    iana_svc_name_errors,
    port_num_errors,
)
from podnet.ingress.model import CLASS_ANNOTATION, default_class

if TYPE_CHECKING:
    from podnet.api.validation import _Errors

Obj = dict[str, Any]
PATH_TYPES = ("Exact", "ImplementationSpecific", "Prefix")  # sorted, as the server lists them
INVALID_PATH_SEQUENCES = ("//", "/./", "/../", "%2f", "%2F")
INVALID_PATH_SUFFIXES = ("/..", "/.")
MAX_CONTROLLER_LEN = 250
PARAMETER_SCOPES = ("Cluster", "Namespace")
SECRET_TLS = "kubernetes.io/tls"
MAX_SECRET_SIZE = 1024 * 1024

_WILDCARD_FMT = r"\*\." + "[a-z0-9]([-a-z0-9]*[a-z0-9])?" + r"(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_WILDCARD_RE = re.compile(_WILDCARD_FMT)
_WILDCARD_MSG = (
    "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, "
    "which must consist of lower case alphanumeric characters, '-' or '.' and end with an "
    "alphanumeric character"
)
_CONFIG_KEY_FMT = "[-._a-zA-Z0-9]+"
_CONFIG_KEY_RE = re.compile(_CONFIG_KEY_FMT)


def wildcard_dns1123_subdomain_errors(value: str) -> list[str]:
    errs = []
    if len(value) > 253:
        errs.append("must be no more than 253 characters")
    if not _WILDCARD_RE.fullmatch(value):
        errs.append(f"{_WILDCARD_MSG} (e.g. '*.example.com', regex used for validation is '{_WILDCARD_FMT}')")
    return errs


def _is_ip(value: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


# --- defaults -------------------------------------------------------------------


def default_ingress_class(obj: Obj) -> None:
    params = (obj.get("spec") or {}).get("parameters")
    if isinstance(params, dict) and params.get("scope") is None:
        params["scope"] = "Cluster"


def default_secret(obj: Obj) -> None:
    """Type Opaque when unset; stringData folded into data (base64), as the
    API server's conversion does (stringData is write-only)."""
    if not obj.get("type"):
        obj["type"] = "Opaque"
    string_data = obj.get("stringData")
    if isinstance(string_data, dict):
        data = obj.get("data")
        if data is None:
            data = obj["data"] = {}
        if isinstance(data, dict):
            for k, v in string_data.items():
                if isinstance(v, str):
                    data[k] = base64.b64encode(v.encode()).decode()
            del obj["stringData"]


def admit_ingress(obj: Obj, classes: list[Obj]) -> None:
    """The DefaultIngressClass admission plugin: an Ingress created with no
    class gets the default IngressClass's name."""
    spec = obj.get("spec")
    if not isinstance(spec, dict) or spec.get("ingressClassName"):
        return
    if CLASS_ANNOTATION in ((obj.get("metadata") or {}).get("annotations") or {}):
        return
    name = default_class(classes)
    if name:
        spec["ingressClassName"] = name


# --- Ingress --------------------------------------------------------------------


def validate_ingress(e: _Errors, obj: Obj, old: Obj | None) -> None:
    _validate_meta(e, obj, dns1123_subdomain_errors, namespaced=True, old=old)
    spec = e.get_map(obj, "spec", "spec") or {}
    rules = e.get_list(spec, "rules", "spec.rules")
    default = e.get_map(spec, "defaultBackend", "spec.defaultBackend")
    if not rules and default is None:
        e.invalid(
            "spec",
            Verbatim("[]networking.IngressRule(nil)"),
            "either `defaultBackend` or `rules` must be specified",
        )
    if default is not None:
        _validate_backend(e, default, "spec.defaultBackend")
    for i, rule in enumerate(rules):
        _validate_rule(e, rule, f"spec.rules[{i}]")
    for i, tls in enumerate(e.get_list(spec, "tls", "spec.tls")):
        tpath = f"spec.tls[{i}]"
        if not isinstance(tls, dict):
            e.wrong_type(tpath, tls, "an object")
            continue
        for j, host in enumerate(e.get_list(tls, "hosts", f"{tpath}.hosts")):
            hpath = f"{tpath}.hosts[{j}]"
            if not isinstance(host, str):
                e.wrong_type(hpath, host, "a string")
            elif "*" in host:
                e.messages(hpath, host, wildcard_dns1123_subdomain_errors(host))
            else:
                e.messages(hpath, host, dns1123_subdomain_errors(host))
        secret = e.get_str(tls, "secretName", f"{tpath}.secretName")
        if secret:
            e.messages(f"{tpath}.secretName", secret, dns1123_subdomain_errors(secret))
    class_name = spec.get("ingressClassName")
    if class_name is not None:
        if not isinstance(class_name, str):
            e.wrong_type("spec.ingressClassName", class_name, "a string")
        else:
            e.messages("spec.ingressClassName", class_name, dns1123_subdomain_errors(class_name))
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    legacy = annotations.get(CLASS_ANNOTATION) if isinstance(annotations, dict) else None
    if old is None and legacy is not None and isinstance(class_name, str) and legacy != class_name:
        e.invalid(
            f"annotations.{CLASS_ANNOTATION}", legacy, "must match `ingressClassName` when both are specified"
        )


def _validate_rule(e: _Errors, rule: object, path: str) -> None:
    if not isinstance(rule, dict):
        e.wrong_type(path, rule, "an object")
        return
    host = e.get_str(rule, "host", f"{path}.host")
    if host:
        if _is_ip(host):
            e.invalid(f"{path}.host", host, "must be a DNS name, not an IP address")
        if "*" in host:
            e.messages(f"{path}.host", host, wildcard_dns1123_subdomain_errors(host))
        else:
            e.messages(f"{path}.host", host, dns1123_subdomain_errors(host))
    http = e.get_map(rule, "http", f"{path}.http")
    if http is None:
        return
    paths = e.get_list(http, "paths", f"{path}.http.paths")
    if not paths:
        e.required(f"{path}.http.paths")
    for i, p in enumerate(paths):
        _validate_path(e, p, f"{path}.http.paths[{i}]")


def _validate_path(e: _Errors, p: object, path: str) -> None:
    if not isinstance(p, dict):
        e.wrong_type(path, p, "an object")
        return
    ptype = p.get("pathType")
    value = e.get_str(p, "path", f"{path}.path")
    if ptype is None:
        e.required(f"{path}.pathType", "pathType must be specified")
        return
    if ptype in ("Exact", "Prefix"):
        if not value.startswith("/"):
            e.invalid(f"{path}.path", value, "must be an absolute path")
        if value:
            for seq in INVALID_PATH_SEQUENCES:
                if seq in value:
                    e.invalid(f"{path}.path", value, f"must not contain '{seq}'")
            for suffix in INVALID_PATH_SUFFIXES:
                if value.endswith(suffix):
                    e.invalid(f"{path}.path", value, f"cannot end with '{suffix}'")
    elif ptype == "ImplementationSpecific":
        if value and not value.startswith("/"):
            e.invalid(f"{path}.path", value, "must be an absolute path")
    else:
        e.not_supported(f"{path}.pathType", ptype, PATH_TYPES)
    backend = e.get_map(p, "backend", f"{path}.backend")
    _validate_backend(e, backend or {}, f"{path}.backend")


def _validate_backend(e: _Errors, backend: Obj, path: str) -> None:
    service = e.get_map(backend, "service", f"{path}.service")
    resource = e.get_map(backend, "resource", f"{path}.resource")
    if service is not None and resource is not None:
        e.invalid(path, "", "cannot set both resource and service backends")
        return
    if resource is not None:
        _validate_typed_reference(e, resource, f"{path}.resource")
        return
    if service is None:
        e.invalid(path, "", "resource or service backend is required")
        return
    name = e.get_str(service, "name", f"{path}.service.name")
    if not name:
        e.required(f"{path}.service.name")
    else:
        e.messages(f"{path}.service.name", name, dns1035_label_errors(name))
    port = e.get_map(service, "port", f"{path}.service.port") or {}
    port_name = e.get_str(port, "name", f"{path}.service.port.name")
    number = e.get_int(port, "number", f"{path}.service.port.number") or 0
    if port_name and number:
        e.invalid(path, "", "cannot set both port name & port number")
    elif port_name:
        e.messages(f"{path}.service.port.name", port_name, iana_svc_name_errors(port_name))
    elif number:
        e.messages(f"{path}.service.port.number", number, port_num_errors(number))
    else:
        e.required(path, "port name or number is required")


_PATH_SEGMENT_BAD = ("/", "%")


def _path_segment_errors(value: str) -> list[str]:
    if value in (".", ".."):
        return [f"may not be '{value}'"]
    return [f"may not contain '{c}'" for c in _PATH_SEGMENT_BAD if c in value]


def _validate_typed_reference(e: _Errors, ref: Obj, path: str, scoped: bool = False) -> None:
    group = ref.get("apiGroup")
    if isinstance(group, str):
        e.messages(f"{path}.apiGroup", group, dns1123_subdomain_errors(group))
    for key in ("kind", "name"):
        value = e.get_str(ref, key, f"{path}.{key}")
        if not value:
            e.required(f"{path}.{key}")
        else:
            e.messages(f"{path}.{key}", value, _path_segment_errors(value))
    if not scoped:
        return
    scope = ref.get("scope")
    if scope is None:
        e.required(f"{path}.scope")
    elif scope not in PARAMETER_SCOPES:
        e.not_supported(f"{path}.scope", scope, PARAMETER_SCOPES)
    elif scope == "Namespace" and ref.get("namespace") is None:
        e.required(f"{path}.namespace", "`parameters.scope` is set to 'Namespace'")
    elif scope == "Cluster" and ref.get("namespace") is not None:
        e.forbidden(f"{path}.namespace", "`parameters.scope` is set to 'Cluster'")


# --- IngressClass ---------------------------------------------------------------


def validate_ingress_class(e: _Errors, obj: Obj, old: Obj | None) -> None:
    _validate_meta(e, obj, dns1123_subdomain_errors, namespaced=False, old=old)
    spec = e.get_map(obj, "spec", "spec") or {}
    controller = e.get_str(spec, "controller", "spec.controller")
    if not controller:
        e.required("spec.controller")
    else:
        if len(controller) > MAX_CONTROLLER_LEN:
            e.too_long("spec.controller", MAX_CONTROLLER_LEN)
        e.messages("spec.controller", controller, _domain_prefixed_path_errors(controller))
    params = e.get_map(spec, "parameters", "spec.parameters")
    if params is not None:
        _validate_typed_reference(e, params, "spec.parameters", scoped=True)
    if old is not None:
        before = (old.get("spec") or {}).get("controller")
        if before and before != controller:
            e.invalid("spec.controller", controller, "field is immutable")


def _domain_prefixed_path_errors(value: str) -> list[str]:
    """IsDomainPrefixedPath: a DNS subdomain, then a path (`example.com/foo`)."""
    host, sep, rest = value.partition("/")
    if not sep or not rest:
        return ['must be a domain-prefixed path (such as "acme.io/foo")']
    return dns1123_subdomain_errors(host)


# --- Secret ---------------------------------------------------------------------


def validate_secret(e: _Errors, obj: Obj, old: Obj | None) -> None:
    _validate_meta(e, obj, dns1123_subdomain_errors, namespaced=True, old=old)
    data = e.get_map(obj, "data", "data") or {}
    total = 0
    for key, value in data.items():
        kpath = f"data[{key}]"
        errs = []
        if len(key) > 253:
            errs.append("must be no more than 253 characters")
        if not _CONFIG_KEY_RE.fullmatch(key):
            errs.append(
                "a valid config key must consist of alphanumeric characters, '-', '_' or '.' "
                f"(e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '{_CONFIG_KEY_FMT}')"
            )
        if key == ".":
            errs.append("must not be '.'")
        elif key == "..":
            errs.append("must not be '..'")
        elif key.startswith(".."):
            errs.append("must not start with '..'")
        e.messages("data", key, errs)
        if not isinstance(value, str):
            e.wrong_type(kpath, value, "a base64 string")
            continue
        try:
            total += len(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            e.invalid(kpath, "<secret contents redacted>", "illegal base64 data")
    if total > MAX_SECRET_SIZE:
        e.too_long("data", MAX_SECRET_SIZE)
    secret_type = e.get_str(obj, "type", "type")
    if secret_type == SECRET_TLS:
        for key in ("tls.crt", "tls.key"):
            if key not in data:
                e.required(f"data[{key}]")
    if old is not None and old.get("type") and secret_type != old.get("type"):
        e.invalid("type", secret_type, "field is immutable")
