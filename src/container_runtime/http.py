"""The server half of HTTP/1.1 + JSON over Unix sockets (API server and helpers).

Stdlib http.server plus a small router of JSON handlers; the client half is
`client.py`, kept apart so the CLI does not import http.server.
"""

from __future__ import annotations

import json
import os
import re
import socket
import socketserver
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .errors import ContainerError, InvalidArgument, NotFound, PermissionDenied

MAX_BODY = 1 << 20


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
            request.params = {k: unquote(v) for k, v in match.groupdict().items()}
            return handler(request)
        if allowed:
            return 405, {"error": "invalid_argument", "message": "method not allowed"}
        raise NotFound(f"no such endpoint {request.method} {request.path}")


def _peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", creds)
    return pid, uid, gid


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: UnixHTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # the daemons log what matters themselves

    def _handle(self) -> None:
        try:
            pid, uid, gid = _peer_credentials(self.connection)
            self.server.authorize(uid, gid)
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                raise InvalidArgument("request body too large")
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                raise InvalidArgument("request body is not valid JSON") from None
            parts = urlsplit(self.path)
            request = Request(
                method=self.command,
                path=parts.path,
                params={},
                query=parse_qs(parts.query),
                body=body,
                peer_uid=uid,
                peer_pid=pid,
            )
            status, payload = self.server.router.dispatch(request)
        except ContainerError as exc:
            status, payload = exc.status, exc.to_json()
        except Exception as exc:  # a bug must not kill the connection thread silently
            self.server.on_error(exc)
            status, payload = 500, {"error": "internal", "message": f"internal error: {exc}"}
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _handle


class UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        path: Path,
        router: Router,
        *,
        mode: int = 0o660,
        allowed_gid: int | None = None,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.socket_path = path
        self.router = router
        self.allowed_gid = allowed_gid
        self._on_error = on_error
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        super().__init__(str(tmp), _RequestHandler)
        os.chmod(tmp, mode)
        if allowed_gid is not None:
            os.chown(tmp, 0, allowed_gid)
        # Rename into place: a client never sees a socket that is not yet listening.
        os.replace(tmp, path)

    def server_activate(self) -> None:
        self.socket.listen(128)

    def authorize(self, uid: int, gid: int) -> None:
        if uid == 0 or uid == os.getuid():
            return
        if self.allowed_gid is not None and gid == self.allowed_gid:
            return
        raise PermissionDenied("permission denied: only root or the container group may use this")

    def on_error(self, exc: BaseException) -> None:
        if self._on_error:
            self._on_error(exc)

    def serve_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="http", daemon=True)
        thread.start()
        return thread
