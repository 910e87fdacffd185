"""What kubectl and client libraries need from the API beyond CRUD:
discovery and OpenAPI, Table objects, the PATCH media types and
server-side apply over HTTP, the scale subresource, DeleteOptions,
watch bookmarks and Table watches, events, and HTTPS with client
certificates (anonymous requests refused)."""

from __future__ import annotations

import http.client
import json
import os
import ssl
import stat
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from podnet.cli import printers
from podnet.config import ClusterConfig
from podnet.server import discovery, tables, tls
from podnet.server.http import APIHTTPServer
from podnet.server.registry import Registry
from podnet.store.store import Store

Obj = dict[str, Any]
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
AGGREGATED = (
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
)


class API:
    def __init__(self, server: APIHTTPServer, context: ssl.SSLContext | None = None) -> None:
        self.host, self.port = str(server.server_address[0]), int(server.server_address[1])
        self.context = context

    def conn(self, timeout: float = 5) -> http.client.HTTPConnection:
        if self.context is not None:
            return http.client.HTTPSConnection(self.host, self.port, timeout=timeout, context=self.context)
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        ctype: str = "application/json",
        accept: str = "application/json",
    ) -> tuple[int, Any, str]:
        conn = self.conn()
        try:
            data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
            conn.request(method, path, body=data, headers={"Content-Type": ctype, "Accept": accept})
            resp = conn.getresponse()
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None, resp.getheader("Content-Type") or ""
        finally:
            conn.close()

    def ok(self, method: str, path: str, body: Any = None, ctype: str = "application/json", **kw: str) -> Any:
        code, doc, _ = self.call(method, path, body, ctype, **kw)
        assert code < 300, (code, doc)
        return doc


def _serve(server: APIHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def reg() -> Registry:
    r = Registry(Store(), ClusterConfig())
    r.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})
    return r


@pytest.fixture
def api(reg: Registry) -> Iterator[API]:
    server = APIHTTPServer(("127.0.0.1", 0), reg)
    thread = _serve(server)
    try:
        yield API(server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def deployment(name: str = "web", replicas: int = 2) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "x", "env": [{"name": "A", "value": "1"}]}]},
            },
        },
    }


def service(name: str = "web", *ports: int) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"name": f"p{p}", "port": p} for p in ports or (80,)]},
    }


SVC = "/api/v1/namespaces/default/services"
DEPLOY = "/apis/apps/v1/namespaces/default/deployments"


# -- discovery and OpenAPI --------------------------------------------------------------


def test_version_reports_a_kubernetes_version() -> None:
    v = discovery.version()
    assert (v["major"], v["minor"]) == ("1", "32") and v["gitVersion"].startswith("v1.32.0")


def test_resource_lists_carry_verbs_short_names_categories_and_subresources() -> None:
    core = discovery.resource_list("v1")
    assert core is not None
    by_name = {r["name"]: r for r in core["resources"]}
    assert by_name["pods"]["shortNames"] == ["po"] and by_name["pods"]["categories"] == ["all"]
    assert {"create", "delete", "get", "list", "patch", "update", "watch"} <= set(by_name["pods"]["verbs"])
    assert by_name["events"]["verbs"] == ["get", "list", "watch"]
    assert by_name["pods/status"]["kind"] == "Pod"
    apps = discovery.resource_list("apps/v1")
    assert apps is not None
    scale = next(r for r in apps["resources"] if r["name"] == "deployments/scale")
    assert (scale["group"], scale["version"], scale["kind"]) == ("autoscaling", "v1", "Scale")


def test_aggregated_discovery_only_when_asked(api: API) -> None:
    code, doc, ctype = api.call("GET", "/apis", accept=AGGREGATED)
    assert code == 200 and ctype.startswith("application/json;g=apidiscovery.k8s.io;v=v2")
    apps = next(g for g in doc["items"] if g["metadata"]["name"] == "apps")
    (deploy,) = apps["versions"][0]["resources"]
    assert deploy["scope"] == "Namespaced" and deploy["singularResource"] == "deployment"
    assert {s["subresource"] for s in deploy["subresources"]} == {"status", "scale"}
    code, doc, ctype = api.call("GET", "/api", accept=AGGREGATED)
    assert [g["metadata"]["name"] for g in doc["items"]] == [""]
    code, doc, ctype = api.call("GET", "/apis")
    assert doc["kind"] == "APIGroupList" and ctype == "application/json"
    assert api.ok("GET", "/apis/apps")["preferredVersion"]["groupVersion"] == "apps/v1"


