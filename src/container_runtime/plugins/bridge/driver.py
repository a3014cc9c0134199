"""The bridge plugin's driver: a Linux bridge per network, veth/TAP attachments, nftables
NAT, isolation, anti-spoofing and published ports, all through LinuxDataPlane
(dataplane.py) and this folder's firewall.

The only code of this plugin that changes links, addresses, routes, namespaces and nft
rules. It keeps nothing in memory that it cannot rebuild: reconcile() makes the kernel
match the state database, and a watch thread puts our nft tables back when someone else
flushed or deleted them. Allocation, idempotency and commit-before-reply are the SDK
host's (container_runtime.plugin.host); published ports: ports.py.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from typing import Any, ClassVar

from ...errors import ContainerError, InvalidArgument
from ...models import RUNTIME_OPTIONS, Attachment, AttachmentRequest, NetworkConfiguration
from ...plugin.driver import Driver
from ...plugin.host import PluginHost
from . import ports

PLUGIN = "bridge"
WATCH_INTERVAL = 0.5  # s between checks that our nft tables are still there
log = logging.getLogger("container-network-bridge")


class BridgeDriver(Driver):
    name: ClassVar[str] = PLUGIN
    version: ClassVar[str] = "0.1.0"
    strategies: ClassVar[tuple[str, ...]] = ("veth", "tap")
    # as in bridge.toml (the API server checks those), plus the runtime's own
    options: ClassVar[dict[str, tuple[str, ...] | str]] = {
        "variant": ("shared", "isolated"),
        "spoofcheck": ("on", "off"),
        **RUNTIME_OPTIONS,
    }
    schema: ClassVar[str] = ports.SCHEMA

    def bind(self, host: PluginHost) -> None:
        from .dataplane import LinuxDataPlane  # kernel libraries: helper only

        super().bind(host)
        self.db = host.db
        self.allocator = host.allocator
        self.dataplane = LinuxDataPlane(host.paths.netns_dir, plugin=PLUGIN)
        # Kernel changes of one kind are serialised; allocation itself is serialised by the
        # database's write lock, so attaches to different networks overlap only in netlink.
        self.firewall_lock = threading.Lock()

    def start(self, stop: threading.Event) -> None:
        threading.Thread(
            target=self.watch_firewall, args=(stop,), name="firewall-watch", daemon=True
        ).start()

    # -- firewall -------------------------------------------------------------------------

    def sync_firewall(self) -> None:
        # Read inside the lock: an attach that adds its port's elements after this read
        # must not be overwritten by a rebuild from an older read.
        with self.firewall_lock:
            configs = self.host.all_networks()
            networks = [(c, self.dataplane.bridge_name(c.name)) for c in configs]
            guarded_networks = {c.name for c in configs if spoofcheck(c)}
            guarded = [
                port
                for att in self.allocator.list()
                if att.network in guarded_networks and (port := guarded_port(att)) is not None
            ]
            self.dataplane.sync_firewall(networks, self.port_forward_rows(), guarded)

    def watch_firewall(self, stop: threading.Event, interval: float = WATCH_INTERVAL) -> None:
        """Put our nft tables back when someone flushed or deleted them (checked every
        `interval` s; a check is one netlink round trip unless the ruleset changed)."""
        while not stop.wait(interval):
            try:
                if self.dataplane.firewall_intact():
                    continue
                began = time.monotonic()
                self.sync_firewall()
                log.warning(
                    "container-network-bridge: our nftables tables were changed or removed by"
                    f" someone else; restored in {(time.monotonic() - began) * 1000:.0f} ms"
                )
            except Exception as exc:  # noqa: BLE001 - the watcher must keep watching
                log.error(f"container-network-bridge: cannot restore the firewall: {exc}")

    # -- networks -------------------------------------------------------------------------

    def create_network(self, config: NetworkConfiguration) -> str:
        if self.dataplane.ensure_forwarding(ipv6=config.ipv6_subnet is not None):
            log.info("container-network-bridge: enabled IPv4 forwarding (net.ipv4.ip_forward=1)")
        bridge = self.dataplane.setup_network(config)
        try:
            self.sync_firewall()
        except Exception:
            self.dataplane.teardown_network(bridge)
            raise
        log.info(f"container-network-bridge: network {config.name} ready on bridge {bridge}")
        return bridge

    def delete_network(self, name: str) -> None:
        self.dataplane.teardown_network(self.dataplane.bridge_name(name))
        self.sync_firewall()
        log.info(f"container-network-bridge: network {name} removed")

    # -- attachments ----------------------------------------------------------------------

    def realise(
        self, attachment: Attachment, request: AttachmentRequest, config: NetworkConfiguration
    ) -> str:
        port = guarded_port(attachment) if spoofcheck(config) else None
        try:
            if port is not None:  # before the link exists: its first frame is checked
                with self.firewall_lock:
                    self.dataplane.guard_port(port)
            return self.dataplane.attach(
                attachment,
                self.dataplane.bridge_name(config.name),
                request.netns,
                request.strategy or "veth",
                request.primary,
                isolated(config),
            )
        except BaseException:
            if port is not None:
                with self.firewall_lock:
                    self.dataplane.unguard_port(port)
            raise

    def unrealise(self, attachment: Attachment, host_ifname: str | None) -> None:
        if host_ifname:
            self.dataplane.detach(host_ifname)
        port = guarded_port(attachment)
        if port is not None and spoofcheck(self.host.network_config(attachment.network)):
            with self.firewall_lock:
                self.dataplane.unguard_port(port)

    def check(self, config: NetworkConfiguration, attachments: list[Attachment]) -> list[str]:
        from .check import check_network

        host_ifnames = {
            row["owner"]: row["host_ifname"]
            for row in self.allocator.rows()
            if row["network"] == config.name
        }
        with self.firewall_lock:
            return check_network(self.dataplane, config, attachments, host_ifnames)

    def make_primary(self, attachment: Attachment, config: NetworkConfiguration) -> None:
        if attachment.strategy != "veth" or not attachment.netns:
            raise InvalidArgument(
                f"the attachment of {attachment.owner} to network {attachment.network} has no"
                " namespace of ours to route in"
            )
        self.dataplane.ensure_default_route(attachment, attachment.netns)

    # -- published ports ------------------------------------------------------------------

    def port_forward_rows(self) -> list[Any]:
        with self.db.read() as conn:
            rows = conn.execute("SELECT * FROM port_forwards").fetchall()
        return [ports.row_forward(r) for r in rows]

    def publish(self, owner: str, forwards: list[dict[str, Any]]) -> None:
        """Record and apply an owner's published ports; refuse ports taken by anyone."""
        ipv6 = {
            str(att.address.ip): att.ipv6_address.ip if att.ipv6_address else None
            for att in self.allocator.list(owner=owner)
        }
        ports.record(self.db, owner, ports.wanted_forwards(ipv6, forwards))
        try:
            self.sync_firewall()
        except BaseException:
            self.unpublish(owner)
            raise

    def unpublish(self, owner: str) -> None:
        with self.db.write() as conn:
            removed = conn.execute("DELETE FROM port_forwards WHERE owner = ?", (owner,)).rowcount
        if removed:
            self.sync_firewall()

    def migrate_legacy(
        self, old: sqlite3.Connection, new: sqlite3.Connection, owners: set[str]
    ) -> tuple[str, ...]:
        return ports.migrate_legacy(old, new, owners)

    # -- reconciliation -------------------------------------------------------------------

    def reconcile(self) -> None:
        """Make the kernel match the database after a start or a crash."""
        from ...dataplane.names import bridge_alias

        adopted = self.dataplane.adopt_legacy()  # upgrade: pre-11.3 marks become ours
        if adopted:
            log.info(f"container-network-bridge: re-marked {adopted} link(s) from old names")
        networks = self.host.all_networks()
        ipv6 = any(c.ipv6_subnet is not None for c in networks)
        if networks and self.dataplane.ensure_forwarding(ipv6=ipv6):
            log.info("container-network-bridge: enabled IPv4 forwarding (net.ipv4.ip_forward=1)")
        for config in networks:
            try:
                self.dataplane.setup_network(config)
            except ContainerError as exc:
                log.error(f"container-network-bridge: cannot realise network {config.name}: {exc}")
        keep: set[str] = {self.dataplane.bridge_name(c.name) for c in networks}
        for row in self.allocator.rows():
            stale = row["state"] != "ready"  # its request died with the previous helper
            if row["strategy"] == "veth" and row["netns"]:
                stale = stale or not self.dataplane.netns_exists(row["netns"])
            if not stale and row["host_ifname"]:
                config = self.host.network_config(row["network"])
                stale = not self.dataplane.ensure_port(
                    row["host_ifname"],
                    self.dataplane.bridge_name(config.name),
                    isolated(config),
                )
            if stale:
                self.allocator.release(row["network"], row["owner"])
            elif row["host_ifname"]:
                keep.add(row["host_ifname"])
        with self.db.write() as conn:  # ports of containers whose attachments are gone
            conn.execute(
                "DELETE FROM port_forwards WHERE owner NOT IN (SELECT owner FROM attachments)"
            )
        for ifname, alias in self.dataplane.owned_links().items():
            if ifname in keep:
                continue
            log.info(f"container-network-bridge: removing orphan link {ifname} ({alias})")
            if alias.startswith(bridge_alias("", PLUGIN)):
                self.dataplane.teardown_network(ifname)
            else:
                self.dataplane.detach(ifname)
        self.sync_firewall()
        if self.dataplane.remove_legacy_tables():  # after ours exist: no gap in the rules
            log.info("container-network-bridge: removed the old nft tables named 'container'")


def isolated(config: NetworkConfiguration) -> bool:
    """`--option variant=isolated`: members reach only the gateway (default: shared)."""
    return config.options.get("variant", "shared") == "isolated"


def spoofcheck(config: NetworkConfiguration) -> bool:
    """Anti-spoofing is on unless the network was created with `--option spoofcheck=off`."""
    return config.options.get("spoofcheck", "on") != "off"


def guarded_port(attachment: Attachment) -> Any:
    """The anti-spoofing entry of an attachment that has a host port, else None."""
    from ...dataplane.names import host_ifname
    from .antispoof import GuardedPort

    if not attachment.strategy:
        return None  # allocation only: no port of ours
    ifname = host_ifname(
        attachment.strategy, attachment.network, attachment.owner, attachment.interface
    )
    v6 = attachment.ipv6_address.ip if attachment.ipv6_address is not None else None
    return GuardedPort(ifname, attachment.mac_address, attachment.address.ip, v6)
