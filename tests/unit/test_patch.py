"""The PATCH media types: JSON merge patch, JSON patch, strategic merge
patch (merge keys and directives) and server-side apply."""

from __future__ import annotations

from typing import Any

import pytest

from podnet.api.errors import BadRequest
from podnet.server.patch import (
    UnprocessablePatch,
    field_set,
    json_patch,
    merge_key,
    merge_patch,
    server_side_apply,
    strategic_merge_patch,
)

Obj = dict[str, Any]


def pod() -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "labels": {"a": "1", "b": "2"}, "finalizers": ["x"]},
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "img:1",
                    "ports": [{"containerPort": 80, "protocol": "TCP"}],
                    "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                },
                {"name": "side", "image": "side:1"},
            ],
            "volumes": [{"name": "v", "emptyDir": {}}],
            "tolerations": [{"key": "k"}],
        },
    }


# -- merge patch -----------------------------------------------------------------------


def test_merge_patch_merges_maps_deletes_nulls_and_replaces_lists() -> None:
    out = merge_patch(pod(), {"metadata": {"labels": {"a": None, "c": "3"}}, "spec": {"volumes": []}})
    assert out["metadata"]["labels"] == {"b": "2", "c": "3"}
    assert out["spec"]["volumes"] == []
    assert out["spec"]["containers"] == pod()["spec"]["containers"]


# -- JSON patch ------------------------------------------------------------------------


def test_json_patch_operations() -> None:
    doc = {"a": {"b": [1, 2, 3]}, "c": "x"}
    out = json_patch(
        doc,
        [
            {"op": "add", "path": "/a/b/-", "value": 4},
            {"op": "add", "path": "/a/b/0", "value": 0},
            {"op": "remove", "path": "/a/b/1"},
            {"op": "replace", "path": "/c", "value": "y"},
            {"op": "copy", "from": "/c", "path": "/d"},
            {"op": "move", "from": "/d", "path": "/e~1f"},
            {"op": "test", "path": "/c", "value": "y"},
        ],
    )
    assert out == {"a": {"b": [0, 2, 3, 4]}, "c": "y", "e/f": "y"}
    assert doc == {"a": {"b": [1, 2, 3]}, "c": "x"}  # not changed in place


@pytest.mark.parametrize(
    "ops",
    [
        [{"op": "test", "path": "/c", "value": "nope"}],
        [{"op": "remove", "path": "/missing"}],
        [{"op": "replace", "path": "/a/b/9", "value": 1}],
    ],
)
def test_json_patch_failures_are_unprocessable(ops: list[Obj]) -> None:
    with pytest.raises(UnprocessablePatch):
        json_patch({"a": {"b": [1]}, "c": "x"}, ops)


def test_json_patch_must_be_a_list_of_operations() -> None:
    with pytest.raises(BadRequest):
        json_patch({}, {"op": "add"})
    with pytest.raises(BadRequest):
        json_patch({}, [{"op": "frobnicate", "path": "/a"}])


# -- strategic merge patch -------------------------------------------------------------


def test_merge_keys_of_the_lab_kinds() -> None:
    assert merge_key("Pod", "spec.containers") == "name"
    assert merge_key("Pod", "spec.containers.ports") == "containerPort"
    assert merge_key("Deployment", "spec.template.spec.containers.env") == "name"
    assert merge_key("Service", "spec.ports") == "port"
    assert merge_key("Node", "status.conditions") == "type"
    assert merge_key("Pod", "spec.tolerations") is None  # atomic


def test_containers_and_env_merge_by_name() -> None:
    patch = {
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "img:2",
                    "env": [{"name": "B", "value": "20"}, {"name": "C", "value": "3"}],
                }
            ]
        }
    }
    out = strategic_merge_patch("Pod", pod(), patch)
    app, side = out["spec"]["containers"]
    assert app["image"] == "img:2" and side == {"name": "side", "image": "side:1"}
    assert app["env"] == [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "20"},
        {"name": "C", "value": "3"},
    ]
    assert app["ports"] == [{"containerPort": 80, "protocol": "TCP"}]


def test_container_ports_merge_by_container_port() -> None:
    patch = {"spec": {"containers": [{"name": "app", "ports": [{"containerPort": 8080}]}]}}
    out = strategic_merge_patch("Pod", pod(), patch)
    assert [p["containerPort"] for p in out["spec"]["containers"][0]["ports"]] == [80, 8080]


def test_atomic_lists_are_replaced() -> None:
    out = strategic_merge_patch("Pod", pod(), {"spec": {"tolerations": [{"key": "other"}]}})
    assert out["spec"]["tolerations"] == [{"key": "other"}]


