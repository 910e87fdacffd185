"""API errors in the shape the Kubernetes API server returns them (a Status
object), so that the CLI and real clients print what kubectl prints."""

from __future__ import annotations

from typing import Any


class APIError(Exception):
    code = 500
    reason = "InternalError"

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            out["details"] = self.details
        return out

    @staticmethod
    def from_status(status: dict[str, Any]) -> APIError:
        cls = {c.reason: c for c in (NotFound, AlreadyExists, Conflict, Invalid, BadRequest, Gone)}.get(
            status.get("reason", ""), APIError
        )
        err = cls.__new__(cls)
        APIError.__init__(err, status.get("message", ""), status.get("details"))
        err.code = status.get("code", cls.code)
        return err


class NotFound(APIError):
    code = 404
    reason = "NotFound"

    def __init__(self, resource: str, name: str) -> None:
        super().__init__(f'{resource} "{name}" not found', {"name": name, "kind": resource})


class AlreadyExists(APIError):
    code = 409
    reason = "AlreadyExists"

    def __init__(self, resource: str, name: str) -> None:
        super().__init__(f'{resource} "{name}" already exists', {"name": name, "kind": resource})


class Conflict(APIError):
    code = 409
    reason = "Conflict"


class BadRequest(APIError):
    code = 400
    reason = "BadRequest"


class Gone(APIError):
    code = 410
    reason = "Expired"


class Invalid(APIError):
    """A rejected object. `causes` are (field path, message) pairs, such as
    ("spec.ports[0].port", "Invalid value: 0: must be between 1 and 65535, inclusive")."""

    code = 422
    reason = "Invalid"

    def __init__(self, kind: str, name: str, causes: list[tuple[str, str]]) -> None:
        self.kind = kind
        self.name = name
        self.causes = causes
        text = ", ".join(f"{field}: {msg}" if field else msg for field, msg in causes)
        if len(causes) > 1:
            text = "[" + text + "]"
        super().__init__(
            f'{kind} "{name}" is invalid: {text}',
            {
                "name": name,
                "kind": kind,
                "causes": [{"field": f, "message": m} for f, m in causes],
            },
        )
