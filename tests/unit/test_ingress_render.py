"""nginx.conf rendering, pure: pinned by a golden file (and checked with
`nginx -t` when nginx is installed), upstreams from EndpointSlices,
named ports, 503 and 404, wildcard server names."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from podnet.ingress import controller, model, nginx
from podnet.ingress.model import Backend

Obj = dict[str, Any]
GOLDEN = Path(__file__).parent / "golden" / "ingress_full.conf"


def svc(name: str, ports: list[Obj], ns: str = "default") -> Obj:
    return {"metadata": {"name": name, "namespace": ns}, "spec": {"ports": ports}}


def eps(
    name: str, port_name: str, port: int, ready: list[str], not_ready: list[str] = (), ns: str = "default"
) -> Obj:  # type: ignore[assignment]
    return {
        "metadata": {"name": f"{name}-x", "namespace": ns, "labels": {nginx.SERVICE_NAME_LABEL: name}},
        "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
        "endpoints": [{"addresses": [a], "conditions": {"ready": True}} for a in ready]
        + [{"addresses": [a], "conditions": {"ready": False}} for a in not_ready],
    }


def backend(name: str, port: int | str) -> Obj:
    key = "name" if isinstance(port, str) else "number"
    return {"service": {"name": name, "port": {key: port}}}


def ingresses() -> list[Obj]:
    return [
        {
            "metadata": {"name": "shop", "namespace": "default", "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {
                "tls": [{"hosts": ["shop.example.com"], "secretName": "shop-tls"}],
                "rules": [
                    {
                        "host": "shop.example.com",
                        "http": {
                            "paths": [
                                {"path": "/cart", "pathType": "Prefix", "backend": backend("cart", "http")},
                                {"path": "/", "pathType": "Prefix", "backend": backend("web", 80)},
                                {"path": "/healthz", "pathType": "Exact", "backend": backend("gone", 80)},
                            ]
                        },
                    },
                    {
                        "host": "*.apps.example.com",
                        "http": {
                            "paths": [{"path": "/", "pathType": "Prefix", "backend": backend("web", 80)}]
                        },
                    },
                ],
            },
        },
        {
            "metadata": {
                "name": "fallback",
                "namespace": "default",
                "creationTimestamp": "2024-01-02T00:00:00Z",
            },
            "spec": {
                "defaultBackend": backend("web", 80),
                "rules": [
                    {
                        "http": {
                            "paths": [
                                {
                                    "path": "/static",
                                    "pathType": "ImplementationSpecific",
                                    "backend": backend("empty", 80),
                                },
                                {"path": "/cart", "pathType": "Prefix", "backend": backend("cart", 8080)},
                            ]
                        }
                    }
                ],
            },
        },
    ]


def inputs() -> nginx.Inputs:
    services = {
        ("default", "web"): svc(
            "web", [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
        ),
        ("default", "cart"): svc(
            "cart", [{"name": "http", "port": 8080, "targetPort": 9000, "protocol": "TCP"}]
        ),
        ("default", "empty"): svc("empty", [{"name": "", "port": 80, "protocol": "TCP"}]),
    }
    slices = {
        ("default", "web"): [eps("web", "http", 8080, ["10.244.2.7", "10.244.1.3"], ["10.244.1.9"])],
        ("default", "cart"): [eps("cart", "http", 9000, ["10.244.1.4"])],
        ("default", "empty"): [eps("empty", "", 80, [], ["10.244.1.5"])],
    }
    certs = {
        ("default", "shop-tls"): (
            "/state/ingress/certs/default_shop-tls.crt",
            "/state/ingress/certs/default_shop-tls.key",
        )
    }
    return nginx.Inputs(model.merge(ingresses()), services, slices, certs)


def test_the_rendered_configuration_is_pinned() -> None:
    text = nginx.render(inputs())
    if os.environ.get("PODNET_UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()


def test_upstreams_are_the_ready_pod_addresses_from_endpointslices() -> None:
    text = nginx.render(inputs())
    web = re.search(r"upstream default_web_80 \{(.*?)\}", text, re.S)
    assert web is not None
    assert re.findall(r"server (\S+) ", web.group(1)) == ["10.244.1.3:8080", "10.244.2.7:8080"]
    assert "10.244.1.9" not in text  # not ready
    # By name and by number: the same Service port, the same upstream.
    assert "upstream default_cart_http {" in text and "upstream default_cart_8080 {" in text
    assert nginx.endpoints(Backend("default", "cart", "http"), inputs()) == ["10.244.1.4:9000"]
    assert (
        nginx.endpoints(Backend("default", "cart", 9000), inputs()) is None
    )  # the Service port, not the target
    assert nginx.endpoints(Backend("default", "cart", "nope"), inputs()) is None


def test_no_endpoints_or_no_service_is_503_and_no_route_is_404() -> None:
    text = nginx.render(inputs())
    assert re.search(r'location = "/healthz" \{  # Exact /healthz from default/shop\n\s+return 503;', text)
    assert re.search(
        r'location "/static" \{  # ImplementationSpecific /static from default/fallback\n\s+return 503;', text
    )
    bare = nginx.render(nginx.Inputs(model.merge([])))
    assert re.search(r'location "/" \{  # nothing matches: 404\n\s+return 404;', bare)
    assert "ssl_reject_handshake on;" in bare


def test_wildcard_server_names_match_one_label() -> None:
    name = nginx.server_name("*.apps.example-1.com")
    assert name == r"~^[^.]+\.apps\.example-1\.com$"
    rx = re.compile(name[1:])
    assert rx.match("a.apps.example-1.com")
    assert not rx.match("a.b.apps.example-1.com")
    assert not rx.match("apps.example-1.com")


def test_quoting_keeps_paths_literal() -> None:
    assert nginx.quote('/a"b\\c') == '"/a\\"b\\\\c"'


def test_the_data_plane_objects_validate() -> None:
    from podnet.api.defaults import apply_defaults
    from podnet.api.validation import validate

    for obj in [*controller.data_plane("/var/lib/podnet/x"), controller.ingress_class()]:
        validate(apply_defaults(obj))
    cmd = controller.pod_command("/var/lib/pod net/x")
    assert "'/var/lib/pod net/x/ingress/nginx.conf'" in cmd and "daemon off;" in cmd


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
def test_nginx_accepts_the_golden_configuration(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "shop.example.com")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "c.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "c.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    text = GOLDEN.read_text().replace("/state/ingress/certs/default_shop-tls", str(tmp_path / "c"))
    conf = tmp_path / "nginx.conf"
    conf.write_text(text)
    (tmp_path / "tmp").mkdir()
    proc = subprocess.run(
        [
            "nginx",
            "-t",
            "-p",
            f"{tmp_path}/",
            "-c",
            str(conf),
            "-e",
            str(tmp_path / "error.log"),
            "-g",
            "daemon off;",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr


def test_desired_status_shows_the_address_and_conflicts() -> None:
    doc: Obj = {"metadata": {"name": "a", "namespace": "default"}, "status": {}}
    st = controller.desired_status(doc, ["203.0.113.129"], [], "t0")
    assert st == {"loadBalancer": {"ingress": [{"ip": "203.0.113.129"}]}}
    st = controller.desired_status(doc, [], [(controller.CONFLICT_CONDITION, "m1")], "t1")
    assert st["loadBalancer"] == {}
    assert st["conditions"] == [
        {
            "type": "Conflicted",
            "status": "True",
            "reason": "PathConflict",
            "message": "m1",
            "lastTransitionTime": "t1",
        }
    ]
    doc["status"] = st
    again = controller.desired_status(doc, [], [(controller.CONFLICT_CONDITION, "m1")], "t2")
    assert again == st  # unchanged: no write, the transition time kept


def test_owned_ingresses_follow_the_class() -> None:
    classes = [
        controller.ingress_class(),
        {"metadata": {"name": "other"}, "spec": {"controller": "example.com/x"}},
    ]
    mk = lambda name, **spec: {"metadata": {"name": name, "namespace": "d"}, "spec": spec}  # noqa: E731
    got = controller.owned(
        [mk("a", ingressClassName="nginx"), mk("b", ingressClassName="other"), mk("c")], classes
    )
    assert [i["metadata"]["name"] for i in got] == ["a", "c"]  # c: the default class


def test_no_trailing_slash_redirect_a_location_ending_in_slash_gets_an_exact_twin() -> None:
    # nginx answers "/exact" with a 301 to "/exact/" when a proxying location
    # "/exact/" exists and "= /exact" does not; the twin routes "/exact" as the rules say.
    table = model.merge(
        [
            {
                "metadata": {"name": "a", "namespace": "default"},
                "spec": {
                    "rules": [
                        {
                            "http": {
                                "paths": [
                                    {"path": "/exact/", "pathType": "Exact", "backend": backend("e", 80)},
                                    {
                                        "path": "/is/",
                                        "pathType": "ImplementationSpecific",
                                        "backend": backend("i", 80),
                                    },
                                    {"path": "/", "pathType": "Prefix", "backend": backend("root", 80)},
                                ]
                            }
                        }
                    ]
                },
            }
        ]
    )
    locs = {(loc.exact, loc.path): loc for loc in model.locations(table.servers[""])}
    for bare in ("/exact", "/is"):
        twin = locs[(True, bare)]
        assert twin.derived and twin.route is not None and twin.route.backend.service == "root"
    assert model.route(table, "", "/exact") == Backend("default", "root", 80)
