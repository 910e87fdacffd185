"""The defaults the API server fills in, per kind."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from podnet.api.defaults import apply_defaults, apply_update_defaults, image_pull_policy

Obj = dict[str, Any]


def pod(**spec: Any) -> Obj:
    containers = spec.pop("containers", [{"name": "web", "image": "nginx:1.25"}])
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web"},
        "spec": {"containers": containers, **spec},
    }


def deployment(**spec: Any) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx"}]},
            },
            **spec,
        },
    }


def service(**spec: Any) -> Obj:
    spec.setdefault("ports", [{"port": 80}])
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": spec}


def test_defaults_return_a_copy_and_leave_the_input_alone() -> None:
    original = pod()
    before = copy.deepcopy(original)
    out = apply_defaults(original)
    assert original == before
    assert out is not original


def test_pod_spec_gets_the_api_servers_defaults() -> None:
    spec = apply_defaults(pod())["spec"]
    assert spec["restartPolicy"] == "Always"
    assert spec["dnsPolicy"] == "ClusterFirst"
    assert spec["terminationGracePeriodSeconds"] == 30
    assert spec["schedulerName"] == "default-scheduler"
    assert spec["enableServiceLinks"] is True


def test_pod_fields_already_set_are_kept() -> None:
    spec = apply_defaults(pod(restartPolicy="Never", dnsPolicy="Default", terminationGracePeriodSeconds=0))[
        "spec"
    ]
    assert (spec["restartPolicy"], spec["dnsPolicy"], spec["terminationGracePeriodSeconds"]) == (
        "Never",
        "Default",
        0,
    )


def test_container_gets_termination_message_and_pull_policy_defaults() -> None:
    container = apply_defaults(pod())["spec"]["containers"][0]
    assert container["terminationMessagePath"] == "/dev/termination-log"
    assert container["terminationMessagePolicy"] == "File"
    assert container["imagePullPolicy"] == "IfNotPresent"


def test_container_port_protocol_defaults_to_tcp() -> None:
    out = apply_defaults(pod(containers=[{"name": "a", "image": "x:1", "ports": [{"containerPort": 80}]}]))
    assert out["spec"]["containers"][0]["ports"][0]["protocol"] == "TCP"


def test_init_containers_are_defaulted_too() -> None:
    out = apply_defaults(
        pod(initContainers=[{"name": "init", "image": "busybox", "ports": [{"containerPort": 1}]}])
    )
    init = out["spec"]["initContainers"][0]
    assert (init["imagePullPolicy"], init["ports"][0]["protocol"]) == ("Always", "TCP")


@pytest.mark.parametrize(
    ("image", "policy"),
    [
        ("nginx", "Always"),
        ("nginx:latest", "Always"),
        ("nginx:1.25", "IfNotPresent"),
        ("registry.local:5000/nginx", "Always"),
        ("registry.local:5000/nginx:1.25", "IfNotPresent"),
        ("nginx@sha256:" + "a" * 64, "IfNotPresent"),
        ("nginx:latest@sha256:" + "a" * 64, "Always"),
    ],
)
def test_image_pull_policy_is_always_only_for_the_latest_tag(image: str, policy: str) -> None:
    assert image_pull_policy(image) == policy


def test_an_explicit_pull_policy_is_kept() -> None:
    out = apply_defaults(pod(containers=[{"name": "a", "image": "nginx", "imagePullPolicy": "Never"}]))
    assert out["spec"]["containers"][0]["imagePullPolicy"] == "Never"


def test_probe_gets_timing_defaults_and_http_scheme() -> None:
    probe = {"httpGet": {"port": 80}}
    out = apply_defaults(pod(containers=[{"name": "a", "image": "x:1", "readinessProbe": probe}]))
    assert out["spec"]["containers"][0]["readinessProbe"] == {
        "httpGet": {"port": 80, "path": "/", "scheme": "HTTP"},
        "timeoutSeconds": 1,
        "periodSeconds": 10,
        "successThreshold": 1,
        "failureThreshold": 3,
    }


def test_probe_values_already_set_are_kept() -> None:
    probe = {"tcpSocket": {"port": 80}, "periodSeconds": 2, "failureThreshold": 7}
    out = apply_defaults(pod(containers=[{"name": "a", "image": "x:1", "livenessProbe": probe}]))
    got = out["spec"]["containers"][0]["livenessProbe"]
    assert (got["periodSeconds"], got["failureThreshold"], got["timeoutSeconds"]) == (2, 7, 1)


def test_host_network_pod_ports_get_the_container_port_as_host_port() -> None:
    out = apply_defaults(
        pod(hostNetwork=True, containers=[{"name": "a", "image": "x", "ports": [{"containerPort": 53}]}])
    )
    assert out["spec"]["containers"][0]["ports"][0]["hostPort"] == 53


def test_unknown_pod_fields_are_kept() -> None:
    out = apply_defaults(pod(priorityClassName="high", containers=[{"name": "a", "image": "x", "tty": True}]))
    assert out["spec"]["priorityClassName"] == "high"
    assert out["spec"]["containers"][0]["tty"] is True


def test_malformed_pod_spec_is_left_for_validation_to_report() -> None:
    out = apply_defaults(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": "x"}}
    )
    assert out["spec"]["containers"] == "x"


def test_deployment_gets_replicas_history_deadline_and_rolling_update() -> None:
    spec = apply_defaults(deployment())["spec"]
    assert spec["replicas"] == 1
    assert spec["revisionHistoryLimit"] == 10
    assert spec["progressDeadlineSeconds"] == 600
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
    }


def test_deployment_replicas_zero_is_kept() -> None:
    assert apply_defaults(deployment(replicas=0))["spec"]["replicas"] == 0


def test_deployment_recreate_strategy_gets_no_rolling_update() -> None:
    spec = apply_defaults(deployment(strategy={"type": "Recreate"}))["spec"]
    assert spec["strategy"] == {"type": "Recreate"}


def test_deployment_partial_rolling_update_is_completed() -> None:
    spec = apply_defaults(deployment(strategy={"rollingUpdate": {"maxSurge": 1}}))["spec"]
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": "25%"},
    }


def test_deployment_pod_template_is_defaulted_like_a_pod_spec_without_service_links() -> None:
    template = apply_defaults(deployment())["spec"]["template"]["spec"]
    assert template["restartPolicy"] == "Always"
    assert template["dnsPolicy"] == "ClusterFirst"
    assert template["containers"][0]["imagePullPolicy"] == "Always"
    # enableServiceLinks is defaulted on Pods only, as in Kubernetes.
    assert "enableServiceLinks" not in template


def test_service_gets_type_affinity_traffic_policy_and_ip_family() -> None:
    spec = apply_defaults(service(selector={"app": "web"}))["spec"]
    assert spec["type"] == "ClusterIP"
    assert spec["sessionAffinity"] == "None"
    assert spec["internalTrafficPolicy"] == "Cluster"
    assert spec["ipFamilyPolicy"] == "SingleStack"
    assert spec["ipFamilies"] == ["IPv4"]
    assert "externalTrafficPolicy" not in spec
    assert "allocateLoadBalancerNodePorts" not in spec


def test_service_port_gets_tcp_and_target_port_equal_to_port() -> None:
    spec = apply_defaults(
        service(ports=[{"port": 80}, {"port": 53, "protocol": "UDP", "targetPort": "dns"}])
    )["spec"]
    assert spec["ports"] == [
        {"port": 80, "protocol": "TCP", "targetPort": 80},
        {"port": 53, "protocol": "UDP", "targetPort": "dns"},
    ]


def test_service_target_port_zero_means_unset() -> None:
    spec = apply_defaults(service(ports=[{"port": 8080, "targetPort": 0}]))["spec"]
    assert spec["ports"][0]["targetPort"] == 8080


def test_node_port_service_gets_external_traffic_policy_cluster() -> None:
    spec = apply_defaults(service(type="NodePort"))["spec"]
    assert spec["externalTrafficPolicy"] == "Cluster"
    assert "allocateLoadBalancerNodePorts" not in spec


def test_load_balancer_service_allocates_node_ports_by_default() -> None:
    spec = apply_defaults(service(type="LoadBalancer", externalTrafficPolicy="Local"))["spec"]
    assert spec["allocateLoadBalancerNodePorts"] is True
    assert spec["externalTrafficPolicy"] == "Local"


def test_headless_service_without_selector_gets_no_ip_family_defaults() -> None:
    spec = apply_defaults(service(clusterIP="None"))["spec"]
    assert "ipFamilies" not in spec
    assert "ipFamilyPolicy" not in spec


def test_headless_service_with_selector_gets_ip_family_defaults() -> None:
    spec = apply_defaults(service(clusterIP="None", selector={"app": "web"}))["spec"]
    assert spec["ipFamilies"] == ["IPv4"]


def test_external_name_service_gets_no_cluster_networking_defaults() -> None:
    spec = apply_defaults(service(type="ExternalName", externalName="example.com", ports=[]))["spec"]
    for key in ("ipFamilies", "ipFamilyPolicy", "internalTrafficPolicy", "externalTrafficPolicy"):
        assert key not in spec


def test_client_ip_affinity_gets_the_three_hour_timeout() -> None:
    spec = apply_defaults(service(sessionAffinity="ClientIP"))["spec"]
    assert spec["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}


def test_update_defaults_keep_the_allocated_cluster_ip_and_node_ports() -> None:
    old = apply_defaults(
        service(type="NodePort", clusterIP="10.96.0.10", ports=[{"port": 80, "nodePort": 30080}])
    )
    new = apply_update_defaults(service(type="NodePort", ports=[{"port": 80}]), old)
    assert new["spec"]["clusterIP"] == "10.96.0.10"
    assert new["spec"]["ports"][0]["nodePort"] == 30080


def test_update_defaults_do_not_keep_the_cluster_ip_when_changing_to_external_name() -> None:
    old = apply_defaults(service(clusterIP="10.96.0.10"))
    new = apply_update_defaults(service(type="ExternalName", externalName="example.com"), old)
    assert "clusterIP" not in new["spec"]


def test_endpoint_slice_ports_get_tcp_and_an_empty_name() -> None:
    slice_ = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "web-abc"},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.244.1.5"], "conditions": {"ready": True}}],
        "ports": [{"port": 80}],
    }
    out = apply_defaults(slice_)
    assert out["ports"] == [{"port": 80, "name": "", "protocol": "TCP"}]
    assert out["endpoints"] == slice_["endpoints"]


def test_namespace_gets_its_name_label() -> None:
    out = apply_defaults({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "lab"}})
    assert out["metadata"]["labels"] == {"kubernetes.io/metadata.name": "lab"}


def test_objects_of_other_kinds_are_copied_unchanged() -> None:
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "node-1"},
        "spec": {"podCIDR": "10.244.1.0/24"},
    }
    assert apply_defaults(node) == node