def test_openapi_v3_declares_field_validation_on_every_patch(api: API) -> None:
    index = api.ok("GET", "/openapi/v3")
    url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
    doc = api.ok("GET", url)
    patch = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {
        "group": "apps",
        "version": "v1",
        "kind": "Deployment",
    }
    assert "fieldValidation" in {p["name"] for p in patch["parameters"]}
    assert api.call("GET", "/openapi/v3/apis/nope/v1")[0] == 404


# -- tables -----------------------------------------------------------------------------


def test_wants_table() -> None:
    assert tables.wants_table(TABLE)
    assert not tables.wants_table("application/json")
    assert not tables.wants_table("application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json")


def test_table_columns_come_from_the_cli_printers() -> None:
    pod = {
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default", "creationTimestamp": "2026-11-27T20:00:00Z"},
        "spec": {"containers": [{"name": "c"}], "nodeName": "node-1"},
        "status": {"phase": "Running", "podIP": "10.244.1.5"},
    }
    now = datetime(2026, 11, 27, 21, 0, 0, tzinfo=UTC)
    t = tables.table("Pod", [pod], "7", now=now)
    assert t["kind"] == "Table" and t["apiVersion"] == "meta.k8s.io/v1"
    assert t["metadata"]["resourceVersion"] == "7"
    cols = [(c["name"], c["priority"]) for c in t["columnDefinitions"]]
    assert cols == [
        ("Name", 0), ("Ready", 0), ("Status", 0), ("Restarts", 0), ("Age", 0),
        ("IP", 1), ("Node", 1), ("Nominated Node", 1), ("Readiness Gates", 1),
    ]  # fmt: skip
    assert [c.header for c in printers.columns("Pod")][:5] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    (row,) = t["rows"]
    assert row["cells"] == ["p", "0/1", "Running", "0", "60m", "10.244.1.5", "node-1", "<none>", "<none>"]
    assert row["object"]["kind"] == "PartialObjectMetadata" and row["object"]["metadata"]["name"] == "p"
    assert tables.row("Pod", pod, "Object", now)["object"] is pod
    assert "object" not in tables.row("Pod", pod, "None", now)


def test_a_kind_without_a_printer_gets_the_default_columns() -> None:
    t = tables.table("Event", [{"metadata": {"name": "e", "creationTimestamp": "2026-01-01T00:00:00Z"}}])
    assert [c["name"] for c in t["columnDefinitions"]] == ["Name", "Created At"]
    assert t["rows"][0]["cells"] == ["e", "2026-01-01T00:00:00Z"]


def test_list_and_get_as_table(api: API) -> None:
    api.ok("POST", SVC, service("web"))
    _, doc, ctype = api.call("GET", SVC, accept=TABLE)
    assert ctype.startswith("application/json;as=Table")
    assert doc["kind"] == "Table" and doc["rows"][0]["cells"][:2] == ["web", "ClusterIP"]
    doc = api.ok("GET", SVC + "/web?includeObject=Object", accept=TABLE)
    assert doc["rows"][0]["object"]["kind"] == "Service"


# -- PATCH and apply over HTTP ----------------------------------------------------------


def test_strategic_merge_patch_over_http(api: API) -> None:
    api.ok("POST", DEPLOY, deployment())
    patch = {
        "spec": {"template": {"spec": {"containers": [{"name": "c", "env": [{"name": "B", "value": "2"}]}]}}}
    }
    out = api.ok("PATCH", DEPLOY + "/web", patch, "application/strategic-merge-patch+json")
    assert out["spec"]["template"]["spec"]["containers"][0]["env"] == [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "2"},
    ]
    assert out["metadata"]["generation"] == 2


