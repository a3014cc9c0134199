"""Raw bytes to a Unix HTTP socket, for tests of what the servers do with bad input."""

from __future__ import annotations

import resource
import socket
from pathlib import Path


def connect(path: Path, timeout: float = 5.0) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # Blocking connect: with a full backlog it waits for the server to accept, as a real
    # client does (with a timeout set, a Unix connect fails with EAGAIN at once).
    sock.connect(str(path))
    sock.settimeout(timeout)
    return sock


def exchange(path: Path, data: bytes, *, shut: bool = False, timeout: float = 5.0) -> bytes:
    """Send `data` (then half-close if `shut`) and read until the server closes.

    An AssertionError if the server neither answers-and-closes nor closes in `timeout`:
    a malformed message must never leave a connection hanging."""
    sock = connect(path, timeout)
    try:
        try:
            sock.sendall(data)
            if shut:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server refused early (e.g. 413 before the body): read its answer
        out = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            except TimeoutError:
                raise AssertionError(f"no answer and not closed: {data[:80]!r}") from None
            if not chunk:
                break
            out += chunk
        return out
    finally:
        sock.close()


def status_of(reply: bytes) -> int | None:
    """The status code of the first reply, None if the server closed without one."""
    if not reply:
        return None
    return int(reply.split(b" ", 2)[1])


def raise_fd_limit(wanted: int) -> None:
    """Let this test process hold `wanted` sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(hard, wanted)))


def threads_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError(f"no Threads: line for pid {pid}")
