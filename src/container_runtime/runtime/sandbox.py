"""Container sandboxes: the network namespace a container runs in.

The runtime makes it, not a network plugin (as with CNI and netavark): the API server
creates it before the attachments, hands its path to each plugin in the attach request
(`netns`), and deletes it after they are released.  So `--network none` (loopback only)
needs no helper.  A sandbox is `sb-<first 32 hex digits of the id>` under the run dir's
netns/, made a shared mount like `ip netns add` does for /run/netns.
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct
import threading
from pathlib import Path

from ..dataplane import nsutil
from ..errors import InvalidArgument

PREFIX = "sb-"
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_IFREQ = "16sH14x"  # struct ifreq: the name, then ifr_flags


def _loopback_up() -> None:
    """Set `lo` up in the calling thread's (new) namespace: one ioctl, no netlink library."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        raw = fcntl.ioctl(sock, _SIOCGIFFLAGS, struct.pack(_IFREQ, b"lo", 0))
        flags = struct.unpack(_IFREQ, raw)[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack(_IFREQ, b"lo", flags | _IFF_UP))


class Sandboxes:
    def __init__(self, netns_dir: Path) -> None:
        self.netns_dir = Path(netns_dir)
        self._lock = threading.Lock()
        self._shared_dir_done = False

    def path(self, owner: str) -> Path:
        return self.netns_dir / f"{PREFIX}{owner[:32]}"

    def exists(self, owner: str) -> bool:
        try:
            fd = nsutil.open_netns(str(self.path(owner)), self.netns_dir)
        except InvalidArgument:
            return False
        os.close(fd)
        return True

    def create(self, owner: str) -> str:
        """The owner's sandbox path, made (loopback up) if it does not exist; idempotent."""
        path = self.path(owner)
        with self._lock:
            if self.exists(owner):
                return str(path)
            if not self._shared_dir_done:
                nsutil.make_shared_dir(self.netns_dir)
                self._shared_dir_done = True
            if path.exists():
                path.unlink()  # a stale file left by a crash, not a mounted namespace
            nsutil.create_named_netns(path, _loopback_up)
        return str(path)

    def delete(self, owner: str) -> None:
        """Unmount and remove the owner's sandbox (idempotent)."""
        nsutil.delete_named_netns(self.path(owner))

    def names(self) -> list[str]:
        """The sandboxes present (their file names), for reconciliation."""
        try:
            return sorted(p.name for p in self.netns_dir.iterdir() if p.name.startswith(PREFIX))
        except FileNotFoundError:
            return []

    def delete_named(self, name: str) -> None:
        if not name.startswith(PREFIX) or "/" in name:
            raise InvalidArgument(f"not a sandbox: {name!r}")
        nsutil.delete_named_netns(self.netns_dir / name)