def test_json_patch_and_merge_patch_over_http(api: API) -> None:
    api.ok("POST", SVC, service("web"))
    ops = [{"op": "replace", "path": "/spec/ports/0/targetPort", "value": 9000}]
    out = api.ok("PATCH", SVC + "/web", ops, "application/json-patch+json")
    assert out["spec"]["ports"][0]["targetPort"] == 9000
    out = api.ok("PATCH", SVC + "/web", {"metadata": {"labels": {"x": "1"}}}, "application/merge-patch+json")
    assert out["metadata"]["labels"] == {"x": "1"}
    code, doc, _ = api.call("PATCH", SVC + "/web", [{"op": "test", "path": "/spec/type", "value": "NodePort"}],
                            "application/json-patch+json")  # fmt: skip
    assert code == 422
    code, doc, _ = api.call("PATCH", SVC + "/web", {}, "application/x-nope")
    assert code == 415 and doc["reason"] == "UnsupportedMediaType"


def test_a_no_op_patch_keeps_the_resource_version(api: API) -> None:
    before = api.ok("POST", SVC, service("web"))
    after = api.ok("PATCH", SVC + "/web", {"spec": {"type": "ClusterIP"}}, "application/merge-patch+json")
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def test_an_invalid_patch_is_a_422_naming_the_field(api: API) -> None:
    api.ok("POST", SVC, service("web"))
    code, doc, _ = api.call("PATCH", SVC + "/web", {"spec": {"ports": [{"name": "p80", "port": 80, "targetPort": 0}]}},
                            "application/strategic-merge-patch+json")  # fmt: skip
    assert code == 200  # targetPort 0 means "unset": defaulted to the port
    code, doc, _ = api.call("PATCH", SVC + "/web", {"spec": {"ports": [{"name": "big", "port": 70000}]}},
                            "application/strategic-merge-patch+json")  # fmt: skip
    assert code == 422 and doc["reason"] == "Invalid"
    assert doc["details"]["causes"][0]["field"] == "spec.ports[1].port"


def test_server_side_apply_creates_then_updates(api: API) -> None:
    body = yaml.safe_dump(service("ssa", 80, 90)).encode()
    code, doc, _ = api.call("PATCH", SVC + "/ssa?fieldManager=kubectl", body, "application/apply-patch+yaml")
    assert code == 201 and doc["spec"]["clusterIP"]
    assert doc["metadata"]["managedFields"][0]["manager"] == "kubectl"
    body = yaml.safe_dump(service("ssa", 80)).encode()
    code, doc, _ = api.call("PATCH", SVC + "/ssa?fieldManager=kubectl", body, "application/apply-patch+yaml")
    assert code == 200 and [p["port"] for p in doc["spec"]["ports"]] == [80]
    code, doc, _ = api.call("PATCH", SVC + "/ssa", body, "application/apply-patch+yaml")
    assert code == 400 and "fieldManager" in doc["message"]
    code, doc, _ = api.call("PATCH", SVC + "/other?fieldManager=k", body, "application/apply-patch+yaml")
    assert code == 400  # the name in the body is not the one in the URL


# -- scale ------------------------------------------------------------------------------


def test_the_scale_subresource(api: API) -> None:
    api.ok("POST", DEPLOY, deployment(replicas=2))
    s = api.ok("GET", DEPLOY + "/web/scale")
    assert (s["apiVersion"], s["kind"], s["spec"]["replicas"]) == ("autoscaling/v1", "Scale", 2)
    assert s["status"]["selector"] == "app=web"
    s = api.ok("PATCH", DEPLOY + "/web/scale", {"spec": {"replicas": 5}}, "application/merge-patch+json")
    assert s["spec"]["replicas"] == 5
    s["spec"]["replicas"] = 1
    assert api.ok("PUT", DEPLOY + "/web/scale", s)["spec"]["replicas"] == 1
    assert api.ok("GET", DEPLOY + "/web")["spec"]["replicas"] == 1
    code, doc, _ = api.call("PUT", DEPLOY + "/web/scale", s)  # a stale resourceVersion
    assert code == 409
    code, doc, _ = api.call(
        "PATCH", DEPLOY + "/web/scale", {"spec": {"replicas": -1}}, "application/merge-patch+json"
    )
    assert code == 422 and doc["details"]["causes"][0]["field"] == "spec.replicas"


# -- delete -----------------------------------------------------------------------------


