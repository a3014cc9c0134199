"""Helpers for data plane tests. Sandbox: each test body runs in a forked child with its own network
and mount namespaces, so the host's links and firewall are never touched.

The child's namespaces (and every namespace bind-mounted inside its private mount
namespace) die with it; the fixture kills the child's whole process group afterwards, so
nothing survives a failing or hanging test.
"""

from __future__ import annotations

import ipaddress
import os
import select
import signal
import socket
import subprocess
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from container_runtime import syscalls
from container_runtime.dataplane import nsutil
from container_runtime.models import Attachment, NetworkConfiguration, NetworkMode

CLONE_NEWNS = 0x00020000
MS_PRIVATE = 1 << 18
MS_REC = 0x4000
TIMEOUT = 45.0


def _child(fn: Callable[[Path], None], w: int) -> None:
    status = b"OK"
    try:
        os.setsid()
        syscalls.unshare(CLONE_NEWNS | nsutil.CLONE_NEWNET)
        syscalls.mount(None, "/", None, MS_REC | MS_PRIVATE)
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)  # as on a real host
        tmp = tempfile.mkdtemp(prefix="dp-test-")
        # A private tmpfs: the namespaces bind-mounted in it vanish with one lazy unmount.
        syscalls.mount("tmpfs", tmp, "tmpfs", 0)
        try:
            fn(Path(tmp))
        finally:
            syscalls.umount_detach(tmp)
            os.rmdir(tmp)
    except BaseException:  # noqa: BLE001 - reported to the parent
        status = traceback.format_exc().encode()
    try:
        os.write(w, status)
    finally:
        os._exit(0)


def run_sandboxed(fn: Callable[[Path], None]) -> None:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        _child(fn, w)
    os.close(w)
    chunks: list[bytes] = []
    deadline = time.monotonic() + TIMEOUT
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"sandboxed test timed out after {TIMEOUT} s")
            ready, _, _ = select.select([r], [], [], left)
            if ready:
                data = os.read(r, 65536)
                if not data:
                    break
                chunks.append(data)
    finally:
        os.close(r)
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)
    result = b"".join(chunks).decode(errors="replace")
    if result != "OK":
        pytest.fail("sandboxed test failed:\n" + (result or "child died without a report"))


# ------------------------------------------------------------------ helpers used in the child


@contextmanager
def in_ns(path: str) -> Iterator[None]:
    home = nsutil.current_netns_fd()
    fd = os.open(path, os.O_RDONLY)
    try:
        with nsutil.entered(fd, home):
            yield
    finally:
        os.close(fd)
        os.close(home)


def ns_socket(path: str | None, kind: int = socket.SOCK_STREAM) -> socket.socket:
    """A socket in namespace path (None: the sandbox's 'host' namespace)."""
    if path is None:
        return socket.socket(socket.AF_INET, kind)
    with in_ns(path):
        return socket.socket(socket.AF_INET, kind)


class PeerServer:
    """TCP server in a namespace that answers each connection with the peer's address."""

    def __init__(self, path: str | None, addr: str = "0.0.0.0", port: int = 8000) -> None:
        self.sock = ns_socket(path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((addr, port))
        self.sock.listen(16)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, peer = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.sendall(peer[0].encode())

    def close(self) -> None:
        self.sock.close()


def _connect(path: str | None, addr: str, port: int, timeout: float) -> str | None:
    sock = ns_socket(path)
    sock.settimeout(timeout)
    try:
        sock.connect((addr, port))
        return sock.recv(100).decode()
    except OSError:
        return None
    finally:
        sock.close()


def tcp_peer(path: str | None, addr: str, port: int = 8000, tries: int = 3) -> str | None:
    """Connect from namespace path; the address the server saw, or None if unreachable.

    Retried: a new port may drop its first frames until the kernel's link watcher has
    marked it up, and a positive check must not fail on that.
    """
    for _ in range(tries):
        seen = _connect(path, addr, port, 0.6)
        if seen is not None:
            return seen
    return None


def unreachable(path: str | None, addr: str, port: int = 8000) -> bool:
    """One 0.6 s attempt; callers first prove that the same path works when allowed."""
    return _connect(path, addr, port, 0.6) is None


def run_in(path: str | None, *cmd: str) -> subprocess.CompletedProcess[str]:
    argv = list(cmd) if path is None else ["nsenter", f"--net={path}", *cmd]
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=10)


def ping(path: str | None, addr: str, *extra: str) -> bool:
    """True at the first reply within 3 s (probes every 0.2 s)."""
    return run_in(path, "ping", "-c1", "-i0.2", "-w3", "-q", *extra, addr).returncode == 0


def no_ping(path: str | None, addr: str, *extra: str) -> bool:
    return run_in(path, "ping", "-c1", "-W1", "-q", *extra, addr).returncode != 0


def net(
    name: str, cidr: str, mode: NetworkMode = NetworkMode.NAT, **kw: Any
) -> NetworkConfiguration:
    subnet = ipaddress.IPv4Network(cidr)
    return NetworkConfiguration(
        name=name, ipv4_subnet=subnet, ipv4_gateway=subnet.network_address + 1, mode=mode, **kw
    )


def member(
    config: NetworkConfiguration,
    n: int,
    owner: str | None = None,
    interface: str = "eth0",
    mac: str | None = None,
    mtu: int = 1500,
) -> Attachment:
    subnet = config.ipv4_subnet
    return Attachment(
        network=config.name,
        owner=owner or f"c{n}",
        hostname=owner or f"c{n}",
        address=ipaddress.IPv4Interface(f"{subnet.network_address + n}/{subnet.prefixlen}"),
        gateway=config.ipv4_gateway,
        mac_address=mac or f"02:42:{subnet.network_address.packed[1]:02x}:00:00:{n:02x}",
        mtu=mtu,
        interface=interface,
    )
