"""A Service changed to ExternalName and back through a full update (what
`podnet apply` sends): the address fields it kept unchanged are dropped,
as the API server's dropTypeDependentFields does, and come back new."""

from __future__ import annotations

from typing import Any

import pytest

from podnet.api.errors import Invalid
from podnet.config import ClusterConfig
from podnet.server.registry import Registry
from podnet.store.store import Store

Obj = dict[str, Any]


def manifest(**spec: Any) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "late", "namespace": "default"},
        "spec": spec,
    }


def test_cluster_ip_to_external_name_and_back() -> None:
    reg = Registry(Store(), ClusterConfig())
    reg.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})
    created = reg.create(manifest(selector={"app": "x"}, ports=[{"port": 80}]))
    assert created["spec"]["clusterIP"]
    ext = manifest(type="ExternalName", externalName="www.example.com")
    ext["metadata"]["resourceVersion"] = created["metadata"]["resourceVersion"]
    updated = reg.update(ext)
    assert updated["spec"]["type"] == "ExternalName"
    assert "clusterIP" not in updated["spec"] and "ipFamilies" not in updated["spec"]
    back = manifest(selector={"app": "x"}, ports=[{"port": 80}])
    back["metadata"]["resourceVersion"] = updated["metadata"]["resourceVersion"]
    again = reg.update(back)
    assert again["spec"]["type"] == "ClusterIP" and again["spec"]["clusterIP"]


def test_an_explicit_cluster_ip_with_external_name_is_still_refused() -> None:
    reg = Registry(Store(), ClusterConfig())
    reg.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})
    created = reg.create(manifest(selector={"app": "x"}, ports=[{"port": 80}]))
    ext = manifest(type="ExternalName", externalName="www.example.com", clusterIP="10.96.5.5")
    ext["metadata"]["resourceVersion"] = created["metadata"]["resourceVersion"]
    with pytest.raises(Invalid, match="may not be set for ExternalName"):
        reg.update(ext)
