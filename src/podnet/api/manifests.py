"""Reading Kubernetes manifests: multi-document YAML (or JSON) from files,
directories or stdin, into plain JSON-shaped dicts, with kubectl's checks
(apiVersion, kind and name present; kind known) and errors that name the file,
the document and its line."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import yaml

from podnet.api import kinds
from podnet.api.errors import BadRequest

Obj = dict[str, Any]

MANIFEST_EXTENSIONS = (".yaml", ".yml", ".json")
STDIN = "-"


def load_documents(text: str, source: str) -> list[Obj]:
    """Every object in `text`, in order. Empty documents are skipped and a
    `kind: List` (or any `...List` with `items`) is expanded into its items.
    `source` (a file name, or "STDIN") is only used in error messages."""
    out: list[Obj] = []
    for index, line, doc in _parse(text, source):
        where = _where(source, f"document {index}, line {line}")
        if not isinstance(doc, dict):
            raise BadRequest(
                f"error parsing {where}: a document must be a mapping (an object), not {_type_name(doc)}"
            )
        for obj, position in _expand(doc, source, f"document {index}, line {line}"):
            _check(obj, _where(source, position))
            out.append(obj)
    return out


def load_paths(paths: list[str]) -> list[Obj]:
    """The objects in each of `paths`, in order: a file, a directory (its
    *.yaml, *.yml and *.json files, sorted by name, not recursive), or "-" for
    standard input."""
    out: list[Obj] = []
    for path in paths:
        if path == STDIN:
            out.extend(load_documents(sys.stdin.read(), "STDIN"))
            continue
        if os.path.isdir(path):
            names = sorted(n for n in os.listdir(path) if n.endswith(MANIFEST_EXTENSIONS))
            files = [os.path.join(path, n) for n in names if os.path.isfile(os.path.join(path, n))]
        elif os.path.exists(path):
            files = [path]
        else:
            raise BadRequest(f'the path "{path}" does not exist')
        for file in files:
            out.extend(load_documents(_read(file), file))
    return out


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadRequest(f'error reading "{path}": {exc}') from exc


def _parse(text: str, source: str) -> list[tuple[int, int, Any]]:
    """(1-based document index, 1-based first line, data) for each non-empty
    document."""
    if source.endswith(".json"):
        # JSON is parsed as JSON: PyYAML (YAML 1.1) rejects some valid JSON,
        # such as tab indentation.
        if not text.strip():
            return []
        try:
            return [(1, 1, json.loads(text))]
        except json.JSONDecodeError as exc:
            raise BadRequest(f'error parsing "{source}": line {exc.lineno}: {exc.msg}') from exc
    docs: list[tuple[int, int, Any]] = []
    loader = yaml.SafeLoader(text)
    index = 0
    try:
        # compose/construct one document at a time to learn where each starts.
        while loader.check_node():
            node = loader.get_node()
            index += 1
            if node is None:
                continue
            data = loader.construct_document(node)
            if data is not None:
                docs.append((index, node.start_mark.line + 1, data))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        line = f"line {mark.line + 1}: " if mark is not None else ""
        raise BadRequest(
            f'error parsing "{source}" (document {index + 1}): '
            f"error converting YAML to JSON: yaml: {line}{problem}"
        ) from exc
    finally:
        loader.dispose()
    return docs


def _expand(doc: Obj, source: str, position: str) -> list[tuple[Obj, str]]:
    """The objects in a document with their positions ("document 2, line 5,
    items[0]"): a List is flattened, recursively, as kubectl does."""
    kind = doc.get("kind")
    if isinstance(kind, str) and kind.endswith("List") and "items" in doc:
        items = doc.get("items") or []
        if not isinstance(items, list):
            raise BadRequest(
                f"error parsing {_where(source, position)}: items must be a list, not {_type_name(items)}"
            )
        out: list[tuple[Obj, str]] = []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise BadRequest(
                    f"error parsing {_where(source, position)}: items[{i}] must be a mapping (an object), "
                    f"not {_type_name(item)}"
                )
            out.extend(_expand(item, source, f"{position}, items[{i}]"))
        return out
    return [(doc, position)]


def _check(obj: Obj, where: str) -> None:
    problems = []
    if not obj.get("apiVersion"):
        problems.append("apiVersion not set")
    if not obj.get("kind"):
        problems.append("kind not set")
    if problems:
        raise BadRequest(f"error validating {where}: error validating data: [{', '.join(problems)}]")
    meta = obj.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    namespace = meta.get("namespace") if isinstance(meta, dict) else None
    generate_name = meta.get("generateName") if isinstance(meta, dict) else None
    try:
        kinds.for_object(obj)
    except KeyError as exc:
        # kubectl's wording, with the document's position added.
        raise BadRequest(
            f'resource mapping not found for name: "{name or generate_name or ""}" '
            f'namespace: "{namespace or ""}" from {where}: {exc.args[0]}'
        ) from exc
    # Only Pods are commonly created with a generated name in the lab.
    generated = obj.get("kind") == "Pod" and isinstance(generate_name, str) and bool(generate_name)
    if (not isinstance(name, str) or not name) and not generated:
        raise BadRequest(
            f"error validating {where}: {obj['kind']}: metadata.name: "
            "Required value: name or generateName is required"
        )


def _where(source: str, position: str) -> str:
    return f'"{source}" ({position})'


def _type_name(value: object) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return type(value).__name__
