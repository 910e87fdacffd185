"""The API server's semantics without HTTP: defaulting, validation,
allocation, subresources, graceful deletion, patches and selectors."""

from __future__ import annotations

import copy
import ipaddress

import pytest

from podnet.api.errors import AlreadyExists, BadRequest, Conflict, Invalid, NotFound
from podnet.config import ClusterConfig
from podnet.server.registry import Registry
from podnet.store.store import Store

Obj = dict


@pytest.fixture
def reg() -> Registry:
    r = Registry(Store(), ClusterConfig())
    r.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})
    return r


def pod(name: str = "a", **labels: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "x"}]},
    }


def service(name: str = "web", cluster_ip: str | None = None) -> Obj:
    spec: Obj = {"selector": {"app": "web"}, "ports": [{"port": 80}]}
    if cluster_ip:
        spec["clusterIP"] = cluster_ip
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}


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


def bound(reg: Registry, name: str = "a") -> Obj:
    """A pod the scheduler has put on node-1."""
    p = reg.create(pod(name))
    p["spec"]["nodeName"] = "node-1"
    return reg.update(p)


# -- create ---------------------------------------------------------------------


def test_create_applies_the_api_servers_defaults(reg: Registry) -> None:
    p = reg.create(pod())
    assert p["metadata"]["namespace"] == "default"
    assert p["spec"]["dnsPolicy"] == "ClusterFirst"
    assert p["spec"]["terminationGracePeriodSeconds"] == 30
    assert p["spec"]["containers"][0]["imagePullPolicy"] == "Always"


def test_create_defaults_a_deployments_strategy(reg: Registry) -> None:
    d = reg.create(deployment())
    assert d["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
    }


def test_create_of_an_invalid_object_is_refused_naming_the_object_and_field(reg: Registry) -> None:
    bad = service()
    bad["spec"]["ports"][0]["port"] = 70000
    with pytest.raises(Invalid) as exc:
        reg.create(bad)
    assert exc.value.code == 422
    assert 'Service "web" is invalid' in exc.value.message
    assert "spec.ports[0].port" in exc.value.message
    assert reg.list("Service")[0] == []


def test_create_in_a_namespace_that_does_not_exist_is_not_found(reg: Registry) -> None:
    with pytest.raises(NotFound, match='namespaces "nope" not found'):
        reg.create(pod(), namespace="nope")


def test_create_in_a_terminating_namespace_is_refused(reg: Registry) -> None:
    reg.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "going"}})
    reg.delete("Namespace", None, "going")
    with pytest.raises(BadRequest, match="being terminated"):
        reg.create(pod(), namespace="going")


def test_create_with_a_namespace_other_than_the_requests_is_a_bad_request(reg: Registry) -> None:
    reg.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}})
    p = pod()
    p["metadata"]["namespace"] = "other"
    with pytest.raises(BadRequest, match="does not match the namespace"):
        reg.create(p, namespace="default")


def test_a_cluster_scoped_object_loses_any_namespace_it_was_given(reg: Registry) -> None:
    ns = reg.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x", "namespace": "y"}})
    assert "namespace" not in ns["metadata"]


def test_an_unknown_kind_is_a_bad_request(reg: Registry) -> None:
    with pytest.raises(BadRequest, match='no matches for kind "Widget"'):
        reg.create({"apiVersion": "v1", "kind": "Widget", "metadata": {"name": "w"}})


def test_generate_name_gives_a_fresh_name_with_the_prefix(reg: Registry) -> None:
    p = pod()
    del p["metadata"]["name"]
    p["metadata"]["generateName"] = "web-"
    a, b = reg.create(p), reg.create(p)
    assert a["metadata"]["name"].startswith("web-") and len(a["metadata"]["name"]) == len("web-") + 5
    assert a["metadata"]["name"] != b["metadata"]["name"]


