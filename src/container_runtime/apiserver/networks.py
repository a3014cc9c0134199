"""The network resource in the API server: create, list, inspect, delete, prune, attach.

The API server owns the `networks` table; the plugin's helper realises each
network and allocates its attachments, which the API server records in `endpoints`
(endpoints.py) and counts from there.  A network row is committed before its helper
is asked to build it, and every (re)started helper is sent the committed networks it
lacks (netsync.py), so a crash in between converges.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from ..config import Config
from ..errors import Conflict, Exhausted, InvalidArgument, NotFound
from ..models import (
    DEFAULT_NETWORK,
    DEFAULT_PLUGIN,
    RUNTIME_OPTIONS,
    Attachment,
    Network,
    NetworkConfiguration,
    NetworkMode,
    NetworkStatus,
    check_usable_subnet,
    parse_gateway,
    parse_ipv4_subnet,
    parse_ipv6_subnet,
    parse_key_values,
    parse_mac,
    parse_mtu,
    validate_container_name,
    validate_network_name,
    validate_plugin_name,
)
from ..netoptions import specs_from_table, validate_options
from ..network.plugins import find_plugin
from ..plugin.protocol import CheckReply, NetworkReply
from ..state import Database
from . import endpoints, netsync
from .dnsnames import check_dns_names
from .helpers import HelperClient
from .hostroutes import host_routes

log = logging.getLogger("container-apiserver")

AnyNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class NetworkService:
    def __init__(
        self,
        db: Database,
        config: Config,
        helper_for: Callable[[str], HelperClient],
        on_change: Callable[[bool], object] = lambda wait: None,
    ) -> None:
        self.db = db
        self.config = config
        self.helper_for = helper_for
        self.on_change = on_change
        self.create_lock = threading.Lock()

    # -- reading ----------------------------------------------------------------------------

    def _row_to_network(self, row: sqlite3.Row, users: int) -> Network:
        config = NetworkConfiguration.from_json(json.loads(row["config"]))
        return Network(config, NetworkStatus(row["state"], row["link"]), users)

    def _users(self, conn: sqlite3.Connection, name: str) -> list[str]:
        """Names of the containers and bare attachments that refer to a network."""
        containers = [
            r[0]
            for r in conn.execute(
                "SELECT c.name FROM containers c, json_each(c.config, '$.networks') j"
                " WHERE json_extract(j.value, '$.network') = ?",
                (name,),
            )
        ]
        ids = {
            r[0]
            for r in conn.execute(
                "SELECT c.id FROM containers c, json_each(c.config, '$.networks') j"
                " WHERE json_extract(j.value, '$.network') = ?",
                (name,),
            )
        }
        bare = [
            r[0]
            for r in conn.execute("SELECT owner FROM endpoints WHERE network = ?", (name,))
            if r[0] not in ids
        ]
        return sorted(containers) + sorted(bare)

    def get(self, name: str) -> Network:
        with self.db.read() as conn:
            row = conn.execute("SELECT * FROM networks WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise NotFound(f"network {name} not found")
            return self._row_to_network(row, self._user_count(conn, name))

    # -- creating ---------------------------------------------------------------------------

    def ensure_default(self) -> None:
        """Create `default` at the first start, checked against host routes like any network.

        A subnet the user chose in config.toml that overlaps a host route is refused (the
        API server does not start); the built-in default moves to the next free subnet of
        the pool instead, and says so in the log."""
        with self.db.read() as conn:
            exists = conn.execute(
                "SELECT 1 FROM networks WHERE name = ?", (DEFAULT_NETWORK,)
            ).fetchone()
        if exists:
            return
        subnet, gateway = self._default_subnet()
        config = NetworkConfiguration(
            name=DEFAULT_NETWORK,
            ipv4_subnet=subnet,
            ipv4_gateway=gateway,
            ipv6_subnet=self.config.subnet_v6,
            labels={"builtin": "true"},
            creation_date=datetime.now(UTC).isoformat(),
        )
        with self.db.write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO networks(name, config, state, link, created_at)"
                " VALUES (?, ?, 'created', NULL, ?)",
                (config.name, json.dumps(config.to_json()), config.creation_date),
            )
        log.info(f"container-apiserver: created network default ({config.ipv4_subnet})")

    def _default_subnet(self) -> tuple[ipaddress.IPv4Network, ipaddress.IPv4Address]:
        taken = self._taken()
        where = self.config.path or "config.toml"
        v6 = self.config.subnet_v6
        if v6 is not None:
            clash = _overlap(v6, taken)
            if clash:
                raise Conflict(
                    f"the default network's IPv6 subnet {v6} overlaps {clash}; choose another"
                    f" [network] subnetv6 in {where}"
                )
        subnet = self.config.subnet
        clash = _overlap(subnet, taken)
        if clash is None:
            return subnet, self.config.gateway
        try:
            free: ipaddress.IPv4Network | None = self._free_subnet(taken)
        except Exhausted:
            free = None
        if self.config.subnet_configured or free is None:
            hint = f', e.g. subnet = "{free.network_address + 1}/{free.prefixlen}"' if free else ""
            raise Conflict(
                f"the default network's subnet {subnet} overlaps {clash}; choose another"
                f" [network] subnet in {where}{hint}"
            )
        log.warning(
            f"container-apiserver: the default subnet {subnet} overlaps {clash}; the default"
            f" network uses {free} instead (set [network] subnet in {where} to choose one)"
        )
        return free, free.network_address + 1

    def realise_pending(self) -> None:
        """Start the helper of every plugin in use (each one syncs its networks: sync)."""
        for plugin in sorted({n.configuration.plugin for n in self.list()}):
            self.helper_for(plugin)

    def sync(self, plugin: str, ask: netsync.Ask) -> None:
        """After a helper's (re)start: send it the networks it lacks and delete the ones
        it should not have (netsync.py)."""
        wanted = {n.id: n.configuration for n in self.list() if n.configuration.plugin == plugin}
        netsync.sync_networks(plugin, wanted, ask, lambda config: self._realise(config, ask))

    def strategies(self, plugin: str) -> tuple[str, ...]:
        """The interface strategies a plugin's manifest lists (`tap`: it can serve VMs)."""
        return find_plugin(plugin, self.config.plugin_path).strategies

    def namespace_strategy(self, plugin: str) -> str:
        """The interface strategy a plugin uses for a container's namespace."""
        return find_plugin(plugin, self.config.plugin_path).namespace_strategy()

    def _realise(self, config: NetworkConfiguration, ask: netsync.Ask | None = None) -> None:
        reply = NetworkReply.from_json(
            (ask or self.helper_for(config.plugin).request)(
                "POST", "/networks", config.to_json(), idempotent=True
            )
        )
        dns = reply.dns_for(config.ipv4_gateway)
        with self.db.write() as conn:
            conn.execute(
                "UPDATE networks SET state = 'running', link = ?, dns_address = ? WHERE name = ?",
                (reply.link, "" if dns is None else str(dns), config.name),
            )

    def dns_address(self, name: str) -> str | None:
        """Where the embedded DNS serves a network's members (its plugin said so when the
        network was realised); None when nowhere."""
        with self.db.read() as conn:
            row = conn.execute(
                "SELECT config, dns_address FROM networks WHERE name = ?", (name,)
            ).fetchone()
        if row is None:
            return None
        if row["dns_address"] is None:  # not realised yet, or from before the column
            return str(json.loads(row["config"])["ipv4Gateway"])
        return str(row["dns_address"]) or None

    def create(self, body: dict[str, Any]) -> Network:
        name = str(body.get("name") or "")
        if name == DEFAULT_NETWORK:
            raise Conflict("network default already exists (it is built in)")
        validate_network_name(name)
        # Given but empty is refused, not taken as "the default" (None means not given).
        given_plugin = body.get("plugin")
        plugin = DEFAULT_PLUGIN if given_plugin is None else validate_plugin_name(str(given_plugin))
        manifest = find_plugin(plugin, self.config.plugin_path)
        labels = parse_key_values(_str_list(body.get("labels")), "label")
        if labels.get("builtin"):
            raise InvalidArgument("the label 'builtin' is reserved")
        options = validate_options(
            _str_list(body.get("options")), (*manifest.options, *specs_from_table(RUNTIME_OPTIONS))
        )
        if "mtu" in options:
            parse_mtu(options["mtu"])  # 1280-65535, as an attachment's mtu=
        mode = NetworkMode.INTERNAL if body.get("internal") else NetworkMode.NAT
        subnet_v6 = None
        if body.get("subnetV6") is not None:
            subnet_v6 = parse_ipv6_subnet(str(body["subnetV6"]))
            check_usable_subnet(subnet_v6, "IPv6 subnet")
        with self.create_lock:
            if self._exists(name):
                raise Conflict(f"network {name} already exists")
            # The routes through the links the network lives on (an `interface` option such
            # as macvlan's parent) are its own: the LAN's subnet is routed there.
            own_links = {o.key for o in manifest.options if o.kind == "interface"}
            taken = self._taken({v for k, v in options.items() if k in own_links})
            subnet_text = body.get("subnet")
            gateway_text = body.get("gateway")
            if subnet_text is not None:
                subnet = parse_ipv4_subnet(str(subnet_text))
                check_usable_subnet(subnet)
            elif gateway_text is not None:
                raise InvalidArgument("--gateway needs --subnet")
            else:
                subnet = self._free_subnet(taken)
            gateway = parse_gateway(None if gateway_text is None else str(gateway_text), subnet)
            self._check_overlap(subnet, taken)
            if subnet_v6 is not None:
                self._check_overlap(subnet_v6, taken)
            config = NetworkConfiguration(
                name=name,
                ipv4_subnet=subnet,
                ipv4_gateway=gateway,
                mode=mode,
                plugin=plugin,
                ipv6_subnet=subnet_v6,
                labels=labels,
                options=options,
                creation_date=datetime.now(UTC).isoformat(),
            )
            with self.db.write() as conn:
                conn.execute(
                    "INSERT INTO networks(name, config, state, link, created_at)"
                    " VALUES (?, ?, 'created', NULL, ?)",
                    (name, json.dumps(config.to_json()), config.creation_date),
                )
            try:
                self._realise(config)
            except BaseException:
                with self.db.write() as conn:
                    conn.execute("DELETE FROM networks WHERE name = ?", (name,))
                self._teardown_quietly(config)
                raise
        log.info(f"container-apiserver: created network {name} ({subnet}, {mode.value})")
        self.on_change(False)  # no names yet/left: DNS need not ack
        return self.get(name)

    def _teardown_quietly(self, config: NetworkConfiguration) -> None:
        try:
            self.helper_for(config.plugin).request("DELETE", f"/networks/{config.name}")
        except Exception as exc:  # the helper's reconciliation removes it at its next start
            log.warning(f"container-apiserver: cleanup of network {config.name} failed: {exc}")

    def _exists(self, name: str) -> bool:
        with self.db.read() as conn:
            return (
                conn.execute("SELECT 1 FROM networks WHERE name = ?", (name,)).fetchone()
                is not None
            )

    def _taken(self, own_links: set[str] | None = None) -> list[tuple[AnyNetwork, str]]:
        """Every subnet in use: other networks' and the host's routes (not those through
        our networks' links, nor through `own_links`, the links the new network lives on)."""
        with self.db.read() as conn:
            rows = conn.execute("SELECT config, link FROM networks").fetchall()
        taken: list[tuple[AnyNetwork, str]] = []
        for row in rows:
            c = NetworkConfiguration.from_json(json.loads(row["config"]))
            taken.append((c.ipv4_subnet, f"network {c.name} ({c.ipv4_subnet})"))
            if c.ipv6_subnet is not None:
                taken.append((c.ipv6_subnet, f"network {c.name} ({c.ipv6_subnet})"))
        ours = {row["link"] for row in rows if row["link"]} | (own_links or set())
        for route in host_routes(ours):
            taken.append((route.network, f"host route {route}"))
        return taken

    @staticmethod
    def _check_overlap(subnet: AnyNetwork, taken: list[tuple[AnyNetwork, str]]) -> None:
        clash = _overlap(subnet, taken)
        if clash is not None:
            raise Conflict(f"subnet {subnet} overlaps {clash}")

    def _free_subnet(self, in_use: list[tuple[AnyNetwork, str]]) -> ipaddress.IPv4Network:
        taken = [n for n, _ in in_use if isinstance(n, ipaddress.IPv4Network)]
        pool = self.config.pool
        for candidate in pool.subnets(new_prefix=self.config.pool_prefix):
            if not any(candidate.overlaps(t) for t in taken):
                return candidate
        raise Exhausted(f"no free /{self.config.pool_prefix} left in the pool {pool}; use --subnet")

    # -- deleting ---------------------------------------------------------------------------

    def delete(self, name: str) -> None:
        network = self.get(name)
        if network.configuration.builtin:
            raise InvalidArgument(f"network {name} is built in and cannot be deleted")
        with self.db.write() as conn:
            users = self._users(conn, name)
            if users:
                raise Conflict(f"network {name} is in use by {', '.join(users)}")
            try:
                conn.execute("DELETE FROM networks WHERE name = ?", (name,))
            except sqlite3.IntegrityError:
                raise Conflict(f"network {name} is in use") from None
        self._teardown_quietly(network.configuration)
        log.info(f"container-apiserver: deleted network {name}")
        self.on_change(False)  # no names yet/left: DNS need not ack

    def prune(self) -> list[str]:
        removed = []
        for network in self.list():
            if network.configuration.builtin or network.containers:
                continue
            try:
                self.delete(network.id)
            except (Conflict, NotFound):
                continue  # became used, or removed, since we listed it
            removed.append(network.id)
        return removed

    # -- bare attachments -------------------------------------------------------------------

    def configuration(self, name: str) -> NetworkConfiguration:
        """One network's configuration, without counting its users (hot paths)."""
        with self.db.read() as conn:
            row = conn.execute("SELECT config FROM networks WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"network {name} not found")
        return NetworkConfiguration.from_json(json.loads(row["config"]))

    def attach(self, name: str, body: dict[str, Any]) -> Attachment:
        config = self.configuration(name)
        given = str(body.get("name") or "")
        holder = self._container_named(given)
        if holder is not None:
            raise Conflict(
                f"{given} names container {holder}: a container's attachments are made by"
                " starting it, not with network attach (choose another name)"
            )
        owner = validate_container_name(given)
        mac = body.get("mac")
        if mac is not None:  # an empty --mac is a mistake, not "generate one"
            mac = parse_mac(str(mac))
        self.check_dns_names(owner, [name], owner=owner, what="attachment")
        request = {
            "owner": owner,
            "hostname": owner,
            "mac": mac,
            "mtu": body.get("mtu"),
            "netns": body.get("netns"),
            "strategy": body.get("strategy")
            or (self.namespace_strategy(config.plugin) if body.get("netns") else None),
            "interface": body.get("interface") or "eth0",
            "primary": body.get("primary", True),
        }
        helper = self.helper_for(config.plugin)
        reply = helper.request("POST", f"/networks/{name}/attachments", request, idempotent=True)
        try:
            with self.db.write() as conn:  # the record inspect and DNS read: before the reply
                endpoints.record(conn, config.plugin, reply, owner)
        except sqlite3.IntegrityError:
            self._deleted_meanwhile(config, owner)
            raise NotFound(f"network {name} not found") from None
        try:
            # Again once recorded: of an attach and a start racing for one name, the later
            # check sees both (as container start does).
            self.check_dns_names(owner, [name], owner=owner, what="attachment")
        except Conflict:
            with self.db.write() as conn:
                endpoints.forget(conn, owner, [name])
            helper.request("DELETE", f"/networks/{name}/attachments/{owner}")
            raise
        self.on_change(True)
        return Attachment.from_json(reply)

    def _deleted_meanwhile(self, config: NetworkConfiguration, owner: str) -> None:
        """The network was deleted between an attach's helper call and its record (the
        delete's teardown found this attachment and was refused): release it, and tear the
        network down in the helper unless it was created again."""
        self.helper_for(config.plugin).request(
            "DELETE", f"/networks/{config.name}/attachments/{owner}"
        )
        with self.create_lock:
            if not self._exists(config.name):
                self._teardown_quietly(config)

    def detach(self, name: str, owner: str) -> Attachment:
        config = self.configuration(name)
        with self.db.read() as conn:
            # By id, or by the name of a container that is attached there: either way the
            # interface is the container's, and removing it under a running container
            # would hand its address to the next one while inspect still shows it.
            row = conn.execute(
                "SELECT c.name FROM containers c WHERE c.id = ? OR (c.name = ? AND EXISTS"
                " (SELECT 1 FROM endpoints a WHERE a.network = ? AND a.owner = c.id)"
                " AND NOT EXISTS (SELECT 1 FROM endpoints b WHERE b.network = ?"
                " AND b.owner = ?))",
                (owner, owner, name, name, owner),
            ).fetchone()
        if row is not None:
            raise Conflict(
                f"the attachment to network {name} belongs to container {row[0]}: network"
                f" detach only releases bare attachments (use `container network disconnect"
                f" {name} {row[0]}`)"
            )
        with self.db.write() as conn:  # forgotten first: see endpoints.py
            endpoints.forget(conn, owner, [name])
        helper = self.helper_for(config.plugin)
        reply = helper.request("DELETE", f"/networks/{name}/attachments/{owner}")
        self.on_change(True)
        return Attachment.from_json(reply)

    def _container_named(self, name: str) -> str | None:
        """The container whose id or name is `name` (names without case: they are DNS names)."""
        with self.db.read() as conn:
            row = conn.execute(
                "SELECT name FROM containers WHERE id = ? OR lower(name) = lower(?) LIMIT 1",
                (name, name),
            ).fetchone()
        return None if row is None else str(row[0])

    def check_dns_names(
        self,
        name: str,
        networks: Iterable[str],
        owner: str | None = None,
        what: str = "container",
    ) -> None:
        """Refuse `name` if a live attachment on one of `networks` answers to one of its
        DNS names (see dnsnames.py)."""
        check_dns_names(self.db, self.config.dns_domain, name, networks, owner, what)

    def check(self, name: str) -> CheckReply:
        """`container network check`: the plugin's verification of the network's
        attachments against the kernel."""
        config = self.configuration(name)
        try:
            reply = self.helper_for(config.plugin).request(
                "POST", f"/networks/{name}/check", {}, idempotent=True
            )
        except NotFound as exc:
            if not exc.message.startswith("no such endpoint"):
                raise
            # a plugin that implements the protocol without the call (not on the SDK)
            raise InvalidArgument(f"plugin {config.plugin} cannot check its attachments") from None
        return CheckReply.from_json(reply)

    def check_aliases(self, aliases: Iterable[str], network: str, owner: str | None) -> None:
        """Refuse an alias that is another attachment's own DNS name on `network` (several
        owners may share one alias; see dnsnames.py)."""
        for alias in aliases:
            check_dns_names(self.db, self.config.dns_domain, alias, [network], owner, "alias")

    def attachments(self, name: str) -> list[Attachment]:
        helper = self.helper_for(self.configuration(name).plugin)
        return [
            Attachment.from_json(a) for a in helper.request("GET", f"/networks/{name}/attachments")
        ]

    def reload(self) -> None:
        plugins = {n.configuration.plugin for n in self.list()}
        for plugin in sorted(plugins):
            self.helper_for(plugin).request("POST", "/reload", {}, idempotent=True)

    def _user_count(self, conn: sqlite3.Connection, name: str) -> int:
        """How many containers and bare attachments use a network (counted in SQL)."""
        row = conn.execute(
            "SELECT COUNT(*) FROM (SELECT owner FROM endpoints WHERE network = :n"
            " UNION SELECT c.id FROM containers c, json_each(c.config, '$.networks') j"
            " WHERE json_extract(j.value, '$.network') = :n)",
            {"n": name},
        ).fetchone()
        return int(row[0])

    def list(self) -> list[Network]:
        with self.db.read() as conn:
            rows = conn.execute("SELECT * FROM networks ORDER BY name").fetchall()
            counts = dict(
                conn.execute(
                    "SELECT network, COUNT(*) FROM (SELECT network, owner FROM endpoints"
                    " UNION SELECT json_extract(j.value, '$.network'), c.id"
                    " FROM containers c, json_each(c.config, '$.networks') j) GROUP BY network"
                ).fetchall()
            )
            return [self._row_to_network(r, counts.get(r["name"], 0)) for r in rows]


def _overlap(subnet: AnyNetwork, taken: list[tuple[AnyNetwork, str]]) -> str | None:
    """What `subnet` overlaps ("host route 10.0.0.0/24 (dev eth1)"), or None."""
    for other, what in taken:
        if other.version == subnet.version and subnet.overlaps(other):  # type: ignore[arg-type]
            return what
    return None


def _str_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, dict):
        return [f"{k}={v}" for k, v in value.items()]
    if not isinstance(value, list):
        raise InvalidArgument("expected a list of KEY=VALUE strings")
    return [str(v) for v in value]
