"""Requests, the router of JSON handlers, and the one place where a handler's outcome
(a value, a ContainerError, a database error or a bug) becomes a status and a JSON body.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

from .errors import (
    ConcurrentChange,
    ContainerError,
    DatabaseLocked,
    InvalidArgument,
    NotFound,
)
from .peercred import Peer, authorize

MAX_DEPTH = 32  # JSON nesting a request body may have (ours need 3)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass
class Request:
    method: str
    path: str
    params: dict[str, str]
    query: dict[str, list[str]]
    body: Any
    peer_uid: int | None = None
    peer_pid: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default


Handler = Callable[[Request], tuple[int, Any]]


class Router:
    def __init__(self) -> None:
        self.routes: list[tuple[str, re.Pattern[str], str, Handler]] = []

    def add(self, method: str, template: str, handler: Handler) -> None:
        pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
        self.routes.append((method, re.compile(f"^{pattern}$"), template, handler))

    def route(self, method: str, template: str) -> Callable[[Handler], Handler]:
        def decorator(handler: Handler) -> Handler:
            self.add(method, template, handler)
            return handler

        return decorator

    def templates(self) -> list[tuple[str, str]]:
        return [(method, template) for method, _, template, _ in self.routes]

    def dispatch(self, request: Request) -> tuple[int, Any]:
        allowed = False
        for method, pattern, _, handler in self.routes:
            match = pattern.match(request.path)
            if not match:
                continue
            allowed = True
            if method != request.method:
                continue
            request.params = {k: _param(k, v) for k, v in match.groupdict().items()}
            return handler(request)
        if allowed:
            return 405, {"error": "invalid_argument", "message": "method not allowed"}
        raise NotFound(f"no such endpoint {request.method} {request.path}")


def _param(name: str, raw: str) -> str:
    # A name decoded from %0D%0A must not travel on into another request line or a log.
    try:
        value = unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise InvalidArgument(f"invalid {name}: not valid percent-encoded UTF-8") from None
    if _CONTROL.search(value):
        raise InvalidArgument(f"invalid {name} {value!r}: control characters are not allowed")
    return value


def _too_deep(value: Any) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def decode_body(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        body = json.loads(raw)
    except RecursionError:
        raise InvalidArgument(f"request body is nested deeper than {MAX_DEPTH} levels") from None
    except ValueError:
        raise InvalidArgument("request body is not valid JSON") from None
    # Cheap first: a body with few brackets cannot be deep.
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and isinstance(body, dict | list):
        if _too_deep(body):
            raise InvalidArgument(f"request body is nested deeper than {MAX_DEPTH} levels")
    return body


def dispatch(
    router: Router,
    allowed_gid: int | None,
    on_error: Callable[[BaseException], None],
    method: str,
    target: str,
    raw: bytes,
    peer: Peer,
) -> tuple[int, Any]:
    """Authorise, decode, route and turn errors into their JSON form."""
    try:
        authorize(peer, allowed_gid)
        body = decode_body(raw)
        path, _, query = target.partition("?")
        request = Request(
            method=method,
            path=path,
            params={},
            query=parse_qs(query),
            body=body,
            peer_uid=peer.uid,
            peer_pid=peer.pid,
        )
        return router.dispatch(request)
    except ContainerError as exc:
        return exc.status, exc.to_json()
    except sqlite3.IntegrityError as exc:
        # Two requests raced for the same row (a name, an address, a row another deletes).
        error: ContainerError = ConcurrentChange(
            f"the request conflicted with a concurrent change ({exc}); "
            "check the current state and retry"
        )
        return error.status, error.to_json()
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            error = DatabaseLocked(
                f"the state database stayed locked by another writer ({exc}); "
                "the request was not completed: retry it"
            )
            return error.status, error.to_json()
        on_error(exc)
        return 500, {"error": "internal", "message": f"internal error: {exc}"}
    except Exception as exc:  # a bug must not kill the serving thread silently
        on_error(exc)
        return 500, {"error": "internal", "message": f"internal error: {exc}"}
