"""`run -i/-t`: relay the terminal to a container through conmon's attach socket.

The API server creates the container (runc create) without letting it run and hands
back the paths of conmon's attach socket and control FIFO; this module connects to the
socket first, then asks the server to start the process, so not a byte of output is
missed.  Packets from conmon are one byte (2 stdout, 3 stderr) + data; what we send is
the container's stdin.  With -t the local terminal is put in raw mode and its size goes
to conmon's control FIFO at start and on every SIGWINCH.  The exit status comes from the
API once conmon closes the socket (the process has exited).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import socket
import struct
import sys
import termios
import time
import tty as tty_mod
from collections.abc import Iterator
from typing import Any

from ..client import UnixClient
from ..errors import ContainerError
from .api import quote

STDOUT, STDERR = 2, 3


def connect(path: str) -> socket.socket:
    """Connect to a SOCK_SEQPACKET socket whose path may exceed sun_path's 108 bytes."""
    directory, name = os.path.split(path)
    fd = os.open(directory, os.O_PATH | os.O_DIRECTORY)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        sock.connect(f"/proc/self/fd/{fd}/{name}")
    except OSError as exc:
        sock.close()
        raise ContainerError(f"cannot attach to the container: {exc.strerror}") from None
    finally:
        os.close(fd)
    return sock


def _send_size(control: str) -> None:
    try:
        rows, cols, _, _ = struct.unpack(
            "HHHH", fcntl.ioctl(sys.stdin.fileno(), termios.TIOCGWINSZ, b"\0" * 8)
        )
        fd = os.open(control, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return
    try:
        os.write(fd, f"1 {rows} {cols}\n".encode())
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def _raw_terminal(enabled: bool) -> Iterator[None]:
    if not enabled:
        yield
        return
    saved = termios.tcgetattr(0)
    tty_mod.setraw(0)
    try:
        yield
    finally:
        termios.tcsetattr(0, termios.TCSADRAIN, saved)


def _relay(sock: socket.socket, interactive: bool, tty: bool) -> None:
    reading = interactive
    while True:
        fds: list[Any] = [sock] + ([0] if reading else [])
        try:
            ready = select.select(fds, [], [])[0]
        except InterruptedError:
            continue
        if sock in ready:
            packet = sock.recv(65536)
            if not packet:
                return  # the container exited: conmon closed the socket
            out = 2 if packet[0] == STDERR else 1
            data = memoryview(packet)[1:]
            while data:
                data = data[os.write(out, data) :]
        if reading and 0 in ready:
            chunk = os.read(0, 8192)
            if chunk:
                sock.sendall(chunk)
            else:
                reading = False
                if not tty:  # EOF on a pipe: close the container's stdin too
                    sock.shutdown(socket.SHUT_WR)


def run_attached(client: UnixClient, created: dict[str, Any], interactive: bool, tty: bool) -> int:
    cid = created["id"]
    try:
        sock = connect(created["attach"]["socket"])
    except ContainerError:  # the run failed before the process ran: leave nothing
        client.request("DELETE", f"/v1/containers/{quote(cid)}?force=1")
        raise
    control = created["attach"]["control"]
    local_tty = tty and os.isatty(0)
    try:
        client.request("POST", f"/v1/containers/{quote(cid)}/start", {})
        if local_tty:
            _send_size(control)
            signal.signal(signal.SIGWINCH, lambda *_: _send_size(control))
            for sig in (signal.SIGTERM, signal.SIGHUP):  # restore the terminal first
                signal.signal(sig, lambda number, _: sys.exit(128 + number))
        with _raw_terminal(local_tty):
            _relay(sock, interactive, tty)
    finally:
        sock.close()
        if local_tty:
            signal.signal(signal.SIGWINCH, signal.SIG_DFL)
    return wait_exit(client, cid)


def wait_exit(client: UnixClient, cid: str, timeout: float = 120.0) -> int:
    """The exit status once the API has recorded the exit (its watcher polls)."""
    deadline = time.monotonic() + timeout
    while True:
        info = client.request("GET", f"/v1/containers/{quote(cid)}")
        if info["state"] != "running":
            code = info.get("exitCode")
            if code is None:
                raise ContainerError(f"the exit status of container {info['name']} is unknown")
            return int(code)
        if time.monotonic() >= deadline:
            raise ContainerError(f"container {info['name']} did not stop")
        time.sleep(0.05)