def test_fields_the_server_owns_are_ignored_on_create(reg: Registry) -> None:
    p = pod()
    p["metadata"].update(uid="forged", resourceVersion="99", deletionTimestamp="2020-01-01T00:00:00Z")
    out = reg.create(p)
    assert out["metadata"]["uid"] != "forged"
    assert out["metadata"]["resourceVersion"] != "99"
    assert "deletionTimestamp" not in out["metadata"]


def test_a_status_sent_on_create_is_ignored(reg: Registry) -> None:
    # As from `kubectl get -o yaml` of another cluster: its podIP and phase mean nothing here.
    p = pod()
    p["status"] = {"phase": "Succeeded", "podIP": "10.244.1.9"}
    svc = service()
    svc["status"] = {"loadBalancer": {"ingress": [{"ip": "203.0.113.99"}]}}
    assert "status" not in reg.create(p)
    assert "status" not in reg.create(svc)


def test_a_node_keeps_the_status_it_is_created_with(reg: Registry) -> None:
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "node-1"},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }
    assert reg.create(node)["status"] == node["status"]


def test_create_of_an_existing_name_is_already_exists(reg: Registry) -> None:
    reg.create(pod())
    with pytest.raises(AlreadyExists):
        reg.create(pod())


# -- ClusterIP allocation -------------------------------------------------------------


def test_a_service_gets_a_cluster_ip_from_the_service_cidr(reg: Registry) -> None:
    svc = reg.create(service())
    ip = svc["spec"]["clusterIP"]
    assert ipaddress.ip_address(ip) in ipaddress.ip_network("10.96.0.0/12")
    assert ip != "10.96.0.1"  # kept for the kubernetes Service
    assert svc["spec"]["clusterIPs"] == [ip]


def test_services_get_different_cluster_ips(reg: Registry) -> None:
    ips = {reg.create(service(f"s{i}"))["spec"]["clusterIP"] for i in range(20)}
    assert len(ips) == 20


def test_the_service_cidr_comes_from_the_cluster_config() -> None:
    reg = Registry(Store(), ClusterConfig(service_cidr="10.200.0.0/24"))
    reg.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})
    assert reg.create(service())["spec"]["clusterIP"].startswith("10.200.0.")


def test_a_requested_cluster_ip_is_honoured(reg: Registry) -> None:
    svc = reg.create(service(cluster_ip="10.96.0.10"))
    assert svc["spec"]["clusterIP"] == "10.96.0.10"
    assert svc["spec"]["clusterIPs"] == ["10.96.0.10"]


def test_a_cluster_ip_already_taken_is_refused_naming_cluster_ips(reg: Registry) -> None:
    reg.create(service("first", cluster_ip="10.96.0.10"))
    with pytest.raises(Invalid) as exc:
        reg.create(service("second", cluster_ip="10.96.0.10"))
    assert exc.value.causes[0][0] == "spec.clusterIPs"
    assert "already allocated" in exc.value.message
    assert not reg.store.exists("Service", "default", "second")


def test_a_cluster_ip_outside_the_service_cidr_is_refused_naming_cluster_ips(reg: Registry) -> None:
    with pytest.raises(Invalid) as exc:
        reg.create(service(cluster_ip="192.168.0.10"))
    assert exc.value.causes[0][0] == "spec.clusterIPs"
    assert "not in the valid range" in exc.value.message
    assert "10.96.0.0/12" in exc.value.message


def test_a_headless_service_gets_no_cluster_ip(reg: Registry) -> None:
    svc = reg.create(service(cluster_ip="None"))
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["clusterIPs"] == ["None"]


def test_a_deleted_services_cluster_ip_can_be_asked_for_again(reg: Registry) -> None:
    reg.create(service("first", cluster_ip="10.96.0.10"))
    reg.delete("Service", "default", "first")
    assert reg.create(service("second", cluster_ip="10.96.0.10"))["spec"]["clusterIP"] == "10.96.0.10"


