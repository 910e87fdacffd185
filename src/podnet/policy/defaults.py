"""The API server's defaults for a NetworkPolicy (SetDefaults_NetworkPolicy and
SetDefaults_NetworkPolicyPort in k8s.io/kubernetes/pkg/apis/networking/v1).
Like the rest of defaulting, leaves anything malformed to validation."""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]


def default_network_policy(np: Obj) -> None:
    spec = np.get("spec")
    if spec is None:
        spec = np["spec"] = {}
    if not isinstance(spec, dict):
        return
    # podSelector is a struct, not a pointer: absent means {} (every pod).
    if spec.get("podSelector") is None:
        spec["podSelector"] = {}
    if not spec.get("policyTypes"):
        # Ingress always; Egress only when there are egress rules (an empty list is none).
        types = ["Ingress"]
        egress = spec.get("egress")
        if isinstance(egress, list) and egress:
            types.append("Egress")
        spec["policyTypes"] = types
    for direction in ("ingress", "egress"):
        rules = spec.get(direction)
        if not isinstance(rules, list):
            continue
        for rule in rules:
            if not isinstance(rule, dict):
                continue
            ports = rule.get("ports")
            if not isinstance(ports, list):
                continue
            for port in ports:
                if isinstance(port, dict) and port.get("protocol") is None:
                    port["protocol"] = "TCP"
