"""The API over HTTP on loopback, driven by the CLI's client: the
Kubernetes REST paths, Status objects for errors, discovery, and watch."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from itertools import islice
from typing import Any

import pytest

from podnet.api.errors import AlreadyExists, APIError, BadRequest, Conflict, Gone, Invalid, NotFound
from podnet.api.kinds import BY_KIND
from podnet.client import Client
from podnet.config import ClusterConfig
from podnet.server.http import APIHTTPServer
from podnet.server.registry import Registry
from podnet.store import store as store_mod
from podnet.store.store import Store

POD, SVC, DEPLOY, NS = BY_KIND["Pod"], BY_KIND["Service"], BY_KIND["Deployment"], BY_KIND["Namespace"]
Obj = dict[str, Any]


class API:
    def __init__(self, server: APIHTTPServer) -> None:
        self.server = server
        self.host, self.port = str(server.server_address[0]), int(server.server_address[1])
        self.client = Client(self.host, self.port, timeout=5)

    def raw(self, method: str, path: str, body: Obj | None = None) -> tuple[int, Obj]:
        """The status code and JSON body of one request, errors included."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=5)
        try:
            conn.request(method, path, body=json.dumps(body) if body is not None else None)
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read() or b"{}")
        finally:
            conn.close()


def serve(store: Store) -> Iterator[API]:
    reg = Registry(store, ClusterConfig())
    reg.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})
    server = APIHTTPServer(("127.0.0.1", 0), reg)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield API(server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def api() -> Iterator[API]:
    yield from serve(Store())


def pod(name: str = "a", **labels: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "x"}]},
    }


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
                "spec": {"containers": [{"name": "c", "image": "x"}]},
            },
        },
    }


def assert_status(body: Obj, code: int, reason: str) -> None:
    assert body["kind"] == "Status" and body["apiVersion"] == "v1"
    assert body["status"] == "Failure"
    assert body["code"] == code and body["reason"] == reason
    assert body["message"]


# -- the REST verbs ---------------------------------------------------------------------


def test_create_returns_the_stored_object_with_server_fields(api: API) -> None:
    out = api.client.create(POD, pod(), "default")
    assert out["metadata"]["uid"] and out["metadata"]["resourceVersion"]
    assert out["spec"]["dnsPolicy"] == "ClusterFirst"


def test_create_answers_201(api: API) -> None:
    code, body = api.raw("POST", "/api/v1/namespaces/default/pods", pod())
    assert code == 201 and body["metadata"]["name"] == "a"


def test_get_returns_what_was_created(api: API) -> None:
    created = api.client.create(POD, pod(), "default")
    assert api.client.get(POD, "a", "default") == created


def test_list_is_a_kubernetes_list_with_a_resource_version(api: API) -> None:
    api.client.create(POD, pod("b"), "default")
    api.client.create(POD, pod("a"), "default")
    doc = api.client.list(POD, "default")
    assert doc["kind"] == "PodList" and doc["apiVersion"] == "v1"
    assert doc["metadata"]["resourceVersion"].isdigit()
    assert [i["metadata"]["name"] for i in doc["items"]] == ["a", "b"]


def test_list_across_namespaces_and_with_selectors(api: API) -> None:
    api.client.create(NS, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}})
    api.client.create(POD, pod("a", app="web"), "default")
    api.client.create(POD, pod("b", app="db"), "other")
    everywhere = api.client.list(POD)["items"]
    assert [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in everywhere] == [
        ("default", "a"),
        ("other", "b"),
    ]
    assert [i["metadata"]["name"] for i in api.client.list(POD, label_selector="app=db")["items"]] == ["b"]
    by_field = api.client.list(POD, field_selector="metadata.namespace=default")["items"]
    assert [i["metadata"]["name"] for i in by_field] == ["a"]


def test_a_group_kind_is_served_under_apis(api: API) -> None:
    api.client.create(DEPLOY, deployment(), "default")
    code, body = api.raw("GET", "/apis/apps/v1/namespaces/default/deployments/web")
    assert code == 200 and body["kind"] == "Deployment"
    assert api.raw("GET", "/api/v1/namespaces/default/deployments/web")[0] == 404


def test_update_replaces_the_object(api: API) -> None:
    d = api.client.create(DEPLOY, deployment(), "default")
    d["spec"]["replicas"] = 5
    out = api.client.update(DEPLOY, d, "default")
    assert out["spec"]["replicas"] == 5 and out["metadata"]["generation"] == 2


def test_update_of_the_status_subresource_changes_only_status(api: API) -> None:
    d = api.client.create(DEPLOY, deployment(), "default")
    d["spec"]["replicas"] = 5
    d["status"] = {"replicas": 2}
    out = api.client.update(DEPLOY, d, "default", subresource="status")
    assert out["status"] == {"replicas": 2} and out["spec"]["replicas"] == 2


