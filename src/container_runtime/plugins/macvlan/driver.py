"""The macvlan plugin's driver: containers on the host's LAN, each with a macvlan interface
on a parent interface, and a host "shim" (a macvlan of the host's own on that parent) so
the host and the embedded DNS reach them (docs/PLUGINS.md, "macvlan").

Options are parsed here once (validate); the kernel work is dataplane.py's. Allocation,
idempotency and commit-before-reply are the SDK host's; this driver narrows the
allocator's pool (`ip-range`, `aux`, the shim's address) and keeps nothing in memory it
cannot rebuild: reconcile() makes the kernel match the state database.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
from typing import ClassVar

from ...errors import ContainerError, InvalidArgument
from ...models import RUNTIME_OPTIONS, Attachment, AttachmentRequest, NetworkConfiguration
from ...netoptions import option_list
from ...plugin.allocator import AddressPool
from ...plugin.driver import Driver
from ...plugin.host import PluginHost

PLUGIN = "macvlan"
MODES = ("bridge", "private", "vepa", "passthru")
SHIM_MODES = ("bridge", "vepa")  # private members talk to no sibling; passthru has one
log = logging.getLogger("container-network-macvlan")
# Released members whose link the deleter thread has not removed yet (this plugin's table).
PENDING_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS macvlan_deleting (netns TEXT NOT NULL, interface TEXT NOT NULL,"
    " alias TEXT NOT NULL, PRIMARY KEY (netns, interface))"
)


class MacvlanDriver(Driver):
    name: ClassVar[str] = PLUGIN
    version: ClassVar[str] = "0.1.0"
    strategies: ClassVar[tuple[str, ...]] = ("macvlan",)
    # as in macvlan.toml (the API server checks those), plus the runtime's own
    options: ClassVar[dict[str, tuple[str, ...] | str]] = {
        "parent": "interface",
        "mode": MODES,
        "ip-range": "cidr",
        "aux": "ip[]",
        **RUNTIME_OPTIONS,
    }
    schema: ClassVar[str] = PENDING_SCHEMA  # in the plugin's own database (plugin/store.py)

    def bind(self, host: PluginHost) -> None:
        from .dataplane import MacvlanDataPlane  # kernel libraries: helper only

        super().bind(host)
        self.db = host.db
        self.allocator = host.allocator
        self.dataplane = MacvlanDataPlane(host.paths.netns_dir, plugin=PLUGIN)
        self.parents: dict[str, int] = {}  # network -> parent ifindex (refreshed on error)
        self.shims: dict[str, int] = {}  # network -> shim ifindex (refreshed on error)

    def close(self) -> None:
        self.dataplane.close()

    # -- networks -------------------------------------------------------------------------

    def validate(self, config: NetworkConfiguration) -> None:
        super().validate(config)
        parent = config.options.get("parent")
        if not parent:
            raise InvalidArgument(
                "plugin macvlan: option parent=IFACE is required (the host's LAN interface)"
            )
        if config.ipv6_subnet is not None:
            raise InvalidArgument("plugin macvlan: IPv6 subnets are not supported")
        if config.mode.value == "internal":
            raise InvalidArgument("plugin macvlan: a LAN network cannot be --internal")
        subnet = config.ipv4_subnet
        ip_range = _ip_range(config)
        if ip_range is not None:
            if not isinstance(ip_range, ipaddress.IPv4Network) or not ip_range.subnet_of(subnet):
                raise InvalidArgument(
                    f"plugin macvlan: ip-range {ip_range} is not inside the subnet {subnet}"
                )
        for text in option_list(config.options, "aux"):
            aux = ipaddress.ip_address(text)
            if aux not in subnet:
                raise InvalidArgument(f"plugin macvlan: aux address {aux} is not in {subnet}")
        if shim_address(config) is None:
            raise InvalidArgument(
                f"plugin macvlan: no free address for the host's shim in {subnet}"
            )
        self.dataplane.parent_index(parent)

    def create_network(self, config: NetworkConfiguration) -> str | None:
        parent = self._parent(config, refresh=True)
        shim = None
        address = shim_address(config)
        if has_shim(config) and address is not None:
            shim = self.dataplane.ensure_shim(config.name, parent, mode(config), address)
            self.shims.pop(config.name, None)
        log.info(
            f"container-network-macvlan: network {config.name} ready on"
            f" {config.options['parent']} ({mode(config)}"
            + (f", host shim {shim} {address})" if shim else ", no host shim)")
        )
        return shim

    def delete_network(self, name: str) -> None:
        self.dataplane.remove_shim(name)
        self.parents.pop(name, None)
        self.shims.pop(name, None)
        log.info(f"container-network-macvlan: network {name} removed")

    def address_pool(self, config: NetworkConfiguration) -> AddressPool:
        return pool_of(config)

    def dns_address(self, config: NetworkConfiguration) -> ipaddress.IPv4Address | None:
        return shim_address(config) if has_shim(config) else None

    def _parent(self, config: NetworkConfiguration, refresh: bool = False) -> int:
        index = None if refresh else self.parents.get(config.name)
        if index is None:
            index = self.parents[config.name] = self.dataplane.parent_index(
                config.options["parent"]
            )
        return index

    # -- attachments ----------------------------------------------------------------------

    def realise(
        self, attachment: Attachment, request: AttachmentRequest, config: NetworkConfiguration
    ) -> None:
        if not request.netns:
            raise InvalidArgument("the macvlan strategy needs a network namespace")
        alias = member_alias(attachment)
        for attempt in (0, 1):
            try:
                self.dataplane.attach(
                    attachment,
                    self._parent(config, refresh=attempt == 1),
                    mode(config),
                    request.netns,
                    request.primary,
                    alias,
                )
                break
            except ContainerError as exc:
                # A parent index gone stale (the parent was re-created): look it up again.
                if attempt == 1 or "No such device" not in str(exc):
                    raise
        try:
            self._route(config, attachment, add=True)
        except BaseException:
            self.dataplane.detach(request.netns, attachment.interface, alias)
            raise
        return None  # no host-side link of its own (the shim is the network's)

    def unrealise(self, attachment: Attachment, host_ifname: str | None) -> None:
        self._route(self.host.network_config(attachment.network), attachment, add=False)
        if not attachment.netns or not attachment.strategy:
            return
        # The link is deleted in the background (the kernel takes ~25 ms); noted first, so
        # a helper killed before it is done deletes it at its next start.
        netns, interface, alias = attachment.netns, attachment.interface, member_alias(attachment)
        with self.db.write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO macvlan_deleting(netns, interface, alias) VALUES (?,?,?)",
                (netns, interface, alias),
            )

        def done() -> None:
            with self.db.write() as conn:
                conn.execute(
                    "DELETE FROM macvlan_deleting WHERE netns = ? AND interface = ? AND alias = ?",
                    (netns, interface, alias),
                )

        self.dataplane.detach_later(netns, interface, alias, done)

    def _route(self, config: NetworkConfiguration, attachment: Attachment, add: bool) -> None:
        """The host's /32 route to a member through the shim (replies of the DNS too)."""
        address = shim_address(config)
        if not has_shim(config) or address is None:
            return
        for attempt in (0, 1):
            index = self._shim_index(config.name, refresh=attempt == 1)
            if index is None:
                if add:
                    raise ContainerError(f"the host shim of network {config.name} is missing")
                return
            try:
                if add:
                    self.dataplane.ensure_route(index, attachment.address.ip, address)
                else:
                    self.dataplane.remove_route(index, attachment.address.ip, address)
                return
            except OSError as exc:  # RtnlError: a stale index (the shim was re-made)
                if attempt == 1 or exc.errno not in (errno.ENODEV, errno.EINVAL):
                    raise

    def _shim_index(self, network: str, refresh: bool = False) -> int | None:
        index = None if refresh else self.shims.get(network)
        if index is None:
            shim = self.dataplane.shim(network)
            if shim is None:
                return None
            index = self.shims[network] = int(shim["index"])
        return index

    # -- reconciliation and check ---------------------------------------------------------

    def reconcile(self) -> None:
        """Make the kernel match the database after a start or a crash: shims re-made,
        orphan shims removed, attachments whose namespace or link is gone (or whose
        request died with the previous helper) released, routes matched to members."""
        with self.db.read() as conn:
            deleting = conn.execute("SELECT * FROM macvlan_deleting").fetchall()
        for row in deleting:  # released before the previous helper deleted their links
            self.dataplane.detach(row["netns"], row["interface"], row["alias"])
            with self.db.write() as conn:
                conn.execute(
                    "DELETE FROM macvlan_deleting WHERE netns = ? AND interface = ?",
                    (row["netns"], row["interface"]),
                )
        networks = {c.name: c for c in self.host.all_networks()}
        for config in networks.values():
            try:
                self.create_network(config)
            except ContainerError as exc:
                log.error(f"container-network-macvlan: cannot realise {config.name}: {exc}")
        for ifname, network in self.dataplane.owned_shims().items():
            if network not in networks or not has_shim(networks[network]):
                log.info(f"container-network-macvlan: removing orphan shim {ifname}")
                self.dataplane.remove_shim(network)
        members: dict[str, set[ipaddress.IPv4Address]] = {n: set() for n in networks}
        for att in self.allocator.list():
            if not att.strategy or not att.netns:
                continue  # allocation only: nothing in the kernel
            ready = self.allocator.is_ready(att.network, att.owner)
            state = self.dataplane.member_state(att.netns, att.interface)
            if ready and state is not None and state["alias"] == member_alias(att):
                members.setdefault(att.network, set()).add(att.address.ip)
                continue
            # Its request died with the previous helper (a half-made link in a live
            # namespace goes), or its namespace or link is gone: the address is free again.
            self.dataplane.detach(att.netns, att.interface, member_alias(att))
            log.info(f"container-network-macvlan: releasing stale {att.owner} on {att.network}")
            self.allocator.release(att.network, att.owner)
        for name, config in networks.items():
            address = shim_address(config)
            shim = self.dataplane.shim(name)
            if shim is None or address is None:
                continue
            index = int(shim["index"])
            have = self.dataplane.routes_via(index)
            for ip in members.get(name, set()) - have:
                self.dataplane.ensure_route(index, ip, address)
            for ip in have - members.get(name, set()):
                self.dataplane.remove_route(index, ip, address)

    def check(self, config: NetworkConfiguration, attachments: list[Attachment]) -> list[str]:
        """What is wrong with a network's kernel state (one line each; empty: healthy)."""
        problems: list[str] = []
        parent = config.options.get("parent", "")
        try:
            self.dataplane.parent_index(parent)
        except InvalidArgument as exc:
            problems.append(f"network {config.name}: {exc.message}")
        address = shim_address(config)
        routed: set[ipaddress.IPv4Address] = set()
        if has_shim(config) and address is not None:
            shim = self.dataplane.shim(config.name)
            if shim is None:
                problems.append(f"network {config.name}: the host shim is missing")
            else:
                routed = self.dataplane.routes_via(int(shim["index"]))
        for att in attachments:
            if not att.strategy or not att.netns:
                continue
            who = f"{att.owner} on {config.name}"
            state = self.dataplane.member_state(att.netns, att.interface)
            if state is None:
                why = "namespace" if not self.dataplane.netns_exists(att.netns) else "interface"
                problems.append(
                    f"{who}: its {why} {att.interface if why == 'interface' else att.netns} is gone"
                )
                continue
            if state["kind"] != "macvlan" or state["alias"] != member_alias(att):
                problems.append(f"{who}: {att.interface} is not our macvlan interface")
            if str(state["mac"]) != att.mac_address:
                problems.append(
                    f"{who}: {att.interface} has MAC {state['mac']}, not {att.mac_address}"
                )
            if str(att.address) not in state["addresses"]:
                problems.append(f"{who}: {att.interface} lacks its address {att.address}")
            if not state["up"]:
                problems.append(f"{who}: {att.interface} is down")
            if has_shim(config) and address is not None and att.address.ip not in routed:
                problems.append(f"{who}: the host has no route to {att.address.ip} via the shim")
        return problems


