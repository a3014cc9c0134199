"""Who is on the other end of a Unix socket, and whether they may use our servers.

Access to the API socket is equivalent to root (like Docker's socket): its callers
create namespaces, links and firewall rules.  So only root, the servers' own uid and
members of the configured group (primary or supplementary) are let in; the network
helpers' sockets admit root only.
"""

from __future__ import annotations

import errno
import grp
import os
import socket
import struct

from .errors import PermissionDenied

# SO_PEERGROUPS (Linux >= 4.13): the peer's supplementary groups as they were at
# connect() time.  Not every Python exports the constant; 59 on every Linux arch.
SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)
GROUP_ENV = "CONTAINER_GROUP"
DEFAULT_GROUP = "container"


class Peer:
    """Credentials of a connected client, taken when the connection is accepted."""

    __slots__ = ("pid", "uid", "gid", "groups")

    def __init__(self, pid: int, uid: int, gid: int, groups: frozenset[int]) -> None:
        self.pid = pid
        self.uid = uid
        self.gid = gid
        self.groups = groups

    @classmethod
    def of(cls, sock: socket.socket) -> Peer:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, gid = struct.unpack("3i", creds)
        groups: frozenset[int] = frozenset()
        if uid != 0 and uid != os.getuid():  # root needs no group look-up (the hot path)
            groups = peer_groups(sock, pid, uid)
        return cls(pid, uid, gid, groups | {gid})


def peer_groups(sock: socket.socket, pid: int, uid: int) -> frozenset[int]:
    """The peer's supplementary groups: SO_PEERGROUPS, else /proc/PID/status `Groups:`
    (checked to still belong to the same uid, in case the pid was reused)."""
    size = 256
    while size <= 65536:
        try:
            raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, size * 4)
            return frozenset(struct.unpack(f"{len(raw) // 4}I", raw[: len(raw) // 4 * 4]))
        except OSError as exc:
            if exc.errno == errno.ERANGE:
                size *= 16
                continue
            break
    try:
        status = open(f"/proc/{pid}/status").read().splitlines()
    except OSError:
        return frozenset()
    fields = dict(line.split(":", 1) for line in status if ":" in line)
    if fields.get("Uid", "").split()[:1] != [str(uid)]:
        return frozenset()
    return frozenset(int(g) for g in fields.get("Groups", "").split())


def access_group() -> int | None:
    """The gid whose members may use the API socket: $CONTAINER_GROUP (a name or a
    number; set it to run an instance for another group), else group `container` if
    it exists, else none (root only)."""
    name = os.environ.get(GROUP_ENV, DEFAULT_GROUP)
    if name.isdigit():
        return int(name)
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


def authorize(peer: Peer, allowed_gid: int | None) -> None:
    if peer.uid == 0 or peer.uid == os.getuid():
        return
    if allowed_gid is not None and allowed_gid in peer.groups:
        return
    raise PermissionDenied(
        "permission denied: only root or members of the container group may use this socket"
    )