def test_update_with_a_name_other_than_the_urls_is_a_bad_request(api: API) -> None:
    api.client.create(POD, pod(), "default")
    code, body = api.raw("PUT", "/api/v1/namespaces/default/pods/a", pod("b"))
    assert code == 400
    assert_status(body, 400, "BadRequest")


def test_patch_merges_into_the_object(api: API) -> None:
    api.client.create(POD, pod("a", app="web", tier="x"), "default")
    out = api.client.patch(POD, "a", {"metadata": {"labels": {"tier": None, "v": "2"}}}, "default")
    assert out["metadata"]["labels"] == {"app": "web", "v": "2"}


def test_delete_of_an_unbound_pod_removes_it(api: API) -> None:
    api.client.create(POD, pod(), "default")
    out = api.client.delete(POD, "a", "default")
    assert out["metadata"]["name"] == "a"
    with pytest.raises(NotFound):
        api.client.get(POD, "a", "default")


def test_delete_of_a_bound_pod_is_graceful_unless_the_grace_period_is_zero(api: API) -> None:
    p = pod()
    p["spec"]["nodeName"] = "node-1"
    api.client.create(POD, p, "default")
    marked = api.client.delete(POD, "a", "default")
    assert marked["metadata"]["deletionTimestamp"]
    assert api.client.get(POD, "a", "default")["metadata"]["deletionTimestamp"]
    api.client.delete(POD, "a", "default", grace_period=0)
    with pytest.raises(NotFound):
        api.client.get(POD, "a", "default")


def test_a_dry_run_create_stores_nothing(api: API) -> None:
    code, body = api.raw("POST", "/api/v1/namespaces/default/pods?dryRun=All", pod())
    assert code == 201 and body["metadata"]["name"] == "a"
    assert api.client.list(POD, "default")["items"] == []


# -- errors are Status objects -------------------------------------------------------------


def test_a_missing_object_is_a_404_status(api: API) -> None:
    code, body = api.raw("GET", "/api/v1/namespaces/default/pods/nope")
    assert code == 404
    assert_status(body, 404, "NotFound")
    assert body["message"] == 'pods "nope" not found'
    assert body["details"] == {"name": "nope", "kind": "pods"}


def test_the_client_raises_not_found_with_the_servers_message(api: API) -> None:
    with pytest.raises(NotFound) as exc:
        api.client.get(DEPLOY, "nope", "default")
    assert exc.value.code == 404
    assert exc.value.message == 'deployments.apps "nope" not found'


def test_an_unknown_path_is_a_404_status(api: API) -> None:
    code, body = api.raw("GET", "/api/v1/widgets")
    assert code == 404
    assert_status(body, 404, "NotFound")


def test_creating_an_existing_object_is_a_409_already_exists_status(api: API) -> None:
    api.client.create(POD, pod(), "default")
    code, body = api.raw("POST", "/api/v1/namespaces/default/pods", pod())
    assert code == 409
    assert_status(body, 409, "AlreadyExists")
    with pytest.raises(AlreadyExists):
        api.client.create(POD, pod(), "default")


def test_a_stale_update_is_a_409_conflict_status(api: API) -> None:
    d = api.client.create(DEPLOY, deployment(), "default")
    api.client.update(DEPLOY, d, "default")
    code, body = api.raw("PUT", "/apis/apps/v1/namespaces/default/deployments/web", d)
    assert code == 409
    assert_status(body, 409, "Conflict")
    assert "the object has been modified" in body["message"]
    with pytest.raises(Conflict):
        api.client.update(DEPLOY, d, "default")


def test_an_invalid_object_is_a_422_status_listing_the_causes(api: API) -> None:
    bad = deployment(replicas=-1)
    code, body = api.raw("POST", "/apis/apps/v1/namespaces/default/deployments", bad)
    assert code == 422
    assert_status(body, 422, "Invalid")
    assert '"web" is invalid' in body["message"] and "spec.replicas" in body["message"]
    assert body["details"]["name"] == "web"
    assert "spec.replicas" in [c["field"] for c in body["details"]["causes"]]
    with pytest.raises(Invalid):
        api.client.create(DEPLOY, bad, "default")


def test_a_body_that_is_not_json_is_a_400_status(api: API) -> None:
    conn = http.client.HTTPConnection(api.host, api.port, timeout=5)
    conn.request("POST", "/api/v1/namespaces/default/pods", body=b"{not json")
    resp = conn.getresponse()
    body = json.loads(resp.read())
    conn.close()
    assert resp.status == 400
    assert_status(body, 400, "BadRequest")


def test_a_namespace_that_does_not_exist_is_a_404_naming_it(api: API) -> None:
    with pytest.raises(NotFound, match='namespaces "nope" not found'):
        api.client.create(POD, pod(), "nope")


def test_a_bad_label_selector_is_a_bad_request(api: API) -> None:
    with pytest.raises(BadRequest):
        api.client.list(POD, label_selector="app in (")


