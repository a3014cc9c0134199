"""The server half of HTTP/1.1 + JSON over Unix sockets (API server and helpers).

One selector thread owns every connection: it accepts, reads, parses (httpwire),
writes without blocking and times out idle, slow and non-reading clients, so no
client can stop it or make it wait.  Handlers run in that thread (`workers=0`, the
network helper: short requests serialised by the database anyway) or in a bounded
pool of worker threads (the API server, whose handlers may block for long: a
container run, an image pull).  The client half is `client.py`.
"""

from __future__ import annotations

import errno
import functools
import json
import select
import selectors
import socket
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .httproute import Handler, Request, Router, dispatch
from .httpsupport import WorkerPool, listen, raise_fd_limit
from .httpwire import (
    MAX_BODY,
    MAX_HEAD,
    Head,
    HttpError,
    encode_response,
    head_end,
    parse_request_head,
)
from .peercred import Peer

__all__ = ["Handler", "Limits", "Request", "Router", "SelectorHTTPServer"]


@dataclass(frozen=True)
class Limits:
    max_connections: int = 1024  # past it the least recently active connection is closed
    idle_timeout: float = 60.0  # a kept-alive connection with no request in progress
    request_timeout: float = 10.0  # from a request's first byte to its last
    write_timeout: float = 10.0  # a reply the client does not take
    max_head: int = MAX_HEAD
    max_body: int = MAX_BODY


LINGER = 0.002  # how long a worker waits for a keep-alive client's next request
_READ = selectors.EVENT_READ
_WRITE = selectors.EVENT_WRITE
_INTERNAL = b'{"error": "internal", "message": "internal error"}'
_FULL = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class _Connection:
    __slots__ = (
        "sock",
        "fd",
        "peer",
        "inbuf",
        "scanned",
        "outbuf",
        "busy",
        "dead",
        "close_after",
        "started",
        "last",
        "write_since",
        "events",
    )

    def __init__(self, sock: socket.socket, peer: Peer, now: float) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.peer = peer
        self.inbuf = bytearray()
        self.scanned = 0  # bytes of inbuf searched for the end of a head
        self.outbuf = b""
        self.busy = False  # a worker owns it: the selector thread keeps its hands off
        self.dead = False  # a send failed in a worker
        self.close_after = False  # close once outbuf is drained
        self.started = 0.0  # when the request in inbuf began
        self.last = now
        self.write_since = 0.0
        self.events = 0


