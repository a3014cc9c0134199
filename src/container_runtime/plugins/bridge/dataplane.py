"""LinuxDataPlane, the bridge plugin's data plane: bridges, veth/TAP attachments, namespaces, nft.

The bridge plugin's only code that changes links, addresses, routes and namespaces; called
by its driver. Netlink sockets are bound to the namespace they were opened
in, so the host socket is opened once, and a container's namespace is entered only for the
instant it takes to open a socket there (no NetNS() helper process, no `ip` subprocess).
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import os
import queue
import struct
import threading
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from ...dataplane import links, names, nsutil, rtnl
from ...errors import Conflict, ContainerError, InvalidArgument
from ...models import Attachment, NetworkConfiguration
from .antispoof import GuardedPort
from .firewall import PortForward
from .tables import Tables

IFA_F_NODAD = 0x02
TUNSETIFF = 0x400454CA
TUNSETPERSIST = 0x400454CB
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
STRATEGIES = ("veth", "tap")


def _sysctl_path(*parts: str) -> Path:
    return Path("/proc/sys/net", *parts)


def _write_sysctl(path: Path, value: str) -> bool:
    """Write value unless already set; True if it changed."""
    if path.read_text().strip() == value:
        return False
    path.write_text(value)
    return True


def _attr(msg: Any, name: str) -> Any:
    return msg.get_attr(name)


class LinuxDataPlane:
    """Kernel data plane of the bridge plugin, acting on the namespace it was created in."""

    def __init__(self, netns_dir: Path, plugin: str = names.PLUGIN) -> None:
        self.netns_dir = Path(netns_dir)
        self.plugin = names.check_plugin(plugin)  # marks our links, names our tables
        self._lock = threading.RLock()
        self._home_fd = nsutil.current_netns_fd()
        self._ipr = IPRoute()
        self._rtnl = rtnl.Rtnl()  # hot path: batched requests
        self._tables: Tables | None = None
        self._bridge_index: dict[str, int] = {}
        self._shared_dir_done = False
        # Background deletion of veths/TAPs (kernel RCU waits cost ~30 ms each).
        self._pending: links.Pending[str] = links.Pending()
        self._deleter_lock = threading.Lock()
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._deleter: threading.Thread | None = None
        self._deleter_ipr: IPRoute | None = None

    # ----------------------------------------------------------------- life cycle

    def close(self) -> None:
        self.wait_pending()
        if self._deleter is not None:
            self._queue.put(None)
            self._deleter.join()
            self._deleter = None
        self._rtnl.close()
        if self._tables is not None:
            self._tables.close()
        for ipr in (self._ipr, self._deleter_ipr):
            if ipr is not None:
                ipr.close()
        os.close(self._home_fd)

    def __enter__(self) -> LinuxDataPlane:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- host settings

    def ensure_forwarding(self, ipv6: bool = False) -> bool:
        """Turn on IPv4 (and, if asked, IPv6) forwarding; True if anything changed.

        IPv6 forwarding is opt-in: turning it on makes the host ignore router advertisements.
        """
        changed = _write_sysctl(_sysctl_path("ipv4", "ip_forward"), "1")
        if ipv6:
            changed |= _write_sysctl(_sysctl_path("ipv6", "conf", "all", "forwarding"), "1")
        return changed

    # ----------------------------------------------------------------- networks

    @staticmethod
    def bridge_name(network: str) -> str:
        return names.bridge_name(network)

    def _link(self, ifname: str) -> Any | None:
        return links.get_link(self._ipr, ifname)

    def setup_network(self, config: NetworkConfiguration, mtu: int | None = None) -> str:
        """Create (or repair) the network's bridge with its gateway addresses; idempotent."""
        name = names.bridge_name(config.name)
        alias = names.bridge_alias(config.name, self.plugin)
        with self._lock:
            link = self._link(name)
            created = False
            if link is not None and _attr(link, "IFLA_IFALIAS") != alias:
                raise Conflict(f"bridge name {name} is already used by a link that is not ours")
            if link is not None and _attr(link, "IFLA_LINKINFO").get_attr("IFLA_INFO_KIND") != (
                "bridge"
            ):
                raise Conflict(f"link {name} of network {config.name} is not a bridge")
            try:
                if link is None:
                    kwargs: dict[str, Any] = {"address": names.bridge_mac(config.name)}
                    if mtu is not None:
                        kwargs["mtu"] = mtu
                    try:
                        self._ipr.link("add", ifname=name, kind="bridge", **kwargs)
                    except NetlinkError as exc:
                        if exc.code == errno.EEXIST:
                            raise Conflict(
                                f"bridge name {name} is already used by a link that is not ours"
                            ) from None
                        raise
                    created = True
                    link = self._ipr.link("get", ifname=name)[0]
                index = link["index"]
                self._ipr.link("set", index=index, ifalias=alias)
                if mtu is not None and link.get_attr("IFLA_MTU") != mtu:
                    self._ipr.link("set", index=index, mtu=mtu)
                self._sync_addresses(index, config)
                self._rtnl.batch([rtnl.bridge_no_linklocal_learn(index)])
                # Lets the host reach published ports on 127.0.0.1 (DNAT to a member).
                _write_sysctl(_sysctl_path("ipv4", "conf", name, "route_localnet"), "1")
                self._ipr.link("set", index=index, state="up")
                self._bridge_index[name] = index
            except NetlinkError as exc:
                if created:
                    self._delete_link_now(name)
                raise ContainerError(f"cannot set up bridge {name}: {exc.args[-1]}") from None
            except BaseException:
                if created:
                    self._delete_link_now(name)
                raise
        return name

    def _sync_addresses(self, index: int, config: NetworkConfiguration) -> None:
        want4 = ipaddress.IPv4Interface(f"{config.ipv4_gateway}/{config.ipv4_subnet.prefixlen}")
        want6 = None
        if config.ipv6_subnet is not None and config.ipv6_gateway is not None:
            want6 = ipaddress.IPv6Interface(f"{config.ipv6_gateway}/{config.ipv6_subnet.prefixlen}")
        have: set[ipaddress.IPv4Interface | ipaddress.IPv6Interface] = set()
        for msg in self._ipr.get_addr(index=index):
            addr = ipaddress.ip_interface(f"{msg.get_attr('IFA_ADDRESS')}/{msg['prefixlen']}")
            if addr.is_link_local:
                continue
            if addr not in (want4, want6):
                # Left over from an earlier network of the same name with another subnet.
                self._ipr.addr(
                    "del", index=index, address=str(addr.ip), prefixlen=addr.network.prefixlen
                )
            else:
                have.add(addr)
        for want in (want4, want6):
            if want is None or want in have:
                continue
            extra: dict[str, Any] = {}
            if want.version == 6:
                extra["flags"] = IFA_F_NODAD  # usable at once, no 1-2 s of tentative state
            else:
                extra["broadcast"] = str(want.network.broadcast_address)
            self._ipr.addr(
                "add", index=index, address=str(want.ip), prefixlen=want.network.prefixlen, **extra
            )

    def teardown_network(self, bridge: str) -> None:
        """Delete the network's bridge (its ports stay, detached); idempotent."""
        with self._lock:
            self._bridge_index.pop(bridge, None)
            link = self._link(bridge)
            if link is None:
                return
            alias = _attr(link, "IFLA_IFALIAS")
            if not str(alias or "").startswith(names.bridge_alias("", self.plugin)):
                raise Conflict(f"link {bridge} is not a bridge of ours; not deleting it")
            self._delete_link_now(bridge)

    # ----------------------------------------------------------------- firewall (tables.py)

    def _firewall(self) -> Tables:
        with self._lock:
            if self._tables is None:
                self._tables = Tables(self.plugin)  # opened here: bound to our namespace
            return self._tables

    def sync_firewall(
        self,
        networks: list[tuple[NetworkConfiguration, str]],
        port_forwards: list[PortForward],
        guarded: list[GuardedPort] | None = None,
    ) -> None:
        """Replace our nft tables in one atomic batch; with nothing to hold, remove them."""
        self._firewall().sync(networks, port_forwards, guarded)

    def firewall_intact(self) -> bool:
        """False when someone else flushed or deleted (parts of) our tables."""
        return self._tables is None or self._tables.intact()

    def guard_port(self, port: GuardedPort) -> None:
        """Let one attachment's port send from its own MAC and addresses only (called
        before the port exists: its first frame is already checked)."""
        self._firewall().guard_port(port)

    def unguard_port(self, port: GuardedPort) -> None:
        self._firewall().unguard_port(port)

    def add_port_forwards(self, port_forwards: list[PortForward]) -> None:
        """Add map elements to the existing table (after a sync_firewall); one batch."""
        self._firewall().add_port_forwards(port_forwards)

    def remove_port_forwards(self, port_forwards: list[PortForward]) -> None:
        self._firewall().remove_port_forwards(port_forwards)

    # ----------------------------------------------------------------- attachments

    def _bridge(self, bridge: str, refresh: bool = False) -> int:
        index = None if refresh else self._bridge_index.get(bridge)
        if index is None:
            link = self._link(bridge)
            if link is None or not names.is_ours(_attr(link, "IFLA_IFALIAS"), self.plugin):
                raise InvalidArgument(f"bridge {bridge} does not exist")
            index = int(link["index"])
            self._bridge_index[bridge] = index
        return index

    def attach(
        self,
        attachment: Attachment,
        bridge: str,
        netns: str | None,
        strategy: str = "veth",
        primary: bool = True,
        isolated: bool = False,
    ) -> str:
        """Realise an attachment; all or nothing. Returns the host-side interface name."""
        if strategy not in STRATEGIES:
            raise InvalidArgument(
                f"unknown interface strategy {strategy!r} (valid: {', '.join(STRATEGIES)})"
            )
        host = names.host_ifname(
            strategy, attachment.network, attachment.owner, attachment.interface
        )
        alias = names.attachment_alias(
            strategy, attachment.network, attachment.owner, attachment.interface, self.plugin
        )
        self._wait_pending(host)
        with self._lock:
            if strategy == "tap":
                self._attach_tap(attachment, bridge, host, alias, isolated)
            else:
                if not netns:
                    raise InvalidArgument("the veth strategy needs a network namespace")
                self._attach_veth(attachment, bridge, netns, host, alias, primary, isolated)
        return host

    def _create_error(self, code: int, attachment: Attachment, host: str) -> Exception:
        if code == errno.EADDRNOTAVAIL:
            return InvalidArgument(f"the kernel refused MAC address {attachment.mac_address}")
        if code == errno.EEXIST:
            if self._link(host) is not None:
                return Conflict(
                    f"host interface {host} for {attachment.owner} on network "
                    f"{attachment.network} already exists"
                )
            return Conflict(
                f"interface {attachment.interface} already exists in the network namespace"
            )
        if code in (errno.EINVAL, errno.ERANGE):
            return InvalidArgument(
                f"cannot create {attachment.interface} with MAC {attachment.mac_address} and "
                f"MTU {attachment.mtu}: {os.strerror(code)}"
            )
        return ContainerError(f"cannot create interface {host}: {os.strerror(code)}")

    def _attach_veth(
        self,
        attachment: Attachment,
        bridge: str,
        netns: str,
        host: str,
        alias: str,
        primary: bool,
        isolated: bool,
    ) -> None:
        fd = nsutil.open_netns(netns, self.netns_dir)
        try:
            for attempt in (0, 1):
                create = rtnl.new_veth(
                    host,
                    attachment.mtu,
                    self._bridge(bridge, refresh=attempt == 1),
                    attachment.interface,
                    attachment.mac_address,
                    attachment.mtu,
                    fd,
                )
                try:
                    # Port settings by name in the same batch (the kernel ignores an alias
                    # and bridge-port attributes when it creates a link).
                    self._rtnl.batch(
                        [
                            create,
                            rtnl.mark_port(host, alias, isolated),
                            rtnl.no_link_local(host),
                            rtnl.up_by_name(host),
                        ]
                    )
                    break
                except rtnl.RtnlError as exc:
                    if exc.step > 0:
                        self._delete_link_now(host)
                        raise ContainerError(f"cannot mark {host}: {exc.strerror}") from None
                    if attempt == 0 and exc.errno in (errno.ENODEV, errno.EINVAL):
                        continue  # bridge index went stale (re-created): look it up again
                    if attempt == 0 and exc.errno == errno.EEXIST and self._pending.keys():
                        self.wait_pending()  # an old veth of this namespace is still dying
                        continue
                    raise self._create_error(exc.errno or 0, attachment, host) from None
            links.configure_member(
                fd,
                self._home_fd,
                attachment,
                primary,
                lambda: self._delete_link_now(host),  # takes the peer in the namespace with it
            )
        finally:
            os.close(fd)

    def ensure_default_route(self, attachment: Attachment, netns: str) -> None:
        """Route the namespace's default traffic via this attachment's gateway(s),
        replacing the routes via another interface (its primary network was removed)."""
        fd = nsutil.open_netns(netns, self.netns_dir)
        try:
            with nsutil.entered(fd, self._home_fd):
                ns = rtnl.Rtnl()
            with ns:
                index = rtnl.ifindex_of(ns.batch([rtnl.get_link(attachment.interface)])[0])
                msgs = [rtnl.new_default_route(index, attachment.gateway, replace=True)]
                if attachment.ipv6_address is not None:
                    gw6 = attachment.ipv6_address.network.network_address + 1
                    msgs.append(rtnl.new_default_route(index, gw6, replace=True))
                ns.batch(msgs)
        except rtnl.RtnlError as exc:
            raise ContainerError(
                f"cannot route via {attachment.interface} in {netns}: {exc.strerror}"
            ) from None
        finally:
            os.close(fd)

    def ensure_port(self, host_ifname: str, bridge: str, isolated: bool) -> bool:
        """Put an existing host end back on its bridge (after the bridge was re-created).

        Returns False when the link no longer exists.
        """
        with self._lock:
            link = self._link(host_ifname)
            if link is None:
                return False
            master = self._bridge(bridge, refresh=True)
            if _attr(link, "IFLA_MASTER") == master:
                return True
            alias = str(_attr(link, "IFLA_IFALIAS") or "")
            self._ipr.link("set", index=int(link["index"]), master=master, state="up")
            self._rtnl.batch([rtnl.mark_port(host_ifname, alias, isolated)])
        return True

    def _attach_tap(
        self, attachment: Attachment, bridge: str, host: str, alias: str, isolated: bool
    ) -> None:
        master = self._bridge(bridge)
        try:
            with open("/dev/net/tun", "rb", buffering=0) as tun:
                ifr = struct.pack("16sH", host.encode(), IFF_TAP | IFF_NO_PI)
                fcntl.ioctl(tun, TUNSETIFF, ifr)
                fcntl.ioctl(tun, TUNSETPERSIST, 1)
        except OSError as exc:
            if exc.errno == errno.EBUSY:
                raise Conflict(f"TAP device {host} already exists") from None
            raise ContainerError(f"cannot create TAP device {host}: {exc.strerror}") from None
        try:
            index = self._ipr.link_lookup(ifname=host)[0]
            try:
                self._ipr.link(
                    "set", index=index, address=attachment.mac_address, mtu=attachment.mtu
                )
            except NetlinkError as exc:
                raise self._create_error(exc.code, attachment, host) from None
            self._rtnl.batch([rtnl.no_link_local(host)])
            self._ipr.link("set", index=index, master=master, state="up")
            self._rtnl.batch([rtnl.mark_port(host, alias, isolated)])
        except BaseException as exc:
            self._delete_link_now(host)
            if isinstance(exc, NetlinkError | rtnl.RtnlError):
                code = exc.code if isinstance(exc, NetlinkError) else exc.errno or 0
                raise ContainerError(
                    f"cannot set up TAP device {host}: {os.strerror(code)}"
                ) from None
            raise

    # ----------------------------------------------------------------- detach

    def detach(self, host_ifname: str) -> None:
        """Remove an attachment's host link (and with it the veth peer), in the background.

        Idempotent; a later attach of the same name waits for the deletion to finish.
        """
        if not names.looks_like_attachment(host_ifname):
            raise InvalidArgument(f"{host_ifname!r} is not an attachment interface of ours")
        if not self._pending.begin(host_ifname):
            return
        with self._deleter_lock:
            if self._deleter is None:
                self._deleter_ipr = IPRoute()  # opened here: bound to our namespace
                self._deleter = threading.Thread(
                    target=self._delete_loop, name="dataplane-deleter", daemon=True
                )
                self._deleter.start()
        self._queue.put(host_ifname)

    def detach_now(self, host_ifname: str) -> None:
        """Synchronous detach (tests, shutdown)."""
        self.detach(host_ifname)
        self._wait_pending(host_ifname)

    def _delete_loop(self) -> None:
        assert self._deleter_ipr is not None
        while True:
            name = self._queue.get()
            if name is None:
                return
            try:
                self._deleter_ipr.link("del", ifname=name)
            except NetlinkError:
                pass  # already gone (ENODEV): idempotent
            except Exception:  # noqa: BLE001 - never let the deleter die
                pass
            finally:
                self._pending.finish(name)

    def _wait_pending(self, name: str) -> None:
        self._pending.wait(name)

    def wait_pending(self) -> None:
        """Block until every background deletion has finished."""
        self._pending.wait_all()

    def _delete_link_now(self, name: str) -> None:
        links.delete_link(self._ipr, name)

    # ----------------------------------------------------------------- reconciliation

    def owned_links(self) -> dict[str, str]:
        """{ifname: alias} of every bridge, veth and TAP of ours in this namespace."""
        out: dict[str, str] = {}
        with self._lock:
            for link in self._ipr.get_links():
                alias = link.get_attr("IFLA_IFALIAS")
                if names.is_ours(alias, self.plugin):
                    out[str(link.get_attr("IFLA_IFNAME"))] = str(alias)
        for name in self._pending.keys():
            out.pop(name, None)
        return out

    def adopt_legacy(self) -> int:
        """Upgrade from the pre-11.3 names: re-mark links that carry an old mark
        (`container-runtime:net:...`: only the bridge plugin ever wrote those) with ours,
        so reconciliation keeps or removes them like any other; drop the old `container`
        tables once ours are written. Returns the number of links re-marked."""
        marked = 0
        with self._lock:
            for link in self._ipr.get_links():
                alias = link.get_attr("IFLA_IFALIAS")
                if names.is_legacy(alias):
                    new = names.from_legacy(str(alias), self.plugin)
                    self._ipr.link("set", index=int(link["index"]), ifalias=new)
                    marked += 1
        return marked

    def remove_legacy_tables(self) -> bool:
        """Delete the pre-11.3 `inet/bridge container` tables; True if there were any."""
        return self._firewall().remove_legacy()

    # ----------------------------------------------------------------- namespaces

    def create_netns(self, name: str) -> str:
        """Create a named namespace bind-mounted at netns_dir/name (loopback up); idempotent."""
        if not nsutil.NETNS_NAME_RE.match(name):
            raise InvalidArgument(f"invalid network namespace name {name!r}")
        path = self.netns_dir / name
        with self._lock:
            if self.netns_exists(str(path)):
                return str(path)
            if not self._shared_dir_done:
                nsutil.make_shared_dir(self.netns_dir)
                self._shared_dir_done = True
            if path.exists():
                path.unlink()  # a stale file left by a crash, not a mounted namespace

            def loopback_up() -> None:
                with IPRoute() as ipr:
                    ipr.link("set", index=1, state="up")

            nsutil.create_named_netns(path, loopback_up)
        return str(path)

    def delete_netns(self, name: str) -> None:
        if not nsutil.NETNS_NAME_RE.match(name):
            raise InvalidArgument(f"invalid network namespace name {name!r}")
        nsutil.delete_named_netns(self.netns_dir / name)

    def netns_exists(self, path_or_name: str) -> bool:
        return links.netns_exists(path_or_name, self.netns_dir)
