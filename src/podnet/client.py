"""A small client of the Kubernetes REST API, for the CLI: the lab's API
server speaks the real paths and JSON, so this is all the CLI needs."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

from podnet.api.errors import APIError
from podnet.api.kinds import Kind

Obj = dict[str, Any]


class Unreachable(Exception):
    pass


class Client:
    def __init__(self, host: str, port: int, timeout: float = 30.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout

    def request(
        self,
        method: str,
        path: str,
        body: Obj | None = None,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Obj:
        if query:
            path += "?" + urlencode(query)
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            data = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": content_type, "Accept": "application/json"}
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        except OSError as exc:
            raise Unreachable(
                f"the control plane at {self.host}:{self.port} is not answering: {exc}"
            ) from None
        finally:
            conn.close()
        doc = json.loads(raw) if raw else {}
        if resp.status >= 400:
            raise APIError.from_status(doc if isinstance(doc, dict) else {"message": raw.decode()})
        return doc

    def get(self, kind: Kind, name: str, namespace: str | None = None) -> Obj:
        return self.request("GET", kind.object_path(name, namespace))

    def list(
        self,
        kind: Kind,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> Obj:
        query = {}
        if label_selector:
            query["labelSelector"] = label_selector
        if field_selector:
            query["fieldSelector"] = field_selector
        return self.request("GET", kind.collection_path(namespace), query=query)

    def create(self, kind: Kind, obj: Obj, namespace: str | None = None) -> Obj:
        return self.request("POST", kind.collection_path(namespace), obj)

    def update(self, kind: Kind, obj: Obj, namespace: str | None = None, subresource: str = "") -> Obj:
        path = kind.object_path(obj["metadata"]["name"], namespace)
        return self.request("PUT", path + (f"/{subresource}" if subresource else ""), obj)

    def patch(self, kind: Kind, name: str, patch: Obj, namespace: str | None = None) -> Obj:
        return self.request(
            "PATCH", kind.object_path(name, namespace), patch, content_type="application/merge-patch+json"
        )

    def delete(
        self, kind: Kind, name: str, namespace: str | None = None, grace_period: int | None = None
    ) -> Obj:
        query = {"gracePeriodSeconds": str(grace_period)} if grace_period is not None else None
        return self.request("DELETE", kind.object_path(name, namespace), query=query)

    def watch(
        self,
        kind: Kind,
        namespace: str | None = None,
        resource_version: str = "",
        label_selector: str | None = None,
        timeout: float | None = None,
    ) -> Iterator[Obj]:
        """Watch events ({"type", "object"}) as they come."""
        query = {"watch": "true", "resourceVersion": resource_version}
        if label_selector:
            query["labelSelector"] = label_selector
        if timeout:
            query["timeoutSeconds"] = str(int(timeout))
        conn = http.client.HTTPConnection(self.host, self.port, timeout=None)
        try:
            conn.request("GET", kind.collection_path(namespace) + "?" + urlencode(query))
            resp = conn.getresponse()
            if resp.status >= 400:
                raise APIError.from_status(json.loads(resp.read()))
            while line := resp.readline():
                if line.strip():
                    yield json.loads(line)
        finally:
            conn.close()
