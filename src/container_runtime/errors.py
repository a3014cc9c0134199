"""Error types shared by every process; each maps to one HTTP status on the wire.

A ContainerError's message is what the user sees after `Error: `, so it must be
one line that says what was wrong and, where it helps, what is valid.
"""

from __future__ import annotations


class ContainerError(Exception):
    status = 500
    kind = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message.replace("\n", " "))
        self.message = message.replace("\n", " ")

    def to_json(self) -> dict[str, str]:
        return {"error": self.kind, "message": self.message}


class InvalidArgument(ContainerError):
    status = 400
    kind = "invalid_argument"


class PermissionDenied(ContainerError):
    status = 403
    kind = "permission_denied"


class NotFound(ContainerError):
    status = 404
    kind = "not_found"


class Conflict(ContainerError):
    status = 409
    kind = "conflict"


class Exhausted(ContainerError):
    status = 507
    kind = "exhausted"


class Unavailable(ContainerError):
    status = 503
    kind = "unavailable"


class Interrupted(Unavailable):
    """The server went away after the request was sent and before its reply."""

    kind = "interrupted"


class DatabaseLocked(Unavailable):
    """The state database stayed locked by another writer past the wait."""

    kind = "database_locked"


class ConcurrentChange(Conflict):
    """A constraint of the state database refused a change another request raced."""

    kind = "concurrent_change"


class ConfigError(ContainerError):
    status = 500
    kind = "config"


_BY_KIND: dict[str, type[ContainerError]] = {
    cls.kind: cls
    for cls in (
        ContainerError,
        InvalidArgument,
        PermissionDenied,
        NotFound,
        Conflict,
        Exhausted,
        Unavailable,
        Interrupted,
        DatabaseLocked,
        ConcurrentChange,
        ConfigError,
    )
}


def from_json(body: object, status: int) -> ContainerError:
    """Rebuild the error a server sent (used by clients)."""
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        cls = _BY_KIND.get(str(body.get("error")), ContainerError)
        return cls(body["message"])
    return ContainerError(f"server answered HTTP {status}")
