"""The client half of HTTP/1.1 + JSON over Unix sockets, used by the CLI and daemons.

Hand-written on purpose: http.client pulls in the email package (~35 ms of
imports), and `container` must start in well under 80 ms.  Messages are framed and
checked by httpwire, the same parser the servers use.  When the server goes away
mid-request the error says so, and whether the operation may have happened.
"""

from __future__ import annotations

import json
import socket
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pathlib costs ~7 ms to import; the CLI only needs a string
    from pathlib import Path

from .errors import Interrupted, InvalidArgument, PermissionDenied, Unavailable
from .errors import from_json as error_from_json
from .httpwire import HttpError, encode_request, head_end, parse_response_head

_SAFE = frozenset("-._~abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_REPLY_HEAD = 64 * 1024
SAFE_METHODS = ("GET", "HEAD")


def quote(segment: str) -> str:
    """Percent-encode one URL path segment: a name can never add a segment, a query or
    a second request line."""
    return "".join(c if c in _SAFE else "".join(f"%{b:02X}" for b in c.encode()) for c in segment)


def _encode_loose(path: str) -> str:
    """Percent-encode spaces and non-ASCII left in a path (a name put in unquoted);
    control characters are left for encode_request to refuse: they are never a name."""
    if path.isascii() and " " not in path:
        return path
    return "".join(
        "".join(f"%{b:02X}" for b in c.encode()) if c == " " or not c.isascii() else c for c in path
    )


class _Gone(Exception):
    """The connection ended before a whole reply; `received` says if any of it came."""

    def __init__(self, reason: str, received: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.received = received


class UnixClient:
    """A keep-alive JSON client; not thread-safe (use one per thread)."""

    def __init__(
        self, path: Path | str, timeout: float = 60.0, what: str = "the API server"
    ) -> None:
        self.path = path
        self.timeout = timeout
        self.what = what
        self._sock: socket.socket | None = None
        self._buffer = bytearray()
        self._used = 0.0  # when the kept-alive connection last carried a reply

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._buffer = bytearray()

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        deadline = time.monotonic() + min(self.timeout, 10.0)
        try:
            while True:
                try:
                    sock.connect(str(self.path))
                    break
                except BlockingIOError:
                    # The backlog is full (a Unix connect with a timeout does not wait
                    # for room): the server is busy accepting, try again shortly.
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.005)
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
        except BlockingIOError:
            sock.close()
            raise Unavailable(
                f"{self.what} at {self.path} is too busy to accept a connection; retry"
            ) from None
        except OSError as exc:
            sock.close()
            raise Unavailable(f"cannot reach {self.what} at {self.path}: {exc}") from None
        return sock

    def _reusable(self, sock: socket.socket) -> bool:
        """A kept-alive connection the server has not closed (idle timeout) meanwhile."""
        try:
            sock.setblocking(False)
            sock.recv(1, socket.MSG_PEEK)
            return False  # closed (b"") or stray bytes: either way, not for a new request
        except BlockingIOError:
            return True  # nothing to read: still open
        except OSError:
            return False
        finally:
            sock.settimeout(self.timeout)

    def _recv_into_buffer(self, sock: socket.socket) -> None:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError) as exc:
            raise _Gone(exc.strerror or "connection reset", bool(self._buffer)) from None
        if not chunk:
            raise _Gone("connection closed", bool(self._buffer))
        self._buffer += chunk

    def _read_reply(self, sock: socket.socket) -> tuple[int, bytes, bool]:
        while not (end := head_end(self._buffer, _REPLY_HEAD)):
            self._recv_into_buffer(sock)
        head = parse_response_head(self._buffer[:end])
        while len(self._buffer) < end + head.length:
            self._recv_into_buffer(sock)
        body = bytes(self._buffer[end : end + head.length])
        self._buffer = self._buffer[end + head.length :]
        return head.status, body, not head.keep_alive

    def _exchange(self, method: str, message: bytes, retry_stale: bool) -> tuple[int, bytes]:
        sock = self._sock
        # Servers close kept-alive connections only after a long idle time (or when full,
        # or stopping): one used just now needs no check (three syscalls).
        reused = sock is not None and (time.monotonic() - self._used < 1.0 or self._reusable(sock))
        if sock is None or not reused:
            self.close()
            sock = self._sock = self._connect()
        delivered = True
        try:
            sock.sendall(message)
        except (BrokenPipeError, ConnectionResetError):
            # The server closed before taking it all (so no handler ran: ours dispatch
            # only whole requests); maybe it answered first (413): read that.
            delivered = False
        try:
            status, body, close = self._read_reply(sock)
        except _Gone as gone:
            self.close()
            if reused and not gone.received and (retry_stale or not delivered):
                raise _StaleConnection() from None
            if not delivered and not gone.received:
                raise Unavailable(
                    f"{self.what} closed the connection before the request was sent; "
                    "nothing was done: retry once it is back (`container system status`)"
                ) from None
            raise
        if close:
            self.close()
        self._used = time.monotonic()
        return status, body

    def request(
        self, method: str, path: str, body: Any = None, *, idempotent: bool | None = None
    ) -> Any:
        """One call; raises the ContainerError the server sent, or Unavailable (never
        reached), Interrupted (went away before the reply) or InvalidArgument (a path
        with characters that cannot go on a request line)."""
        data = None if body is None else json.dumps(body).encode()
        try:
            message = encode_request(method, _encode_loose(path), data)
        except ValueError as exc:
            raise InvalidArgument(f"refusing to send the request: {exc}") from None
        if idempotent is None:
            idempotent = method in ("GET", "HEAD", "PUT", "DELETE")
        try:
            try:
                status, raw = self._exchange(method, message, idempotent)
            except _StaleConnection:
                # A kept-alive connection closed under us before any reply: for an
                # idempotent call that is safe to send again on a fresh one.
                status, raw = self._exchange(method, message, False)
        except _Gone as gone:
            raise self._interrupted(method, path, gone.reason) from None
        except TimeoutError:
            self.close()
            raise self._interrupted(
                method, path, f"no reply in {self.timeout:.0f} s", timeout=True
            ) from None
        except HttpError as exc:
            self.close()
            raise Unavailable(f"{self.what} sent a malformed reply: {exc.message}") from None
        except OSError as exc:
            self.close()
            raise self._interrupted(method, path, exc.strerror or str(exc)) from None
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = None
        if status >= 400:
            raise error_from_json(payload, status)
        return payload

    def _interrupted(
        self, method: str, path: str, reason: str, timeout: bool = False
    ) -> Interrupted:
        what = self.what
        happened = (
            f"{what} did not answer {method} {path} ({reason})"
            if timeout
            else f"{what} went away during the request {method} {path} ({reason})"
        )
        if method in SAFE_METHODS:
            advice = (
                "it changes nothing: retry it once the server is back (`container system status`)"
            )
        else:
            advice = (
                "it may or may not have been carried out: once the server is back "
                "(`container system status`), check with the matching list or inspect "
                "command before retrying"
            )
        return Interrupted(f"{happened}; {advice}")


class _StaleConnection(Exception):
    pass