class SelectorHTTPServer:
    def __init__(
        self,
        path: Path,
        router: Router,
        *,
        mode: int = 0o600,
        allowed_gid: int | None = None,
        on_error: Callable[[BaseException], None] | None = None,
        workers: int = 0,
        limits: Limits | None = None,
    ) -> None:
        self.socket_path = path
        self.router = router
        self.allowed_gid = allowed_gid
        self._on_error = on_error
        self.limits = limits or Limits()
        # Each connection is one descriptor; keep half the limit for everything else.
        fds = raise_fd_limit(self.limits.max_connections * 2 + 256)
        self.max_connections = max(16, min(self.limits.max_connections, (fds - 128) // 2))
        self._pool = WorkerPool(workers) if workers > 0 else None
        self._done: deque[_Connection] = deque()
        self._conns: OrderedDict[int, _Connection] = OrderedDict()  # least recently active first
        self._stop = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._accept_paused_until = 0.0
        self.socket = listen(path, mode, allowed_gid)

    # -- life cycle -------------------------------------------------------------------

    def serve_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="http", daemon=True)
        thread.start()
        return thread

    def shutdown(self) -> None:
        self._stop.set()
        self._wake()

    def server_close(self) -> None:
        self.socket.close()
        self._wake_r.close()
        self._wake_w.close()

    def connections(self) -> int:
        return len(self._conns)

    def serve_forever(self) -> None:
        sel = self._selector
        sel.register(self.socket, _READ, None)
        sel.register(self._wake_r, _READ, self._wake_r)
        next_sweep = 0.0
        tick = min(1.0, self.limits.request_timeout / 4, self.limits.idle_timeout / 4)
        try:
            while not self._stop.is_set():
                for key, mask in sel.select(timeout=tick):
                    data = key.data
                    if data is None:
                        self._accept()
                    elif data is self._wake_r:
                        self._drain_wake()
                    else:
                        if mask & _WRITE:
                            self._flush(data)
                        if mask & _READ and data.events & _READ:
                            self._read(data)
                now = time.monotonic()
                if self._accept_paused_until and now >= self._accept_paused_until:
                    self._accept_paused_until = 0.0
                    sel.register(self.socket, _READ, None)
                if now >= next_sweep:
                    next_sweep = now + tick
                    self._sweep(now)
        finally:
            for conn in list(self._conns.values()):
                self._close(conn, force=True)
            sel.close()

    # -- selector-thread parts ----------------------------------------------------------

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:  # full (a wake-up is pending anyway) or closed
            pass

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass
        while self._done:
            conn = self._done.popleft()
            conn.busy = False
            conn.last = time.monotonic()
            if conn.dead:
                self._close(conn)
                continue
            if conn.outbuf:
                conn.write_since = conn.last
            self._process(conn)

    def _accept(self) -> None:
        for _ in range(64):  # a burst, then let the others be served
            try:
                sock, _ = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _FULL and not self._evict():
                    # Out of descriptors and nothing to give back: stop accepting briefly
                    # rather than spin on a listening socket that stays readable.
                    self._selector.unregister(self.socket)
                    self._accept_paused_until = time.monotonic() + 0.1
                    return
                continue
            if len(self._conns) >= self.max_connections:
                self._evict()
            try:
                peer = Peer.of(sock)
                sock.setblocking(False)
            except OSError:
                sock.close()
                continue
            conn = _Connection(sock, peer, time.monotonic())
            self._conns[conn.fd] = conn
            self._update(conn)

    def _evict(self) -> bool:
        """Close the least recently active connection no worker is serving."""
        for conn in self._conns.values():
            if not conn.busy:
                self._close(conn)
                return True
        return False

    def _close(self, conn: _Connection, force: bool = False) -> None:
        if conn.busy and not force:
            return
        if conn.events:
            try:
                self._selector.unregister(conn.sock)
            except (KeyError, ValueError):
                pass
            conn.events = 0
        self._conns.pop(conn.fd, None)
        conn.sock.close()
        conn.busy = False
        conn.dead = True

    def _update(self, conn: _Connection) -> None:
        """Register interest in what the connection's state calls for; close it when done."""
        if conn.dead:
            return
        if conn.busy:
            events = 0
        elif conn.outbuf:
            events = _WRITE  # no reading (nor new requests) until the reply is taken
        elif conn.close_after:
            self._close(conn)
            return
        else:
            events = _READ
        if events == conn.events:
            return
        if conn.events and events:
            self._selector.modify(conn.sock, events, conn)
        elif events:
            self._selector.register(conn.sock, events, conn)
        else:
            self._selector.unregister(conn.sock)
        conn.events = events

    def _read(self, conn: _Connection) -> None:
        try:
            chunk = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            if conn.inbuf:  # best effort: a client that only shut down its side reads it
                self._fail(conn, HttpError(400, "request truncated: connection closed"))
            else:
                self._close(conn)
            return
        now = time.monotonic()
        if not conn.inbuf:
            conn.started = now
        conn.inbuf += chunk
        conn.last = now
        self._conns.move_to_end(conn.fd)
        self._process(conn)

    def _process(self, conn: _Connection) -> None:
        """Serve the complete requests in inbuf, one at a time, in order."""
        while conn.inbuf and not (conn.busy or conn.outbuf or conn.close_after or conn.dead):
            try:
                taken = self._take(conn)
            except HttpError as exc:
                self._fail(conn, exc)
                return
            if taken is None:
                break
            head, body = taken
            close = not head.keep_alive
            if self._pool is not None:
                conn.busy = True
                self._update(conn)
                self._pool.submit(functools.partial(self._work, conn, head, body, close))
                return
            self._send(conn, self._answer(conn, head.method, head.target, body, close), close)
        self._update(conn)

    def _take(self, conn: _Connection) -> tuple[Head, bytes] | None:
        """The next complete request in inbuf, taken out of it; None while incomplete;
        HttpError if it is malformed (left in inbuf).  Called by the connection's owner."""
        end = head_end(conn.inbuf, self.limits.max_head, conn.scanned)
        if not end:
            conn.scanned = len(conn.inbuf)
            return None
        head = parse_request_head(conn.inbuf[:end], self.limits.max_body)
        total = end + head.length
        if len(conn.inbuf) < total:
            return None
        body = bytes(conn.inbuf[end:total])
        conn.inbuf = conn.inbuf[total:]  # a new buffer: a big body's memory goes back
        conn.scanned = 0
        conn.started = time.monotonic()
        return head, body

    def _send(self, conn: _Connection, data: bytes, close: bool) -> None:
        sent = _send_some(conn.sock, data)
        if sent < 0:
            self._close(conn)
            return
        conn.outbuf = data[sent:]
        if conn.outbuf:
            conn.write_since = time.monotonic()
        conn.close_after = conn.close_after or close

    def _flush(self, conn: _Connection) -> None:
        if conn.dead or conn.busy or not conn.outbuf:
            return
        sent = _send_some(conn.sock, conn.outbuf)
        if sent < 0:
            self._close(conn)
            return
        conn.outbuf = conn.outbuf[sent:]
        conn.last = conn.write_since = time.monotonic()
        self._process(conn)

    def _fail(self, conn: _Connection, exc: HttpError) -> None:
        """Answer a message we cannot serve, then close: its framing cannot be trusted."""
        conn.inbuf = bytearray()
        conn.scanned = 0
        body = json.dumps({"error": "invalid_argument", "message": exc.message}).encode()
        self._send(conn, encode_response(exc.status, body, close=True), True)
        self._update(conn)

    def _sweep(self, now: float) -> None:
        limits = self.limits
        for conn in list(self._conns.values()):
            if conn.busy:
                continue
            if conn.outbuf:
                if now - conn.write_since > limits.write_timeout:
                    self._close(conn)  # it does not read its replies
            elif conn.inbuf:
                if now - conn.started > limits.request_timeout:
                    self._fail(conn, HttpError(408, "request not completed in time"))
            elif now - conn.last > limits.idle_timeout:
                self._close(conn)

    # -- both threads --------------------------------------------------------------------

    def _answer(
        self, conn: _Connection, method: str, target: str, body: bytes, close: bool
    ) -> bytes:
        status, payload = dispatch(
            self.router, self.allowed_gid, self.on_error, method, target, body, conn.peer
        )
        try:
            data = b"" if payload is None else json.dumps(payload).encode()
        except (TypeError, ValueError) as exc:
            self.on_error(exc)
            status = 500
            data = json.dumps({"error": "internal", "message": f"internal error: {exc}"}).encode()
        return encode_response(status, data, close)

    def _work(self, conn: _Connection, head: Head, body: bytes, close: bool) -> None:
        """A worker's job: run the handler and send the reply from here, so the client
        has it without waiting for the selector thread.  A client that sends its next
        request at once (a keep-alive loop) is served on by the same worker for up to
        LINGER, as a thread per connection would, sparing two thread hand-offs per call;
        then the connection goes back to the selector."""
        while True:
            try:
                data = self._answer(conn, head.method, head.target, body, close)
            except BaseException as exc:  # never lose a connection to a bug
                self.on_error(exc)
                close = True
                data = encode_response(
                    500, b'{"error":"internal","message":"internal error"}', True
                )
            sent = _send_some(conn.sock, data)
            if sent < 0:
                conn.dead = True
                break
            conn.outbuf = data[sent:]
            conn.close_after = conn.close_after or close
            if conn.outbuf or conn.close_after:
                break
            taken = self._linger(conn)
            if taken is None:
                break
            head, body = taken
            close = not head.keep_alive
        self._done.append(conn)
        self._wake()

    def _linger(self, conn: _Connection) -> tuple[Head, bytes] | None:
        deadline = time.monotonic() + LINGER
        poller = select.poll()
        poller.register(conn.fd, select.POLLIN)
        while True:
            try:
                taken = self._take(conn)
            except HttpError:
                return None  # the selector thread answers it
            if taken is not None:
                return taken
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not poller.poll(remaining * 1000):
                return None
            try:
                chunk = conn.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                return None
            if not chunk:
                return None  # EOF stays readable: the selector thread sees it too
            if not conn.inbuf:
                conn.started = time.monotonic()
            conn.inbuf += chunk
            conn.last = time.monotonic()

    def on_error(self, exc: BaseException) -> None:
        if self._on_error:
            self._on_error(exc)


def _send_some(sock: socket.socket, data: bytes) -> int:
    """Send without blocking; bytes sent, or -1 if the connection is gone."""
    total = 0
    view = memoryview(data)
    try:
        while total < len(data):
            total += sock.send(view[total:])
    except (BlockingIOError, InterruptedError):
        pass
    except OSError:
        return -1
    return total
