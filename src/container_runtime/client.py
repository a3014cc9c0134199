"""The client half of HTTP/1.1 + JSON over Unix sockets, used by the CLI and daemons.

Hand-written on purpose: http.client pulls in the email package (~35 ms of
imports), and `container` must start in well under 80 ms.  It speaks only what our
servers send: a status line, headers and a body of Content-Length bytes.
"""

from __future__ import annotations

import json
import socket
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pathlib costs ~7 ms to import; the CLI only needs a string
    from pathlib import Path

from .errors import PermissionDenied, Unavailable
from .errors import from_json as error_from_json


class UnixClient:
    """A keep-alive JSON client; not thread-safe (use one per thread)."""

    def __init__(
        self, path: Path | str, timeout: float = 60.0, what: str = "container system"
    ) -> None:
        self.path = path
        self.timeout = timeout
        self.what = what
        self._sock: socket.socket | None = None
        self._buffer = b""

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._buffer = b""

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.path))
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            raise Unavailable(
                f"{self.what} is not running (no server at {self.path}); "
                "start it with `container system start`"
            ) from None
        except PermissionError:
            sock.close()
            raise PermissionDenied(
                f"permission denied on {self.path}: only root or members of the "
                "container group may use the container system"
            ) from None
        except OSError as exc:
            sock.close()
            raise Unavailable(f"cannot reach {self.what} at {self.path}: {exc}") from None
        return sock

    def _read_until(self, sock: socket.socket, marker: bytes) -> bytes:
        while marker not in self._buffer:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionResetError("connection closed")
            self._buffer += chunk
        head, _, self._buffer = self._buffer.partition(marker)
        return head

    def _read_exact(self, sock: socket.socket, size: int) -> bytes:
        while len(self._buffer) < size:
            chunk = sock.recv(max(65536, size - len(self._buffer)))
            if not chunk:
                raise ConnectionResetError("connection closed")
            self._buffer += chunk
        body, self._buffer = self._buffer[:size], self._buffer[size:]
        return body

    def _exchange(self, method: str, path: str, data: bytes | None) -> tuple[int, bytes]:
        reused = self._sock is not None
        if self._sock is None:
            self._sock = self._connect()
        sock = self._sock
        head = f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n"
        if data is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
        else:
            head += "Content-Length: 0\r\n"
        try:
            sock.sendall(head.encode() + b"\r\n" + (data or b""))
            header = self._read_until(sock, b"\r\n\r\n").decode("latin-1")
        except (ConnectionResetError, BrokenPipeError) as exc:
            self.close()
            # The server closed a kept-alive connection before reading it: the request
            # never reached a handler, so it is safe to say so and let the caller retry.
            raise _StaleConnection() if reused else Unavailable(f"{self.what}: {exc}") from None
        lines = header.split("\r\n")
        status = int(lines[0].split()[1])
        length = 0
        close = False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "connection" and value.strip().lower() == "close":
                close = True
        body = self._read_exact(sock, length)
        if close:
            self.close()
        return status, body

    def request(
        self, method: str, path: str, body: Any = None, *, idempotent: bool | None = None
    ) -> Any:
        data = None if body is None else json.dumps(body).encode()
        try:
            try:
                status, raw = self._exchange(method, path, data)
            except _StaleConnection:
                status, raw = self._exchange(method, path, data)
        except TimeoutError:
            self.close()
            raise Unavailable(f"{self.what} did not answer in {self.timeout:.0f} s") from None
        except (OSError, ValueError, IndexError) as exc:
            self.close()
            raise Unavailable(f"{self.what} closed the connection ({exc})") from None
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = None
        if status >= 400:
            raise error_from_json(payload, status)
        return payload


class _StaleConnection(Exception):
    pass
