"""What the API server refuses and fills in for Ingress, IngressClass and
Secret, with its field paths and wording; the default-class admission;
and kubectl's columns for the three kinds."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from podnet.api import kinds
from podnet.api.defaults import apply_defaults
from podnet.api.errors import Invalid
from podnet.api.validation import validate
from podnet.cli import printers
from podnet.ingress.validation import admit_ingress

Obj = dict[str, Any]
WILDCARD_MSG = (
    "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must "
    "consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character "
    "(e.g. '*.example.com', regex used for validation is "
    "'\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)


def ingress(spec: Obj, annotations: dict[str, str] | None = None) -> Obj:
    meta: Obj = {"name": "shop", "namespace": "default"}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta, "spec": spec}


def paths(*items: Obj, host: str = "shop.example.com") -> Obj:
    return {"rules": [{"host": host, "http": {"paths": list(items)}}]}


def path(p: str | None = "/", ptype: str | None = "Prefix", backend: Obj | None = None) -> Obj:
    out: Obj = {
        "backend": backend if backend is not None else {"service": {"name": "web", "port": {"number": 80}}}
    }
    if p is not None:
        out["path"] = p
    if ptype is not None:
        out["pathType"] = ptype
    return out


def causes(obj: Obj) -> list[tuple[str, str]]:
    try:
        validate(apply_defaults(obj))
    except Invalid as exc:
        return list(exc.causes)
    return []


def test_a_valid_ingress_passes() -> None:
    assert causes(ingress(paths(path("/cart"), path("/", "Exact"), path("", "ImplementationSpecific")))) == []
    assert causes(ingress({"defaultBackend": {"service": {"name": "web", "port": {"name": "http"}}}})) == []


P = "spec.rules[0].http.paths[0]"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {},
            [
                (
                    "spec",
                    "Invalid value: []networking.IngressRule(nil): either `defaultBackend` or `rules` must be specified",
                )
            ],
        ),
        (paths(path("cart")), [(f"{P}.path", 'Invalid value: "cart": must be an absolute path')]),
        (paths(path("cart", "Exact")), [(f"{P}.path", 'Invalid value: "cart": must be an absolute path')]),
        (paths(path("", "Prefix")), [(f"{P}.path", 'Invalid value: "": must be an absolute path')]),
        (
            paths(path("cart", "ImplementationSpecific")),
            [(f"{P}.path", 'Invalid value: "cart": must be an absolute path')],
        ),
        (paths(path("/a//b")), [(f"{P}.path", "Invalid value: \"/a//b\": must not contain '//'")]),
        (paths(path("/a/..")), [(f"{P}.path", "Invalid value: \"/a/..\": cannot end with '/..'")]),
        (
            paths(path("/a%2fb", "Exact")),
            [(f"{P}.path", "Invalid value: \"/a%2fb\": must not contain '%2f'")],
        ),
        (paths(path("/", None)), [(f"{P}.pathType", "Required value: pathType must be specified")]),
        (
            paths(path("/", "Regex")),
            [
                (
                    f"{P}.pathType",
                    'Unsupported value: "Regex": supported values: "Exact", "ImplementationSpecific", "Prefix"',
                )
            ],
        ),
        (
            paths(path(backend={})),
            [(f"{P}.backend", 'Invalid value: "": resource or service backend is required')],
        ),
        (
            paths(
                path(
                    backend={
                        "service": {"name": "web", "port": {"number": 80}},
                        "resource": {"kind": "B", "name": "b"},
                    }
                )
            ),
            [(f"{P}.backend", 'Invalid value: "": cannot set both resource and service backends')],
        ),
        (
            paths(path(backend={"service": {"name": "web", "port": {"number": 80, "name": "http"}}})),
            [(f"{P}.backend", 'Invalid value: "": cannot set both port name & port number')],
        ),
        (
            paths(path(backend={"service": {"name": "web", "port": {}}})),
            [(f"{P}.backend", "Required value: port name or number is required")],
        ),
        (
            paths(path(backend={"service": {"name": "web", "port": {"number": 70000}}})),
            [
                (
                    f"{P}.backend.service.port.number",
                    "Invalid value: 70000: must be between 1 and 65535, inclusive",
                )
            ],
        ),
        (
            paths(path(backend={"service": {"name": "web", "port": {"name": "HTTP"}}})),
            [
                (
                    f"{P}.backend.service.port.name",
                    'Invalid value: "HTTP": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)',
                ),
                (
                    f"{P}.backend.service.port.name",
                    'Invalid value: "HTTP": must contain at least one letter (a-z)',
                ),
            ],
        ),
        (
            paths(path(backend={"service": {"port": {"number": 80}}})),
            [(f"{P}.backend.service.name", "Required value")],
        ),
        (
            paths(path(backend={"resource": {"kind": "Bucket"}})),
            [(f"{P}.backend.resource.name", "Required value")],
        ),
        (
            paths(path(), host="a.*.example.com"),
            [("spec.rules[0].host", f'Invalid value: "a.*.example.com": {WILDCARD_MSG}')],
        ),
        (paths(path(), host="*"), [("spec.rules[0].host", f'Invalid value: "*": {WILDCARD_MSG}')]),
        (
            paths(path(), host="10.0.0.1"),
            [("spec.rules[0].host", 'Invalid value: "10.0.0.1": must be a DNS name, not an IP address')],
        ),
        (
            {"rules": [{"host": "a.example.com", "http": {"paths": []}}]},
            [("spec.rules[0].http.paths", "Required value")],
        ),
        (
            {**paths(path()), "tls": [{"hosts": ["*.*.example.com"], "secretName": "Bad_Name"}]},
            [
                ("spec.tls[0].hosts[0]", f'Invalid value: "*.*.example.com": {WILDCARD_MSG}'),
                (
                    "spec.tls[0].secretName",
                    'Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain must consist of lower case '
                    "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character "
                    "(e.g. 'example.com', regex used for validation is "
                    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
                ),
            ],
        ),
    ],
)
def test_what_the_api_server_refuses(spec: Obj, expected: list[tuple[str, str]]) -> None:
    assert causes(ingress(spec)) == expected


def test_the_class_annotation_must_match_the_class_name() -> None:
    got = causes(
        ingress({**paths(path()), "ingressClassName": "nginx"}, {"kubernetes.io/ingress.class": "haproxy"})
    )
    assert got == [
        (
            "annotations.kubernetes.io/ingress.class",
            'Invalid value: "haproxy": must match `ingressClassName` when both are specified',
        )
    ]


def test_a_wildcard_host_is_fine() -> None:
    assert causes(ingress(paths(path(), host="*.example.com"))) == []


def test_the_default_class_is_set_on_create() -> None:
    default = {
        "metadata": {"name": "nginx", "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}}
    }
    obj = ingress(paths(path()))
    admit_ingress(obj, [default])
    assert obj["spec"]["ingressClassName"] == "nginx"
    legacy = ingress(paths(path()), {"kubernetes.io/ingress.class": "other"})
    admit_ingress(legacy, [default])
    assert "ingressClassName" not in legacy["spec"]
    none = ingress(paths(path()))
    admit_ingress(none, [])
    assert "ingressClassName" not in none["spec"]


def ingress_class(spec: Obj) -> Obj:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {"name": "c"},
        "spec": spec,
    }


def test_ingress_class_validation_and_defaults() -> None:
    assert causes(ingress_class({"controller": "k8s.io/ingress-nginx"})) == []
    assert causes(ingress_class({})) == [("spec.controller", "Required value")]
    assert causes(ingress_class({"controller": "nginx"})) == [
        ("spec.controller", 'Invalid value: "nginx": must be a domain-prefixed path (such as "acme.io/foo")')
    ]
    params = {"controller": "example.com/x", "parameters": {"kind": "Cfg", "name": "c"}}
    assert apply_defaults(ingress_class(params))["spec"]["parameters"]["scope"] == "Cluster"
    params["parameters"] = {"kind": "Cfg", "name": "c", "scope": "Namespace"}
    assert causes(ingress_class(params)) == [
        ("spec.parameters.namespace", "Required value: `parameters.scope` is set to 'Namespace'")
    ]
    old = apply_defaults(ingress_class({"controller": "example.com/a"}))
    new = apply_defaults(ingress_class({"controller": "example.com/b"}))
    with pytest.raises(Invalid) as exc:
        validate(new, old)
    assert ("spec.controller", 'Invalid value: "example.com/b": field is immutable') in exc.value.causes


def secret(data: Obj, type_: str | None = "kubernetes.io/tls", string_data: Obj | None = None) -> Obj:
    obj: Obj = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s", "namespace": "default"},
        "data": data,
    }
    if type_:
        obj["type"] = type_
    if string_data:
        obj["stringData"] = string_data
    return obj


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def test_secrets() -> None:
    assert causes(secret({"tls.crt": b64("c"), "tls.key": b64("k")})) == []
    assert causes(secret({"tls.crt": b64("c")})) == [("data[tls.key]", "Required value")]
    assert causes(secret({"a": "!!!"}, None)) == [
        ("data[a]", 'Invalid value: "<secret contents redacted>": illegal base64 data')
    ]
    assert causes(secret({"a/b": b64("x")}, None))[0][0] == "data"
    out = apply_defaults(secret({}, None, {"user": "admin"}))
    assert out["type"] == "Opaque" and out["data"] == {"user": b64("admin")} and "stringData" not in out


def test_the_kinds_resolve_as_kubectl_names_them() -> None:
    assert kinds.lookup("ing").kind == "Ingress"
    assert kinds.lookup("ingresses.networking.k8s.io").kind == "Ingress"
    assert kinds.lookup("ingressclass").kind == "IngressClass"
    assert kinds.lookup("secrets").kind == "Secret"
    assert (
        kinds.BY_KIND["Ingress"].collection_path("default")
        == "/apis/networking.k8s.io/v1/namespaces/default/ingresses"
    )


NOW = datetime(2024, 1, 1, 0, 10, tzinfo=UTC)


def test_printers() -> None:
    ing = ingress(
        {
            "ingressClassName": "nginx",
            "tls": [{"hosts": ["a.example.com"], "secretName": "s"}],
            "rules": [
                {"host": h} for h in ("a.example.com", "", "b.example.com", "c.example.com", "d.example.com")
            ],
        }
    )
    ing["metadata"]["creationTimestamp"] = "2024-01-01T00:00:00Z"
    ing["status"] = {"loadBalancer": {"ingress": [{"ip": "203.0.113.129"}]}}
    rows = [re.split(r"\s{3,}", line) for line in printers.table("Ingress", [ing], now=NOW).splitlines()]
    assert rows == [
        ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"],
        [
            "shop",
            "nginx",
            "a.example.com,b.example.com,c.example.com + 2 more...",
            "203.0.113.129",
            "80, 443",
            "10m",
        ],
    ]
    bare = ingress({"defaultBackend": {}})
    assert printers.table("Ingress", [bare], now=NOW).splitlines()[1].split() == [
        "shop",
        "<none>",
        "*",
        "80",
        "<unknown>",
    ]
    ic = ingress_class(
        {
            "controller": "k8s.io/ingress-nginx",
            "parameters": {"apiGroup": "k8s.example.com", "kind": "Cfg", "name": "x"},
        }
    )
    assert printers.table("IngressClass", [ic], now=NOW).splitlines() == [
        "NAME   CONTROLLER             PARAMETERS              AGE",
        "c      k8s.io/ingress-nginx   Cfg.k8s.example.com/x   <unknown>",
    ]
    s = secret({"tls.crt": "", "tls.key": ""})
    assert printers.table("Secret", [s], now=NOW).splitlines() == [
        "NAME   TYPE                DATA   AGE",
        "s      kubernetes.io/tls   2      <unknown>",
    ]
