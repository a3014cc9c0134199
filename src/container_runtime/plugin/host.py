"""The plugin SDK host: serves one network plugin's helper protocol around a Driver.

Owns everything a plugin does not need to write itself: the instance lock and pid file,
the Unix socket and its routes (docs/PLUGINS.md), SIGTERM, the allocator (IP, MAC,
gateway) with its two guarantees — a repeated attach of an owner returns the same
attachment, and an allocation is committed before any kernel work and before the reply,
released again if the driver fails — the plugin's private database (store.py: the
network configurations the API server sent, the allocator's tables, the driver's own) and
reconciliation at start. The driver (driver.py) only builds and removes what the host has
committed.  For a driver that allocates itself (Driver.allocates: cni) the same two
guarantees hold over its records (records.py): a pending record is committed before the
driver acts, its reply before the host replies, and reconciliation undoes every record
that did not complete.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import sys
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ..config import load_config
from ..daemon import InstanceLock, host_default_mtu, setup_logging, write_pidfile
from ..errors import ConfigError, Conflict, InvalidArgument, NotFound
from ..http import Request, Router, SelectorHTTPServer
from ..models import Attachment, AttachmentRequest, NetworkConfiguration
from ..paths import Paths
from ..state import Database
from .allocator import AddressPool, Allocator
from .driver import Driver, DriverRecord
from .protocol import PROTOCOL_VERSION, CheckReply, NetworkReply
from .records import DriverRecords
from .statics import Reservation
from .store import migrate_legacy, open_store


class PluginHost:
    """Allocation and state of one plugin's networks, around its driver."""

    def __init__(
        self, driver: Driver, paths: Paths, db: Database, domain: str | None, mtu: int
    ) -> None:
        self.driver = driver
        self.plugin = driver.name
        self.paths = paths
        self.db = db
        self.log = logging.getLogger(f"container-network-{driver.name}")
        self.allocator = Allocator(db, domain, mtu, driver.name)
        self.configs: dict[str, NetworkConfiguration] = {}  # immutable once created
        self.records = DriverRecords(db, driver.name)
        self.owner_locks: dict[tuple[str, str], threading.Lock] = {}
        self.owner_locks_guard = threading.Lock()
        self.pools: dict[str, AddressPool] = {}  # the driver's, per network (as immutable)
        driver.bind(self)

    # -- networks -------------------------------------------------------------------------

    # The plugin's own record of the networks the API server sent (its private database):
    # committed before the driver builds a network, forgotten before it tears one down.

    def network_config(self, name: str) -> NetworkConfiguration:
        cached = self.configs.get(name)
        if cached is not None:
            return cached
        with self.db.read() as conn:
            row = conn.execute("SELECT config FROM networks WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"network {name} not found")
        config = NetworkConfiguration.from_json(json.loads(row["config"]))
        self.configs[name] = config
        return config

    def all_networks(self) -> list[NetworkConfiguration]:
        with self.db.read() as conn:
            rows = conn.execute("SELECT config FROM networks ORDER BY name").fetchall()
        return [NetworkConfiguration.from_json(json.loads(r["config"])) for r in rows]

    def pool(self, config: NetworkConfiguration) -> AddressPool:
        pool = self.pools.get(config.name)
        if pool is None:
            pool = self.pools[config.name] = self.driver.address_pool(config)
        return pool

    def create_network(self, config: NetworkConfiguration) -> NetworkReply:
        if config.plugin != self.plugin:
            raise InvalidArgument(f"network {config.name} belongs to plugin {config.plugin}")
        self.driver.validate(config)
        with self.db.write() as conn:
            new = not conn.execute(
                "SELECT 1 FROM networks WHERE name = ?", (config.name,)
            ).fetchone()
            conn.execute(
                "INSERT INTO networks(name, config, created_at) VALUES (?, ?, ?)"
                " ON CONFLICT(name) DO UPDATE SET config = excluded.config",
                (config.name, json.dumps(config.to_json()), config.creation_date or ""),
            )
        self.configs.pop(config.name, None)
        self.pools.pop(config.name, None)
        try:
            link = self.driver.create_network(config)
        except BaseException:
            if new:  # a network it never had: nothing of it is left held
                self._forget_network(config.name)
            raise
        return NetworkReply(link, self.driver.dns_address(config))

    def delete_network(self, name: str) -> None:
        owners = [a.owner for a in self.allocator.list(network=name)]
        owners += [r.owner for r in self.allocator.reservations(name) if r.owner not in owners]
        if owners:
            raise Conflict(f"network {name} is in use by {', '.join(sorted(owners))}")
        self._forget_network(name)
        self.driver.delete_network(name)

    def _forget_network(self, name: str) -> None:
        try:
            with self.db.write() as conn:
                conn.execute("DELETE FROM alloc_cursor WHERE network = ?", (name,))
                conn.execute("DELETE FROM networks WHERE name = ?", (name,))
        except sqlite3.IntegrityError:  # an attach won the race
            raise Conflict(f"network {name} is in use") from None
        self.configs.pop(name, None)
        self.pools.pop(name, None)

    # -- attachments ----------------------------------------------------------------------

    def attach(self, request: AttachmentRequest) -> Attachment:
        config = self.network_config(request.network)
        if request.strategy and request.strategy not in self.driver.strategies:
            valid = ", ".join(self.driver.strategies) or "none"  # refused before allocating
            raise InvalidArgument(
                f"unknown interface strategy {request.strategy!r} (valid: {valid})"
            )
        if self.driver.allocates:
            with self.owner_lock(request.network, request.owner):
                return self.attach_allocating(request, config)
        attachment, created = self.allocator.allocate(request, config, self.pool(config))
        if not request.strategy:
            return attachment
        if not created and self.allocator.is_ready(config.name, request.owner):
            return attachment  # an idempotent retry of a request that completed
        try:
            host_ifname = self.driver.realise(attachment, request, config)
        except BaseException:
            self.allocator.release(config.name, request.owner)
            raise
        self.allocator.mark_ready(config.name, request.owner, host_ifname)
        return replace(attachment, host_interface=host_ifname)

    def owner_lock(self, network: str, owner: str) -> threading.Lock:
        with self.owner_locks_guard:
            return self.owner_locks.setdefault((network, owner), threading.Lock())

    def attach_allocating(
        self, request: AttachmentRequest, config: NetworkConfiguration
    ) -> Attachment:
        """Attach through a driver that allocates itself: its pending record committed
        first, its reply and data committed before the reply (records.py)."""
        if request.ip is not None or request.ip6 is not None:
            raise InvalidArgument(
                f"network {request.network} (plugin {self.plugin}) picks its own addresses:"
                " static addresses (ip=, ip6=, --ip) are not supported there"
            )
        record, existing, left = self.records.begin(request)  # committed before it acts
        if left is not None:  # an earlier attempt that never completed: undone first
            self.drop(left)
            record, existing, left = self.records.begin(request)
        if existing is not None:  # an idempotent retry of a request that completed
            if request.mac is not None and request.mac != existing.mac_address:
                raise Conflict(
                    f"{request.owner} is already attached to network {request.network}"
                    f" with MAC {existing.mac_address}"
                )
            return existing
        if record is None:
            raise Conflict(f"{request.owner} is being attached to {request.network}")
        try:
            attachment, data = self.driver.allocate(request, config)
        except BaseException:
            self.drop_quietly(record)
            raise
        try:
            self.records.complete(attachment, data)
        except BaseException:
            self.drop_quietly(replace(record, data=data))
            raise
        return attachment

    def drop_quietly(self, record: DriverRecord) -> None:
        """drop, for a failed attach: its own error is the one the caller sees (a record
        it leaves `releasing` is undone again at the next start)."""
        try:
            self.drop(record)
        except Exception as exc:  # noqa: BLE001
            self.log.warning(f"{self.log.name}: undoing {record.owner} on {record.network}: {exc}")

    def drop(self, record: DriverRecord) -> None:
        """Undo a driver-allocated attachment: forgotten, then undone, then its record gone
        (a crash in between leaves a `releasing` record, undone again at start)."""
        self.records.mark_releasing(record.network, record.owner)
        self.driver.deallocate(record)
        self.records.forget(record.network, record.owner)

    def detach(self, network: str, owner: str) -> Attachment:
        if self.driver.allocates:
            with self.owner_lock(network, owner):
                attachment, record = self.records.release(network, owner)  # committed first
                self.driver.deallocate(record)
                self.records.forget(network, owner)
                return attachment
        host_ifname = self.allocator.host_ifname(network, owner)
        attachment = self.allocator.release(network, owner)  # committed before the kernel work
        self.driver.unrealise(attachment, host_ifname)
        return attachment

    def make_primary(self, network: str, owner: str) -> Attachment:
        """Move the owner's default route to this attachment (its primary network went)."""
        attachment = self.allocator.get(network, owner)
        if attachment is None:
            raise NotFound(f"{owner} is not attached to network {network}")
        self.driver.make_primary(attachment, self.network_config(network))
        return attachment

    def reserve(self, network: str, owner: str, body: dict[str, Any]) -> Reservation:
        wanted = Reservation.from_json({**body, "network": network, "owner": owner})
        config = self.network_config(network)
        if self.driver.allocates:  # our allocator is not the one that picks its addresses
            raise InvalidArgument(
                f"network {network} (plugin {self.plugin}) picks its own addresses:"
                " static addresses (ip=, ip6=, --ip) are not supported there"
            )
        return self.allocator.reserve(config, wanted)

    def reconcile(self) -> None:
        if self.driver.allocates:  # what an earlier helper began or ended but never finished
            for record in self.records.list():
                if record.state != "ready":
                    self.drop_quietly(record)
        self.driver.reconcile()

    def check(self, network: str) -> list[str]:
        config = self.network_config(network)
        return self.driver.check(config, self.allocator.list(network=network))

    def status(self) -> dict[str, Any]:
        return {
            "plugin": self.plugin,
            "version": self.driver.version,
            "protocol": PROTOCOL_VERSION,
            "pid": os.getpid(),
            "strategies": list(self.driver.strategies),
            "networks": [c.name for c in self.all_networks()],
            "options": {
                k: v if isinstance(v, str) else list(v) for k, v in self.driver.options.items()
            },
        }


def build_router(host: PluginHost) -> Router:
    router = Router()

    @router.route("GET", "/status")
    def status(_: Request) -> tuple[int, Any]:
        return 200, host.status()

    @router.route("POST", "/networks")
    def create_network(req: Request) -> tuple[int, Any]:
        config = NetworkConfiguration.from_json(_body(req))
        return 200, host.create_network(config).to_json()

    @router.route("DELETE", "/networks/{name}")
    def delete_network(req: Request) -> tuple[int, Any]:
        host.delete_network(req.params["name"])
        return 200, {}

    @router.route("POST", "/networks/{name}/attachments")
    def attach(req: Request) -> tuple[int, Any]:
        body = dict(_body(req))
        body["network"] = req.params["name"]
        return 200, host.attach(AttachmentRequest.from_json(body)).to_json()

    @router.route("POST", "/networks/{name}/check")
    def check(req: Request) -> tuple[int, Any]:
        name = req.params["name"]
        return 200, CheckReply(name, tuple(host.check(name))).to_json()

    @router.route("GET", "/networks/{name}/attachments")
    def list_attachments(req: Request) -> tuple[int, Any]:
        return 200, [a.to_json() for a in host.allocator.list(network=req.params["name"])]

    @router.route("GET", "/networks/{name}/attachments/{owner}")
    def lookup(req: Request) -> tuple[int, Any]:
        found = host.allocator.get(req.params["name"], req.params["owner"])
        if found is None:
            raise NotFound(f"{req.params['owner']} is not attached to {req.params['name']}")
        return 200, found.to_json()

    @router.route("DELETE", "/networks/{name}/attachments/{owner}")
    def detach(req: Request) -> tuple[int, Any]:
        return 200, host.detach(req.params["name"], req.params["owner"]).to_json()

    @router.route("POST", "/networks/{name}/attachments/{owner}/primary")
    def make_primary(req: Request) -> tuple[int, Any]:
        return 200, host.make_primary(req.params["name"], req.params["owner"]).to_json()

    @router.route("GET", "/networks/{name}/reservations")
    def list_reservations(req: Request) -> tuple[int, Any]:
        return 200, [r.to_json() for r in host.allocator.reservations(req.params["name"])]

    @router.route("PUT", "/networks/{name}/reservations/{owner}")
    def reserve(req: Request) -> tuple[int, Any]:
        return 200, host.reserve(req.params["name"], req.params["owner"], _body(req)).to_json()

    @router.route("DELETE", "/networks/{name}/reservations/{owner}")
    def unreserve(req: Request) -> tuple[int, Any]:
        host.allocator.unreserve(req.params["name"], req.params["owner"])
        return 200, {}

    @router.route("PUT", "/portforwards/{owner}")
    def publish(req: Request) -> tuple[int, Any]:
        forwards = _body(req).get("forwards") or []
        if not isinstance(forwards, list):
            raise InvalidArgument("forwards must be a list")
        host.driver.publish(req.params["owner"], forwards)
        return 200, {}

    @router.route("DELETE", "/portforwards/{owner}")
    def unpublish(req: Request) -> tuple[int, Any]:
        host.driver.unpublish(req.params["owner"])
        return 200, {}

    @router.route("POST", "/reload")
    def reload(_: Request) -> tuple[int, Any]:
        host.reconcile()
        return 200, {}

    return router


def _body(req: Request) -> dict[str, Any]:
    if not isinstance(req.body, dict):
        raise InvalidArgument("expected a JSON object")
    return req.body


def serve(make_driver: Callable[[], Driver]) -> None:
    """Run a plugin's helper until SIGTERM: the whole `main` of a plugin built on the SDK."""
    driver = make_driver()
    name = f"container-network-{driver.name}"
    log = setup_logging(name)
    paths = Paths.from_env()
    lock = InstanceLock(paths.run_dir / f"network-{driver.name}.lock")
    if not lock.acquire(timeout=10):
        print(f"Error: {name} is already running", file=sys.stderr)
        sys.exit(1)
    try:
        config = load_config(paths.config_file)
    except ConfigError as exc:
        print(f"Error: {exc.message}", file=sys.stderr)
        sys.exit(2)
    db = open_store(paths.plugin_database(driver.name), driver.schema)
    migrate_legacy(db, paths.database, driver.name, driver.migrate_legacy)
    host = PluginHost(driver, paths, db, config.dns_domain, config.mtu or host_default_mtu())
    host.reconcile()
    socket_path = paths.helper_socket(driver.name)
    server = SelectorHTTPServer(
        socket_path,
        build_router(host),
        mode=0o600,
        on_error=lambda exc: log.exception("internal error", exc_info=exc),
    )
    write_pidfile(paths.helper_pidfile(driver.name))
    stop = threading.Event()
    driver.start(stop)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    log.info(f"{name}: serving on {socket_path}")
    try:
        server.serve_forever()
    finally:
        stop.set()
        server.server_close()
        driver.close()
        socket_path.unlink(missing_ok=True)
        paths.helper_pidfile(driver.name).unlink(missing_ok=True)
        log.info(f"{name}: stopped")
