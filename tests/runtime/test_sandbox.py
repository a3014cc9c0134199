"""Sandboxes are the runtime's (runtime/sandbox.py): a named network namespace per
container, with loopback up, made and removed without any network plugin."""

from __future__ import annotations

import fcntl
import os
import socket
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from container_runtime.apiserver.recovery import unmount_netns_dir
from container_runtime.dataplane import nsutil
from container_runtime.runtime.sandbox import Sandboxes

OWNER = "cd" * 32


@pytest.fixture
def netns_dir() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="ctr-sandbox-"))
    try:
        yield base / "netns"
    finally:
        unmount_netns_dir(base / "netns")
        subprocess.run(["umount", "-l", str(base / "netns")], capture_output=True)
        subprocess.run(["rm", "-rf", str(base)], check=False)


def loopback_flags(path: str, netns_dir: Path) -> int:
    fd = nsutil.open_netns(path, netns_dir)

    def inside() -> int:
        nsutil.setns(fd)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            raw = fcntl.ioctl(sock, 0x8913, struct.pack("16sH14x", b"lo", 0))  # SIOCGIFFLAGS
        return int(struct.unpack("16sH14x", raw)[1])

    try:
        return nsutil.run_in_new_thread(inside)
    finally:
        os.close(fd)


def test_create_is_idempotent_with_loopback_up_and_delete_removes(netns_dir: Path) -> None:
    boxes = Sandboxes(netns_dir)
    path = boxes.create(OWNER)
    assert path == str(netns_dir / f"sb-{OWNER[:32]}")
    assert boxes.exists(OWNER)
    assert os.stat(path).st_ino != os.stat("/proc/self/ns/net").st_ino  # not our namespace
    assert loopback_flags(path, netns_dir) & 0x1, "lo is up"
    assert boxes.create(OWNER) == path  # the same namespace again, not a new one
    assert boxes.names() == [f"sb-{OWNER[:32]}"]
    boxes.delete(OWNER)
    assert not boxes.exists(OWNER) and not Path(path).exists()
    boxes.delete(OWNER)  # idempotent
    assert boxes.names() == []