def test_an_update_that_leaves_out_the_cluster_ip_keeps_it(reg: Registry) -> None:
    ip = reg.create(service())["spec"]["clusterIP"]
    applied = service()  # as client-side apply sends it: no clusterIP, no resourceVersion
    applied["spec"]["ports"][0]["port"] = 8080
    out = reg.update(applied)
    assert out["spec"]["clusterIP"] == ip and out["spec"]["clusterIPs"] == [ip]
    assert out["spec"]["ports"][0]["port"] == 8080


def test_an_update_that_changes_the_cluster_ip_is_refused(reg: Registry) -> None:
    svc = reg.create(service(cluster_ip="10.96.0.10"))
    svc["spec"]["clusterIP"] = svc["spec"]["clusterIPs"][0] = "10.96.0.11"
    with pytest.raises(Invalid, match=r"spec\.clusterIP.*immutable"):
        reg.update(svc)


# -- update, status, generation ---------------------------------------------------------


def test_the_status_subresource_changes_only_the_status(reg: Registry) -> None:
    p = bound(reg)
    p["metadata"]["labels"] = {"sneaky": "yes"}
    p["spec"]["nodeName"] = "node-2"
    p["status"] = {"phase": "Running", "podIP": "10.244.1.5"}
    out = reg.update(p, subresource="status")
    assert out["status"] == {"phase": "Running", "podIP": "10.244.1.5"}
    assert out["metadata"]["labels"] == {}
    assert out["spec"]["nodeName"] == "node-1"


def test_a_status_update_with_a_stale_resource_version_is_a_conflict(reg: Registry) -> None:
    p = reg.create(pod())
    reg.update(copy.deepcopy(p))
    p["status"] = {"phase": "Running"}
    with pytest.raises(Conflict):
        reg.update(p, subresource="status")


def test_a_normal_update_keeps_the_stored_status(reg: Registry) -> None:
    p = reg.create(pod())
    p["status"] = {"phase": "Running"}
    p = reg.update(p, subresource="status")
    p["metadata"]["labels"] = {"app": "web"}
    p["status"] = {"phase": "Failed"}
    out = reg.update(p)
    assert out["metadata"]["labels"] == {"app": "web"}
    assert out["status"] == {"phase": "Running"}


def test_a_normal_update_cannot_give_status_to_an_object_that_has_none(reg: Registry) -> None:
    svc = reg.create(service())
    assert "status" not in svc
    svc["status"] = {"loadBalancer": {"ingress": [{"ip": "203.0.113.99"}]}}
    assert "status" not in reg.update(svc)


def test_a_normal_update_cannot_set_a_deletion_timestamp(reg: Registry) -> None:
    p = bound(reg)
    p["metadata"]["deletionTimestamp"] = "2020-01-01T00:00:00Z"
    assert "deletionTimestamp" not in reg.update(p)["metadata"]


def test_generation_bumps_on_a_spec_change(reg: Registry) -> None:
    d = reg.create(deployment())
    d["spec"]["replicas"] = 5
    assert reg.update(d)["metadata"]["generation"] == 2


def test_generation_stays_on_a_metadata_or_status_change(reg: Registry) -> None:
    d = reg.create(deployment())
    d["metadata"]["labels"] = {"team": "x"}
    d = reg.update(d)
    d["status"] = {"replicas": 2}
    d = reg.update(d, subresource="status")
    assert d["metadata"]["generation"] == 1


def test_an_update_with_a_stale_resource_version_is_a_conflict(reg: Registry) -> None:
    d = reg.create(deployment())
    newer = copy.deepcopy(d)
    newer["spec"]["replicas"] = 3
    reg.update(newer)
    d["spec"]["replicas"] = 4
    with pytest.raises(Conflict):
        reg.update(d)
    assert reg.get("Deployment", "default", "web")["spec"]["replicas"] == 3


def test_binding_a_pod_to_a_node_is_allowed_once(reg: Registry) -> None:
    p = bound(reg)
    p["spec"]["nodeName"] = "node-2"
    with pytest.raises(Invalid, match="pod updates may not change fields"):
        reg.update(p)


