"""Generic link helpers shared by the plugins' data planes (pyroute2, one namespace):
look a link up, delete one, tell whether a namespace still exists, and configure a
member's interface inside its namespace. Owns no kernel object.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, Generic, TypeVar

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from ..errors import ContainerError, InvalidArgument
from ..models import Attachment
from . import nsutil, rtnl

ARPHRD_ETHER = 1
IFF_UP = 0x1
K = TypeVar("K", bound=Hashable)


class Pending(Generic[K]):
    """Links being deleted in the background (the kernel's RCU wait costs ~25 ms each), so
    a later attach of the same name waits for its deletion to finish."""

    def __init__(self) -> None:
        self._events: dict[K, threading.Event] = {}
        self._lock = threading.Lock()

    def begin(self, key: K) -> bool:
        """Note a deletion; False if that key is already being deleted."""
        with self._lock:
            if key in self._events:
                return False
            self._events[key] = threading.Event()
            return True

    def finish(self, key: K) -> None:
        with self._lock:
            event = self._events.pop(key, None)
        if event is not None:
            event.set()

    def wait(self, key: K) -> None:
        with self._lock:
            event = self._events.get(key)
        if event is not None:
            event.wait()

    def wait_all(self) -> None:
        """Block until every deletion noted so far has finished."""
        with self._lock:
            events = list(self._events.values())
        for event in events:
            event.wait()

    def keys(self) -> list[K]:
        with self._lock:
            return list(self._events)


def get_link(ipr: IPRoute, ifname: str) -> Any | None:
    """The link called `ifname` in `ipr`'s namespace, or None."""
    try:
        return ipr.link("get", ifname=ifname)[0]
    except NetlinkError as exc:
        if exc.code == errno.ENODEV:
            return None
        raise


def delete_link(ipr: IPRoute, ifname: str) -> None:
    """Delete a link now; idempotent (a link already gone is fine)."""
    try:
        ipr.link("del", ifname=ifname)
    except NetlinkError as exc:
        if exc.code != errno.ENODEV:
            raise


def link_kind(link: Any) -> str | None:
    info = link.get_attr("IFLA_LINKINFO")
    return None if info is None else info.get_attr("IFLA_INFO_KIND")


def is_up(link: Any) -> bool:
    return bool(link["flags"] & IFF_UP)


def netns_exists(path_or_name: str, netns_dir: Path) -> bool:
    try:
        fd = nsutil.open_netns(path_or_name, netns_dir)
    except InvalidArgument:
        return False
    os.close(fd)
    return True


def configure_member(
    fd: int,
    home_fd: int,
    attachment: Attachment,
    primary: bool,
    undo: Callable[[], None],
    alias: str | None = None,
) -> None:
    """Inside namespace fd: the member's interface (already there, down) marked with
    `alias` if given, its addresses, up, loopback up and, when primary, the default
    routes; one batch. On failure `undo()` removes the interface and the error says why."""
    try:
        with nsutil.entered(fd, home_fd):
            ns = rtnl.Rtnl()
        with ns:
            index = rtnl.ifindex_of(ns.batch([rtnl.get_link(attachment.interface)])[0])
            msgs = [rtnl.set_alias(index, alias)] if alias is not None else []
            if attachment.ipv6_address is None:
                msgs.append(rtnl.no_link_local(index=index))
            msgs += [rtnl.set_up(index), rtnl.new_addr(index, attachment.address)]
            if attachment.ipv6_address is not None:
                msgs.append(rtnl.new_addr(index, attachment.ipv6_address))
            msgs.append(rtnl.set_up(1))  # loopback is always index 1
            if primary:
                msgs.append(rtnl.new_default_route(index, attachment.gateway))
                if attachment.ipv6_address is not None:
                    gw6 = attachment.ipv6_address.network.network_address + 1
                    msgs.append(rtnl.new_default_route(index, gw6))
            ns.batch(msgs)
    except BaseException as exc:
        undo()
        if isinstance(exc, rtnl.RtnlError):
            raise ContainerError(
                f"cannot configure {attachment.interface} in {attachment.netns}: {exc.strerror}"
            ) from None
        raise
