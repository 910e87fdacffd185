"""Validation of objects as the Kubernetes API server does it, after defaulting,
for the kinds the lab serves. Every problem is collected and reported at once
as an `Invalid` whose causes are (field path, message) pairs worded as the API
server words them (k8s.io/apimachinery field errors), for example
("spec.ports[0].port", "Invalid value: 0: must be between 1 and 65535, inclusive").

The small validators (`is_dns1123_label` ...) return a bool; the matching
`*_errors` functions return the API server's explanations, empty when valid.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Iterable
from typing import Any

from podnet.api import kinds
from podnet.api.errors import BadRequest, Invalid

Obj = dict[str, Any]
Cause = tuple[str, str]

# --- Formats (k8s.io/apimachinery/pkg/util/validation) --------------------------

DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253
DNS1035_LABEL_MAX = 63
LABEL_VALUE_MAX = 63
QUALIFIED_NAME_MAX = 63
PORT_NAME_MAX = 15
TOTAL_ANNOTATION_SIZE = 256 * 1024
MAX_CLIENT_IP_AFFINITY_SECONDS = 86400

_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_FMT = _DNS1123_LABEL_FMT + r"(\." + _DNS1123_LABEL_FMT + ")*"
_DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
_QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE_FMT = "(" + _QUALIFIED_NAME_FMT + ")?"
_PERCENT_FMT = "[0-9]+%"
_HTTP_HEADER_FMT = "[-A-Za-z0-9]+"

_DNS1123_LABEL_RE = re.compile(_DNS1123_LABEL_FMT)
_DNS1123_SUBDOMAIN_RE = re.compile(_DNS1123_SUBDOMAIN_FMT)
_DNS1035_LABEL_RE = re.compile(_DNS1035_LABEL_FMT)
_QUALIFIED_NAME_RE = re.compile(_QUALIFIED_NAME_FMT)
_LABEL_VALUE_RE = re.compile(_LABEL_VALUE_FMT)
_PERCENT_RE = re.compile(_PERCENT_FMT)
_HTTP_HEADER_RE = re.compile(_HTTP_HEADER_FMT)
_PORT_NAME_CHARSET_RE = re.compile("[-a-z0-9]+")


def _max_len_error(n: int) -> str:
    return f"must be no more than {n} characters"


def _regex_error(msg: str, fmt: str, *examples: str) -> str:
    # Kubernetes' RegexError, including its double space between examples.
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    return (
        msg + " (e.g. " + " or ".join(f"'{e}', " for e in examples) + f"regex used for validation is '{fmt}')"
    )


def _range_error(lo: int, hi: int) -> str:
    return f"must be between {lo} and {hi}, inclusive"


def dns1123_label_errors(value: str) -> list[str]:
    errs = []
    if len(value) > DNS1123_LABEL_MAX:
        errs.append(_max_len_error(DNS1123_LABEL_MAX))
    if not _DNS1123_LABEL_RE.fullmatch(value):
        if _DNS1123_SUBDOMAIN_RE.fullmatch(value):
            errs.append("must not contain dots")
        else:
            errs.append(
                _regex_error(
                    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
                    "and must start and end with an alphanumeric character",
                    _DNS1123_LABEL_FMT,
                    "my-name",
                    "123-abc",
                )
            )
    return errs


def dns1123_subdomain_errors(value: str) -> list[str]:
    errs = []
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        errs.append(_max_len_error(DNS1123_SUBDOMAIN_MAX))
    if not _DNS1123_SUBDOMAIN_RE.fullmatch(value):
        errs.append(
            _regex_error(
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
                "'-' or '.', and must start and end with an alphanumeric character",
                _DNS1123_SUBDOMAIN_FMT,
                "example.com",
            )
        )
    return errs


def dns1035_label_errors(value: str) -> list[str]:
    errs = []
    if len(value) > DNS1035_LABEL_MAX:
        errs.append(_max_len_error(DNS1035_LABEL_MAX))
    if not _DNS1035_LABEL_RE.fullmatch(value):
        errs.append(
            _regex_error(
                "a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
                "start with an alphabetic character, and end with an alphanumeric character",
                _DNS1035_LABEL_FMT,
                "my-name",
                "abc-123",
            )
        )
    return errs


_QUALIFIED_NAME_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character"
)


def qualified_name_errors(value: str) -> list[str]:
    """A label key or annotation key: an optional DNS subdomain prefix and '/',
    then a name of at most 63 characters."""
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs.extend("prefix part " + m for m in dns1123_subdomain_errors(prefix))
    else:
        return [
            "a qualified name "
            + _regex_error(_QUALIFIED_NAME_MSG, _QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > QUALIFIED_NAME_MAX:
        errs.append("name part " + _max_len_error(QUALIFIED_NAME_MAX))
    if not _QUALIFIED_NAME_RE.fullmatch(name):
        errs.append(
            "name part "
            + _regex_error(_QUALIFIED_NAME_MSG, _QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
        )
    return errs


def label_value_errors(value: str) -> list[str]:
    errs = []
    if len(value) > LABEL_VALUE_MAX:
        errs.append(_max_len_error(LABEL_VALUE_MAX))
    if not _LABEL_VALUE_RE.fullmatch(value):
        errs.append(
            _regex_error(
                "a valid label must be an empty string or consist of alphanumeric characters, "
                "'-', '_' or '.', and must start and end with an alphanumeric character",
                _LABEL_VALUE_FMT,
                "MyValue",
                "my_value",
                "12345",
            )
        )
    return errs


def iana_svc_name_errors(value: str) -> list[str]:
    """A named port (IANA_SVC_NAME, RFC 6335), lower case only."""
    errs = []
    if len(value) > PORT_NAME_MAX:
        errs.append(_max_len_error(PORT_NAME_MAX))
    if not _PORT_NAME_CHARSET_RE.fullmatch(value):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not re.search("[a-z]", value):
        errs.append("must contain at least one letter (a-z)")
    if "--" in value:
        errs.append("must not contain consecutive hyphens")
    if value and (value[0] == "-" or value[-1] == "-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def port_num_errors(value: int) -> list[str]:
    return [] if 1 <= value <= 65535 else [_range_error(1, 65535)]


def percent_errors(value: str) -> list[str]:
    if _PERCENT_RE.fullmatch(value):
        return []
    return [
        _regex_error(
            "a valid percent string must be a numeric string followed by an ending '%'",
            _PERCENT_FMT,
            "1%",
            "93%",
        )
    ]


def is_dns1123_label(value: str) -> bool:
    return not dns1123_label_errors(value)


def is_dns1123_subdomain(value: str) -> bool:
    return not dns1123_subdomain_errors(value)


def is_dns1035_label(value: str) -> bool:
    return not dns1035_label_errors(value)


def is_qualified_name(value: str) -> bool:
    return not qualified_name_errors(value)


def is_valid_label_value(value: str) -> bool:
    return not label_value_errors(value)


def is_iana_svc_name(value: str) -> bool:
    return not iana_svc_name_errors(value)


def is_ipv4(value: str) -> bool:
    """A dotted-quad IPv4 address (no leading zeros, no CIDR suffix)."""
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return False
    return True


def _ip_version(value: str) -> int | None:
    try:
        return ipaddress.ip_address(value).version
    except ValueError:
        return None


def _is_cidr(value: str) -> bool:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return False
    return "/" in value


# --- Error collection and value formatting -------------------------------------


class Verbatim:
    """A bad value printed as is: how Go prints an intstr.IntOrString (unquoted)
    or a struct the API server shows with %#v."""

    def __init__(self, value: object) -> None:
        self.value = value