def test_a_pods_containers_cannot_change(reg: Registry) -> None:
    p = reg.create(pod())
    p["spec"]["containers"].append({"name": "d", "image": "y"})
    with pytest.raises(Invalid, match="pod updates may not change fields"):
        reg.update(p)


def test_an_update_of_a_missing_object_is_not_found(reg: Registry) -> None:
    with pytest.raises(NotFound):
        reg.update(pod())


def test_a_dry_run_update_stores_nothing(reg: Registry) -> None:
    d = reg.create(deployment())
    d["spec"]["replicas"] = 9
    assert reg.update(d, dry_run=True)["spec"]["replicas"] == 9
    assert reg.get("Deployment", "default", "web")["spec"]["replicas"] == 2


# -- delete -------------------------------------------------------------------------------


def test_deleting_a_bound_pod_marks_it_for_the_kubelet(reg: Registry) -> None:
    bound(reg)
    out = reg.delete("Pod", "default", "a")
    assert out["metadata"]["deletionTimestamp"]
    assert out["metadata"]["deletionGracePeriodSeconds"] == 30
    assert reg.get("Pod", "default", "a")["metadata"]["deletionTimestamp"]


def test_deleting_a_terminating_pod_again_changes_nothing(reg: Registry) -> None:
    bound(reg)
    first = reg.delete("Pod", "default", "a")
    again = reg.delete("Pod", "default", "a")
    assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]


def test_deleting_a_bound_pod_with_grace_period_zero_removes_it_at_once(reg: Registry) -> None:
    bound(reg)
    reg.delete("Pod", "default", "a", grace_period=0)
    assert not reg.store.exists("Pod", "default", "a")


def test_force_deleting_a_terminating_pod_removes_it(reg: Registry) -> None:
    bound(reg)
    reg.delete("Pod", "default", "a")
    reg.delete("Pod", "default", "a", grace_period=0)
    assert not reg.store.exists("Pod", "default", "a")


def test_deleting_an_unbound_pod_removes_it_at_once(reg: Registry) -> None:
    reg.create(pod())
    reg.delete("Pod", "default", "a")
    assert not reg.store.exists("Pod", "default", "a")


def test_deleting_a_missing_object_is_not_found(reg: Registry) -> None:
    with pytest.raises(NotFound, match='services "nope" not found'):
        reg.delete("Service", "default", "nope")


def test_deleting_a_namespace_marks_it_terminating(reg: Registry) -> None:
    reg.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}})
    out = reg.delete("Namespace", None, "x")
    assert out["status"]["phase"] == "Terminating" and out["metadata"]["deletionTimestamp"]


def test_a_system_namespace_cannot_be_deleted(reg: Registry) -> None:
    with pytest.raises(BadRequest, match="system namespace"):
        reg.delete("Namespace", None, "default")


# -- patch -------------------------------------------------------------------------------


def test_a_merge_patch_adds_changes_and_removes_fields(reg: Registry) -> None:
    reg.create(pod(app="web", tier="front"))
    out = reg.patch("Pod", "default", "a", {"metadata": {"labels": {"app": "db", "tier": None, "new": "1"}}})
    assert out["metadata"]["labels"] == {"app": "db", "new": "1"}


def test_a_merge_patch_replaces_lists_whole(reg: Registry) -> None:
    reg.create(service())
    out = reg.patch(
        "Service",
        "default",
        "web",
        {"spec": {"ports": [{"port": 81, "name": "a"}, {"port": 82, "name": "b"}]}},
    )
    assert [p["port"] for p in out["spec"]["ports"]] == [81, 82]


def test_a_patch_of_spec_bumps_the_generation(reg: Registry) -> None:
    reg.create(deployment())
    out = reg.patch("Deployment", "default", "web", {"spec": {"replicas": 7}})
    assert out["spec"]["replicas"] == 7 and out["metadata"]["generation"] == 2


