"""Reading manifests: documents, Lists, files, directories, stdin, and the
errors kubectl gives for bad input."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from podnet.api.errors import BadRequest
from podnet.api.manifests import load_documents, load_paths

POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  containers:
  - name: web
    image: nginx
"""

SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  ports:
  - port: 80
"""


def test_a_single_document_is_read_as_a_plain_dict() -> None:
    docs = load_documents(POD, "pod.yaml")
    assert docs == [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web"},
            "spec": {"containers": [{"name": "web", "image": "nginx"}]},
        }
    ]


def test_multiple_documents_are_read_in_order() -> None:
    docs = load_documents(POD + "---\n" + SERVICE, "app.yaml")
    assert [d["kind"] for d in docs] == ["Pod", "Service"]


def test_empty_documents_and_comments_are_skipped() -> None:
    text = "---\n# just a comment\n---\n" + POD + "---\n---\n"
    assert [d["kind"] for d in load_documents(text, "app.yaml")] == ["Pod"]


def test_an_empty_file_has_no_documents() -> None:
    assert load_documents("", "empty.yaml") == []


def test_a_list_document_is_expanded_into_its_items() -> None:
    text = """\
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Namespace, metadata: {name: lab}}
- {apiVersion: v1, kind: Service, metadata: {name: web}, spec: {ports: [{port: 80}]}}
"""
    docs = load_documents(text, "list.yaml")
    assert [(d["kind"], d["metadata"]["name"]) for d in docs] == [("Namespace", "lab"), ("Service", "web")]


def test_unknown_fields_are_kept() -> None:
    docs = load_documents(POD.replace("spec:\n", "spec:\n  priorityClassName: high\n"), "pod.yaml")
    assert docs[0]["spec"]["priorityClassName"] == "high"


def test_malformed_yaml_is_a_bad_request_naming_the_file_document_and_line() -> None:
    text = POD + "---\napiVersion: v1\nkind: Service\nmetadata: {name: web\n"
    with pytest.raises(BadRequest) as exc:
        load_documents(text, "app.yaml")
    assert '"app.yaml"' in exc.value.message
    assert "document 2" in exc.value.message
    assert "line 13" in exc.value.message


def test_a_document_that_is_not_a_mapping_is_a_bad_request_naming_its_position() -> None:
    with pytest.raises(BadRequest) as exc:
        load_documents(POD + "---\n- a\n- b\n", "app.yaml")
    assert exc.value.message.startswith('error parsing "app.yaml" (document 2, line 10)')
    assert "not a list" in exc.value.message


def test_missing_api_version_and_kind_are_reported_as_kubectl_does() -> None:
    with pytest.raises(BadRequest) as exc:
        load_documents("metadata: {name: web}\n", "x.yaml")
    assert exc.value.message == (
        'error validating "x.yaml" (document 1, line 1): '
        "error validating data: [apiVersion not set, kind not set]"
    )


def test_a_missing_name_is_a_bad_request_naming_the_document() -> None:
    with pytest.raises(BadRequest) as exc:
        load_documents(SERVICE.replace("  name: web\n", "  labels: {a: b}\n"), "svc.yaml")
    assert exc.value.message == (
        'error validating "svc.yaml" (document 1, line 1): Service: metadata.name: '
        "Required value: name or generateName is required"
    )


def test_a_pod_may_have_generate_name_instead_of_a_name() -> None:
    docs = load_documents(POD.replace("  name: web\n", "  generateName: web-\n"), "pod.yaml")
    assert docs[0]["metadata"] == {"generateName": "web-"}


def test_generate_name_alone_is_refused_for_kinds_other_than_pod() -> None:
    with pytest.raises(BadRequest, match=r"metadata\.name: Required value"):
        load_documents(SERVICE.replace("  name: web\n", "  generateName: web-\n"), "svc.yaml")


def test_an_unknown_kind_is_refused_with_kubectls_wording() -> None:
    text = "apiVersion: v1\nkind: Widget\nmetadata: {name: w, namespace: lab}\n"
    with pytest.raises(BadRequest) as exc:
        load_documents(text, "w.yaml")
    assert exc.value.message == (
        'resource mapping not found for name: "w" namespace: "lab" from "w.yaml" (document 1, line 1): '
        'no matches for kind "Widget" in version "v1"'
    )


def test_a_known_kind_in_the_wrong_version_is_refused() -> None:
    with pytest.raises(BadRequest, match='no matches for kind "Deployment" in version "extensions/v1beta1"'):
        load_documents("apiVersion: extensions/v1beta1\nkind: Deployment\nmetadata: {name: d}\n", "d.yaml")


def test_an_invalid_item_in_a_list_names_its_index() -> None:
    text = "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Pod, metadata: {}}\n"
    with pytest.raises(BadRequest) as exc:
        load_documents(text, "list.yaml")
    assert '"list.yaml" (document 1, line 1, items[0])' in exc.value.message


def test_json_is_read_as_json_even_with_tab_indentation() -> None:
    text = '{\n\t"apiVersion": "v1",\n\t"kind": "Namespace",\n\t"metadata": {"name": "lab"}\n}\n'
    assert load_documents(text, "ns.json") == [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "lab"}}
    ]


def test_malformed_json_is_a_bad_request_naming_the_line() -> None:
    with pytest.raises(BadRequest, match=r'error parsing "ns.json": line 2'):
        load_documents('{\n"kind": }\n', "ns.json")


def test_load_paths_reads_files_in_the_order_given(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text(SERVICE)
    (tmp_path / "a.yaml").write_text(POD)
    docs = load_paths([str(tmp_path / "b.yaml"), str(tmp_path / "a.yaml")])
    assert [d["kind"] for d in docs] == ["Service", "Pod"]


def test_load_paths_reads_a_directorys_manifests_sorted_and_not_recursively(tmp_path: Path) -> None:
    (tmp_path / "2-svc.yml").write_text(SERVICE)
    (tmp_path / "1-pod.yaml").write_text(POD)
    (tmp_path / "3-ns.json").write_text(
        '{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "lab"}}'
    )
    (tmp_path / "notes.txt").write_text("not a manifest")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "0-other.yaml").write_text(POD)
    docs = load_paths([str(tmp_path)])
    assert [d["kind"] for d in docs] == ["Pod", "Service", "Namespace"]


def test_load_paths_reads_stdin_for_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(SERVICE))
    assert [d["kind"] for d in load_paths(["-"])] == ["Service"]


def test_load_paths_names_stdin_in_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("kind: Pod\n"))
    with pytest.raises(BadRequest, match='"STDIN"'):
        load_paths(["-"])


def test_load_paths_refuses_a_path_that_does_not_exist(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.yaml")
    with pytest.raises(BadRequest) as exc:
        load_paths([missing])
    assert exc.value.message == f'the path "{missing}" does not exist'


def test_load_paths_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: Pod\nmetadata: [\n")
    with pytest.raises(BadRequest, match=str(bad)):
        load_paths([str(bad)])