# -- a network's options, parsed -----------------------------------------------------------


def mode(config: NetworkConfiguration) -> str:
    return config.options.get("mode", "bridge")


def has_shim(config: NetworkConfiguration) -> bool:
    return mode(config) in SHIM_MODES


def _ip_range(config: NetworkConfiguration) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    text = config.options.get("ip-range")
    return ipaddress.ip_network(text, strict=False) if text else None


def _aux(config: NetworkConfiguration) -> frozenset[ipaddress.IPv4Address]:
    return frozenset(
        a
        for a in (ipaddress.ip_address(t) for t in option_list(config.options, "aux"))
        if isinstance(a, ipaddress.IPv4Address)
    )


def shim_address(config: NetworkConfiguration) -> ipaddress.IPv4Address | None:
    """The host shim's address: the highest usable address of the range (`ip-range`, else
    the subnet) that is neither the gateway nor an aux address."""
    subnet = config.ipv4_subnet
    ip_range = _ip_range(config)
    pool = ip_range if isinstance(ip_range, ipaddress.IPv4Network) else subnet
    taken = _aux(config) | {config.ipv4_gateway}
    top = min(int(pool.broadcast_address), int(subnet.broadcast_address) - 1)
    bottom = max(int(pool.network_address), int(subnet.network_address) + 1)
    for value in range(top, bottom - 1, -1):
        if ipaddress.IPv4Address(value) not in taken:
            return ipaddress.IPv4Address(value)
    return None


def pool_of(config: NetworkConfiguration) -> AddressPool:
    """What our allocator may hand out: the ip-range (else the subnet) without the aux
    addresses and the shim's."""
    ip_range = _ip_range(config)
    reserved = set(_aux(config))
    shim = shim_address(config)
    if shim is not None:
        reserved.add(shim)  # reserved in every mode: a later mode change never clashes
    ranges = (ip_range,) if isinstance(ip_range, ipaddress.IPv4Network) else ()
    return AddressPool(ranges, frozenset(reserved))


def member_alias(attachment: Attachment) -> str:
    from ...dataplane.names import attachment_alias

    return attachment_alias(
        "macvlan", attachment.network, attachment.owner, attachment.interface, PLUGIN
    )
