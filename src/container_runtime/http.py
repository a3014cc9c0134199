"""The server half of HTTP/1.1 + JSON over Unix sockets (API server and helpers).

A small keep-alive HTTP/1.1 loop and a router of JSON handlers; the client half is
`client.py`, kept apart so the CLI does not import http.server.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import socket
import socketserver
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

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


_REASONS = {
    200: "OK",
    201: "Created",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    500: "Internal Server Error",
    503: "Service Unavailable",
    507: "Insufficient Storage",
}
MAX_HEADER_LINES = 64


class _RequestHandler(socketserver.StreamRequestHandler):
    """A keep-alive HTTP/1.1 loop over one connection.

    Hand-written rather than http.server's handler: that one parses headers with the
    email package, which was the largest cost of a small request on the hot path.
    Bodies must come with Content-Length (our clients always send it).
    """

    server: UnixHTTPServer

    def handle(self) -> None:
        try:
            pid, uid, gid = _peer_credentials(self.connection)
        except OSError:
            return
        while True:
            line = self.rfile.readline(8192)
            if not line or not line.strip():
                return
            try:
                method, target, _version = line.decode("latin-1").split()
            except ValueError:
                return
            length = 0
            close = False
            for _ in range(MAX_HEADER_LINES):
                header = self.rfile.readline(8192)
                if header in (b"\r\n", b"\n", b""):
                    break
                name, _, value = header.decode("latin-1").partition(":")
                key = name.strip().lower()
                if key == "content-length":
                    length = int(value.strip() or 0)
                elif key == "connection" and value.strip().lower() == "close":
                    close = True
            else:
                return
            status, payload = self._respond(method, target, length, pid, uid, gid)
            data = b"" if payload is None else json.dumps(payload).encode()
            head = (
                f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
            )
            self.wfile.write(head.encode() + data)
            if close or status == 413:
                return

    def _respond(
        self, method: str, target: str, length: int, pid: int, uid: int, gid: int
    ) -> tuple[int, Any]:
        if length > MAX_BODY:
            self.rfile.read(min(length, MAX_BODY * 4))
            return 413, {"error": "invalid_argument", "message": "request body too large"}
        raw = self.rfile.read(length) if length else b""
        return _dispatch(self.server, method, target, raw, pid, uid, gid)


def _dispatch(
    server: _Access,
    method: str,
    target: str,
    raw: bytes,
    pid: int,
    uid: int,
    gid: int,
) -> tuple[int, Any]:
    """Authorise, decode, route and turn errors into their JSON form."""
    try:
        server.authorize(uid, gid)
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            raise InvalidArgument("request body is not valid JSON") from None
        path, _, query = target.partition("?")
        request = Request(
            method=method,
            path=path,
            params={},
            query=parse_qs(query),
            body=body,
            peer_uid=uid,
            peer_pid=pid,
        )
        return server.router.dispatch(request)
    except ContainerError as exc:
        return exc.status, exc.to_json()
    except Exception as exc:  # a bug must not kill the serving thread silently
        server.on_error(exc)
        return 500, {"error": "internal", "message": f"internal error: {exc}"}


def _temporary_path(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    return tmp


def _publish(tmp: Path, path: Path, mode: int, gid: int | None) -> None:
    """Set the listening socket's access, then rename it into place: a client never sees
    a socket that is not listening yet, or one with the wrong permissions."""
    os.chmod(tmp, mode)
    if gid is not None:
        os.chown(tmp, 0, gid)
    os.replace(tmp, path)


class _Access:
    """Who may call, and where internal errors go (shared by both servers)."""

    allowed_gid: int | None
    _on_error: Callable[[BaseException], None] | None
    router: Router
    socket_path: Path

    def _setup_access(
        self,
        path: Path,
        router: Router,
        allowed_gid: int | None,
        on_error: Callable[[BaseException], None] | None,
    ) -> None:
        self.socket_path = path
        self.router = router
        self.allowed_gid = allowed_gid
        self._on_error = on_error

    def authorize(self, uid: int, gid: int) -> None:
        if uid == 0 or uid == os.getuid():
            return
        if self.allowed_gid is not None and gid == self.allowed_gid:
            return
        raise PermissionDenied("permission denied: only root or the container group may use this")

    def on_error(self, exc: BaseException) -> None:
        if self._on_error:
            self._on_error(exc)


class UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer, _Access):
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
        self._setup_access(path, router, allowed_gid, on_error)
        tmp = _temporary_path(path)
        super().__init__(str(tmp), _RequestHandler)  # binds and listens
        _publish(tmp, path, mode, allowed_gid)

    def server_activate(self) -> None:
        self.socket.listen(128)

    def serve_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="http", daemon=True)
        thread.start()
        return thread


class _Connection:
    __slots__ = ("sock", "buffer", "pid", "uid", "gid")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.pid, self.uid, self.gid = _peer_credentials(sock)


class SelectorHTTPServer(_Access):
    """The same protocol as UnixHTTPServer, served by one thread with a selector.

    For the network helper: its requests are short and serialised by the database
    anyway, and a thread per connection made concurrent clients pay for GIL hand-offs
    at every SQLite call (measured: 1,450 allocations/s with threads).
    """

    def __init__(
        self,
        path: Path,
        router: Router,
        *,
        mode: int = 0o600,
        allowed_gid: int | None = None,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._setup_access(path, router, allowed_gid, on_error)
        self._stop = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        tmp = _temporary_path(path)
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.socket.bind(str(tmp))
        self.socket.listen(128)
        _publish(tmp, path, mode, allowed_gid)
        self.socket.setblocking(False)

    def shutdown(self) -> None:
        self._stop.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def server_close(self) -> None:
        self.socket.close()
        self._wake_r.close()
        self._wake_w.close()

    def serve_forever(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self.socket, selectors.EVENT_READ, None)
        selector.register(self._wake_r, selectors.EVENT_READ, None)
        try:
            while not self._stop.is_set():
                for key, _ in selector.select():
                    if key.fileobj is self.socket:
                        self._accept(selector)
                    elif key.fileobj is self._wake_r:
                        continue
                    else:
                        self._readable(selector, key.data)
        finally:
            for key in list(selector.get_map().values()):
                if isinstance(key.data, _Connection):
                    key.data.sock.close()
            selector.close()

    def _accept(self, selector: selectors.BaseSelector) -> None:
        try:
            sock, _ = self.socket.accept()
        except BlockingIOError:
            return
        try:
            conn = _Connection(sock)
        except OSError:
            sock.close()
            return
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, conn)

    def _readable(self, selector: selectors.BaseSelector, conn: _Connection) -> None:
        try:
            chunk = conn.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            selector.unregister(conn.sock)
            conn.sock.close()
            return
        conn.buffer += chunk
        while True:
            head_end = conn.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                if len(conn.buffer) > 65536:
                    selector.unregister(conn.sock)
                    conn.sock.close()
                return
            lines = conn.buffer[:head_end].decode("latin-1").split("\r\n")
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip() or 0)
            if length > MAX_BODY:
                selector.unregister(conn.sock)
                conn.sock.close()
                return
            end = head_end + 4 + length
            if len(conn.buffer) < end:
                return
            raw = conn.buffer[head_end + 4 : end]
            conn.buffer = conn.buffer[end:]
            try:
                method, target, _version = lines[0].split()
            except ValueError:
                selector.unregister(conn.sock)
                conn.sock.close()
                return
            status, payload = _dispatch(self, method, target, raw, conn.pid, conn.uid, conn.gid)
            data = b"" if payload is None else json.dumps(payload).encode()
            head = (
                f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
            )
            try:
                conn.sock.setblocking(True)  # replies are small: send them whole
                conn.sock.sendall(head.encode() + data)
                conn.sock.setblocking(False)
            except OSError:
                selector.unregister(conn.sock)
                conn.sock.close()
                return