def test_delete_options_preconditions_and_dry_run(api: API) -> None:
    svc = api.ok("POST", SVC, service("web"))
    assert api.call("DELETE", SVC + "/web", {"preconditions": {"uid": "nope"}})[0] == 409
    api.ok("DELETE", SVC + "/web?dryRun=All", {"kind": "DeleteOptions", "apiVersion": "v1"})
    assert api.call("GET", SVC + "/web")[0] == 200
    body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background",
            "preconditions": {"uid": svc["metadata"]["uid"]}}  # fmt: skip
    assert api.ok("DELETE", SVC + "/web", body)["metadata"]["name"] == "web"
    assert api.call("GET", SVC + "/web")[0] == 404


# -- events -----------------------------------------------------------------------------


def test_events_are_listed_empty_and_read_only(api: API) -> None:
    doc = api.ok("GET", "/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Dx")
    assert doc["kind"] == "EventList" and doc["items"] == []
    assert api.call("GET", "/api/v1/namespaces/default/events/x")[0] == 404
    assert api.call("POST", "/api/v1/namespaces/default/events", {})[0] == 405


# -- watch ------------------------------------------------------------------------------


def _events(api: API, path: str, accept: str = "application/json", limit: int = 10) -> list[Obj]:
    conn = api.conn(timeout=10)
    try:
        conn.request("GET", path, headers={"Accept": accept})
        resp = conn.getresponse()
        assert resp.status == 200
        out = []
        while len(out) < limit and (line := resp.readline()):
            if line.strip():
                out.append(json.loads(line))
        return out
    finally:
        conn.close()


def test_watch_as_table_sends_column_definitions_once(api: API) -> None:
    api.ok("POST", SVC, service("a"))
    api.ok("POST", SVC, service("b"))
    events = _events(api, SVC + "?watch=true&timeoutSeconds=5", TABLE, limit=2)
    assert [e["object"]["kind"] for e in events] == ["Table", "Table"]
    assert events[0]["object"]["columnDefinitions"] and not events[1]["object"]["columnDefinitions"]
    assert events[1]["object"]["rows"][0]["cells"][0] == "b"


def test_watch_with_initial_events_ends_them_with_a_bookmark(api: API) -> None:
    api.ok("POST", SVC, service("a"))
    q = "?watch=true&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&timeoutSeconds=5"
    events = _events(api, SVC + q, limit=2)
    assert [e["type"] for e in events] == ["ADDED", "BOOKMARK"]
    assert events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


def test_a_quiet_watch_gets_bookmarks(api: API, monkeypatch: pytest.MonkeyPatch) -> None:
    from podnet.server import http as http_mod

    monkeypatch.setattr(http_mod, "BOOKMARK_INTERVAL", 0.0)
    rv = api.ok("GET", SVC)["metadata"]["resourceVersion"]
    events = _events(
        api, SVC + f"?watch=true&resourceVersion={rv}&allowWatchBookmarks=true&timeoutSeconds=2", limit=1
    )
    assert events[0]["type"] == "BOOKMARK" and events[0]["object"]["kind"] == "Service"
    assert int(events[0]["object"]["metadata"]["resourceVersion"]) >= int(rv)


# -- TLS --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tls.PKI:
    return tls.ensure(str(tmp_path_factory.mktemp("pki")), "cluster.local", ["172.18.0.1", "10.96.0.1"])


def test_the_pki_is_made_once_with_the_server_names(pki: tls.PKI) -> None:
    dns, ips = tls._sans(pki.server_cert)
    assert "kubernetes.default.svc.cluster.local" in dns and "localhost" in dns
    assert ips == ["10.96.0.1", "127.0.0.1", "172.18.0.1"]
    assert stat.S_IMODE(os.stat(pki.client_key).st_mode) == 0o600
    before = Path(pki.ca_cert).read_bytes(), Path(pki.server_cert).read_bytes()
    tls.ensure(pki.directory, "cluster.local", ["172.18.0.1", "10.96.0.1"])
    assert (Path(pki.ca_cert).read_bytes(), Path(pki.server_cert).read_bytes()) == before