# -- discovery and health --------------------------------------------------------------------


def test_discovery_of_the_core_api(api: API) -> None:
    doc = api.client.request("GET", "/api")
    assert doc["kind"] == "APIVersions" and doc["versions"] == ["v1"]


def test_discovery_of_the_api_groups(api: API) -> None:
    doc = api.client.request("GET", "/apis")
    assert doc["kind"] == "APIGroupList"
    groups = {g["name"]: g for g in doc["groups"]}
    assert set(groups) == {"apps", "discovery.k8s.io", "networking.k8s.io"}
    assert groups["apps"]["preferredVersion"]["groupVersion"] == "apps/v1"


def test_discovery_of_a_group_versions_resources(api: API) -> None:
    core = api.client.request("GET", "/api/v1")
    assert core["kind"] == "APIResourceList" and core["groupVersion"] == "v1"
    pods = next(r for r in core["resources"] if r["name"] == "pods")
    assert pods["namespaced"] is True and pods["kind"] == "Pod" and "watch" in pods["verbs"]
    nodes = next(r for r in core["resources"] if r["name"] == "nodes")
    assert nodes["namespaced"] is False
    apps = api.client.request("GET", "/apis/apps/v1")
    assert [r["name"] for r in apps["resources"]] == ["deployments", "deployments/status", "deployments/scale"]


def test_the_health_endpoints_answer_ok(api: API) -> None:
    for path in ("/healthz", "/readyz", "/livez"):
        conn = http.client.HTTPConnection(api.host, api.port, timeout=5)
        conn.request("GET", path)
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (200, b"ok")
        conn.close()


# -- watch ----------------------------------------------------------------------------------------


def test_a_watch_from_a_version_delivers_added_modified_and_deleted_in_order(api: API) -> None:
    rv = api.client.list(POD, "default")["metadata"]["resourceVersion"]
    api.client.create(POD, pod("a"), "default")
    api.client.patch(POD, "a", {"metadata": {"labels": {"v": "2"}}}, "default")
    api.client.delete(POD, "a", "default")
    events = list(islice(api.client.watch(POD, "default", resource_version=rv, timeout=5), 3))
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "a"),
        ("MODIFIED", "a"),
        ("DELETED", "a"),
    ]
    assert events[1]["object"]["metadata"]["labels"] == {"v": "2"}
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert rvs == sorted(rvs) and rvs[0] > int(rv)


def test_a_watch_delivers_events_that_happen_while_it_waits(api: API) -> None:
    rv = api.client.list(POD, "default")["metadata"]["resourceVersion"]
    threading.Timer(0.2, lambda: api.client.create(POD, pod("late"), "default")).start()
    [event] = list(islice(api.client.watch(POD, "default", resource_version=rv, timeout=5), 1))
    assert event["type"] == "ADDED" and event["object"]["metadata"]["name"] == "late"


def test_a_watch_without_a_version_starts_with_the_current_objects(api: API) -> None:
    api.client.create(POD, pod("a"), "default")
    api.client.create(POD, pod("b"), "default")
    events = list(islice(api.client.watch(POD, "default", timeout=5), 2))
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "a"), ("ADDED", "b")]


def test_a_watch_sees_only_its_kind_namespace_and_labels(api: API) -> None:
    api.client.create(NS, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}})
    rv = api.client.list(POD)["metadata"]["resourceVersion"]
    api.client.create(DEPLOY, deployment(), "default")
    api.client.create(POD, pod("elsewhere", app="web"), "other")
    api.client.create(POD, pod("db", app="db"), "default")
    api.client.create(POD, pod("web", app="web"), "default")
    stream = api.client.watch(POD, "default", resource_version=rv, label_selector="app=web", timeout=5)
    [event] = list(islice(stream, 1))
    assert event["object"]["metadata"]["name"] == "web"


def test_a_watch_ends_after_its_timeout(api: API) -> None:
    rv = api.client.list(POD, "default")["metadata"]["resourceVersion"]
    assert list(api.client.watch(POD, "default", resource_version=rv, timeout=1)) == []


def test_a_watch_from_an_expired_version_is_410_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_mod, "EVENT_HISTORY", 2)
    for api in serve(Store()):
        for i in range(5):
            api.client.create(POD, pod(f"p{i}"), "default")
        code, body = api.raw("GET", "/api/v1/namespaces/default/pods?watch=true&resourceVersion=1")
        assert code == 410
        assert_status(body, 410, "Expired")
        with pytest.raises(Gone) as exc:
            next(api.client.watch(POD, "default", resource_version="1"))
        assert exc.value.code == 410


def test_api_errors_from_the_client_keep_the_servers_code() -> None:
    err = APIError.from_status({"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"})
    assert isinstance(err, Gone) and err.code == 410 and err.message == "too old"
