"""What `podnet get` prints: kubectl's tables, ages, and -o json/yaml."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from podnet.cli.printers import dump, human_duration, table, to_list

NOW = datetime(2026, 11, 27, 21, 0, 0, tzinfo=UTC)


def ago(**delta: float) -> str:
    return (NOW - timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


def meta(
    name: str, namespace: str | None = "default", age: str | None = None, **extra: Any
) -> dict[str, Any]:
    m: dict[str, Any] = {"name": name, "creationTimestamp": age or ago(minutes=5), **extra}
    if namespace is not None:
        m["namespace"] = namespace
    return m


def running(name: str = "app", restarts: int = 0, ready: bool = True) -> dict[str, Any]:
    return {
        "name": name,
        "ready": ready,
        "restartCount": restarts,
        "state": {"running": {"startedAt": ago(minutes=4)}},
    }


def pod(name: str = "web-1", statuses: list[dict[str, Any]] | None = None, **status: Any) -> dict[str, Any]:
    cs = statuses if statuses is not None else [running()]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta(name),
        "spec": {"containers": [{"name": c["name"], "image": "img"} for c in cs] or [{"name": "app"}]},
        "status": {"phase": "Running", "containerStatuses": cs, **status},
    }


def lines(text: str) -> list[str]:
    assert text.endswith("\n")
    return text.splitlines()


# --- human_duration -------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (5, "5s"),
        (119, "119s"),
        (120, "2m"),
        (123, "2m3s"),
        (599, "9m59s"),
        (600, "10m"),
        (179 * 60 + 59, "179m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 4 * 60 + 59, "3h4m"),
        (8 * 3600, "8h"),
        (47 * 3600 + 3599, "47h"),
        (2 * 86400 + 5 * 3600, "2d5h"),
        (7 * 86400, "7d"),
        (8 * 86400 + 5 * 3600, "8d"),
        (729 * 86400, "729d"),
        (730 * 86400, "2y"),
        (3 * 365 * 86400 + 10 * 86400, "3y10d"),
        (8 * 365 * 86400 + 100 * 86400, "8y"),
    ],
)
def test_human_duration_follows_apimachinery(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def test_human_duration_truncates_fractions() -> None:
    assert human_duration(59.99) == "59s"


def test_human_duration_tolerates_one_second_of_clock_skew() -> None:
    assert human_duration(-1.5) == "0s"


def test_human_duration_is_invalid_further_in_the_future() -> None:
    assert human_duration(-2) == "<invalid>"


# --- layout ---------------------------------------------------------------------


def test_empty_list_prints_nothing() -> None:
    assert table("Pod", [], now=NOW) == ""


def test_unknown_kind_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        table("ConfigMap", [{"metadata": {"name": "x"}}], now=NOW)


def test_columns_are_padded_to_widest_cell_plus_three() -> None:
    out = table("Pod", [pod("web-1"), pod("a-much-longer-name")], now=NOW)
    assert lines(out) == [
        "NAME                 READY   STATUS    RESTARTS   AGE",
        "web-1                1/1     Running   0          5m",
        "a-much-longer-name   1/1     Running   0          5m",
    ]


def test_short_columns_are_at_least_six_wide() -> None:
    ns = {"metadata": meta("a", namespace=None), "status": {"phase": "Active"}}
    assert lines(table("Namespace", [ns], now=NOW)) == [
        "NAME   STATUS   AGE",
        "a      Active   5m",
    ]


def test_all_namespaces_adds_leading_namespace_column() -> None:
    p = pod()
    p["metadata"]["namespace"] = "kube-system"
    assert lines(table("Pod", [p], all_namespaces=True, now=NOW)) == [
        "NAMESPACE     NAME    READY   STATUS    RESTARTS   AGE",
        "kube-system   web-1   1/1     Running   0          5m",
    ]


def test_all_namespaces_adds_no_column_for_cluster_scoped_kinds() -> None:
    ns = {"metadata": meta("default", namespace=None, age=ago(days=3)), "status": {"phase": "Active"}}
    assert lines(table("Namespace", [ns], all_namespaces=True, now=NOW)) == [
        "NAME      STATUS   AGE",
        "default   Active   3d",
    ]


def test_missing_creation_timestamp_shows_unknown_age() -> None:
    p = pod()
    del p["metadata"]["creationTimestamp"]
    assert lines(table("Pod", [p], now=NOW))[1].endswith("<unknown>")


# --- Pods -----------------------------------------------------------------------


def test_pod_ready_counts_ready_containers_of_all() -> None:
    p = pod(statuses=[running("a"), running("b", ready=False)])
    assert lines(table("Pod", [p], now=NOW))[1] == "web-1   1/2     Running   0          5m"


def test_pod_being_deleted_shows_terminating() -> None:
    p = pod()
    p["metadata"]["deletionTimestamp"] = ago(seconds=3)
    assert lines(table("Pod", [p], now=NOW))[1] == "web-1   1/1     Terminating   0          5m"


def test_completed_pod_being_deleted_keeps_its_status() -> None:
    done = {
        "name": "app",
        "ready": False,
        "restartCount": 0,
        "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
    }
    p = pod(statuses=[done], phase="Succeeded")
    p["metadata"]["deletionTimestamp"] = ago(seconds=3)
    assert lines(table("Pod", [p], now=NOW))[1] == "web-1   0/1     Completed   0          5m"


def test_pod_waiting_container_shows_waiting_reason() -> None:
    waiting = {
        "name": "app",
        "ready": False,
        "restartCount": 0,
        "state": {"waiting": {"reason": "ContainerCreating"}},
    }
    p = pod(statuses=[waiting], phase="Pending")
    assert lines(table("Pod", [p], now=NOW))[1] == "web-1   0/1     ContainerCreating   0          5m"


def test_unscheduled_pod_shows_pending() -> None:
    p = pod(statuses=[], phase="Pending")
    assert lines(table("Pod", [p], now=NOW))[1] == "web-1   0/1     Pending   0          5m"


def test_pod_without_status_reads_as_pending() -> None:
    p = {"metadata": meta("bare", age=ago(seconds=7)), "spec": {"containers": [{"name": "c"}]}}
    assert lines(table("Pod", [p], now=NOW))[1] == "bare   0/1     Pending   0          7s"


def test_crashing_container_shows_reason_and_restarts_with_last_restart_age() -> None:
    crashing = {
        "name": "app",
        "ready": False,
        "restartCount": 4,
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(seconds=30)}},
    }
    p = pod(statuses=[crashing])
    assert lines(table("Pod", [p], now=NOW)) == [
        "NAME    READY   STATUS             RESTARTS      AGE",
        "web-1   0/1     CrashLoopBackOff   4 (30s ago)   5m",
    ]


def test_terminated_container_without_reason_shows_exit_code() -> None:
    dead = {"name": "app", "ready": False, "restartCount": 0, "state": {"terminated": {"exitCode": 3}}}
    p = pod(statuses=[dead], phase="Failed")
    assert lines(table("Pod", [p], now=NOW))[1] == "web-1   0/1     ExitCode:3   0          5m"


def test_pod_status_reason_overrides_phase() -> None:
    p = pod(statuses=[], phase="Failed", reason="Evicted")
    assert lines(table("Pod", [p], now=NOW))[1] == "web-1   0/1     Evicted   0          5m"


def test_pod_in_init_shows_init_progress() -> None:
    p = pod(statuses=[], phase="Pending")
    p["spec"]["initContainers"] = [{"name": "setup"}, {"name": "migrate"}]
    p["status"]["initContainerStatuses"] = [
        {"name": "setup", "ready": True, "restartCount": 0, "state": {"terminated": {"exitCode": 0}}},
        {"name": "migrate", "ready": False, "restartCount": 0, "state": {"running": {}}},
    ]
    assert lines(table("Pod", [p], now=NOW))[1] == "web-1   0/1     Init:1/2   0          5m"


def test_pod_wide_adds_ip_node_nominated_node_and_readiness_gates() -> None:
    p = pod(podIP="10.244.1.5", podIPs=[{"ip": "10.244.1.5"}])
    p["spec"]["nodeName"] = "node-1"
    assert lines(table("Pod", [p], wide=True, now=NOW)) == [
        "NAME    READY   STATUS    RESTARTS   AGE   IP           NODE     NOMINATED NODE   READINESS GATES",
        "web-1   1/1     Running   0          5m    10.244.1.5   node-1   <none>           <none>",
    ]


def test_pod_wide_shows_none_for_missing_ip_and_node() -> None:
    p = pod(statuses=[], phase="Pending")
    assert lines(table("Pod", [p], wide=True, now=NOW))[1] == (
        "web-1   0/1     Pending   0          5m    <none>   <none>   <none>           <none>"
    )


def test_pod_wide_counts_true_readiness_gates() -> None:
    p = pod(podIP="10.244.1.5", conditions=[{"type": "example.com/lb", "status": "True"}])
    p["spec"]["nodeName"] = "node-1"
    p["spec"]["readinessGates"] = [{"conditionType": "example.com/lb"}, {"conditionType": "example.com/dns"}]
    assert lines(table("Pod", [p], wide=True, now=NOW))[1].endswith("<none>           1/2")


# --- Services -------------------------------------------------------------------


def service(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(name, age=ago(hours=3, minutes=4)),
        "spec": spec,
    }


def test_cluster_ip_service_row() -> None:
    svc = service("web", type="ClusterIP", clusterIP="10.96.0.10", ports=[{"port": 80, "protocol": "TCP"}])
    assert lines(table("Service", [svc], now=NOW)) == [
        "NAME   TYPE        CLUSTER-IP   EXTERNAL-IP   PORT(S)   AGE",
        "web    ClusterIP   10.96.0.10   <none>        80/TCP    3h4m",
    ]


def test_service_ports_show_node_ports_and_are_comma_joined() -> None:
    svc = service(
        "web",
        type="NodePort",
        clusterIPs=["10.96.0.11"],
        ports=[
            {"port": 80, "nodePort": 30080, "protocol": "TCP"},
            {"port": 53, "nodePort": 30053, "protocol": "UDP"},
        ],
    )
    assert lines(table("Service", [svc], now=NOW))[1] == (
        "web    NodePort   10.96.0.11   <none>        80:30080/TCP,53:30053/UDP   3h4m"
    )


def test_service_port_protocol_defaults_to_tcp() -> None:
    svc = service("web", clusterIP="10.96.0.10", ports=[{"port": 8080}])
    assert "8080/TCP" in lines(table("Service", [svc], now=NOW))[1]


def test_service_without_ports_shows_none() -> None:
    svc = service("web", clusterIP="None")
    assert (
        lines(table("Service", [svc], now=NOW))[1]
        == "web    ClusterIP   None         <none>        <none>    3h4m"
    )


def test_load_balancer_without_ingress_is_pending() -> None:
    svc = service("lb", type="LoadBalancer", clusterIP="10.96.0.12", ports=[{"port": 80, "nodePort": 31000}])
    assert lines(table("Service", [svc], now=NOW))[1] == (
        "lb     LoadBalancer   10.96.0.12   <pending>     80:31000/TCP   3h4m"
    )


def test_load_balancer_shows_ingress_ips() -> None:
    svc = service("lb", type="LoadBalancer", clusterIP="10.96.0.12", ports=[{"port": 80, "nodePort": 31000}])
    svc["status"] = {"loadBalancer": {"ingress": [{"ip": "203.0.113.10"}]}}
    assert lines(table("Service", [svc], now=NOW))[1] == (
        "lb     LoadBalancer   10.96.0.12   203.0.113.10   80:31000/TCP   3h4m"
    )


def test_long_load_balancer_address_list_is_clipped_unless_wide() -> None:
    svc = service("lb", type="LoadBalancer", clusterIP="10.96.0.12", ports=[{"port": 80, "nodePort": 31000}])
    svc["status"] = {"loadBalancer": {"ingress": [{"ip": "203.0.113.11"}, {"ip": "203.0.113.10"}]}}
    assert "203.0.113.10,..." in table("Service", [svc], now=NOW)
    assert "203.0.113.10,203.0.113.11" in table("Service", [svc], wide=True, now=NOW)


def test_cluster_ip_service_shows_external_ips() -> None:
    svc = service("web", clusterIP="10.96.0.10", externalIPs=["198.51.100.7"], ports=[{"port": 80}])
    assert lines(table("Service", [svc], now=NOW))[1] == (
        "web    ClusterIP   10.96.0.10   198.51.100.7   80/TCP    3h4m"
    )


def test_service_wide_adds_sorted_selector() -> None:
    svc = service("web", clusterIP="10.96.0.10", ports=[{"port": 80}], selector={"tier": "fe", "app": "web"})
    assert lines(table("Service", [svc], wide=True, now=NOW)) == [
        "NAME   TYPE        CLUSTER-IP   EXTERNAL-IP   PORT(S)   AGE    SELECTOR",
        "web    ClusterIP   10.96.0.10   <none>        80/TCP    3h4m   app=web,tier=fe",
    ]


def test_service_wide_without_selector_shows_none() -> None:
    svc = service("ext", clusterIP="10.96.0.10", ports=[{"port": 80}])
    assert lines(table("Service", [svc], wide=True, now=NOW))[1].endswith("3h4m   <none>")


# --- Deployments ----------------------------------------------------------------


def deployment(**status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta("web", age=ago(days=2, hours=5)),
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "spec": {
                    "containers": [
                        {"name": "web", "image": "nginx:1.27"},
                        {"name": "log", "image": "busybox"},
                    ]
                }
            },
        },
        "status": status,
    }


def test_deployment_row_shows_ready_of_desired() -> None:
    d = deployment(readyReplicas=2, updatedReplicas=3, availableReplicas=2)
    assert lines(table("Deployment", [d], now=NOW)) == [
        "NAME   READY   UP-TO-DATE   AVAILABLE   AGE",
        "web    2/3     3            2           2d5h",
    ]


def test_new_deployment_without_status_shows_zeroes() -> None:
    assert (
        lines(table("Deployment", [deployment()], now=NOW))[1]
        == "web    0/3     0            0           2d5h"
    )


def test_deployment_wide_adds_containers_images_selector() -> None:
    d = deployment(readyReplicas=3, updatedReplicas=3, availableReplicas=3)
    assert lines(table("Deployment", [d], wide=True, now=NOW)) == [
        "NAME   READY   UP-TO-DATE   AVAILABLE   AGE    CONTAINERS   IMAGES               SELECTOR",
        "web    3/3     3            3           2d5h   web,log      nginx:1.27,busybox   app=web",
    ]


# --- Nodes ----------------------------------------------------------------------


def node(name: str, ready: str = "True", labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": meta(name, namespace=None, age=ago(minutes=10), labels=labels or {}),
        "status": {
            "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": ready}],
            "addresses": [
                {"type": "InternalIP", "address": "172.18.0.2"},
                {"type": "Hostname", "address": name},
            ],
            "nodeInfo": {
                "kubeletVersion": "v1.31.0",
                "osImage": "Debian GNU/Linux 12 (bookworm)",
                "kernelVersion": "6.8.0",
                "containerRuntimeVersion": "podnet://0.1.0",
            },
        },
    }


def test_nodes_show_ready_status_roles_and_version() -> None:
    out = table(
        "Node",
        [node("node-1", labels={"node-role.kubernetes.io/control-plane": ""}), node("node-2", ready="False")],
        now=NOW,
    )
    assert lines(out) == [
        "NAME     STATUS     ROLES           AGE   VERSION",
        "node-1   Ready      control-plane   10m   v1.31.0",
        "node-2   NotReady   <none>          10m   v1.31.0",
    ]


def test_node_roles_are_sorted_and_comma_joined() -> None:
    labels = {
        "node-role.kubernetes.io/worker": "",
        "node-role.kubernetes.io/ingress": "",
        "kubernetes.io/role": "edge",
    }
    assert (
        lines(table("Node", [node("n", labels=labels)], now=NOW))[1]
        == "n      Ready    edge,ingress,worker   10m   v1.31.0"
    )


def test_cordoned_node_shows_scheduling_disabled() -> None:
    n = node("node-1")
    n["spec"] = {"unschedulable": True}
    assert (
        lines(table("Node", [n], now=NOW))[1] == "node-1   Ready,SchedulingDisabled   <none>   10m   v1.31.0"
    )


def test_node_without_ready_condition_is_unknown() -> None:
    n = node("node-1")
    n["status"]["conditions"] = []
    assert lines(table("Node", [n], now=NOW))[1] == "node-1   Unknown   <none>   10m   v1.31.0"


def test_node_wide_adds_addresses_and_system_info() -> None:
    assert lines(table("Node", [node("node-1")], wide=True, now=NOW)) == [
        "NAME     STATUS   ROLES    AGE   VERSION   INTERNAL-IP   EXTERNAL-IP   "
        "OS-IMAGE                         KERNEL-VERSION   CONTAINER-RUNTIME",
        "node-1   Ready    <none>   10m   v1.31.0   172.18.0.2    <none>        "
        "Debian GNU/Linux 12 (bookworm)   6.8.0            podnet://0.1.0",
    ]


# --- EndpointSlices -------------------------------------------------------------


def slice_(addresses: list[str], ports: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": meta("web-abc12", age=ago(seconds=42)),
        "addressType": "IPv4",
        "endpoints": [{"addresses": [a]} for a in addresses],
        "ports": ports,
    }


def test_endpoint_slice_row() -> None:
    eps = slice_(["10.244.1.5", "10.244.2.7"], [{"name": "http", "port": 8080, "protocol": "TCP"}])
    assert lines(table("EndpointSlice", [eps], now=NOW)) == [
        "NAME        ADDRESSTYPE   PORTS   ENDPOINTS               AGE",
        "web-abc12   IPv4          8080    10.244.1.5,10.244.2.7   42s",
    ]


def test_endpoint_slice_shows_three_endpoints_then_count_of_more() -> None:
    eps = slice_([f"10.244.1.{i}" for i in range(1, 6)], [{"port": 80}])
    assert "10.244.1.1,10.244.1.2,10.244.1.3 + 2 more..." in lines(table("EndpointSlice", [eps], now=NOW))[1]


def test_endpoint_slice_with_exactly_three_endpoints_has_no_more_suffix() -> None:
    eps = slice_(["10.0.0.1", "10.0.0.2", "10.0.0.3"], [{"port": 80}])
    assert lines(table("EndpointSlice", [eps], now=NOW))[1].endswith("10.0.0.1,10.0.0.2,10.0.0.3   42s")


def test_endpoint_slice_ports_are_comma_joined() -> None:
    eps = slice_(["10.0.0.1"], [{"port": 80}, {"port": 443}])
    assert (
        lines(table("EndpointSlice", [eps], now=NOW))[1]
        == "web-abc12   IPv4          80,443   10.0.0.1    42s"
    )


def test_endpoint_slice_without_endpoints_or_ports_shows_unset() -> None:
    eps = slice_([], [])
    assert (
        lines(table("EndpointSlice", [eps], now=NOW))[1]
        == "web-abc12   IPv4          <unset>   <unset>     42s"
    )


def test_endpoint_slice_port_without_number_shows_star() -> None:
    eps = slice_(["10.0.0.1"], [{"protocol": "TCP"}])
    assert lines(table("EndpointSlice", [eps], now=NOW))[1].startswith(
        "web-abc12   IPv4          *       10.0.0.1"
    )


# --- Namespaces -----------------------------------------------------------------


def test_terminating_namespace_shows_its_phase() -> None:
    ns = {"metadata": meta("old", namespace=None, age=ago(hours=30)), "status": {"phase": "Terminating"}}
    assert lines(table("Namespace", [ns], now=NOW))[1] == "old    Terminating   30h"


# --- -o json / -o yaml ----------------------------------------------------------


def test_to_list_wraps_items_in_a_v1_list() -> None:
    assert to_list([{"a": 1}]) == {
        "apiVersion": "v1",
        "kind": "List",
        "items": [{"a": 1}],
        "metadata": {"resourceVersion": ""},
    }


def test_json_dump_uses_four_space_indent_and_trailing_newline() -> None:
    assert dump({"kind": "Pod", "metadata": {"name": "p"}}, "json") == (
        '{\n    "kind": "Pod",\n    "metadata": {\n        "name": "p"\n    }\n}\n'
    )


def test_json_dump_of_list_prints_keys_as_kubectl_does() -> None:
    assert dump(to_list([]), "json") == (
        '{\n    "apiVersion": "v1",\n    "items": [],\n    "kind": "List",\n'
        '    "metadata": {\n        "resourceVersion": ""\n    }\n}\n'
    )


def test_json_dump_escapes_html_characters_like_go() -> None:
    out = dump({"note": "a<b>&c"}, "json")
    assert '"a\\u003cb\\u003e\\u0026c"' in out
    assert json.loads(out) == {"note": "a<b>&c"}


def test_yaml_dump_is_block_style_in_object_order() -> None:
    obj = {
        "kind": "Service",
        "spec": {"ports": [{"port": 80, "protocol": "TCP"}], "selector": {"app": "web"}},
    }
    assert dump(obj, "yaml") == (
        "kind: Service\nspec:\n  ports:\n  - port: 80\n    protocol: TCP\n  selector:\n    app: web\n"
    )


def test_yaml_dump_does_not_wrap_long_strings() -> None:
    long = "x " * 100
    out = dump({"note": long}, "yaml")
    assert len(out.splitlines()) == 1
    assert yaml.safe_load(out) == {"note": long}


def test_unknown_dump_format_is_an_error() -> None:
    with pytest.raises(ValueError, match="unsupported output format"):
        dump({}, "xml")  # type: ignore[arg-type]