def test_the_kubeconfig_embeds_the_credentials(pki: tls.PKI, tmp_path: Path) -> None:
    path = tls.write_kubeconfigs(
        pki, str(tmp_path), "lab", "https://127.0.0.1:1234", "https://172.18.0.1:6443"
    )
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    doc = yaml.safe_load(Path(path).read_text())
    assert doc["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:1234"
    assert doc["current-context"] == "podnet-lab"
    assert {"client-certificate-data", "client-key-data"} <= set(doc["users"][0]["user"])
    lab = yaml.safe_load((tmp_path / tls.KUBECONFIG_LAB).read_text())
    assert lab["clusters"][0]["cluster"]["server"] == "https://172.18.0.1:6443"


@pytest.fixture
def https(reg: Registry, pki: tls.PKI) -> Iterator[APIHTTPServer]:
    server = APIHTTPServer(("127.0.0.1", 0), reg, tls_context=tls.server_context(pki), plain=False)
    thread = _serve(server)
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_https_with_a_client_certificate(https: APIHTTPServer, pki: tls.PKI) -> None:
    api = API(https, tls.client_context(pki))
    assert api.ok("GET", "/api/v1/namespaces")["items"][0]["metadata"]["name"] == "default"


def test_anonymous_requests_are_refused(https: APIHTTPServer, pki: tls.PKI) -> None:
    anonymous = ssl.create_default_context(cafile=pki.ca_cert)
    code, doc, _ = API(https, anonymous).call("GET", "/api/v1/namespaces")
    assert code == 401 and doc["reason"] == "Unauthorized"


def test_plain_http_to_the_https_port_is_told_so(https: APIHTTPServer) -> None:
    conn = http.client.HTTPConnection(str(https.server_address[0]), int(https.server_address[1]), timeout=5)
    conn.request("GET", "/api")
    resp = conn.getresponse()
    assert resp.status == 400 and b"HTTPS server" in resp.read()


def test_one_port_serves_plain_http_and_https(reg: Registry, pki: tls.PKI) -> None:
    server = APIHTTPServer(("127.0.0.1", 0), reg, tls_context=tls.server_context(pki))
    thread = _serve(server)
    try:
        assert API(server).ok("GET", "/api/v1/namespaces")["kind"] == "NamespaceList"
        assert API(server, tls.client_context(pki)).ok("GET", "/version")["major"] == "1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_the_kubernetes_client_library_works_with_the_kubeconfig(
    https: APIHTTPServer, pki: tls.PKI, tmp_path: Path
) -> None:
    kubernetes = pytest.importorskip("kubernetes")
    url = f"https://127.0.0.1:{https.server_address[1]}"
    path = tls.write_kubeconfigs(pki, str(tmp_path), "lab", url, url)
    client = kubernetes.config.new_client_from_config(config_file=path)
    core = kubernetes.client.CoreV1Api(client)
    core.create_namespaced_service("default", service("web"))
    assert [s.metadata.name for s in core.list_namespaced_service("default").items] == ["web"]
    apps = kubernetes.client.AppsV1Api(client)
    apps.create_namespaced_deployment("default", deployment())
    apps.patch_namespaced_deployment_scale("web", "default", {"spec": {"replicas": 4}})
    assert apps.read_namespaced_deployment("web", "default").spec.replicas == 4


# -- fieldValidation ---------------------------------------------------------------------


def test_field_validation_strict_refuses_unknown_fields(api: API) -> None:
    body = {**service("web"), "specs": {}}
    code, doc, _ = api.call("POST", SVC + "?fieldValidation=Strict", body)
    assert code == 400 and doc["message"] == (
        'Service in version "v1" cannot be handled as a Service: strict decoding error: unknown field "specs"'
    )


def test_field_validation_warn_and_ignore_drop_unknown_fields(api: API) -> None:
    body = {**service("web"), "specs": {}}
    body["metadata"] = {**body["metadata"], "labelz": {}}
    conn = api.conn()
    conn.request(
        "POST",
        SVC + "?fieldValidation=Warn",
        body=json.dumps(body),
        headers={"Content-Type": "application/json"},
    )
    resp = conn.getresponse()
    doc = json.loads(resp.read())
    conn.close()
    assert resp.status == 201 and "specs" not in doc and "labelz" not in doc["metadata"]
    assert resp.headers.get_all("Warning") == [
        '299 - "unknown field \\"specs\\""',
        '299 - "unknown field \\"metadata.labelz\\""',
    ]
    body["metadata"]["name"] = "other"
    assert "specs" not in api.ok("POST", SVC, body)
