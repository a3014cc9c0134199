"""Network namespaces by path: open, check, enter briefly; create and delete named ones.

Python 3.11 has no os.setns/os.unshare: the syscalls come from ../syscalls.py.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from .. import syscalls
from ..errors import ContainerError, InvalidArgument
from ..syscalls import mount, umount_detach

CLONE_NEWNET = 0x40000000
NS_GET_NSTYPE = 0xB703  # ioctl on an nsfs fd: returns the namespace type (kernel >= 4.11)
MS_REC = 0x4000
MS_BIND = 0x1000
MS_SHARED = 1 << 20
SYSTEM_NETNS_DIR = Path("/run/netns")
NETNS_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")

T = TypeVar("T")


def setns(fd: int) -> None:
    syscalls.setns(fd, CLONE_NEWNET)


def unshare_net() -> None:
    syscalls.unshare(CLONE_NEWNET)


def current_netns_fd() -> int:
    """An fd on the calling thread's network namespace (the caller closes it)."""
    return os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)


def is_netns_fd(fd: int) -> bool:
    try:
        return fcntl.ioctl(fd, NS_GET_NSTYPE) == CLONE_NEWNET
    except OSError:
        return False


def resolve_netns_path(netns: str, netns_dir: Path) -> Path:
    """A namespace given as an absolute path, or as a name under netns_dir or /run/netns."""
    if netns.startswith("/"):
        return Path(netns)
    if not NETNS_NAME_RE.match(netns):
        raise InvalidArgument(f"invalid network namespace name {netns!r}")
    for base in (netns_dir, SYSTEM_NETNS_DIR):
        candidate = base / netns
        if candidate.exists():
            return candidate
    return netns_dir / netns


def open_netns(netns: str, netns_dir: Path) -> int:
    """Open a namespace for setns/IFLA_NET_NS_FD; a clear InvalidArgument if it is not one."""
    path = resolve_netns_path(netns, netns_dir)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        raise InvalidArgument(f"network namespace {netns!r} does not exist") from None
    if not is_netns_fd(fd):
        os.close(fd)
        raise InvalidArgument(f"{str(path)!r} is not a network namespace")
    return fd


@contextmanager
def entered(fd: int, home_fd: int) -> Iterator[None]:
    """Run the body in namespace fd on this thread, then return to home_fd whatever happens.

    Only used to create sockets: a netlink socket stays bound to the namespace it was made in.
    """
    setns(fd)
    try:
        yield
    finally:
        setns(home_fd)


def run_in_new_thread(fn: Callable[[], T]) -> T:
    """Run fn on a fresh thread (whose namespace changes die with it) and return its result."""
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="netns-worker")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def make_shared_dir(directory: Path) -> None:
    """Like `ip netns add`: make the dir a shared mount so an unmount reaches copies of it
    in other mount namespaces (a container's), which would otherwise pin the netns."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o755)
    target = str(directory)
    try:
        mount(None, target, None, MS_SHARED | MS_REC)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        mount(target, target, None, MS_BIND | MS_REC)
        mount(None, target, None, MS_SHARED | MS_REC)


def create_named_netns(path: Path, on_created: Callable[[], None]) -> None:
    """Create a network namespace and bind-mount it on path; on_created runs inside it."""
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
    os.close(fd)

    def inside() -> None:
        unshare_net()
        mount("/proc/thread-self/ns/net", str(path), None, MS_BIND)
        on_created()

    try:
        run_in_new_thread(inside)
    except BaseException as exc:
        try:
            umount_detach(str(path))
        except OSError:
            pass
        path.unlink(missing_ok=True)
        if isinstance(exc, ContainerError):
            raise
        raise ContainerError(f"cannot create network namespace {str(path)!r}: {exc}") from exc


def delete_named_netns(path: Path) -> None:
    try:
        umount_detach(str(path))
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOENT):
            raise
    try:
        path.unlink()
    except FileNotFoundError:
        pass
