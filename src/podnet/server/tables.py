"""Server-side printing: meta.k8s.io/v1 Table objects, what `kubectl get`
asks for (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`). The
columns and cells come from `cli.printers`, the same definitions
`podnet get` prints from, so both show what a real cluster shows.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from podnet.cli import printers

Obj = dict[str, Any]

TABLE_CONTENT_TYPE = "application/json;as=Table;v=v1;g=meta.k8s.io"

# The API server's default table, for kinds without a printer of their own.
_DEFAULT_COLUMNS = [
    {
        "name": "Name",
        "type": "string",
        "format": "name",
        "description": printers._DESCRIPTIONS["Name"],
        "priority": 0,
    },
    {
        "name": "Created At",
        "type": "date",
        "format": "",
        "description": printers._DESCRIPTIONS["Age"],
        "priority": 0,
    },
]


def wants_table(accept: str) -> bool:
    """Whether the Accept header's first acceptable type is a v1 Table
    (kubectl also lists v1beta1 and plain JSON as fallbacks)."""
    for part in accept.split(","):
        fields = [f.strip() for f in part.split(";")]
        params = {f.split("=", 1)[0]: f.split("=", 1)[-1] for f in fields[1:] if "=" in f}
        if params.get("as") == "Table" and params.get("g") == "meta.k8s.io":
            if params.get("v") == "v1":
                return True
            continue  # v1beta1: not served, try the next one
        if fields[0] in ("application/json", "*/*", "application/*"):
            return False
    return False


def column_definitions(kind: str) -> list[Obj]:
    try:
        cols = printers.columns(kind)
    except KeyError:
        return [dict(c) for c in _DEFAULT_COLUMNS]
    return [
        {
            "name": c.name,
            "type": c.type,
            "format": c.format,
            "description": c.description,
            "priority": c.priority,
        }
        for c in cols
    ]


def _row_object(obj: Obj, include: str) -> Obj | None:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata", {}),
    }


def row(kind: str, obj: Obj, include: str = "Metadata", now: datetime | None = None) -> Obj:
    try:
        cells: list[Any] = list(printers.cells(kind, obj, now or datetime.now(UTC)))
    except KeyError:
        meta = obj.get("metadata", {})
        cells = [meta.get("name", ""), meta.get("creationTimestamp")]
    out: Obj = {"cells": cells}
    body = _row_object(obj, include)
    if body is not None:
        out["object"] = body
    return out


def table(
    kind: str,
    objects: list[Obj],
    resource_version: str = "",
    include: str = "Metadata",
    headers: bool = True,
    now: datetime | None = None,
) -> Obj:
    """A Table of `objects` (all of `kind`). `include` is the request's
    includeObject (None, Metadata or Object); `headers` False leaves out
    the column definitions, as for watch events after the first."""
    now = now or datetime.now(UTC)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": column_definitions(kind) if headers else [],
        "rows": [row(kind, o, include, now) for o in objects],
    }
