"""`container-network-bridge`: the privileged helper of the bridge plugin.

Owns allocation (IP, MAC, gateway) for its networks and their data plane: the
only process that changes links, addresses, routes, namespaces and nft rules.
It keeps nothing in memory that it cannot rebuild: at start it reconciles the
kernel with the state database, and a watch thread puts our nft tables back when
someone else flushed or deleted them.  Published ports: ports.py.  Protocol:
docs/PLUGINS.md.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from typing import Any

from ..config import load_config
from ..daemon import InstanceLock, host_default_mtu, setup_logging, write_pidfile
from ..errors import ConfigError, Conflict, ContainerError, InvalidArgument, NotFound
from ..http import Request, Router, SelectorHTTPServer
from ..models import Attachment, AttachmentRequest, NetworkConfiguration
from ..paths import Paths
from ..plugin.protocol import PROTOCOL_VERSION
from ..state import Database
from . import ports
from .allocator import Allocator

PLUGIN = "bridge"
WATCH_INTERVAL = 0.5  # s between checks that our nft tables are still there
VERSION = "0.1.0"
log = logging.getLogger("container-network-bridge")


class BridgeHelper:
    def __init__(self, paths: Paths, db: Database, domain: str | None, mtu: int) -> None:
        from ..dataplane import LinuxDataPlane  # kernel libraries: helper only

        self.paths = paths
        self.db = db
        self.allocator = Allocator(db, domain, mtu, PLUGIN)
        self.dataplane = LinuxDataPlane(paths.netns_dir)
        # Kernel changes of one kind are serialised; allocation itself is serialised by the
        # database's write lock, so attaches to different networks overlap only in netlink.
        self.firewall_lock = threading.Lock()
        self.configs: dict[str, NetworkConfiguration] = {}  # immutable once created

    # -- networks -------------------------------------------------------------------------

    def network_config(self, name: str) -> NetworkConfiguration:
        cached = self.configs.get(name)
        if cached is not None:
            return cached
        with self.db.read() as conn:
            row = conn.execute("SELECT config FROM networks WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"network {name} not found")
        config = NetworkConfiguration.from_json(json.loads(row["config"]))
        if config.plugin != PLUGIN:
            raise InvalidArgument(f"network {name} belongs to plugin {config.plugin}")
        self.configs[name] = config
        return config

    def all_networks(self) -> list[NetworkConfiguration]:
        with self.db.read() as conn:
            rows = conn.execute("SELECT config FROM networks ORDER BY name").fetchall()
        configs = [NetworkConfiguration.from_json(json.loads(r["config"])) for r in rows]
        return [c for c in configs if c.plugin == PLUGIN]

    def sync_firewall(self) -> None:
        # Read inside the lock: an attach that adds its port's elements after this read
        # must not be overwritten by a rebuild from an older read.
        with self.firewall_lock:
            configs = self.all_networks()
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

    def create_network(self, config: NetworkConfiguration) -> str:
        self.configs.pop(config.name, None)
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
        owners = [a.owner for a in self.allocator.list(network=name)]
        if owners:
            raise Conflict(f"network {name} is in use by {', '.join(sorted(owners))}")
        self.configs.pop(name, None)
        bridge = self.dataplane.bridge_name(name)
        self.dataplane.teardown_network(bridge)
        self.allocator.forget_network(name)
        self.sync_firewall()
        log.info(f"container-network-bridge: network {name} removed")

    # -- attachments ----------------------------------------------------------------------

    def attach(self, request: AttachmentRequest) -> Attachment:
        config = self.network_config(request.network)
        attachment, created = self.allocator.allocate(request, config)
        if not request.strategy:
            return attachment
        if not created and self.allocator.host_ifname(config.name, request.owner):
            return attachment  # an idempotent retry of a request that completed
        port = guarded_port(attachment) if spoofcheck(config) else None
        try:
            if port is not None:  # before the link exists: its first frame is checked
                with self.firewall_lock:
                    self.dataplane.guard_port(port)
            host_ifname = self.dataplane.attach(
                attachment,
                self.dataplane.bridge_name(config.name),
                request.netns,
                request.strategy,
                request.primary,
                config.variant == "isolated",
            )
        except BaseException:
            self.allocator.release(config.name, request.owner)
            if port is not None:
                with self.firewall_lock:
                    self.dataplane.unguard_port(port)
            raise
        self.allocator.mark_ready(config.name, request.owner, host_ifname)
        return attachment

    def detach(self, network: str, owner: str) -> Attachment:
        host_ifname = self.allocator.host_ifname(network, owner)
        attachment = self.allocator.release(network, owner)  # committed before the kernel work
        if host_ifname:
            self.dataplane.detach(host_ifname)
        port = guarded_port(attachment)
        if port is not None and spoofcheck(self.network_config(network)):
            with self.firewall_lock:
                self.dataplane.unguard_port(port)
        return attachment

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

    # -- reconciliation -------------------------------------------------------------------

    def reconcile(self) -> None:
        """Make the kernel match the database after a start or a crash."""
        from ..dataplane.names import bridge_alias

        adopted = self.dataplane.adopt_legacy()  # upgrade: pre-11.3 marks become ours
        if adopted:
            log.info(f"container-network-bridge: re-marked {adopted} link(s) from old names")
        networks = self.all_networks()
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
                config = self.network_config(row["network"])
                stale = not self.dataplane.ensure_port(
                    row["host_ifname"],
                    self.dataplane.bridge_name(config.name),
                    config.variant == "isolated",
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
            if alias.startswith(bridge_alias("", self.dataplane.plugin)):
                self.dataplane.teardown_network(ifname)
            else:
                self.dataplane.detach(ifname)
        self.sync_firewall()
        if self.dataplane.remove_legacy_tables():  # after ours exist: no gap in the rules
            log.info("container-network-bridge: removed the old nft tables named 'container'")


def build_router(helper: BridgeHelper) -> Router:
    router = Router()

    @router.route("GET", "/status")
    def status(_: Request) -> tuple[int, Any]:
        return 200, {
            "plugin": PLUGIN,
            "version": VERSION,
            "protocol": PROTOCOL_VERSION,
            "pid": os.getpid(),
            "strategies": ["veth", "tap"],
            "networks": [c.name for c in helper.all_networks()],
        }

    @router.route("POST", "/networks")
    def create_network(req: Request) -> tuple[int, Any]:
        config = NetworkConfiguration.from_json(_body(req))
        return 200, {"bridge": helper.create_network(config)}

    @router.route("DELETE", "/networks/{name}")
    def delete_network(req: Request) -> tuple[int, Any]:
        helper.delete_network(req.params["name"])
        return 200, {}

    @router.route("POST", "/networks/{name}/attachments")
    def attach(req: Request) -> tuple[int, Any]:
        body = dict(_body(req))
        body["network"] = req.params["name"]
        attachment = helper.attach(AttachmentRequest.from_json(body))
        return 200, attachment.to_json()

    @router.route("GET", "/networks/{name}/attachments")
    def list_attachments(req: Request) -> tuple[int, Any]:
        return 200, [a.to_json() for a in helper.allocator.list(network=req.params["name"])]

    @router.route("GET", "/networks/{name}/attachments/{owner}")
    def lookup(req: Request) -> tuple[int, Any]:
        found = helper.allocator.get(req.params["name"], req.params["owner"])
        if found is None:
            raise NotFound(f"{req.params['owner']} is not attached to {req.params['name']}")
        return 200, found.to_json()

    @router.route("DELETE", "/networks/{name}/attachments/{owner}")
    def detach(req: Request) -> tuple[int, Any]:
        return 200, helper.detach(req.params["name"], req.params["owner"]).to_json()

    @router.route("PUT", "/portforwards/{owner}")
    def publish(req: Request) -> tuple[int, Any]:
        forwards = _body(req).get("forwards") or []
        if not isinstance(forwards, list):
            raise InvalidArgument("forwards must be a list")
        helper.publish(req.params["owner"], forwards)
        return 200, {}

    @router.route("DELETE", "/portforwards/{owner}")
    def unpublish(req: Request) -> tuple[int, Any]:
        helper.unpublish(req.params["owner"])
        return 200, {}

    @router.route("POST", "/reload")
    def reload(_: Request) -> tuple[int, Any]:
        helper.reconcile()
        return 200, {}

    return router


def spoofcheck(config: NetworkConfiguration) -> bool:
    """Anti-spoofing is on unless the network was created with `--option spoofcheck=off`."""
    return config.options.get("spoofcheck", "on") != "off"


def guarded_port(attachment: Attachment) -> Any:
    """The anti-spoofing entry of an attachment that has a host port, else None."""
    from ..dataplane.antispoof import GuardedPort
    from ..dataplane.names import host_ifname

    if not attachment.strategy:
        return None  # allocation only: no port of ours
    ifname = host_ifname(
        attachment.strategy, attachment.network, attachment.owner, attachment.interface
    )
    v6 = attachment.ipv6_address.ip if attachment.ipv6_address is not None else None
    return GuardedPort(ifname, attachment.mac_address, attachment.address.ip, v6)


def _body(req: Request) -> dict[str, Any]:
    if not isinstance(req.body, dict):
        raise InvalidArgument("expected a JSON object")
    return req.body


def main() -> None:
    log_ = setup_logging("container-network-bridge")
    paths = Paths.from_env()
    lock = InstanceLock(paths.run_dir / f"network-{PLUGIN}.lock")
    if not lock.acquire(timeout=10):
        print("Error: container-network-bridge is already running", file=sys.stderr)
        sys.exit(1)
    try:
        config = load_config(paths.config_file)
    except ConfigError as exc:
        print(f"Error: {exc.message}", file=sys.stderr)
        sys.exit(2)
    db = Database(paths.database)
    helper = BridgeHelper(paths, db, config.dns_domain, config.mtu or host_default_mtu())
    helper.reconcile()
    server = SelectorHTTPServer(
        paths.helper_socket(PLUGIN),
        build_router(helper),
        mode=0o600,
        on_error=lambda exc: log_.exception("internal error", exc_info=exc),
    )
    write_pidfile(paths.helper_pidfile(PLUGIN))
    stop_watch = threading.Event()
    threading.Thread(
        target=helper.watch_firewall, args=(stop_watch,), name="firewall-watch", daemon=True
    ).start()
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    log_.info(f"container-network-bridge: serving on {paths.helper_socket(PLUGIN)}")
    try:
        server.serve_forever()
    finally:
        stop_watch.set()
        server.server_close()
        paths.helper_socket(PLUGIN).unlink(missing_ok=True)
        paths.helper_pidfile(PLUGIN).unlink(missing_ok=True)
        log_.info("container-network-bridge: stopped")


if __name__ == "__main__":
    main()