def test_a_patch_to_the_status_subresource_changes_only_status(reg: Registry) -> None:
    reg.create(deployment())
    out = reg.patch(
        "Deployment", "default", "web", {"spec": {"replicas": 7}, "status": {"replicas": 1}}, "status"
    )
    assert out["status"] == {"replicas": 1} and out["spec"]["replicas"] == 2


def test_a_patch_that_makes_the_object_invalid_is_refused(reg: Registry) -> None:
    reg.create(deployment())
    with pytest.raises(Invalid, match=r"spec\.replicas"):
        reg.patch("Deployment", "default", "web", {"spec": {"replicas": -1}})


def test_a_patch_of_a_missing_object_is_not_found(reg: Registry) -> None:
    with pytest.raises(NotFound):
        reg.patch("Pod", "default", "nope", {"metadata": {"labels": {"a": "b"}}})


# -- list ---------------------------------------------------------------------------------


def _names(items: list[Obj]) -> list[str]:
    return [i["metadata"]["name"] for i in items]


def test_list_with_a_label_selector(reg: Registry) -> None:
    reg.create(pod("a", app="web", tier="front"))
    reg.create(pod("b", app="web"))
    reg.create(pod("c", app="db"))
    assert _names(reg.list("Pod", "default", label_selector="app=web")[0]) == ["a", "b"]
    assert _names(reg.list("Pod", "default", label_selector="app=web,!tier")[0]) == ["b"]
    assert _names(reg.list("Pod", "default", label_selector="app in (db)")[0]) == ["c"]


def test_list_with_a_bad_label_selector_is_a_bad_request(reg: Registry) -> None:
    with pytest.raises(BadRequest):
        reg.list("Pod", label_selector="app in (")


def test_list_with_a_field_selector(reg: Registry) -> None:
    bound(reg, "a")
    reg.create(pod("b"))
    assert _names(reg.list("Pod", field_selector="spec.nodeName=node-1")[0]) == ["a"]
    assert _names(reg.list("Pod", field_selector="spec.nodeName==node-1")[0]) == ["a"]
    assert _names(reg.list("Pod", field_selector="spec.nodeName!=node-1")[0]) == ["b"]
    assert _names(reg.list("Pod", field_selector="metadata.name=b,spec.nodeName=")[0]) == ["b"]


def test_list_with_both_selectors_needs_both_to_match(reg: Registry) -> None:
    reg.create(pod("a", app="web"))
    reg.create(pod("b", app="web"))
    assert _names(reg.list("Pod", label_selector="app=web", field_selector="metadata.name=b")[0]) == ["b"]


def test_list_of_a_namespace_sees_only_it_and_none_sees_all(reg: Registry) -> None:
    reg.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}})
    reg.create(pod("a"))
    reg.create(pod("b"), namespace="other")
    assert _names(reg.list("Pod", "other")[0]) == ["b"]
    assert _names(reg.list("Pod")[0]) == ["a", "b"]


def test_list_of_a_cluster_scoped_kind_ignores_the_namespace(reg: Registry) -> None:
    assert _names(reg.list("Namespace", "default")[0]) == ["default"]


# -- dry run -----------------------------------------------------------------------------------


def test_a_dry_run_create_returns_the_defaulted_object_and_stores_nothing(reg: Registry) -> None:
    rv = reg.store.resource_version
    out = reg.create(service(), dry_run=True)
    assert out["spec"]["type"] == "ClusterIP" and out["spec"]["clusterIP"]
    assert reg.list("Service")[0] == []
    assert reg.store.resource_version == rv


def test_a_dry_run_create_still_validates(reg: Registry) -> None:
    bad = pod()
    bad["spec"]["containers"] = []
    with pytest.raises(Invalid, match=r"spec\.containers"):
        reg.create(bad, dry_run=True)


def test_a_dry_run_create_of_an_existing_name_is_already_exists(reg: Registry) -> None:
    reg.create(pod())
    with pytest.raises(AlreadyExists):
        reg.create(pod(), dry_run=True)