def test_service_ports_merge_by_port() -> None:
    svc = {"kind": "Service", "spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}}
    out = strategic_merge_patch("Service", svc, {"spec": {"ports": [{"port": 80, "targetPort": 9000}]}})
    assert out["spec"]["ports"] == [{"port": 80, "targetPort": 9000}, {"port": 443}]


def test_conditions_merge_by_type() -> None:
    node = {"status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "X", "status": "False"}]}}
    out = strategic_merge_patch(
        "Node", node, {"status": {"conditions": [{"type": "Ready", "status": "False"}]}}
    )
    assert out["status"]["conditions"] == [
        {"type": "Ready", "status": "False"},
        {"type": "X", "status": "False"},
    ]


def test_patch_delete_directive_removes_a_list_element_or_a_map() -> None:
    patch = {
        "spec": {
            "containers": [{"name": "side", "$patch": "delete"}],
            "securityContext": {"$patch": "delete"},
        }
    }
    original = pod()
    original["spec"]["securityContext"] = {"runAsUser": 1}
    out = strategic_merge_patch("Pod", original, patch)
    assert [c["name"] for c in out["spec"]["containers"]] == ["app"]
    assert "securityContext" not in out["spec"]


def test_patch_replace_directive_replaces_a_map_or_a_list() -> None:
    out = strategic_merge_patch("Pod", pod(), {"metadata": {"labels": {"z": "9", "$patch": "replace"}}})
    assert out["metadata"]["labels"] == {"z": "9"}
    patch = {"spec": {"containers": [{"name": "only", "image": "i"}, {"$patch": "replace"}]}}
    out = strategic_merge_patch("Pod", pod(), patch)
    assert out["spec"]["containers"] == [{"name": "only", "image": "i"}]


def test_null_deletes_a_field() -> None:
    out = strategic_merge_patch("Pod", pod(), {"metadata": {"labels": {"a": None}}})
    assert out["metadata"]["labels"] == {"b": "2"}


def test_set_element_order_orders_the_merged_list() -> None:
    patch = {
        "spec": {
            "$setElementOrder/containers": [{"name": "side"}, {"name": "app"}],
            "containers": [{"name": "app", "image": "img:3"}],
        }
    }
    out = strategic_merge_patch("Pod", pod(), patch)
    assert [c["name"] for c in out["spec"]["containers"]] == ["side", "app"]
    assert out["spec"]["containers"][1]["image"] == "img:3"


def test_delete_from_primitive_list_and_set_lists() -> None:
    out = strategic_merge_patch("Pod", pod(), {"metadata": {"finalizers": ["y"]}})
    assert out["metadata"]["finalizers"] == ["x", "y"]
    out = strategic_merge_patch("Pod", out, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["x"]}})
    assert out["metadata"]["finalizers"] == ["y"]


def test_retain_keys_drops_the_keys_not_listed() -> None:
    dep = {"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}
    out = strategic_merge_patch("Deployment", dep, patch)
    assert out["spec"]["strategy"] == {"type": "Recreate"}


def test_an_element_without_its_merge_key_is_refused() -> None:
    with pytest.raises(BadRequest, match="merge key: name"):
        strategic_merge_patch("Pod", pod(), {"spec": {"containers": [{"image": "x"}]}})


def test_the_original_is_not_changed() -> None:
    original = pod()
    strategic_merge_patch("Pod", original, {"spec": {"containers": [{"name": "app", "image": "new"}]}})
    assert original == pod()


# -- server-side apply ----------------------------------------------------------------


def svc(*ports: int, labels: dict[str, str] | None = None) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s", "namespace": "default", "labels": labels or {}},
        "spec": {"ports": [{"port": p} for p in ports]},
    }


def test_field_set_is_fields_v1() -> None:
    fields = field_set("Service", svc(80, labels={"a": "1"}))
    assert fields == {
        "f:metadata": {"f:labels": {"f:a": {}}},
        "f:spec": {"f:ports": {'k:{"port":80}': {".": {}, "f:port": {}}}},
    }


def test_apply_creates_with_managed_fields() -> None:
    out = server_side_apply(None, svc(80), "kubectl")
    (entry,) = out["metadata"]["managedFields"]
    assert entry["manager"] == "kubectl" and entry["operation"] == "Apply"
    assert entry["fieldsType"] == "FieldsV1" and "f:spec" in entry["fieldsV1"]


def test_apply_merges_into_what_others_set_and_prunes_what_the_manager_dropped() -> None:
    live = server_side_apply(None, svc(80, 90, labels={"team": "a"}), "kubectl")
    live["spec"]["clusterIP"] = "10.96.0.5"  # set by the server
    live["metadata"]["labels"]["other"] = "x"  # set by someone else (kubectl label)
    out = server_side_apply(live, svc(80, labels={"team": "b"}), "kubectl")
    assert out["spec"]["ports"] == [{"port": 80}]
    assert out["spec"]["clusterIP"] == "10.96.0.5"
    assert out["metadata"]["labels"] == {"team": "b", "other": "x"}
    assert len(out["metadata"]["managedFields"]) == 1


def test_apply_by_another_manager_does_not_prune_the_first_ones_fields() -> None:
    live = server_side_apply(None, svc(80, labels={"a": "1"}), "one")
    out = server_side_apply(live, svc(81), "two")
    assert [p["port"] for p in out["spec"]["ports"]] == [80, 81]
    assert out["metadata"]["labels"] == {"a": "1"}
    assert [e["manager"] for e in out["metadata"]["managedFields"]] == ["one", "two"]
