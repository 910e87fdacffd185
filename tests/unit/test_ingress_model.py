"""Ingress semantics, pure: the Kubernetes docs' path and wildcard tables
row by row, merging and conflicts, class resolution, and the nginx
location model against the definitions on random tables."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podnet.ingress import model
from podnet.ingress.model import Backend

Obj = dict[str, Any]


def ing(
    name: str,
    rules: list[Obj] | None = None,
    ns: str = "default",
    created: str = "2024-01-01T00:00:00Z",
    default: str | None = None,
    tls: list[Obj] | None = None,
    cls: str | None = None,
    annotations: dict[str, str] | None = None,
) -> Obj:
    spec: Obj = {"rules": rules or []}
    if default:
        spec["defaultBackend"] = {"service": {"name": default, "port": {"number": 80}}}
    if tls:
        spec["tls"] = tls
    if cls:
        spec["ingressClassName"] = cls
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": name,
            "namespace": ns,
            "creationTimestamp": created,
            "annotations": annotations or {},
        },
        "spec": spec,
    }


def rule(host: str, *paths: tuple[str, str, str]) -> Obj:
    return {
        "host": host,
        "http": {
            "paths": [
                {"path": p, "pathType": t, "backend": {"service": {"name": svc, "port": {"number": 80}}}}
                for p, t, svc in paths
            ]
        },
    }


def where(table: model.Table, path: str, host: str = "") -> str | None:
    b = model.route(table, host, path)
    ref = model.reference_route(table, host, path)
    assert b == ref, f"nginx locations and the definitions disagree on {host}{path}: {b} vs {ref}"
    return b.service if b else None


# The table "Examples" of https://kubernetes.io/docs/concepts/services-networking/ingress/#examples
# (kind, paths, request, matches) -- a match means the request reaches the longest of the paths.
DOCS_PATH_TABLE = [
    ("Prefix", ["/"], "/anything/at/all", True),
    ("Exact", ["/foo"], "/foo", True),
    ("Exact", ["/foo"], "/bar", False),
    ("Exact", ["/foo"], "/foo/", False),
    ("Exact", ["/foo/"], "/foo", False),
    ("Prefix", ["/foo"], "/foo", True),
    ("Prefix", ["/foo"], "/foo/", True),
    ("Prefix", ["/foo/"], "/foo", True),
    ("Prefix", ["/foo/"], "/foo/", True),
    ("Prefix", ["/aaa/bb"], "/aaa/bbb", False),
    ("Prefix", ["/aaa/bbb"], "/aaa/bbb", True),
    ("Prefix", ["/aaa/bbb/"], "/aaa/bbb", True),
    ("Prefix", ["/aaa/bbb"], "/aaa/bbb/", True),
    ("Prefix", ["/aaa/bbb"], "/aaa/bbb/ccc", True),
    ("Prefix", ["/aaa/bbb"], "/aaa/bbbxyz", False),
    ("Prefix", ["/", "/aaa"], "/aaa/ccc", True),
    ("Prefix", ["/", "/aaa", "/aaa/bbb"], "/aaa/bbb", True),
    ("Prefix", ["/", "/aaa", "/aaa/bbb"], "/ccc", True),
    ("Prefix", ["/aaa"], "/ccc", False),
]


@pytest.mark.parametrize(("kind", "paths", "request_path", "matches"), DOCS_PATH_TABLE)
def test_the_docs_path_table(kind: str, paths: list[str], request_path: str, matches: bool) -> None:
    table = model.merge([ing("a", [rule("", *((p, kind, f"svc{i}") for i, p in enumerate(paths)))])])
    got = where(table, request_path)
    if not matches:
        assert got is None
        return
    # The expected winner: the longest path that matches.
    expected = max(
        (i for i, p in enumerate(paths) if model.path_matches(model.normalise(p, kind), kind, request_path)),
        key=lambda i: len(paths[i].rstrip("/")),
    )
    assert got == f"svc{expected}"


def test_the_docs_mixed_row_prefers_exact() -> None:
    table = model.merge([ing("a", [rule("", ("/foo", "Prefix", "prefix"), ("/foo", "Exact", "exact"))])])
    assert where(table, "/foo") == "exact"
    assert where(table, "/foo/") == "prefix"
    assert where(table, "/foo/x") == "prefix"


@pytest.mark.parametrize(
    ("pattern", "host", "matches"),
    [
        ("*.foo.com", "bar.foo.com", True),
        ("*.foo.com", "baz.bar.foo.com", False),
        ("*.foo.com", "foo.com", False),
        ("foo.bar.com", "foo.bar.com", True),
        ("foo.bar.com", "FOO.bar.com:8080", True),
        ("foo.bar.com", "bar.com", False),
    ],
)
def test_the_docs_wildcard_table(pattern: str, host: str, matches: bool) -> None:
    table = model.merge([ing("a", [rule(pattern, ("/", "Prefix", "svc"))])])
    assert (where(table, "/", host) == "svc") is matches
    assert model.host_matches(pattern, model.request_host(host)) is matches


def test_exact_hosts_beat_wildcards_and_wildcards_beat_the_host_less_rules() -> None:
    table = model.merge(
        [
            ing(
                "a",
                [
                    rule("foo.bar.com", ("/", "Prefix", "exact")),
                    rule("*.bar.com", ("/", "Prefix", "wild")),
                    rule("", ("/", "Prefix", "any")),
                ],
            )
        ]
    )
    assert where(table, "/", "foo.bar.com") == "exact"
    assert where(table, "/", "baz.bar.com") == "wild"
    assert where(table, "/", "a.baz.bar.com") == "any"
    assert where(table, "/", "198.51.100.1") == "any"


def test_a_host_with_rules_keeps_its_requests_unmatched_paths_go_to_the_default_backend() -> None:
    table = model.merge(
        [ing("a", [rule("shop.example.com", ("/cart", "Prefix", "cart")), rule("", ("/", "Prefix", "any"))])]
    )
    assert where(table, "/other", "shop.example.com") is None  # 404, not the host-less rule
    table = model.merge([*table_ings(), ing("b", default="fallback", created="2024-01-02T00:00:00Z")])
    assert where(table, "/other", "shop.example.com") == "fallback"
    assert where(table, "/", "elsewhere") == "fallback"


def table_ings() -> list[Obj]:
    return [ing("a", [rule("shop.example.com", ("/cart", "Prefix", "cart"))])]


def test_implementation_specific_is_a_string_prefix() -> None:
    table = model.merge([ing("a", [rule("", ("/foo", "ImplementationSpecific", "is"))])])
    assert where(table, "/foobar") == "is"
    assert where(table, "/foo/x") == "is"
    assert where(table, "/fo") is None
    table = model.merge([ing("a", [rule("", ("", "ImplementationSpecific", "is"))])])
    assert where(table, "/anything") == "is"


def test_at_equal_length_exact_beats_prefix_beats_implementation_specific() -> None:
    table = model.merge(
        [
            ing(
                "a",
                [
                    rule(
                        "",
                        ("/foo/", "ImplementationSpecific", "is"),
                        ("/foo", "Prefix", "p"),
                        ("/foo", "Exact", "e"),
                    )
                ],
            )
        ]
    )
    assert where(table, "/foo") == "e"
    assert where(table, "/foo/") == "p"  # Prefix /foo is location "/foo/", the same as IS "/foo/"
    assert where(table, "/foo/bar") == "p"
    assert where(table, "/foox") is None


def test_longest_match_wins_across_ingresses() -> None:
    table = model.merge(
        [
            ing("a", [rule("h.example.com", ("/", "Prefix", "root"))]),
            ing("b", [rule("h.example.com", ("/api/v1", "Prefix", "v1"))], created="2024-01-02T00:00:00Z"),
            ing("c", [rule("h.example.com", ("/api", "Prefix", "api"))], ns="other"),
        ]
    )
    assert where(table, "/api/v1/users", "h.example.com") == "v1"
    assert where(table, "/api/v2", "h.example.com") == "api"
    assert where(table, "/x", "h.example.com") == "root"
    [server] = table.servers.values()
    assert {r.source for r in server.routes} == {"default/a", "default/b", "other/c"}
    assert where(table, "/api", "h.example.com") == "api"
    assert model.route(table, "h.example.com", "/api").namespace == "other"  # type: ignore[union-attr]


def test_the_oldest_ingress_wins_a_conflict_then_namespace_and_name() -> None:
    newer = ing("a-new", [rule("h", ("/cart", "Prefix", "new"))], created="2024-05-01T00:00:00Z")
    older = ing("z-old", [rule("h", ("/cart/", "Prefix", "old"))], created="2024-01-01T00:00:00Z")
    for order in ([newer, older], [older, newer]):
        table = model.merge(order)
        assert where(table, "/cart/x", "h") == "old"
        assert table.conflicts == [
            model.Conflict("default/a-new", "default/z-old", "host h path /cart (Prefix)")
        ]
        assert "default/z-old, which is older" in table.conflicts[0].message()
    # Same age: namespace, then name.
    a = ing("b", [rule("h", ("/x", "Exact", "from-b"))], ns="ns1")
    b = ing("a", [rule("h", ("/x", "Exact", "from-a"))], ns="ns2")
    c = ing("a", [rule("h", ("/x", "Exact", "from-ns1-a"))], ns="ns1")
    assert where(model.merge([a, b, c]), "/x", "h") == "from-ns1-a"
    assert [x.ingress for x in model.merge([b, c, a]).conflicts] == ["ns1/b", "ns2/a"]


def test_different_types_on_one_path_are_no_conflict() -> None:
    table = model.merge(
        [ing("a", [rule("h", ("/x", "Exact", "e"))]), ing("b", [rule("h", ("/x", "Prefix", "p"))], ns="b")]
    )
    assert table.conflicts == []
    assert where(table, "/x", "h") == "e"
    assert where(table, "/x/y", "h") == "p"


def test_default_backend_conflicts_and_tls_merge() -> None:
    table = model.merge(
        [
            ing(
                "a",
                default="one",
                created="2024-01-01T00:00:00Z",
                tls=[{"hosts": ["h.example.com"], "secretName": "first"}],
            ),
            ing(
                "b",
                [rule("h.example.com", ("/", "Prefix", "web"))],
                default="two",
                created="2024-02-01T00:00:00Z",
                tls=[{"hosts": ["h.example.com"], "secretName": "second"}],
            ),
            ing(
                "c",
                [rule("w.example.com", ("/", "Prefix", "web"))],
                created="2024-03-01T00:00:00Z",
                tls=[{"hosts": ["*.example.com"], "secretName": "wild"}],
            ),
        ]
    )
    assert table.default_backend == Backend("default", "one", 80)
    whats = sorted(c.what for c in table.conflicts)
    assert whats == ["TLS for host h.example.com", "defaultBackend"]
    assert table.servers["h.example.com"].tls == model.TLS("default", "first", "default/a")
    assert table.servers["w.example.com"].tls == model.TLS("default", "wild", "default/c")


def test_backends_by_port_name_or_number() -> None:
    doc = ing("a", [rule("h", ("/", "Prefix", "web"))])
    doc["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"] = {"name": "http"}
    table = model.merge([doc])
    assert model.route(table, "h", "/") == Backend("default", "web", "http")


@pytest.mark.parametrize(
    ("ingress", "classes", "expected"),
    [
        (ing("a", cls="nginx"), [], "nginx"),
        (ing("a", annotations={model.CLASS_ANNOTATION: "legacy"}), [], "legacy"),
        (
            ing("a"),
            [{"metadata": {"name": "d", "annotations": {model.DEFAULT_CLASS_ANNOTATION: "true"}}}],
            "d",
        ),
        (
            ing("a"),
            [{"metadata": {"name": "d", "annotations": {model.DEFAULT_CLASS_ANNOTATION: "false"}}}],
            None,
        ),
        (
            ing("a"),
            [
                {"metadata": {"name": n, "annotations": {model.DEFAULT_CLASS_ANNOTATION: "true"}}}
                for n in ("d1", "d2")
            ],
            None,
        ),
    ],
)
def test_class_resolution(ingress: Obj, classes: list[Obj], expected: str | None) -> None:
    assert model.class_of(ingress, classes) == expected


PATHS = st.sampled_from(["/", "/a", "/a/", "/a/b", "/ab", "/a/b/c", "/b", "/a/bc"])
TYPES = st.sampled_from(model.PATH_TYPES)
HOSTS = st.sampled_from(["", "x.example.com", "*.example.com"])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(HOSTS, PATHS, TYPES, st.integers(0, 3)), min_size=1, max_size=8),
    st.sampled_from(["/", "/a", "/a/", "/a/b", "/a/b/", "/ab", "/abc", "/a/bc", "/a/b/c/d", "/b", "/c"]),
    st.sampled_from(["x.example.com", "y.example.com", "other", "a.x.example.com"]),
)
def test_nginx_locations_agree_with_the_definitions(
    routes: list[tuple[str, str, str, int]], path: str, host: str
) -> None:
    ings = [
        ing(f"i{n}", [rule(h, (p, t, f"svc{n}"))], created=f"2024-01-0{1 + n}T00:00:00Z")
        for h, p, t, n in routes
    ]
    where(model.merge(ings), path, host)
