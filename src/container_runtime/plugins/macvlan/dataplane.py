"""The macvlan plugin's data plane: the host's shim on a parent interface, the members'
macvlan interfaces (born in their namespaces), and the host's /32 routes to them.

The only code of this plugin that changes links, addresses and routes. A member's link is
created directly in its namespace (IFLA_NET_NS_FD with the parent's index in ours), so
no half-made macvlan ever sits in the host's namespace; it dies with that namespace.
Host-side objects (shims, routes) carry the plugin's mark or route protocol, so
reconciliation finds orphans.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute

from ...dataplane import links, names, nsutil, rtnl
from ...errors import Conflict, ContainerError, InvalidArgument
from ...models import Attachment

PLUGIN = "macvlan"


def _stable_mac(*parts: str) -> str:
    """A fixed locally administered unicast MAC (the shim keeps its MAC across restarts,
    so the LAN's ARP caches stay right)."""
    import hashlib

    raw = bytearray(hashlib.sha256("\0".join(parts).encode()).digest()[:6])
    raw[0] = (raw[0] & 0xFC) | 0x02
    return ":".join(f"{b:02x}" for b in raw)


class MacvlanDataPlane:
    """Kernel work of the macvlan plugin, from the namespace it was created in."""

    def __init__(self, netns_dir: Path, plugin: str = PLUGIN) -> None:
        self.netns_dir = Path(netns_dir)
        self.plugin = names.check_plugin(plugin)
        self._lock = threading.RLock()
        self._home_fd = nsutil.current_netns_fd()
        self._ipr = IPRoute()
        self._rtnl = rtnl.Rtnl()
        # Background deletion of members' links (the kernel's RCU wait is ~25 ms each).
        self._pending: links.Pending[tuple[str, str]] = links.Pending()
        self._deleter_lock = threading.Lock()
        self._queue: queue.Queue[tuple[str, str, str, Callable[[], None]] | None] = queue.Queue()
        self._deleter: threading.Thread | None = None

    def close(self) -> None:
        if self._deleter is not None:
            self._queue.put(None)
            self._deleter.join()
        self._rtnl.close()
        self._ipr.close()
        os.close(self._home_fd)

    # ----------------------------------------------------------------- parent and shim

    def parent_index(self, parent: str) -> int:
        """The parent's index, refused unless it exists, is not ours and is up."""
        with self._lock:
            link = links.get_link(self._ipr, parent)
        if link is None:
            raise InvalidArgument(f"parent interface {parent} does not exist")
        alias = str(link.get_attr("IFLA_IFALIAS") or "")
        if alias.startswith(names.ROOT_PREFIX):
            raise InvalidArgument(
                f"parent interface {parent} is one of the runtime's own links; give the"
                " host's LAN interface"
            )
        if link["ifi_type"] != links.ARPHRD_ETHER:
            raise InvalidArgument(f"parent interface {parent} is not an Ethernet interface")
        if links.link_kind(link) == "macvlan":
            raise InvalidArgument(f"parent interface {parent} is itself a macvlan interface")
        if not links.is_up(link):
            raise InvalidArgument(f"parent interface {parent} is down")
        return int(link["index"])

    def shim(self, network: str) -> Any | None:
        """The network's shim link, if it exists and is ours."""
        with self._lock:
            link = links.get_link(self._ipr, names.shim_name(network))
        if link is None or link.get_attr("IFLA_IFALIAS") != names.shim_alias(network, PLUGIN):
            return None
        return link

    def ensure_shim(
        self, network: str, parent: int, mode: str, address: ipaddress.IPv4Address
    ) -> str:
        """The host's macvlan on the parent with `address`/32 (re-made if its parent
        changed); idempotent. Returns its name."""
        name = names.shim_name(network)
        alias = names.shim_alias(network, self.plugin)
        with self._lock:
            link = links.get_link(self._ipr, name)
            if link is not None and link.get_attr("IFLA_IFALIAS") != alias:
                raise Conflict(f"shim name {name} is already used by a link that is not ours")
            if link is not None and link.get_attr("IFLA_LINK") != parent:
                links.delete_link(self._ipr, name)  # its parent was re-created or changed
                link = None
            if link is None:
                mac = _stable_mac("shim", network)
                try:
                    self._rtnl.batch(
                        [
                            rtnl.new_macvlan(name, parent, mode, mac, self._mtu(parent)),
                            rtnl.mark_alias(name, alias),
                            rtnl.no_link_local(name),
                            rtnl.up_by_name(name),
                        ]
                    )
                except rtnl.RtnlError as exc:
                    links.delete_link(self._ipr, name)
                    raise ContainerError(
                        f"cannot create the shim {name} of network {network}: {exc.strerror}"
                    ) from None
                link = links.get_link(self._ipr, name)
                assert link is not None
            index = int(link["index"])
            have = {
                (m.get_attr("IFA_ADDRESS"), m["prefixlen"])
                for m in self._ipr.get_addr(index=index, family=2)
            }
            if (str(address), 32) not in have:
                for addr, plen in have:
                    self._ipr.addr("del", index=index, address=addr, prefixlen=plen)
                self._ipr.addr("add", index=index, address=str(address), prefixlen=32)
            if not links.is_up(link):
                self._ipr.link("set", index=index, state="up")
        return name

    def _mtu(self, index: int) -> int:
        return int(self._ipr.link("get", index=index)[0].get_attr("IFLA_MTU"))

    def remove_shim(self, network: str) -> None:
        """Delete the network's shim (its routes go with it); idempotent."""
        if self.shim(network) is not None:
            with self._lock:
                links.delete_link(self._ipr, names.shim_name(network))

    def owned_shims(self) -> dict[str, str]:
        """{ifname: network} of every shim of ours in this namespace."""
        prefix = names.shim_alias("", self.plugin)
        out: dict[str, str] = {}
        with self._lock:
            for link in self._ipr.get_links():
                alias = str(link.get_attr("IFLA_IFALIAS") or "")
                if alias.startswith(prefix):
                    out[str(link.get_attr("IFLA_IFNAME"))] = alias[len(prefix) :]
        return out

    # ----------------------------------------------------------------- host routes

    def routes_via(self, shim_index: int) -> set[ipaddress.IPv4Address]:
        """The member addresses we route through a shim."""
        with self._lock:
            found = self._ipr.get_routes(family=2, table=rtnl.RT_TABLE_MAIN)
        return {
            ipaddress.IPv4Address(r.get_attr("RTA_DST"))
            for r in found
            if r["proto"] == rtnl.RTPROT_CONTAINER
            and r["dst_len"] == 32
            and r.get_attr("RTA_OIF") == shim_index
        }

    def ensure_route(
        self, shim_index: int, member: ipaddress.IPv4Address, src: ipaddress.IPv4Address
    ) -> None:
        with self._lock:
            self._rtnl.batch([rtnl.new_host_route(shim_index, member, src)])

    def remove_route(
        self, shim_index: int, member: ipaddress.IPv4Address, src: ipaddress.IPv4Address
    ) -> None:
        try:
            with self._lock:
                self._rtnl.batch([rtnl.del_host_route(shim_index, member, src)])
        except rtnl.RtnlError as exc:
            if exc.errno != errno.ESRCH:
                raise

    # ----------------------------------------------------------------- members

    def attach(
        self,
        attachment: Attachment,
        parent: int,
        mode: str,
        netns: str,
        primary: bool,
        alias: str,
    ) -> None:
        """The member's macvlan, born in its namespace as `attachment.interface`, with its
        MAC, MTU, address and (primary) default route; all or nothing."""
        self.wait_member(netns, attachment.interface)  # an earlier one still being deleted
        fd = nsutil.open_netns(netns, self.netns_dir)
        try:
            create = rtnl.new_macvlan(
                attachment.interface,
                parent,
                mode,
                attachment.mac_address,
                attachment.mtu,
                fd,
            )
            try:
                with self._lock:
                    self._rtnl.batch([create])
            except rtnl.RtnlError as exc:
                raise _create_error(exc.errno or 0, attachment) from None
            with self._lock:
                links.configure_member(
                    fd,
                    self._home_fd,
                    attachment,
                    primary,
                    lambda: self._delete_inside(fd, attachment.interface, None),
                    alias,
                )
        finally:
            os.close(fd)

    def detach(self, netns: str | None, interface: str, alias: str) -> None:
        """Delete a member's macvlan if its namespace still holds it; idempotent."""
        if not netns:
            return
        try:
            fd = nsutil.open_netns(netns, self.netns_dir)
        except InvalidArgument:
            return  # the namespace is gone, and the link with it
        try:
            self._delete_inside(fd, interface, alias)
        finally:
            os.close(fd)

    def detach_later(
        self, netns: str, interface: str, alias: str, done: Callable[[], None]
    ) -> None:
        """detach() on the deleter thread (off the reply path); `done` runs after it."""
        if not self._pending.begin((netns, interface)):
            return
        with self._deleter_lock:
            if self._deleter is None:
                self._deleter = threading.Thread(
                    target=self._delete_loop, name="macvlan-deleter", daemon=True
                )
                self._deleter.start()
        self._queue.put((netns, interface, alias, done))

    def _delete_loop(self) -> None:
        while (job := self._queue.get()) is not None:
            netns, interface, alias, done = job
            try:
                self.detach(netns, interface, alias)
                done()
            except Exception:  # noqa: BLE001 - never let the deleter die (reconcile retries)
                pass
            finally:
                self._pending.finish((netns, interface))

    def wait_member(self, netns: str, interface: str) -> None:
        self._pending.wait((netns, interface))

    def wait_pending(self) -> None:
        self._pending.wait_all()

    def _delete_inside(self, fd: int, interface: str, alias: str | None) -> None:
        """Delete `interface` in namespace fd (only if it carries `alias`, when given)."""
        with nsutil.entered(fd, self._home_fd):
            ns = rtnl.Rtnl()
        with ns:
            try:
                reply = ns.batch([rtnl.get_link(interface)])[0]
                if alias is not None and rtnl.link_alias(reply) != alias:
                    return  # not ours (a later attachment's, or someone else's)
                ns.batch([rtnl.del_link(rtnl.ifindex_of(reply))])
            except rtnl.RtnlError as exc:
                if exc.errno != errno.ENODEV:
                    raise

    def member_state(self, netns: str, interface: str) -> dict[str, Any] | None:
        """What the kernel holds for a member (for check and reconcile); None if its
        namespace or link is gone."""
        try:
            fd = nsutil.open_netns(netns, self.netns_dir)
        except InvalidArgument:
            return None
        try:
            with nsutil.entered(fd, self._home_fd):
                ipr = IPRoute()
            with ipr:
                link = links.get_link(ipr, interface)
                if link is None:
                    return None
                addrs = {
                    f"{m.get_attr('IFA_ADDRESS')}/{m['prefixlen']}"
                    for m in ipr.get_addr(index=link["index"], family=2)
                }
                return {
                    "kind": links.link_kind(link),
                    "mac": link.get_attr("IFLA_ADDRESS"),
                    "mtu": link.get_attr("IFLA_MTU"),
                    "up": links.is_up(link),
                    "alias": link.get_attr("IFLA_IFALIAS"),
                    "addresses": addrs,
                }
        finally:
            os.close(fd)

    def netns_exists(self, netns: str) -> bool:
        return links.netns_exists(netns, self.netns_dir)


def _create_error(code: int, attachment: Attachment) -> Exception:
    if code == errno.EADDRNOTAVAIL:
        return InvalidArgument(f"the kernel refused MAC address {attachment.mac_address}")
    if code == errno.EEXIST:
        return Conflict(f"interface {attachment.interface} already exists in the network namespace")
    if code == errno.EBUSY:
        return Conflict(
            f"the parent interface of network {attachment.network} cannot take another"
            " macvlan (passthru mode allows one)"
        )
    if code in (errno.EINVAL, errno.ERANGE):
        return InvalidArgument(
            f"cannot create {attachment.interface} with MAC {attachment.mac_address} and MTU"
            f" {attachment.mtu} (at most the parent's MTU): {os.strerror(code)}"
        )
    if isinstance(code, int) and code:
        return ContainerError(f"cannot create {attachment.interface}: {os.strerror(code)}")
    return ContainerError(f"cannot create {attachment.interface}")
