"""Validation of a NetworkPolicy as the API server does it
(ValidateNetworkPolicy in k8s.io/kubernetes/pkg/apis/networking/validation),
after defaulting, with the same field paths and wording. Called through
podnet.api.validation.validate, which owns the error list type."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

from podnet.api.validation import (
    _validate_label_selector,
    _validate_meta,
    dns1123_subdomain_errors,
    iana_svc_name_errors,
    port_num_errors,
)

if TYPE_CHECKING:
    from podnet.api.validation import _Errors

Obj = dict[str, Any]
PROTOCOLS = ("TCP", "UDP", "SCTP")
POLICY_TYPES = ("Ingress", "Egress")
_CIDR_MSG = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"


def validate_network_policy(e: _Errors, obj: Obj, old: Obj | None) -> None:
    _validate_meta(e, obj, dns1123_subdomain_errors, namespaced=True, old=old)
    spec = e.get_map(obj, "spec", "spec") or {}
    selector = e.get_map(spec, "podSelector", "spec.podSelector")
    if selector is not None:
        _validate_label_selector(e, selector, "spec.podSelector")
    for direction, peers_key in (("ingress", "from"), ("egress", "to")):
        for i, rule in enumerate(e.get_list(spec, direction, f"spec.{direction}")):
            rpath = f"spec.{direction}[{i}]"
            if not isinstance(rule, dict):
                e.wrong_type(rpath, rule, "an object")
                continue
            for j, port in enumerate(e.get_list(rule, "ports", f"{rpath}.ports")):
                _validate_port(e, port, f"{rpath}.ports[{j}]")
            for j, peer in enumerate(e.get_list(rule, peers_key, f"{rpath}.{peers_key}")):
                _validate_peer(e, peer, f"{rpath}.{peers_key}[{j}]")
    types = e.get_list(spec, "policyTypes", "spec.policyTypes")
    if len(types) > len(POLICY_TYPES):
        e.invalid("spec.policyTypes", types, "may not specify more than two policyTypes")
        return
    for i, t in enumerate(types):
        if t not in POLICY_TYPES:
            e.not_supported(f"spec.policyTypes[{i}]", t, POLICY_TYPES)


def _validate_port(e: _Errors, port: object, path: str) -> None:
    if not isinstance(port, dict):
        e.wrong_type(path, port, "an object")
        return
    protocol = port.get("protocol")
    if protocol is not None and protocol not in PROTOCOLS:
        e.not_supported(f"{path}.protocol", protocol, PROTOCOLS)
    value = port.get("port")
    end = e.get_int(port, "endPort", f"{path}.endPort")
    if value is None:
        if end is not None:
            e.invalid(f"{path}.endPort", end, "may not be specified when `port` is not specified")
    elif isinstance(value, bool) or not isinstance(value, int | str):
        e.wrong_type(f"{path}.port", value, "an integer or a string")
    elif isinstance(value, int):
        e.messages(f"{path}.port", value, port_num_errors(value))
        if end is not None:
            if end < value:
                # Upstream reports the port, not endPort, as the bad value.
                e.invalid(f"{path}.endPort", value, "must be greater than or equal to `port`")
            e.messages(f"{path}.endPort", end, port_num_errors(end))
    else:
        if end is not None:
            e.invalid(f"{path}.endPort", end, "may not be specified when `port` is non-numeric")
        e.messages(f"{path}.port", value, iana_svc_name_errors(value))


def _validate_peer(e: _Errors, peer: object, path: str) -> None:
    if not isinstance(peer, dict):
        e.wrong_type(path, peer, "an object")
        return
    count = 0
    for key in ("podSelector", "namespaceSelector"):
        selector = e.get_map(peer, key, f"{path}.{key}")
        if selector is not None:
            count += 1
            _validate_label_selector(e, selector, f"{path}.{key}")
    block = e.get_map(peer, "ipBlock", f"{path}.ipBlock")
    if block is not None:
        count += 1
        _validate_ip_block(e, block, f"{path}.ipBlock")
    if count == 0:
        e.required(path, "must specify a peer")
    elif count > 1 and block is not None:
        e.forbidden(path, "may not specify both ipBlock and another peer")


def _network(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    if "/" not in value:
        return None
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        return None


def _validate_ip_block(e: _Errors, block: Obj, path: str) -> None:
    cidr = e.get_str(block, "cidr", f"{path}.cidr")
    if not cidr:
        e.required(f"{path}.cidr")
        return
    net = _network(cidr)
    if net is None:
        e.invalid(f"{path}.cidr", cidr, _CIDR_MSG)
        return
    for i, text in enumerate(e.get_list(block, "except", f"{path}.except")):
        epath = f"{path}.except[{i}]"
        sub = _network(text) if isinstance(text, str) else None
        if sub is None:
            e.invalid(epath, text, _CIDR_MSG)
            continue
        if sub.version != net.version or not sub.subnet_of(net) or sub.prefixlen <= net.prefixlen:  # type: ignore[arg-type]
            e.invalid(epath, text, "must be a strict subset of `cidr`")