def go_string_map(value: dict[str, str]) -> Verbatim:
    """A map[string]string as Go's %#v prints it, keys sorted."""
    body = ", ".join(f"{_quote(k)}:{_quote(v)}" for k, v in sorted(value.items()))
    return Verbatim("map[string]string{" + body + "}")


def _quote(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def format_value(value: object) -> str:
    """A bad value printed as the API server prints it (Go's %v / %q / %#v)."""
    if isinstance(value, Verbatim):
        return str(value.value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return _quote(value)
    if value and isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
        return str(go_string_map({str(k): v for k, v in value.items()}).value)
    if value and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "[]string{" + ", ".join(_quote(v) for v in value) + "}"
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


class _Errors:
    """An ErrorList: the same constructors as k8s.io/apimachinery's field package."""

    def __init__(self) -> None:
        self.causes: list[Cause] = []

    def add(self, path: str, body: str) -> None:
        if (path, body) not in self.causes:  # ToAggregate drops exact repeats
            self.causes.append((path, body))

    def invalid(self, path: str, value: object, detail: str) -> None:
        self.add(path, f"Invalid value: {format_value(value)}: {detail}")

    def required(self, path: str, detail: str = "") -> None:
        self.add(path, "Required value" + (f": {detail}" if detail else ""))

    def duplicate(self, path: str, value: object) -> None:
        self.add(path, f"Duplicate value: {format_value(value)}")

    def not_supported(self, path: str, value: object, supported: Iterable[str]) -> None:
        values = ", ".join(json.dumps(v) for v in supported)
        self.add(path, f"Unsupported value: {format_value(value)}: supported values: {values}")

    def forbidden(self, path: str, detail: str) -> None:
        self.add(path, f"Forbidden: {detail}")

    def too_long(self, path: str, max_len: int) -> None:
        self.add(path, f"Too long: must have at most {max_len} bytes")

    def too_many(self, path: str, actual: int, max_items: int) -> None:
        self.add(path, f"Too many: {actual}: must have at most {max_items} items")

    def messages(self, path: str, value: object, msgs: Iterable[str]) -> None:
        for msg in msgs:
            self.invalid(path, value, msg)

    # Typed access. The real server rejects a wrong JSON type while decoding;
    # here it becomes one more cause, and the field is otherwise skipped.

    def wrong_type(self, path: str, value: object, what: str) -> None:
        self.invalid(path, value, f"must be {what}")

    def get_map(self, parent: Obj, key: str, path: str) -> Obj | None:
        value = parent.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            self.wrong_type(path, value, "an object")
            return None
        return value

    def get_list(self, parent: Obj, key: str, path: str) -> list[Any]:
        value = parent.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.wrong_type(path, value, "a list")
            return []
        return value

    def get_str(self, parent: Obj, key: str, path: str) -> str:
        value = parent.get(key)
        if value is None:
            return ""
        if not isinstance(value, str):
            self.wrong_type(path, value, "a string")
            return ""
        return value

    def get_int(self, parent: Obj, key: str, path: str) -> int | None:
        value = parent.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.wrong_type(path, value, "an integer")
            return None
        return value

    def get_str_map(self, parent: Obj, key: str, path: str) -> dict[str, str]:
        value = self.get_map(parent, key, path)
        if value is None:
            return {}
        out: dict[str, str] = {}
        for k, v in value.items():
            if not isinstance(v, str):
                self.wrong_type(f"{path}[{k}]", v, "a string")
            else:
                out[str(k)] = v
        return out


# --- Entry point ---------------------------------------------------------------


def validate(obj: Obj, old: Obj | None = None) -> None:
    """Raise `Invalid` listing every problem with `obj` (already defaulted);
    `old` is the stored object when this is an update."""
    try:
        kind = kinds.for_object(obj)
    except KeyError as exc:
        raise BadRequest(str(exc.args[0])) from exc
    e = _Errors()
    if old is not None and not isinstance(old, dict):
        old = None
    validator = _VALIDATORS.get(kind.kind)
    if validator is not None:
        validator(e, obj, old)
    if e.causes:
        meta = obj.get("metadata")
        name = ""
        if isinstance(meta, dict):
            name = meta.get("name") or meta.get("generateName") or ""
        raise Invalid(kind.kind, str(name), e.causes)


# --- Metadata ------------------------------------------------------------------

NameCheck = Callable[[str], list[str]]


def _sub_map(obj: Obj, key: str) -> Obj:
    value = obj.get(key)
    return value if isinstance(value, dict) else {}


def _mask_trailing_dash(name: str) -> str:
    # generateName gets a random suffix, so a trailing dash is fine there.
    if len(name) > 1 and name.endswith("-"):
        return name[:-2] + "a"
    return name


def _validate_meta(e: _Errors, obj: Obj, name_check: NameCheck, *, namespaced: bool, old: Obj | None) -> Obj:
    if "metadata" not in obj or obj.get("metadata") is None:
        e.required("metadata.name", "name or generateName is required")
        return {}
    meta = e.get_map(obj, "metadata", "metadata")
    if meta is None:
        return {}
    generate_name = e.get_str(meta, "generateName", "metadata.generateName")
    if generate_name:
        e.messages("metadata.generateName", generate_name, name_check(_mask_trailing_dash(generate_name)))
    name = e.get_str(meta, "name", "metadata.name")
    # The store generates the name from generateName after validation.
    if not name and not generate_name:
        e.required("metadata.name", "name or generateName is required")
    elif name:
        e.messages("metadata.name", name, name_check(name))
    namespace = e.get_str(meta, "namespace", "metadata.namespace")
    if namespaced:
        # An absent namespace is filled in by the store ("default"), as the
        # API server takes it from the request URL.
        if namespace:
            e.messages("metadata.namespace", namespace, dns1123_label_errors(namespace))
    elif namespace:
        e.forbidden("metadata.namespace", "not allowed on this type")
    generation = e.get_int(meta, "generation", "metadata.generation")
    if generation is not None and generation < 0:
        e.invalid("metadata.generation", generation, "must be greater than or equal to 0")
    _validate_labels(e, e.get_str_map(meta, "labels", "metadata.labels"), "metadata.labels")
    _validate_annotations(
        e, e.get_str_map(meta, "annotations", "metadata.annotations"), "metadata.annotations"
    )
    for i, finalizer in enumerate(e.get_list(meta, "finalizers", "metadata.finalizers")):
        if isinstance(finalizer, str):
            e.messages("metadata.finalizers", finalizer, qualified_name_errors(finalizer))
        else:
            e.wrong_type(f"metadata.finalizers[{i}]", finalizer, "a string")
    if old is not None:
        old_meta = _sub_map(old, "metadata")
        for key in ("name", "namespace", "uid"):
            before = old_meta.get(key)
            if before and meta.get(key) and meta.get(key) != before:
                e.invalid(f"metadata.{key}", meta.get(key), "field is immutable")
    return meta


def _validate_labels(e: _Errors, labels: dict[str, str], path: str) -> None:
    # As the API server does, key and value errors name the map, not the key.
    for key, value in labels.items():
        e.messages(path, key, qualified_name_errors(key))
        e.messages(path, value, label_value_errors(value))


def _validate_annotations(e: _Errors, annotations: dict[str, str], path: str) -> None:
    total = 0
    for key, value in annotations.items():
        # Annotation keys are qualified names, but case does not matter.
        e.messages(path, key, qualified_name_errors(key.lower()))
        total += len(key.encode()) + len(value.encode())
    if total > TOTAL_ANNOTATION_SIZE:
        e.too_long(path, TOTAL_ANNOTATION_SIZE)


def _validate_label_selector(e: _Errors, selector: Obj, path: str) -> bool:
    """A metav1.LabelSelector; True when it is well formed."""
    before = len(e.causes)
    _validate_labels(e, e.get_str_map(selector, "matchLabels", f"{path}.matchLabels"), f"{path}.matchLabels")
    for i, req in enumerate(e.get_list(selector, "matchExpressions", f"{path}.matchExpressions")):
        rpath = f"{path}.matchExpressions[{i}]"
        if not isinstance(req, dict):
            e.wrong_type(rpath, req, "an object")
            continue
        operator = e.get_str(req, "operator", f"{rpath}.operator")
        values = e.get_list(req, "values", f"{rpath}.values")
        if operator in ("In", "NotIn"):
            if not values:
                e.required(f"{rpath}.values", "must be specified when `operator` is 'In' or 'NotIn'")
        elif operator in ("Exists", "DoesNotExist"):
            if values:
                e.forbidden(
                    f"{rpath}.values", "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"
                )
        else:
            e.invalid(f"{rpath}.operator", operator, "not a valid selector operator")
        key = e.get_str(req, "key", f"{rpath}.key")
        e.messages(f"{rpath}.key", key, qualified_name_errors(key))
        for j, value in enumerate(values):
            if not isinstance(value, str):
                e.wrong_type(f"{rpath}.values[{j}]", value, "a string")
            else:
                e.messages(f"{rpath}.values[{j}]", value, label_value_errors(value))
    return len(e.causes) == before


def selector_matches(selector: Obj, labels: dict[str, str]) -> bool:
    """Whether a well-formed metav1.LabelSelector selects `labels`. (A small
    local copy so validation does not depend on the selectors module.)"""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for req in selector.get("matchExpressions") or []:
        key, operator, values = req.get("key"), req.get("operator"), req.get("values") or []
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


# --- Namespace and Node ----------------------------------------------------------


def _validate_namespace(e: _Errors, obj: Obj, old: Obj | None) -> None:
    _validate_meta(e, obj, dns1123_label_errors, namespaced=False, old=old)


def _validate_node(e: _Errors, obj: Obj, old: Obj | None) -> None:
    _validate_meta(e, obj, dns1123_subdomain_errors, namespaced=False, old=old)
    spec = e.get_map(obj, "spec", "spec") or {}
    pod_cidr = e.get_str(spec, "podCIDR", "spec.podCIDR")
    cidrs = e.get_list(spec, "podCIDRs", "spec.podCIDRs")
    for i, cidr in enumerate(cidrs):
        if not isinstance(cidr, str) or not _is_cidr(cidr):
            e.invalid(
                f"spec.podCIDRs[{i}]", cidr, "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"
            )
    if pod_cidr and not cidrs and not _is_cidr(pod_cidr):
        e.invalid("spec.podCIDR", pod_cidr, "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)")


# --- Pod -----------------------------------------------------------------------

PROTOCOLS = ("SCTP", "TCP", "UDP")
RESTART_POLICIES = ("Always", "OnFailure", "Never")
DNS_POLICIES = ("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
TERMINATION_MESSAGE_POLICIES = ("File", "FallbackToLogsOnError")
HTTP_SCHEMES = ("HTTP", "HTTPS")


def _validate_pod(e: _Errors, obj: Obj, old: Obj | None) -> None:
    _validate_meta(e, obj, dns1123_subdomain_errors, namespaced=True, old=old)
    if obj.get("spec") is None:
        e.required("spec.containers")
        return
    spec = e.get_map(obj, "spec", "spec")
    if spec is not None:
        _validate_pod_spec(e, spec, "spec", is_pod=True)


def _validate_pod_spec(e: _Errors, spec: Obj, path: str, *, is_pod: bool) -> None:
    if spec.get("terminationGracePeriodSeconds") is None:
        e.required(f"{path}.terminationGracePeriodSeconds")
    else:
        e.get_int(spec, "terminationGracePeriodSeconds", f"{path}.terminationGracePeriodSeconds")
    containers = e.get_list(spec, "containers", f"{path}.containers")
    init_containers = e.get_list(spec, "initContainers", f"{path}.initContainers")
    restart_policy = e.get_str(spec, "restartPolicy", f"{path}.restartPolicy")
    host_network = spec.get("hostNetwork") is True

    if not containers:
        e.required(f"{path}.containers")
    names: set[str] = set()
    for i, c in enumerate(containers):
        cpath = f"{path}.containers[{i}]"
        if not isinstance(c, dict):
            e.wrong_type(cpath, c, "an object")
            continue
        name = _validate_container(e, c, cpath, is_pod=is_pod, host_network=host_network)
        if name in names:
            e.duplicate(f"{cpath}.name", name)
        elif name:
            names.add(name)
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            _validate_probe(e, c, probe, f"{cpath}.{probe}")
        if c.get("restartPolicy") is not None:
            e.forbidden(f"{cpath}.restartPolicy", "may not be set for non-init containers")
    _check_host_port_conflicts(e, containers, f"{path}.containers")

    for i, c in enumerate(init_containers):
        cpath = f"{path}.initContainers[{i}]"
        if not isinstance(c, dict):
            e.wrong_type(cpath, c, "an object")
            continue
        name = _validate_container(e, c, cpath, is_pod=is_pod, host_network=host_network)
        if name in names:
            e.duplicate(f"{cpath}.name", name)
        elif name:
            names.add(name)
        sidecar = c.get("restartPolicy") == "Always"
        if c.get("restartPolicy") is not None and not sidecar:
            e.not_supported(f"{cpath}.restartPolicy", c.get("restartPolicy"), ["Always"])
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            if sidecar:
                _validate_probe(e, c, probe, f"{cpath}.{probe}")
            elif c.get(probe) is not None:
                e.forbidden(
                    f"{cpath}.{probe}", "may not be set for init containers without restartPolicy=Always"
                )
        # Init containers run one at a time, so only conflicts within one count.
        _check_host_port_conflicts(e, [c], f"{path}.initContainers")

    if restart_policy == "":
        e.required(f"{path}.restartPolicy")
    elif restart_policy not in RESTART_POLICIES:
        e.not_supported(f"{path}.restartPolicy", restart_policy, RESTART_POLICIES)
    dns_policy = e.get_str(spec, "dnsPolicy", f"{path}.dnsPolicy")
    if dns_policy == "":
        e.required(f"{path}.dnsPolicy")
    elif dns_policy not in DNS_POLICIES:
        e.not_supported(f"{path}.dnsPolicy", dns_policy, DNS_POLICIES)
    _validate_labels(e, e.get_str_map(spec, "nodeSelector", f"{path}.nodeSelector"), f"{path}.nodeSelector")
    for key, check in (
        ("serviceAccountName", dns1123_subdomain_errors),
        ("nodeName", dns1123_subdomain_errors),
        ("hostname", dns1123_label_errors),
        ("subdomain", dns1123_label_errors),
    ):
        value = e.get_str(spec, key, f"{path}.{key}")
        if value:
            e.messages(f"{path}.{key}", value, check(value))
    deadline = e.get_int(spec, "activeDeadlineSeconds", f"{path}.activeDeadlineSeconds")
    if deadline is not None and not 1 <= deadline <= 2**31 - 1:
        e.invalid(f"{path}.activeDeadlineSeconds", deadline, _range_error(1, 2**31 - 1))


def _validate_container(e: _Errors, c: Obj, path: str, *, is_pod: bool, host_network: bool) -> str:
    """Checks common to every container; returns its name for the uniqueness check."""
    name = e.get_str(c, "name", f"{path}.name")
    if not name:
        e.required(f"{path}.name")
    else:
        e.messages(f"{path}.name", name, dns1123_label_errors(name))
    image = e.get_str(c, "image", f"{path}.image")
    if not image:
        e.required(f"{path}.image")
    elif is_pod and image != image.strip():
        e.invalid(f"{path}.image", image, "must not have leading or trailing whitespace")
    tmp = e.get_str(c, "terminationMessagePolicy", f"{path}.terminationMessagePolicy")
    if tmp == "":
        e.required(f"{path}.terminationMessagePolicy")
    elif tmp not in TERMINATION_MESSAGE_POLICIES:
        e.not_supported(f"{path}.terminationMessagePolicy", tmp, TERMINATION_MESSAGE_POLICIES)
    _validate_container_ports(
        e, e.get_list(c, "ports", f"{path}.ports"), f"{path}.ports", host_network, is_pod
    )
    pull = e.get_str(c, "imagePullPolicy", f"{path}.imagePullPolicy")
    if pull == "":
        e.required(f"{path}.imagePullPolicy")
    elif pull not in PULL_POLICIES:
        e.not_supported(f"{path}.imagePullPolicy", pull, PULL_POLICIES)
    return name


def _validate_container_ports(
    e: _Errors, ports: list[Any], path: str, host_network: bool, is_pod: bool
) -> None:
    names: set[str] = set()
    for i, port in enumerate(ports):
        ppath = f"{path}[{i}]"
        if not isinstance(port, dict):
            e.wrong_type(ppath, port, "an object")
            continue
        name = e.get_str(port, "name", f"{ppath}.name")
        if name:
            msgs = iana_svc_name_errors(name)
            if msgs:
                e.messages(f"{ppath}.name", name, msgs)
            elif name in names:
                e.duplicate(f"{ppath}.name", name)
            else:
                names.add(name)
        container_port = None
        if port.get("containerPort") in (None, 0):
            e.required(f"{ppath}.containerPort")
        else:
            container_port = e.get_int(port, "containerPort", f"{ppath}.containerPort")
            if container_port is not None:
                e.messages(f"{ppath}.containerPort", container_port, port_num_errors(container_port))
        host_port = e.get_int(port, "hostPort", f"{ppath}.hostPort")
        if host_port:
            e.messages(f"{ppath}.hostPort", host_port, port_num_errors(host_port))
        if host_network and (is_pod or host_port) and (host_port or 0) != (container_port or 0):
            e.invalid(
                f"{ppath}.hostPort", host_port or 0, "must match `containerPort` when `hostNetwork` is true"
            )
        protocol = e.get_str(port, "protocol", f"{ppath}.protocol")
        if protocol == "":
            e.required(f"{ppath}.protocol")
        elif protocol not in PROTOCOLS:
            e.not_supported(f"{ppath}.protocol", protocol, PROTOCOLS)


def _check_host_port_conflicts(e: _Errors, containers: list[Any], path: str) -> None:
    seen: set[str] = set()
    for ci, c in enumerate(containers):
        if not isinstance(c, dict) or not isinstance(c.get("ports"), list):
            continue
        for pi, port in enumerate(c["ports"]):
            if not isinstance(port, dict) or not port.get("hostPort"):
                continue
            key = f"{port.get('protocol', '')}/{port.get('hostIP', '')}/{port['hostPort']}"
            if key in seen:
                e.duplicate(f"{path}[{ci}].ports[{pi}].hostPort", key)
            seen.add(key)


def _validate_port_num_or_name(e: _Errors, value: object, path: str) -> None:
    # An absent IntOrString is the int 0.
    value = 0 if value is None else value
    if isinstance(value, bool) or not isinstance(value, int | str):
        e.wrong_type(path, value, "an integer or a string")
    elif isinstance(value, int):
        e.messages(path, value, port_num_errors(value))
    else:
        e.messages(path, value, iana_svc_name_errors(value))


def _validate_probe(e: _Errors, container: Obj, key: str, path: str) -> None:
    probe = e.get_map(container, key, path)
    if probe is None:
        return
    handlers = 0
    for handler in ("exec", "httpGet", "tcpSocket", "grpc"):
        if probe.get(handler) is None:
            continue
        hpath = f"{path}.{handler}"
        if handlers:
            e.forbidden(hpath, "may not specify more than 1 handler type")
            continue
        handlers += 1
        action = e.get_map(probe, handler, hpath)
        if action is None:
            continue
        if handler == "exec":
            if not e.get_list(action, "command", f"{hpath}.command"):
                e.required(f"{hpath}.command")
        elif handler == "httpGet":
            if not e.get_str(action, "path", f"{hpath}.path"):
                e.required(f"{hpath}.path")
            _validate_port_num_or_name(e, action.get("port"), f"{hpath}.port")
            scheme = e.get_str(action, "scheme", f"{hpath}.scheme")
            if scheme not in HTTP_SCHEMES:
                e.not_supported(f"{hpath}.scheme", scheme, HTTP_SCHEMES)
            for header in e.get_list(action, "httpHeaders", f"{hpath}.httpHeaders"):
                hname = header.get("name", "") if isinstance(header, dict) else header
                if not isinstance(hname, str) or not _HTTP_HEADER_RE.fullmatch(hname):
                    e.invalid(
                        f"{hpath}.httpHeaders",
                        hname,
                        _regex_error(
                            "a valid HTTP header must consist of alphanumeric characters or '-'",
                            _HTTP_HEADER_FMT,
                            "X-Header-Name",
                        ),
                    )
        elif handler == "tcpSocket":
            _validate_port_num_or_name(e, action.get("port"), f"{hpath}.port")
        else:
            port = e.get_int(action, "port", f"{hpath}.port")
            e.messages(f"{hpath}.port", port or 0, port_num_errors(port or 0))
    if not handlers:
        e.required(path, "must specify a handler type")
    for field in (
        "initialDelaySeconds",
        "timeoutSeconds",
        "periodSeconds",
        "successThreshold",
        "failureThreshold",
    ):
        value = e.get_int(probe, field, f"{path}.{field}")
        if value is not None and value < 0:
            e.invalid(f"{path}.{field}", value, "must be greater than or equal to 0")
    grace = e.get_int(probe, "terminationGracePeriodSeconds", f"{path}.terminationGracePeriodSeconds")
    if grace is not None and grace <= 0:
        e.invalid(f"{path}.terminationGracePeriodSeconds", grace, "must be greater than 0")
    if key in ("livenessProbe", "startupProbe"):
        success = probe.get("successThreshold")
        if isinstance(success, int) and success != 1:
            e.invalid(f"{path}.successThreshold", success, "must be 1")
    elif grace is not None:
        e.invalid(f"{path}.terminationGracePeriodSeconds", grace, "must not be set for readinessProbes")


# --- Deployment ----------------------------------------------------------------

DEPLOYMENT_STRATEGIES = ("Recreate", "RollingUpdate")


def _validate_deployment(e: _Errors, obj: Obj, old: Obj | None) -> None:
    _validate_meta(e, obj, dns1123_subdomain_errors, namespaced=True, old=old)
    spec = e.get_map(obj, "spec", "spec")
    if spec is None:
        e.required("spec.selector")
        e.required("spec.template")
        return
    replicas = e.get_int(spec, "replicas", "spec.replicas")
    if replicas is not None and replicas < 0:
        e.invalid("spec.replicas", replicas, "must be greater than or equal to 0")

    selector = e.get_map(spec, "selector", "spec.selector")
    selector_ok = False
    if selector is None:
        if "selector" not in spec or spec.get("selector") is None:
            e.required("spec.selector")
    else:
        selector_ok = _validate_label_selector(e, selector, "spec.selector")
        if not selector.get("matchLabels") and not selector.get("matchExpressions"):
            e.invalid("spec.selector", selector, "empty selector is invalid for deployment")
            selector_ok = False

    template = e.get_map(spec, "template", "spec.template")
    if template is None:
        e.required("spec.template")
    else:
        tmeta = e.get_map(template, "metadata", "spec.template.metadata") or {}
        labels = e.get_str_map(tmeta, "labels", "spec.template.metadata.labels")
        if selector_ok and selector is not None and not selector_matches(selector, labels):
            detail = "`selector` does not match template `labels`"
            e.invalid("spec.template.metadata.labels", go_string_map(labels), detail)
        _validate_labels(e, labels, "spec.template.metadata.labels")
        _validate_annotations(
            e,
            e.get_str_map(tmeta, "annotations", "spec.template.metadata.annotations"),
            "spec.template.metadata.annotations",
        )
        pod_spec = e.get_map(template, "spec", "spec.template.spec")
        if pod_spec is None:
            e.required("spec.template.spec.containers")
        else:
            _validate_pod_spec(e, pod_spec, "spec.template.spec", is_pod=False)
            restart = pod_spec.get("restartPolicy")
            if isinstance(restart, str) and restart in RESTART_POLICIES and restart != "Always":
                e.not_supported("spec.template.spec.restartPolicy", restart, ["Always"])
            if pod_spec.get("activeDeadlineSeconds") is not None:
                e.invalid(
                    "spec.template.spec.activeDeadlineSeconds",
                    pod_spec["activeDeadlineSeconds"],
                    "activeDeadlineSeconds in ReplicaSet is not Supported",
                )

    _validate_strategy(e, spec)
    min_ready = e.get_int(spec, "minReadySeconds", "spec.minReadySeconds") or 0
    if min_ready < 0:
        e.invalid("spec.minReadySeconds", min_ready, "must be greater than or equal to 0")
    history = e.get_int(spec, "revisionHistoryLimit", "spec.revisionHistoryLimit")
    if history is not None and history < 0:
        e.invalid("spec.revisionHistoryLimit", history, "must be greater than or equal to 0")
    deadline = e.get_int(spec, "progressDeadlineSeconds", "spec.progressDeadlineSeconds")
    if deadline is not None:
        if deadline < 0:
            e.invalid("spec.progressDeadlineSeconds", deadline, "must be greater than or equal to 0")
        if deadline <= min_ready:
            e.invalid("spec.progressDeadlineSeconds", deadline, "must be greater than minReadySeconds")

    if old is not None:
        old_spec = _sub_map(old, "spec")
        if (
            old_spec.get("selector") is not None
            and selector is not None
            and selector != old_spec.get("selector")
        ):
            e.invalid("spec.selector", selector, "field is immutable")


def _int_or_percent(value: object) -> tuple[int | None, bool]:
    """(value, is_percent); value None when it is not a valid int or percent."""
    if isinstance(value, bool):
        return None, False
    if isinstance(value, int):
        return value, False
    if isinstance(value, str) and _PERCENT_RE.fullmatch(value):
        return int(value[:-1]), True
    return None, False


def _validate_strategy(e: _Errors, spec: Obj) -> None:
    strategy = e.get_map(spec, "strategy", "spec.strategy")
    if strategy is None:
        e.required("spec.strategy.type")
        return
    stype = e.get_str(strategy, "type", "spec.strategy.type")
    rolling = strategy.get("rollingUpdate")
    if stype == "Recreate":
        if rolling is not None:
            e.forbidden(
                "spec.strategy.rollingUpdate", "may not be specified when strategy `type` is 'Recreate'"
            )
    elif stype == "RollingUpdate":
        ru = e.get_map(strategy, "rollingUpdate", "spec.strategy.rollingUpdate")
        if ru is None:
            e.required("spec.strategy.rollingUpdate", "this should be defaulted and never be nil")
            return
        path = "spec.strategy.rollingUpdate"
        values: dict[str, int | None] = {}
        for key in ("maxUnavailable", "maxSurge"):
            raw = ru.get(key)
            value, _ = _int_or_percent(raw)
            values[key] = value
            if isinstance(raw, str):
                e.messages(f"{path}.{key}", Verbatim(raw), percent_errors(raw))
            elif isinstance(raw, int) and not isinstance(raw, bool):
                if raw < 0:
                    e.invalid(f"{path}.{key}", raw, "must be greater than or equal to 0")
            else:
                e.invalid(f"{path}.{key}", raw, "must be an integer or percentage (e.g '5%')")
        if values["maxUnavailable"] == 0 and values["maxSurge"] == 0:
            e.invalid(
                f"{path}.maxUnavailable",
                Verbatim(ru.get("maxUnavailable")),
                "may not be 0 when `maxSurge` is 0",
            )
        unavailable, is_percent = _int_or_percent(ru.get("maxUnavailable"))
        if is_percent and unavailable is not None and unavailable > 100:
            e.invalid(
                f"{path}.maxUnavailable",
                Verbatim(ru.get("maxUnavailable")),
                "must not be greater than 100%",
            )
    elif stype == "":
        e.required("spec.strategy.type")
    else:
        e.not_supported("spec.strategy.type", stype, DEPLOYMENT_STRATEGIES)


# --- Service -------------------------------------------------------------------

SERVICE_TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")
SESSION_AFFINITIES = ("ClientIP", "None")
TRAFFIC_POLICIES = ("Cluster", "Local")
IP_FAMILIES = ("IPv4", "IPv6")
IP_FAMILY_POLICIES = ("PreferDualStack", "RequireDualStack", "SingleStack")
_INVALID_IP = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"


def _go_service_port_key(protocol: str, port: object) -> Verbatim:
    # The API server reports a duplicate (protocol, port) pair as the Go struct.
    return Verbatim(
        f'core.ServicePort{{Name:"", Protocol:{json.dumps(protocol)}, AppProtocol:(*string)(nil), '
        f'Port:{port}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:""}}, NodePort:0}}'
    )


def _validate_service(e: _Errors, obj: Obj, old: Obj | None) -> None:
    _validate_meta(e, obj, dns1035_label_errors, namespaced=True, old=old)
    spec = e.get_map(obj, "spec", "spec")
    if spec is None:
        e.required("spec.ports")
        return
    svc_type = e.get_str(spec, "type", "spec.type")
    cluster_ip = e.get_str(spec, "clusterIP", "spec.clusterIP")
    headless = cluster_ip == "None"
    ports = e.get_list(spec, "ports", "spec.ports")

    if old is not None:
        _validate_service_update(e, spec, old)

    if not ports and not headless and svc_type != "ExternalName":
        e.required("spec.ports")
    if svc_type in ("LoadBalancer", "NodePort") and headless:
        e.invalid("spec.clusterIP", cluster_ip, f"may not be set to 'None' for {svc_type} services")
    if svc_type == "ExternalName":
        if cluster_ip:
            e.forbidden("spec.clusterIP", "may not be set for ExternalName services")
        if spec.get("ipFamilies"):
            e.forbidden("spec.ipFamilies", "may not be set for ExternalName services")
        if spec.get("ipFamilyPolicy") is not None:
            e.forbidden("spec.ipFamilyPolicy", "may not be set for ExternalName services")
        cname = e.get_str(spec, "externalName", "spec.externalName").removesuffix(".")
        if cname:
            e.messages("spec.externalName", cname, dns1123_subdomain_errors(cname))
        else:
            e.required("spec.externalName")

    names: set[str] = set()
    for i, port in enumerate(ports):
        ppath = f"spec.ports[{i}]"
        if not isinstance(port, dict):
            e.wrong_type(ppath, port, "an object")
            continue
        _validate_service_port(e, port, ppath, require_name=len(ports) > 1, names=names)

    _validate_labels(e, e.get_str_map(spec, "selector", "spec.selector"), "spec.selector")

    affinity = e.get_str(spec, "sessionAffinity", "spec.sessionAffinity")
    if affinity == "":
        e.required("spec.sessionAffinity")
    elif affinity not in SESSION_AFFINITIES:
        e.not_supported("spec.sessionAffinity", affinity, SESSION_AFFINITIES)
    if affinity == "ClientIP":
        _validate_client_ip_config(e, spec)
    elif affinity == "None" and spec.get("sessionAffinityConfig") is not None:
        e.forbidden("spec.sessionAffinityConfig", "must not be set when session affinity is None")

    if svc_type != "ExternalName":
        _validate_cluster_ips(e, spec, cluster_ip)

    for i, ip in enumerate(e.get_list(spec, "externalIPs", "spec.externalIPs")):
        if not isinstance(ip, str) or _ip_version(ip) is None:
            e.invalid(f"spec.externalIPs[{i}]", ip, _INVALID_IP)

    if svc_type == "":
        e.required("spec.type")
    elif svc_type not in SERVICE_TYPES:
        e.not_supported("spec.type", svc_type, SERVICE_TYPES)

    node_port_keys: set[tuple[str, int]] = set()
    port_keys: set[tuple[str, int]] = set()
    for i, port in enumerate(ports):
        if not isinstance(port, dict):
            continue
        raw_protocol = port.get("protocol")
        protocol = raw_protocol if isinstance(raw_protocol, str) else ""
        node_port = port.get("nodePort")
        if isinstance(node_port, int) and not isinstance(node_port, bool) and node_port != 0:
            if svc_type in ("ClusterIP", "ExternalName"):
                e.forbidden(f"spec.ports[{i}].nodePort", f"may not be used when `type` is '{svc_type}'")
            if (protocol, node_port) in node_port_keys:
                e.duplicate(f"spec.ports[{i}].nodePort", node_port)
            node_port_keys.add((protocol, node_port))
        number = port.get("port")
        if isinstance(number, int) and not isinstance(number, bool):
            if (protocol, number) in port_keys:
                e.duplicate(f"spec.ports[{i}]", _go_service_port_key(protocol, number))
            port_keys.add((protocol, number))

    ranges = e.get_list(spec, "loadBalancerSourceRanges", "spec.loadBalancerSourceRanges")
    if ranges and svc_type != "LoadBalancer":
        e.forbidden("spec.loadBalancerSourceRanges", "may only be used when `type` is 'LoadBalancer'")
    for i, cidr in enumerate(ranges):
        if not isinstance(cidr, str) or not _is_cidr(cidr.strip()):
            e.invalid(
                f"spec.loadBalancerSourceRanges[{i}]",
                cidr,
                "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
            )

    if spec.get("allocateLoadBalancerNodePorts") is not None and svc_type != "LoadBalancer":
        e.forbidden("spec.allocateLoadBalancerNodePorts", "may only be used when `type` is 'LoadBalancer'")
    if svc_type == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is None:
        e.required("spec.allocateLoadBalancerNodePorts")

    _validate_traffic_policies(e, spec, svc_type)


def _validate_service_port(e: _Errors, port: Obj, path: str, *, require_name: bool, names: set[str]) -> None:
    name = e.get_str(port, "name", f"{path}.name")
    if require_name and not name:
        e.required(f"{path}.name")
    elif name:
        e.messages(f"{path}.name", name, dns1123_label_errors(name))
        if name in names:
            e.duplicate(f"{path}.name", name)
        else:
            names.add(name)
    number = e.get_int(port, "port", f"{path}.port")
    if number is not None or "port" not in port:
        e.messages(f"{path}.port", number or 0, port_num_errors(number or 0))
    protocol = e.get_str(port, "protocol", f"{path}.protocol")
    if protocol == "":
        e.required(f"{path}.protocol")
    elif protocol not in PROTOCOLS:
        e.not_supported(f"{path}.protocol", protocol, PROTOCOLS)
    _validate_port_num_or_name(e, port.get("targetPort"), f"{path}.targetPort")
    node_port = e.get_int(port, "nodePort", f"{path}.nodePort")
    # The check against the cluster's NodePort range is the allocator's job.
    if node_port:
        e.messages(f"{path}.nodePort", node_port, port_num_errors(node_port))
    app_protocol = e.get_str(port, "appProtocol", f"{path}.appProtocol")
    if app_protocol:
        e.messages(f"{path}.appProtocol", app_protocol, qualified_name_errors(app_protocol))


def _validate_client_ip_config(e: _Errors, spec: Obj) -> None:
    path = "spec.sessionAffinityConfig"
    detail = "when session affinity type is ClientIP"
    config = e.get_map(spec, "sessionAffinityConfig", path)
    if config is None:
        e.required(path, detail)
        return
    client_ip = e.get_map(config, "clientIP", f"{path}.clientIP")
    if client_ip is None:
        e.required(f"{path}.clientIP", detail)
        return
    timeout = e.get_int(client_ip, "timeoutSeconds", f"{path}.clientIP.timeoutSeconds")
    if timeout is None:
        if client_ip.get("timeoutSeconds") is None:
            e.required(f"{path}.clientIP.timeoutSeconds", detail)
        return
    if not 0 < timeout <= MAX_CLIENT_IP_AFFINITY_SECONDS:
        e.invalid(
            f"{path}.clientIP.timeoutSeconds",
            timeout,
            f"must be greater than 0 and less than {MAX_CLIENT_IP_AFFINITY_SECONDS}",
        )


def _validate_cluster_ips(e: _Errors, spec: Obj, cluster_ip: str) -> None:
    families = e.get_list(spec, "ipFamilies", "spec.ipFamilies")
    seen: set[object] = set()
    for i, family in enumerate(families):
        if family not in IP_FAMILIES:
            e.not_supported(f"spec.ipFamilies[{i}]", family, IP_FAMILIES)
        if family in seen:
            e.duplicate(f"spec.ipFamilies[{i}]", family)
        seen.add(family if isinstance(family, str) else repr(family))
    policy = spec.get("ipFamilyPolicy")
    if policy is not None and policy not in IP_FAMILY_POLICIES:
        e.not_supported("spec.ipFamilyPolicy", policy, IP_FAMILY_POLICIES)

    if cluster_ip not in ("", "None"):
        version = _ip_version(cluster_ip)
        if version is None:
            e.invalid("spec.clusterIP", cluster_ip, _INVALID_IP)
        elif families and families[0] in IP_FAMILIES and families[0] != f"IPv{version}":
            e.invalid(
                "spec.clusterIP",
                cluster_ip,
                f"expected an {families[0]} value as indicated by `ipFamilies[0]`",
            )

    cluster_ips = e.get_list(spec, "clusterIPs", "spec.clusterIPs")
    if cluster_ips:
        if not cluster_ip:
            e.invalid("spec.clusterIPs", cluster_ips, "must be empty when `clusterIP` is not specified")
        elif cluster_ips[0] != cluster_ip:
            e.invalid("spec.clusterIPs", cluster_ips, "first value must match `clusterIP`")
        for i, ip in enumerate(cluster_ips):
            if i == 0 and ip == "None":
                if len(cluster_ips) > 1:
                    e.invalid("spec.clusterIPs", cluster_ips, "'None' must be the first and only value")
                continue
            if not isinstance(ip, str) or _ip_version(ip) is None:
                e.invalid(f"spec.clusterIPs[{i}]", ip, _INVALID_IP)
        if len(cluster_ips) > 2:
            e.invalid("spec.clusterIPs", cluster_ips, "may only hold up to 2 values")


def _validate_traffic_policies(e: _Errors, spec: Obj, svc_type: str) -> None:
    external = svc_type in ("NodePort", "LoadBalancer") or bool(spec.get("externalIPs"))
    etp = e.get_str(spec, "externalTrafficPolicy", "spec.externalTrafficPolicy")
    if not external:
        if etp:
            e.invalid("spec.externalTrafficPolicy", etp, "may only be set for externally-accessible services")
    elif etp == "":
        e.required("spec.externalTrafficPolicy")
    elif etp not in TRAFFIC_POLICIES:
        e.not_supported("spec.externalTrafficPolicy", etp, TRAFFIC_POLICIES)

    health = e.get_int(spec, "healthCheckNodePort", "spec.healthCheckNodePort")
    # The allocator assigns it for LoadBalancer + Local, so absence is fine here.
    if health:
        if svc_type != "LoadBalancer" or etp != "Local":
            e.invalid(
                "spec.healthCheckNodePort",
                health,
                "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
            )
        else:
            e.messages("spec.healthCheckNodePort", health, port_num_errors(health))

    itp = spec.get("internalTrafficPolicy")
    if itp is None:
        if svc_type in ("ClusterIP", "NodePort", "LoadBalancer"):
            e.required("spec.internalTrafficPolicy")
    elif itp not in TRAFFIC_POLICIES:
        e.not_supported("spec.internalTrafficPolicy", itp, TRAFFIC_POLICIES)


def _validate_service_update(e: _Errors, spec: Obj, old: Obj) -> None:
    old_spec = old.get("spec")
    if not isinstance(old_spec, dict):
        return
    # Changing to or from ExternalName releases or allocates the address.
    if "ExternalName" in (spec.get("type"), old_spec.get("type")):
        return
    before, after = old_spec.get("clusterIP"), spec.get("clusterIP")
    if before and after != before:
        e.invalid("spec.clusterIP", after if after is not None else "", "field is immutable")


# --- EndpointSlice -------------------------------------------------------------

ADDRESS_TYPES = ("FQDN", "IPv4", "IPv6")
MAX_ENDPOINTS = 1000
MAX_ADDRESSES = 100
MAX_SLICE_PORTS = 100


def _validate_endpoint_slice(e: _Errors, obj: Obj, old: Obj | None) -> None:
    _validate_meta(e, obj, dns1123_subdomain_errors, namespaced=True, old=old)
    address_type = e.get_str(obj, "addressType", "addressType")
    if address_type == "":
        e.required("addressType")
    elif address_type not in ADDRESS_TYPES:
        e.not_supported("addressType", address_type, ADDRESS_TYPES)
    if old is not None and old.get("addressType") and address_type != old.get("addressType"):
        e.invalid("addressType", address_type, "field is immutable")

    endpoints = e.get_list(obj, "endpoints", "endpoints")
    if len(endpoints) > MAX_ENDPOINTS:
        e.too_many("endpoints", len(endpoints), MAX_ENDPOINTS)
        endpoints = []
    for i, endpoint in enumerate(endpoints):
        epath = f"endpoints[{i}]"
        if not isinstance(endpoint, dict):
            e.wrong_type(epath, endpoint, "an object")
            continue
        addresses = e.get_list(endpoint, "addresses", f"{epath}.addresses")
        if not addresses:
            e.required(f"{epath}.addresses", "must contain at least 1 address")
        elif len(addresses) > MAX_ADDRESSES:
            e.too_many(f"{epath}.addresses", len(addresses), MAX_ADDRESSES)
        for j, address in enumerate(addresses):
            _validate_endpoint_address(e, address, address_type, f"{epath}.addresses[{j}]")
        node_name = e.get_str(endpoint, "nodeName", f"{epath}.nodeName")
        if node_name:
            e.messages(f"{epath}.nodeName", node_name, dns1123_subdomain_errors(node_name))
        hostname = e.get_str(endpoint, "hostname", f"{epath}.hostname")
        if hostname:
            e.messages(f"{epath}.hostname", hostname, dns1123_label_errors(hostname))
        # Conditions are the controller's to set; only their types are checked.
        conditions = e.get_map(endpoint, "conditions", f"{epath}.conditions") or {}
        for key in ("ready", "serving", "terminating"):
            value = conditions.get(key)
            if value is not None and not isinstance(value, bool):
                e.wrong_type(f"{epath}.conditions.{key}", value, "a boolean")

    ports = e.get_list(obj, "ports", "ports")
    if len(ports) > MAX_SLICE_PORTS:
        e.too_many("ports", len(ports), MAX_SLICE_PORTS)
        ports = []
    names: set[str] = set()
    for i, port in enumerate(ports):
        ppath = f"ports[{i}]"
        if not isinstance(port, dict):
            e.wrong_type(ppath, port, "an object")
            continue
        name = e.get_str(port, "name", f"{ppath}.name")
        if name:
            e.messages(f"{ppath}.name", name, dns1123_label_errors(name))
        if name in names:
            e.duplicate(f"{ppath}.name", name)
        names.add(name)
        protocol = port.get("protocol")
        if protocol is None:
            e.required(f"{ppath}.protocol")
        elif protocol not in PROTOCOLS:
            e.not_supported(f"{ppath}.protocol", protocol, PROTOCOLS)
        number = e.get_int(port, "port", f"{ppath}.port")
        # Not checked by the API server, but a port 0 would reach the proxy's maps.
        if number is not None:
            e.messages(f"{ppath}.port", number, port_num_errors(number))
        app_protocol = e.get_str(port, "appProtocol", f"{ppath}.appProtocol")
        if app_protocol:
            e.messages(f"{ppath}.appProtocol", app_protocol, qualified_name_errors(app_protocol))


_SPECIAL_V4 = (
    (ipaddress.ip_network("0.0.0.0/32"), "may not be unspecified (0.0.0.0)"),
    (ipaddress.ip_network("127.0.0.0/8"), "may not be in the loopback range (127.0.0.0/8, ::1/128)"),
    (
        ipaddress.ip_network("169.254.0.0/16"),
        "may not be in the link-local range (169.254.0.0/16, fe80::/10)",
    ),
    (
        ipaddress.ip_network("224.0.0.0/24"),
        "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)",
    ),
)
_SPECIAL_V6 = (
    (ipaddress.ip_network("::/128"), "may not be unspecified (::)"),
    (ipaddress.ip_network("::1/128"), "may not be in the loopback range (127.0.0.0/8, ::1/128)"),
    (ipaddress.ip_network("fe80::/10"), "may not be in the link-local range (169.254.0.0/16, fe80::/10)"),
    (
        ipaddress.ip_network("ff02::/16"),
        "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)",
    ),
)


def _validate_endpoint_address(e: _Errors, address: object, address_type: str, path: str) -> None:
    if not isinstance(address, str):
        e.wrong_type(path, address, "a string")
        return
    if address_type in ("IPv4", "IPv6"):
        version = 4 if address_type == "IPv4" else 6
        if _ip_version(address) != version:
            e.invalid(path, address, f"must be a valid {address_type} address")
            return
        ip = ipaddress.ip_address(address)
        for net, msg in _SPECIAL_V4 if version == 4 else _SPECIAL_V6:
            if ip in net:
                e.invalid(path, address, msg)
    elif address_type == "FQDN":
        name = address.removesuffix(".")
        if not name:
            e.required(path)
        elif dns1123_subdomain_errors(name):
            e.invalid(path, name, ",".join(dns1123_subdomain_errors(name)))
        elif len(name.split(".")) < 2:
            e.invalid(path, name, "should be a domain with at least two segments separated by dots")
        else:
            for label in name.split("."):
                if dns1123_label_errors(label):
                    e.invalid(path, label, ",".join(dns1123_label_errors(label)))
                    break


_VALIDATORS: dict[str, Callable[[_Errors, Obj, Obj | None], None]] = {
    "Namespace": _validate_namespace,
    "Node": _validate_node,
    "Pod": _validate_pod,
    "Deployment": _validate_deployment,
    "Service": _validate_service,
    "EndpointSlice": _validate_endpoint_slice,
    "NetworkPolicy": lambda e, obj, old: _validate_network_policy(e, obj, old),
    "Ingress": lambda e, obj, old: _validate_ingress_kinds(e, obj, old),
    "IngressClass": lambda e, obj, old: _validate_ingress_kinds(e, obj, old),
    "Secret": lambda e, obj, old: _validate_ingress_kinds(e, obj, old),
}


def _validate_ingress_kinds(e: _Errors, obj: Obj, old: Obj | None) -> None:
    from podnet.ingress import validation as v  # it imports this module

    {"Ingress": v.validate_ingress, "IngressClass": v.validate_ingress_class, "Secret": v.validate_secret}[
        obj["kind"]
    ](e, obj, old)


def _validate_network_policy(e: _Errors, obj: Obj, old: Obj | None) -> None:
    from podnet.policy.validation import validate_network_policy  # it imports this module

    validate_network_policy(e, obj, old)
