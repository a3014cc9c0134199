"""The DNS server's control socket: `$CONTAINER_RUN_DIR/dns.ctl` and `notify_dns()`.

Writers of the state database call `notify_dns(run_dir)` right after a committed change
to attachments or networks; the server re-reads the database and acknowledges, so once
`notify_dns` returns the change is visible to queries.  Standard library only, so the
API server can import it without pulling in the DNS server.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from pathlib import Path

CONTROL_SOCKET = "dns.ctl"
RELOAD = b"reload"
ACK_PREFIX = b"ok"

log = logging.getLogger(__name__)


def control_path(run_dir: Path) -> Path:
    return Path(run_dir) / CONTROL_SOCKET


def notify_dns(run_dir: Path, timeout: float = 0.2) -> bool:
    """Ask the DNS server to reload now and wait (bounded) for its acknowledgement.

    Returns True when the server acknowledged (the change is visible), False when it is
    not running or did not answer in time.  Never raises.
    """
    path = str(control_path(run_dir))
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    except OSError:
        return False
    try:
        _bind_reply_address(sock, Path(run_dir))
        sock.settimeout(timeout)
        sock.sendto(RELOAD, path)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            sock.settimeout(remaining)
            reply = sock.recv(64)
            if reply.startswith(ACK_PREFIX):
                return True
    except OSError as exc:  # not running (ENOENT/ECONNREFUSED), timeout, anything
        log.debug("notify_dns: %s", exc)
        return False
    finally:
        name = sock.getsockname() if sock.fileno() >= 0 else None
        sock.close()
        if isinstance(name, str) and name:
            try:
                os.unlink(name)
            except OSError:
                pass


def _bind_reply_address(sock: socket.socket, run_dir: Path) -> None:
    """Bind to a path in run_dir (works across network namespaces, unlike abstract
    addresses); fall back to Linux autobind when the path cannot be used."""
    path = run_dir / f".dns-notify-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        if len(str(path)) < 100:
            sock.bind(str(path))
            return
    except OSError:
        pass
    sock.bind("")
