"""Validation as the API server does it: every problem at once, with the API
server's field paths and wording."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from podnet.api.defaults import apply_defaults
from podnet.api.errors import BadRequest, Invalid
from podnet.api.validation import (
    format_value,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_iana_svc_name,
    is_ipv4,
    is_qualified_name,
    is_valid_label_value,
    selector_matches,
    validate,
)

Obj = dict[str, Any]

DNS1123_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start "
    "and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
DNS1123_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    r"'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
PORT_RANGE = "must be between 1 and 65535, inclusive"


def namespace(name: str = "lab", **meta: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, **meta}}


def pod(**spec: Any) -> Obj:
    containers = spec.pop(
        "containers", [{"name": "web", "image": "nginx:1.25", "ports": [{"containerPort": 80}]}]
    )
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {"containers": containers, **spec},
    }


def container(**fields: Any) -> Obj:
    return {"name": "web", "image": "nginx:1.25", **fields}


def deployment(**spec: Any) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web", "tier": "front"}},
                "spec": {"containers": [container(ports=[{"containerPort": 80, "name": "http"}])]},
            },
            **spec,
        },
    }


def service(**spec: Any) -> Obj:
    spec.setdefault("selector", {"app": "web"})
    spec.setdefault("ports", [{"port": 80, "targetPort": 8080}])
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": spec,
    }


def endpoint_slice(**fields: Any) -> Obj:
    obj: Obj = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "web-abc12",
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": "web"},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.244.1.5"], "conditions": {"ready": True}, "nodeName": "node-1"}],
        "ports": [{"name": "http", "port": 8080}],
    }
    obj.update(fields)
    return obj


def causes(obj: Obj, old: Obj | None = None) -> list[tuple[str, str]]:
    """The causes validation reports for `obj` after defaulting (none if valid)."""
    try:
        validate(apply_defaults(obj), apply_defaults(old) if old is not None else None)
    except Invalid as exc:
        return exc.causes
    return []


def fields(obj: Obj, old: Obj | None = None) -> list[str]:
    return [f for f, _ in causes(obj, old)]


def message(obj: Obj, field: str) -> str:
    found = [m for f, m in causes(obj) if f == field]
    assert found, f"no cause for {field}: {causes(obj)}"
    return found[0]


# --- the small validators ---------------------------------------------------------


@pytest.mark.parametrize("value", ["a", "web", "web-1", "1abc", "a" * 63])
def test_valid_dns1123_labels_are_accepted(value: str) -> None:
    assert is_dns1123_label(value)


@pytest.mark.parametrize("value", ["", "Web", "web_1", "-web", "web-", "a.b", "a" * 64])
def test_invalid_dns1123_labels_are_refused(value: str) -> None:
    assert not is_dns1123_label(value)


def test_dns1123_subdomain_allows_dots_and_253_characters() -> None:
    assert is_dns1123_subdomain("web.example.com")
    assert is_dns1123_subdomain(".".join(["a" * 63] * 3) + "." + "a" * 61)
    assert not is_dns1123_subdomain("a" * 254)
    assert not is_dns1123_subdomain("web..example")


@pytest.mark.parametrize("value", ["app", "App_1.x", "example.com/app", "a" * 63])
def test_valid_qualified_names_are_accepted(value: str) -> None:
    assert is_qualified_name(value)


@pytest.mark.parametrize("value", ["", "/app", "a/b/c", "Example.com/app", "-app", "a" * 64, "example.com/"])
def test_invalid_qualified_names_are_refused(value: str) -> None:
    assert not is_qualified_name(value)


def test_label_values_may_be_empty_but_not_longer_than_63() -> None:
    assert is_valid_label_value("")
    assert is_valid_label_value("v1.2_x")
    assert not is_valid_label_value("a" * 64)
    assert not is_valid_label_value("bad value")


@pytest.mark.parametrize("value", ["http", "h2c", "web-80", "a" * 15])
def test_valid_iana_service_names_are_accepted(value: str) -> None:
    assert is_iana_svc_name(value)


@pytest.mark.parametrize("value", ["", "80", "Http", "a--b", "-http", "http-", "a" * 16, "http_alt"])
def test_invalid_iana_service_names_are_refused(value: str) -> None:
    assert not is_iana_svc_name(value)


def test_is_ipv4_accepts_only_dotted_quads() -> None:
    assert is_ipv4("10.96.0.1")
    for bad in ("10.96.0", "10.96.0.256", "::1", "10.96.0.1/32", "010.96.0.1", ""):
        assert not is_ipv4(bad)


def test_selector_matches_handles_every_operator() -> None:
    selector = {
        "matchLabels": {"app": "web"},
        "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["front", "edge"]},
            {"key": "env", "operator": "NotIn", "values": ["prod"]},
            {"key": "team", "operator": "Exists"},
            {"key": "legacy", "operator": "DoesNotExist"},
        ],
    }
    assert selector_matches(selector, {"app": "web", "tier": "edge", "team": "a"})
    assert not selector_matches(selector, {"app": "web", "tier": "back", "team": "a"})
    assert not selector_matches(selector, {"app": "web", "tier": "edge", "team": "a", "env": "prod"})
    assert not selector_matches(selector, {"app": "web", "tier": "edge"})
    assert not selector_matches(selector, {"app": "web", "tier": "edge", "team": "a", "legacy": "1"})


def test_values_are_printed_as_the_api_server_prints_them() -> None:
    assert format_value(0) == "0"
    assert format_value("Foo") == '"Foo"'
    assert format_value(True) == "true"
    assert format_value({"b": "2", "a": "1"}) == 'map[string]string{"a":"1", "b":"2"}'
    assert format_value(["10.0.0.1"]) == '[]string{"10.0.0.1"}'


# --- the error ------------------------------------------------------------------------


def test_valid_objects_of_every_kind_pass() -> None:
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "node-1"},
        "spec": {"podCIDR": "10.244.1.0/24"},
    }
    for obj in (namespace(), pod(), deployment(), service(), endpoint_slice(), node):
        validate(apply_defaults(obj))


def test_invalid_names_the_kind_and_object_and_lists_every_problem() -> None:
    obj = service(ports=[{"port": 0, "targetPort": 80}, {"port": 80, "targetPort": 80, "protocol": "XTP"}])
    obj["metadata"]["name"] = "Web"
    with pytest.raises(Invalid) as exc:
        validate(apply_defaults(obj))
    assert exc.value.kind == "Service"
    assert exc.value.name == "Web"
    assert exc.value.message.startswith('Service "Web" is invalid: [metadata.name: Invalid value: "Web": ')
    assert [f for f, _ in exc.value.causes] == [
        "metadata.name",
        "spec.ports[0].name",
        "spec.ports[0].port",
        "spec.ports[1].name",
        "spec.ports[1].protocol",
    ]


def test_an_object_of_an_unknown_kind_is_a_bad_request() -> None:
    with pytest.raises(BadRequest, match='no matches for kind "Widget" in version "v1"'):
        validate({"apiVersion": "v1", "kind": "Widget", "metadata": {"name": "w"}})


def test_validate_does_not_change_the_object() -> None:
    obj = apply_defaults(deployment())
    before = copy.deepcopy(obj)
    validate(obj)
    assert obj == before


# --- metadata -------------------------------------------------------------------------


def test_a_pod_name_must_be_a_dns_subdomain_with_the_api_servers_message() -> None:
    obj = pod()
    obj["metadata"]["name"] = "Web_1"
    assert causes(obj) == [("metadata.name", f'Invalid value: "Web_1": {DNS1123_SUBDOMAIN_MSG}')]


def test_a_pod_name_may_contain_dots() -> None:
    obj = pod()
    obj["metadata"]["name"] = "web.v1"
    assert causes(obj) == []


def test_a_namespace_name_must_be_a_dns_label() -> None:
    assert causes(namespace("team.a")) == [
        ("metadata.name", 'Invalid value: "team.a": must not contain dots')
    ]
    assert causes(namespace("Team")) == [("metadata.name", f'Invalid value: "Team": {DNS1123_LABEL_MSG}')]


def test_a_name_longer_than_63_characters_is_refused_for_a_namespace() -> None:
    assert causes(namespace("a" * 64)) == [
        ("metadata.name", f'Invalid value: "{"a" * 64}": must be no more than 63 characters')
    ]


def test_a_service_name_must_start_with_a_letter() -> None:
    obj = service()
    obj["metadata"]["name"] = "1web"
    assert fields(obj) == ["metadata.name"]
    assert "a DNS-1035 label must consist of lower case alphanumeric characters" in message(
        obj, "metadata.name"
    )


def test_a_missing_name_is_required() -> None:
    obj = pod()
    del obj["metadata"]["name"]
    assert causes(obj) == [("metadata.name", "Required value: name or generateName is required")]


def test_generate_name_stands_in_for_a_name_and_may_end_with_a_dash() -> None:
    obj = pod()
    obj["metadata"] = {"generateName": "web-", "namespace": "default"}
    assert causes(obj) == []
    obj["metadata"]["generateName"] = "Web-"
    assert fields(obj) == ["metadata.generateName"]


def test_a_bad_namespace_field_is_refused() -> None:
    obj = pod()
    obj["metadata"]["namespace"] = "Default"
    assert causes(obj) == [("metadata.namespace", f'Invalid value: "Default": {DNS1123_LABEL_MSG}')]


def test_a_namespace_may_not_itself_have_a_namespace() -> None:
    assert causes(namespace(namespace="default")) == [
        ("metadata.namespace", "Forbidden: not allowed on this type")
    ]


def test_label_key_and_value_errors_name_the_labels_map() -> None:
    obj = pod()
    obj["metadata"]["labels"] = {"app/x/y": "web", "tier": "front end"}
    assert fields(obj) == ["metadata.labels", "metadata.labels"]
    assert message(obj, "metadata.labels").startswith(
        'Invalid value: "app/x/y": a qualified name must consist'
    )


def test_a_label_value_longer_than_63_characters_is_refused() -> None:
    obj = pod()
    obj["metadata"]["labels"] = {"app": "v" * 64}
    assert causes(obj) == [
        ("metadata.labels", f'Invalid value: "{"v" * 64}": must be no more than 63 characters')
    ]


def test_a_label_key_with_a_bad_prefix_says_so() -> None:
    obj = pod()
    obj["metadata"]["labels"] = {"Example.com/app": "web"}
    assert message(obj, "metadata.labels").startswith(
        'Invalid value: "Example.com/app": prefix part a lowercase RFC 1123 subdomain'
    )


def test_a_non_string_label_value_is_refused() -> None:
    obj = pod()
    obj["metadata"]["labels"] = {"version": 2}
    assert causes(obj) == [("metadata.labels[version]", "Invalid value: 2: must be a string")]


def test_annotation_keys_must_be_qualified_names_in_any_case() -> None:
    obj = pod()
    obj["metadata"]["annotations"] = {"Example.com/Note": "ok", "bad key": "x"}
    assert fields(obj) == ["metadata.annotations"]


def test_annotations_over_256_kib_are_too_long() -> None:
    obj = pod()
    obj["metadata"]["annotations"] = {"note": "x" * (256 * 1024)}
    assert causes(obj) == [("metadata.annotations", "Too long: must have at most 262144 bytes")]


# --- Pod -----------------------------------------------------------------------------


def test_a_pod_without_containers_is_refused() -> None:
    assert causes(pod(containers=[])) == [("spec.containers", "Required value")]


def test_a_container_without_a_name_or_image_is_refused() -> None:
    assert causes(pod(containers=[{"ports": [{"containerPort": 80}]}])) == [
        ("spec.containers[0].name", "Required value"),
        ("spec.containers[0].image", "Required value"),
    ]


def test_container_names_must_be_dns_labels() -> None:
    assert fields(pod(containers=[container(name="Web")])) == ["spec.containers[0].name"]


def test_container_names_must_be_unique() -> None:
    assert causes(pod(containers=[container(), container()])) == [
        ("spec.containers[1].name", 'Duplicate value: "web"')
    ]


def test_init_container_names_may_not_repeat_a_container_name() -> None:
    assert causes(pod(initContainers=[container(image="busybox")])) == [
        ("spec.initContainers[0].name", 'Duplicate value: "web"')
    ]


def test_an_image_with_surrounding_whitespace_is_refused_on_a_pod() -> None:
    assert causes(pod(containers=[container(image=" nginx")])) == [
        ("spec.containers[0].image", 'Invalid value: " nginx": must not have leading or trailing whitespace')
    ]


def test_a_container_port_out_of_range_is_refused_naming_the_field() -> None:
    assert causes(pod(containers=[container(ports=[{"containerPort": 70000}])])) == [
        ("spec.containers[0].ports[0].containerPort", f"Invalid value: 70000: {PORT_RANGE}")
    ]


def test_a_container_port_of_zero_is_required() -> None:
    assert causes(pod(containers=[container(ports=[{"containerPort": 0}])])) == [
        ("spec.containers[0].ports[0].containerPort", "Required value")
    ]


def test_a_container_port_given_as_a_string_is_refused() -> None:
    assert causes(pod(containers=[container(ports=[{"containerPort": "80"}])])) == [
        ("spec.containers[0].ports[0].containerPort", 'Invalid value: "80": must be an integer')
    ]


def test_a_host_port_out_of_range_is_refused() -> None:
    assert fields(pod(containers=[container(ports=[{"containerPort": 80, "hostPort": -1}])])) == [
        "spec.containers[0].ports[0].hostPort"
    ]


def test_a_port_protocol_must_be_tcp_udp_or_sctp() -> None:
    assert causes(pod(containers=[container(ports=[{"containerPort": 80, "protocol": "tcp"}])])) == [
        (
            "spec.containers[0].ports[0].protocol",
            'Unsupported value: "tcp": supported values: "SCTP", "TCP", "UDP"',
        )
    ]


def test_a_port_name_longer_than_15_characters_is_refused() -> None:
    ports = [{"containerPort": 80, "name": "a-very-long-port-name"}]
    assert causes(pod(containers=[container(ports=ports)])) == [
        (
            "spec.containers[0].ports[0].name",
            'Invalid value: "a-very-long-port-name": must be no more than 15 characters',
        )
    ]


def test_a_port_name_needs_a_letter_and_no_double_or_edge_hyphens() -> None:
    ports = [{"containerPort": 80, "name": "-8--0"}]
    assert [m for _, m in causes(pod(containers=[container(ports=ports)]))] == [
        'Invalid value: "-8--0": must contain at least one letter (a-z)',
        'Invalid value: "-8--0": must not contain consecutive hyphens',
        'Invalid value: "-8--0": must not begin or end with a hyphen',
    ]


def test_port_names_must_be_unique_within_a_container() -> None:
    ports = [{"containerPort": 80, "name": "http"}, {"containerPort": 81, "name": "http"}]
    assert causes(pod(containers=[container(ports=ports)])) == [
        ("spec.containers[0].ports[1].name", 'Duplicate value: "http"')
    ]


def test_host_ports_may_not_collide_across_containers() -> None:
    first = container(ports=[{"containerPort": 80, "hostPort": 8080}])
    second = container(name="side", ports=[{"containerPort": 81, "hostPort": 8080}])
    assert causes(pod(containers=[first, second])) == [
        ("spec.containers[1].ports[0].hostPort", 'Duplicate value: "TCP//8080"')
    ]


def test_a_host_network_pod_must_use_the_container_port_as_host_port() -> None:
    ports = [{"containerPort": 80, "hostPort": 8080}]
    assert causes(pod(hostNetwork=True, containers=[container(ports=ports)])) == [
        (
            "spec.containers[0].ports[0].hostPort",
            "Invalid value: 8080: must match `containerPort` when `hostNetwork` is true",
        )
    ]


def test_a_restart_policy_must_be_always_on_failure_or_never() -> None:
    assert causes(pod(restartPolicy="Sometimes")) == [
        (
            "spec.restartPolicy",
            'Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"',
        )
    ]


def test_a_dns_policy_must_be_known() -> None:
    assert fields(pod(dnsPolicy="Cluster")) == ["spec.dnsPolicy"]


def test_node_selector_labels_are_checked() -> None:
    assert fields(pod(nodeSelector={"kubernetes.io/hostname": "node 1"})) == ["spec.nodeSelector"]


def test_a_node_name_must_be_a_dns_subdomain() -> None:
    assert fields(pod(nodeName="Node_1")) == ["spec.nodeName"]


def test_an_image_pull_policy_must_be_known() -> None:
    assert causes(pod(containers=[container(imagePullPolicy="Sometimes")])) == [
        (
            "spec.containers[0].imagePullPolicy",
            'Unsupported value: "Sometimes": supported values: "Always", "IfNotPresent", "Never"',
        )
    ]


def test_a_valid_probe_of_each_kind_passes() -> None:
    probes = {
        "livenessProbe": {"tcpSocket": {"port": 80}},
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}},
        "startupProbe": {"exec": {"command": ["true"]}},
    }
    c = container(ports=[{"containerPort": 80, "name": "http"}], **probes)
    assert causes(pod(containers=[c])) == []
    assert causes(pod(containers=[container(readinessProbe={"grpc": {"port": 9090}})])) == []


def test_a_probe_needs_a_handler() -> None:
    assert causes(pod(containers=[container(readinessProbe={"periodSeconds": 5})])) == [
        ("spec.containers[0].readinessProbe", "Required value: must specify a handler type")
    ]


def test_a_probe_may_not_have_two_handlers() -> None:
    probe = {"tcpSocket": {"port": 80}, "httpGet": {"port": 80}}
    assert causes(pod(containers=[container(livenessProbe=probe)])) == [
        ("spec.containers[0].livenessProbe.tcpSocket", "Forbidden: may not specify more than 1 handler type")
    ]


def test_a_probe_port_must_be_a_number_in_range_or_a_port_name() -> None:
    c = container(livenessProbe={"httpGet": {"port": 0}}, readinessProbe={"tcpSocket": {"port": "HTTP"}})
    assert causes(pod(containers=[c])) == [
        ("spec.containers[0].livenessProbe.httpGet.port", f"Invalid value: 0: {PORT_RANGE}"),
        (
            "spec.containers[0].readinessProbe.tcpSocket.port",
            'Invalid value: "HTTP": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)',
        ),
        (
            "spec.containers[0].readinessProbe.tcpSocket.port",
            'Invalid value: "HTTP": must contain at least one letter (a-z)',
        ),
    ]


def test_a_probe_without_a_port_is_refused() -> None:
    assert causes(pod(containers=[container(readinessProbe={"tcpSocket": {}})])) == [
        ("spec.containers[0].readinessProbe.tcpSocket.port", f"Invalid value: 0: {PORT_RANGE}")
    ]


def test_an_exec_probe_needs_a_command() -> None:
    assert causes(pod(containers=[container(livenessProbe={"exec": {"command": []}})])) == [
        ("spec.containers[0].livenessProbe.exec.command", "Required value")
    ]


def test_an_http_probe_scheme_must_be_http_or_https() -> None:
    c = container(readinessProbe={"httpGet": {"port": 80, "scheme": "FTP"}})
    assert causes(pod(containers=[c])) == [
        (
            "spec.containers[0].readinessProbe.httpGet.scheme",
            'Unsupported value: "FTP": supported values: "HTTP", "HTTPS"',
        )
    ]


def test_a_liveness_probe_success_threshold_must_be_one() -> None:
    c = container(livenessProbe={"tcpSocket": {"port": 80}, "successThreshold": 2})
    assert causes(pod(containers=[c])) == [
        ("spec.containers[0].livenessProbe.successThreshold", "Invalid value: 2: must be 1")
    ]


def test_negative_probe_timings_are_refused() -> None:
    c = container(readinessProbe={"tcpSocket": {"port": 80}, "initialDelaySeconds": -1})
    assert causes(pod(containers=[c])) == [
        (
            "spec.containers[0].readinessProbe.initialDelaySeconds",
            "Invalid value: -1: must be greater than or equal to 0",
        )
    ]


def test_init_containers_may_not_have_probes_unless_they_are_sidecars() -> None:
    init = {"name": "init", "image": "busybox", "readinessProbe": {"tcpSocket": {"port": 80}}}
    assert causes(pod(initContainers=[init])) == [
        (
            "spec.initContainers[0].readinessProbe",
            "Forbidden: may not be set for init containers without restartPolicy=Always",
        )
    ]
    init["restartPolicy"] = "Always"
    assert causes(pod(initContainers=[init])) == []


def test_a_malformed_container_list_is_refused_without_crashing() -> None:
    assert causes(pod(containers="web")) == [
        ("spec.containers", 'Invalid value: "web": must be a list'),
        ("spec.containers", "Required value"),
    ]


# --- Deployment -------------------------------------------------------------------------


def test_negative_replicas_are_refused() -> None:
    assert causes(deployment(replicas=-1)) == [
        ("spec.replicas", "Invalid value: -1: must be greater than or equal to 0")
    ]


def test_zero_replicas_are_fine() -> None:
    assert causes(deployment(replicas=0)) == []


def test_a_deployment_needs_a_selector() -> None:
    obj = deployment()
    del obj["spec"]["selector"]
    assert causes(obj) == [("spec.selector", "Required value")]


def test_an_empty_selector_is_refused() -> None:
    assert causes(deployment(selector={})) == [
        ("spec.selector", "Invalid value: {}: empty selector is invalid for deployment")
    ]


def test_a_selector_that_does_not_match_the_template_labels_is_refused() -> None:
    assert causes(deployment(selector={"matchLabels": {"app": "api"}})) == [
        (
            "spec.template.metadata.labels",
            'Invalid value: map[string]string{"app":"web", "tier":"front"}: '
            "`selector` does not match template `labels`",
        )
    ]


def test_selector_expressions_are_matched_against_the_template() -> None:
    good = {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]}]}
    bad = {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["front"]}]}
    exists = {
        "matchLabels": {"app": "web"},
        "matchExpressions": [{"key": "canary", "operator": "DoesNotExist"}],
    }
    assert causes(deployment(selector=good)) == []
    assert fields(deployment(selector=bad)) == ["spec.template.metadata.labels"]
    assert causes(deployment(selector=exists)) == []


def test_a_bad_selector_operator_is_refused() -> None:
    selector = {"matchExpressions": [{"key": "tier", "operator": "Is", "values": ["front"]}]}
    assert causes(deployment(selector=selector)) == [
        ("spec.selector.matchExpressions[0].operator", 'Invalid value: "Is": not a valid selector operator')
    ]


def test_in_needs_values_and_exists_forbids_them() -> None:
    selector = {
        "matchLabels": {"app": "web"},
        "matchExpressions": [
            {"key": "tier", "operator": "In", "values": []},
            {"key": "team", "operator": "Exists", "values": ["a"]},
        ],
    }
    assert causes(deployment(selector=selector)) == [
        (
            "spec.selector.matchExpressions[0].values",
            "Required value: must be specified when `operator` is 'In' or 'NotIn'",
        ),
        (
            "spec.selector.matchExpressions[1].values",
            "Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
        ),
    ]


def test_the_template_restart_policy_must_be_always() -> None:
    obj = deployment()
    obj["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    assert causes(obj) == [
        ("spec.template.spec.restartPolicy", 'Unsupported value: "OnFailure": supported values: "Always"')
    ]


def test_template_containers_are_validated_under_the_template_path() -> None:
    obj = deployment()
    obj["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = 65536
    assert causes(obj) == [
        ("spec.template.spec.containers[0].ports[0].containerPort", f"Invalid value: 65536: {PORT_RANGE}")
    ]


def test_a_strategy_type_must_be_recreate_or_rolling_update() -> None:
    assert causes(deployment(strategy={"type": "BlueGreen"})) == [
        (
            "spec.strategy.type",
            'Unsupported value: "BlueGreen": supported values: "Recreate", "RollingUpdate"',
        )
    ]


def test_recreate_may_not_have_rolling_update_parameters() -> None:
    assert causes(deployment(strategy={"type": "Recreate", "rollingUpdate": {"maxSurge": 1}})) == [
        ("spec.strategy.rollingUpdate", "Forbidden: may not be specified when strategy `type` is 'Recreate'")
    ]


def test_max_surge_must_be_an_int_or_a_percent() -> None:
    assert causes(deployment(strategy={"rollingUpdate": {"maxSurge": "25"}})) == [
        (
            "spec.strategy.rollingUpdate.maxSurge",
            "Invalid value: 25: a valid percent string must be a numeric string followed by an ending '%' "
            "(e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
        )
    ]


def test_max_unavailable_and_max_surge_may_not_both_be_zero() -> None:
    assert causes(deployment(strategy={"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}})) == [
        ("spec.strategy.rollingUpdate.maxUnavailable", "Invalid value: 0%: may not be 0 when `maxSurge` is 0")
    ]


def test_max_unavailable_may_not_exceed_100_percent() -> None:
    assert causes(deployment(strategy={"rollingUpdate": {"maxUnavailable": "150%"}})) == [
        ("spec.strategy.rollingUpdate.maxUnavailable", "Invalid value: 150%: must not be greater than 100%")
    ]


def test_progress_deadline_must_exceed_min_ready_seconds() -> None:
    assert causes(deployment(minReadySeconds=30, progressDeadlineSeconds=30)) == [
        ("spec.progressDeadlineSeconds", "Invalid value: 30: must be greater than minReadySeconds")
    ]


def test_a_deployment_selector_is_immutable() -> None:
    old = deployment()
    new = deployment(selector={"matchLabels": {"app": "web", "tier": "front"}})
    assert causes(new) == []
    assert fields(new, old) == ["spec.selector"]
    assert causes(new, old)[0][1].endswith("field is immutable")


# --- Service -------------------------------------------------------------------------------


def test_a_service_port_out_of_range_is_refused_naming_the_field() -> None:
    assert causes(service(ports=[{"port": 0, "targetPort": 80}])) == [
        ("spec.ports[0].port", f"Invalid value: 0: {PORT_RANGE}")
    ]


def test_a_service_needs_ports() -> None:
    assert causes(service(ports=[])) == [("spec.ports", "Required value")]


def test_a_headless_service_and_an_external_name_service_need_no_ports() -> None:
    assert causes(service(clusterIP="None", ports=[])) == []
    assert causes(service(type="ExternalName", externalName="db.example.com", ports=[], selector={})) == []


def test_an_unknown_service_type_is_refused_listing_the_supported_ones() -> None:
    assert causes(service(type="Foo")) == [
        (
            "spec.type",
            'Unsupported value: "Foo": '
            'supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort"',
        )
    ]


def test_port_names_are_required_when_there_are_several_ports() -> None:
    assert causes(service(ports=[{"port": 80, "name": "http"}, {"port": 443}])) == [
        ("spec.ports[1].name", "Required value")
    ]


def test_service_port_names_must_be_unique_dns_labels() -> None:
    ports = [{"port": 80, "name": "web"}, {"port": 443, "name": "web"}, {"port": 8080, "name": "Alt"}]
    assert fields(service(ports=ports)) == ["spec.ports[1].name", "spec.ports[2].name"]
    assert message(service(ports=ports), "spec.ports[1].name") == 'Duplicate value: "web"'


def test_the_same_port_and_protocol_twice_is_a_duplicate() -> None:
    ports = [
        {"port": 80, "name": "a"},
        {"port": 80, "name": "b"},
        {"port": 80, "name": "c", "protocol": "UDP"},
    ]
    assert causes(service(ports=ports)) == [
        (
            "spec.ports[1]",
            'Duplicate value: core.ServicePort{Name:"", Protocol:"TCP", AppProtocol:(*string)(nil), Port:80, '
            'TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:""}, NodePort:0}',
        )
    ]


def test_a_service_protocol_must_be_known() -> None:
    assert fields(service(ports=[{"port": 80, "protocol": "HTTP"}])) == ["spec.ports[0].protocol"]


def test_a_target_port_must_be_a_valid_number_or_port_name() -> None:
    ports = [
        {"port": 80, "name": "a", "targetPort": 70000},
        {"port": 81, "name": "b", "targetPort": "web_port"},
    ]
    assert causes(service(ports=ports)) == [
        ("spec.ports[0].targetPort", f"Invalid value: 70000: {PORT_RANGE}"),
        (
            "spec.ports[1].targetPort",
            'Invalid value: "web_port": '
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
        ),
    ]


def test_a_named_target_port_passes() -> None:
    assert causes(service(ports=[{"port": 80, "targetPort": "http"}])) == []


def test_a_node_port_is_forbidden_on_a_cluster_ip_service() -> None:
    assert causes(service(ports=[{"port": 80, "nodePort": 30080}])) == [
        ("spec.ports[0].nodePort", "Forbidden: may not be used when `type` is 'ClusterIP'")
    ]


def test_a_node_port_service_accepts_any_valid_node_port() -> None:
    assert causes(service(type="NodePort", ports=[{"port": 80, "nodePort": 30080}])) == []
    assert causes(service(type="NodePort", ports=[{"port": 80}])) == []


def test_a_node_port_out_of_range_is_refused() -> None:
    assert causes(service(type="NodePort", ports=[{"port": 80, "nodePort": 70000}])) == [
        ("spec.ports[0].nodePort", f"Invalid value: 70000: {PORT_RANGE}")
    ]


def test_duplicate_node_ports_are_refused() -> None:
    ports = [{"port": 80, "name": "a", "nodePort": 30080}, {"port": 81, "name": "b", "nodePort": 30080}]
    assert causes(service(type="NodePort", ports=ports)) == [
        ("spec.ports[1].nodePort", "Duplicate value: 30080")
    ]


@pytest.mark.parametrize("ip", ["", "None", "10.96.0.10"])
def test_a_cluster_ip_may_be_empty_none_or_an_ipv4_address(ip: str) -> None:
    assert causes(service(clusterIP=ip)) == []


def test_a_malformed_cluster_ip_is_refused() -> None:
    assert causes(service(clusterIP="10.96.0")) == [
        (
            "spec.clusterIP",
            'Invalid value: "10.96.0": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)',
        )
    ]


def test_an_ipv6_cluster_ip_is_refused_in_an_ipv4_service() -> None:
    assert causes(service(clusterIP="fd00::10")) == [
        (
            "spec.clusterIP",
            'Invalid value: "fd00::10": expected an IPv4 value as indicated by `ipFamilies[0]`',
        )
    ]


def test_a_cluster_ip_is_immutable_on_update() -> None:
    old = service(clusterIP="10.96.0.10")
    assert causes(service(clusterIP="10.96.0.11"), old) == [
        ("spec.clusterIP", 'Invalid value: "10.96.0.11": field is immutable')
    ]


def test_a_cluster_ip_may_be_set_on_update_when_it_was_empty() -> None:
    assert causes(service(clusterIP="10.96.0.11"), service()) == []


def test_an_unchanged_cluster_ip_passes_on_update() -> None:
    assert causes(service(clusterIP="10.96.0.10"), service(clusterIP="10.96.0.10")) == []


def test_a_headless_node_port_service_is_refused() -> None:
    assert causes(service(type="NodePort", clusterIP="None")) == [
        ("spec.clusterIP", "Invalid value: \"None\": may not be set to 'None' for NodePort services")
    ]


def test_a_headless_load_balancer_service_is_refused() -> None:
    assert fields(service(type="LoadBalancer", clusterIP="None")) == ["spec.clusterIP"]


def test_an_external_name_service_needs_a_dns_name_and_no_cluster_ip() -> None:
    assert causes(service(type="ExternalName", clusterIP="10.96.0.10", ports=[], selector={})) == [
        ("spec.clusterIP", "Forbidden: may not be set for ExternalName services"),
        ("spec.externalName", "Required value"),
    ]


def test_session_affinity_must_be_none_or_client_ip() -> None:
    assert causes(service(sessionAffinity="Cookie")) == [
        ("spec.sessionAffinity", 'Unsupported value: "Cookie": supported values: "ClientIP", "None"')
    ]


def test_client_ip_affinity_timeout_must_be_at_most_a_day() -> None:
    config = {"clientIP": {"timeoutSeconds": 86401}}
    assert causes(service(sessionAffinity="ClientIP", sessionAffinityConfig=config)) == [
        (
            "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
            "Invalid value: 86401: must be greater than 0 and less than 86400",
        )
    ]


def test_affinity_config_is_forbidden_without_client_ip_affinity() -> None:
    assert causes(service(sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}})) == [
        ("spec.sessionAffinityConfig", "Forbidden: must not be set when session affinity is None")
    ]


def test_external_traffic_policy_must_be_cluster_or_local() -> None:
    assert causes(service(type="NodePort", externalTrafficPolicy="Nearest")) == [
        ("spec.externalTrafficPolicy", 'Unsupported value: "Nearest": supported values: "Cluster", "Local"')
    ]


def test_external_traffic_policy_is_refused_on_a_cluster_ip_service() -> None:
    assert causes(service(externalTrafficPolicy="Local")) == [
        (
            "spec.externalTrafficPolicy",
            'Invalid value: "Local": may only be set for externally-accessible services',
        )
    ]


def test_internal_traffic_policy_must_be_cluster_or_local() -> None:
    assert causes(service(internalTrafficPolicy="Node")) == [
        ("spec.internalTrafficPolicy", 'Unsupported value: "Node": supported values: "Cluster", "Local"')
    ]


def test_a_load_balancer_service_with_local_policy_passes() -> None:
    assert (
        causes(service(type="LoadBalancer", externalTrafficPolicy="Local", healthCheckNodePort=31000)) == []
    )


def test_a_health_check_node_port_needs_a_local_load_balancer() -> None:
    assert fields(service(type="NodePort", healthCheckNodePort=31000)) == ["spec.healthCheckNodePort"]


def test_a_service_selector_must_have_valid_labels() -> None:
    assert fields(service(selector={"app": "web server"})) == ["spec.selector"]


# --- EndpointSlice -----------------------------------------------------------------------------


def test_an_address_type_must_be_ipv4_ipv6_or_fqdn() -> None:
    assert causes(endpoint_slice(addressType="IP4")) == [
        ("addressType", 'Unsupported value: "IP4": supported values: "FQDN", "IPv4", "IPv6"')
    ]


def test_an_endpoint_needs_an_address() -> None:
    assert causes(endpoint_slice(endpoints=[{"addresses": []}])) == [
        ("endpoints[0].addresses", "Required value: must contain at least 1 address")
    ]


def test_an_endpoint_address_must_match_the_address_type() -> None:
    assert causes(endpoint_slice(endpoints=[{"addresses": ["fd00::5"]}])) == [
        ("endpoints[0].addresses[0]", 'Invalid value: "fd00::5": must be a valid IPv4 address')
    ]


def test_a_loopback_endpoint_address_is_refused() -> None:
    assert causes(endpoint_slice(endpoints=[{"addresses": ["127.0.0.1"]}])) == [
        (
            "endpoints[0].addresses[0]",
            'Invalid value: "127.0.0.1": may not be in the loopback range (127.0.0.0/8, ::1/128)',
        )
    ]


def test_an_fqdn_endpoint_needs_two_labels() -> None:
    ok = endpoint_slice(addressType="FQDN", endpoints=[{"addresses": ["db.example.com"]}])
    bad = endpoint_slice(addressType="FQDN", endpoints=[{"addresses": ["db"]}])
    assert causes(ok) == []
    assert causes(bad) == [
        (
            "endpoints[0].addresses[0]",
            'Invalid value: "db": should be a domain with at least two segments separated by dots',
        )
    ]


def test_endpoint_slice_port_names_must_be_unique() -> None:
    ports = [{"name": "http", "port": 80}, {"name": "http", "port": 81}]
    assert causes(endpoint_slice(ports=ports)) == [("ports[1].name", 'Duplicate value: "http"')]


def test_endpoint_slice_port_protocol_must_be_known() -> None:
    assert fields(endpoint_slice(ports=[{"name": "http", "port": 80, "protocol": "QUIC"}])) == [
        "ports[0].protocol"
    ]


def test_endpoint_slice_port_out_of_range_is_refused() -> None:
    assert causes(endpoint_slice(ports=[{"name": "http", "port": 0}])) == [
        ("ports[0].port", f"Invalid value: 0: {PORT_RANGE}")
    ]


def test_endpoint_conditions_are_not_checked_beyond_their_type() -> None:
    endpoints = [
        {"addresses": ["10.244.1.5"], "conditions": {"ready": False, "serving": True, "terminating": True}}
    ]
    assert causes(endpoint_slice(endpoints=endpoints)) == []


def test_an_endpoint_slice_address_type_is_immutable() -> None:
    old = endpoint_slice()
    new = endpoint_slice(addressType="FQDN", endpoints=[{"addresses": ["db.example.com"]}])
    assert causes(new, old) == [("addressType", 'Invalid value: "FQDN": field is immutable')]
