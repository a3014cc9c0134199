"""IP, MAC and gateway allocation for attachments, persisted in the plugin's database
(store.py).

Policy (documented in docs/NETWORKING.md): addresses are handed out round-robin
from a per-network cursor kept in the database, so a just-released address is the
last to be reused (stale ARP and DNS caches elsewhere age out first).  The first
attachment on a fresh network gets the first host after the gateway (.2).
Static addresses (`ip=`/`ip6=`) and their reservations: statics.py; the dynamic
allocator skips every address held or reserved.  Uniqueness of address and MAC per
network is enforced by UNIQUE constraints; every allocation is committed before it is
returned.

A driver may narrow a network's addresses with an AddressPool (its `address_pool`): only
addresses inside `ranges` are handed out dynamically (e.g. macvlan's `ip-range`, the part
of a LAN its DHCP server does not own), never those in `reserved` (addresses others hold).
A static address need only be inside the subnet, as with Docker's `--ip` beside `--ip-range`.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ..errors import Conflict, Exhausted, NotFound
from ..models import (
    DEFAULT_PLUGIN,
    Attachment,
    AttachmentRequest,
    NetworkConfiguration,
    hostname_for,
    network_mtu,
)
from ..state import Database
from . import statics
from .statics import Reservation

log = logging.getLogger("container-network")


def generate_mac() -> str:
    """A random locally administered, unicast MAC."""
    octets = bytearray(os.urandom(6))
    octets[0] = (octets[0] & 0xFC) | 0x02
    return ":".join(f"{o:02x}" for o in octets)


@dataclass(frozen=True)
class AddressPool:
    """The IPv4 addresses a network may hand out: inside `ranges` (all of the subnet when
    empty), never one in `reserved`; the subnet's network, gateway and broadcast never."""

    ranges: tuple[ipaddress.IPv4Network, ...] = ()
    reserved: frozenset[ipaddress.IPv4Address] = field(default_factory=frozenset)

    def bounds(self, subnet: ipaddress.IPv4Network) -> list[tuple[int, int]]:
        """Inclusive offset intervals (from the subnet's base) to allocate from."""
        base = int(subnet.network_address)
        last = subnet.num_addresses - 2
        if not self.ranges:
            return [(1, last)]
        out = []
        for r in self.ranges:
            lo = max(1, int(r.network_address) - base)
            hi = min(last, int(r.broadcast_address) - base)
            if lo <= hi:
                out.append((lo, hi))
        return sorted(out)


FULL_POOL = AddressPool()


def _from_cursor(intervals: list[tuple[int, int]], start: int) -> Iterator[int]:
    """Every offset of the intervals once, from `start` up, then wrapping around (lazily:
    a /8 has 16 million)."""
    for lo, hi in intervals:
        yield from range(max(lo, start), hi + 1)
    for lo, hi in intervals:
        yield from range(lo, min(hi, start - 1) + 1)


def _row_to_attachment(row: sqlite3.Row) -> Attachment:
    address = ipaddress.IPv4Interface((ipaddress.IPv4Address(row["address"]), row["prefixlen"]))
    return Attachment(
        network=row["network"],
        owner=row["owner"],
        hostname=row["hostname"],
        address=address,
        gateway=ipaddress.IPv4Address(row["gateway"]),
        mac_address=row["mac"],
        mtu=row["mtu"],
        interface=row["interface"],
        ipv6_address=ipaddress.IPv6Interface(row["ipv6"]) if row["ipv6"] else None,
        netns=row["netns"],
        strategy=row["strategy"],
        host_interface=row["host_ifname"],
    )


def describe(action: str, attachment: Attachment, plugin: str) -> str:
    """The seed's log format for an allocation or release."""
    return (
        f"container-network-{plugin}: {action} attachment [hostname={attachment.hostname}] "
        f"[address={attachment.address}] [gateway={attachment.gateway}] "
        f"[mac={attachment.mac_address}] [id={attachment.network}]"
    )


class Allocator:
    def __init__(
        self, db: Database, domain: str | None, default_mtu: int, plugin: str = DEFAULT_PLUGIN
    ) -> None:
        self.db = db
        self.domain = domain
        self.default_mtu = default_mtu
        self.plugin = plugin

    def allocate(
        self,
        request: AttachmentRequest,
        config: NetworkConfiguration,
        pool: AddressPool = FULL_POOL,
    ) -> tuple[Attachment, bool]:
        """Return (attachment, created). Idempotent per (network, owner)."""
        subnet = config.ipv4_subnet
        name = config.name
        with self.db.write() as conn:
            # Few statements on the hot path: the UNIQUE constraints detect an existing owner
            # or a MAC in use, instead of a look-up before every insert.
            ip, ip6 = request.ip, request.ip6
            held = statics.reserved_for(conn, name, request.owner)
            if held is not None:  # an owner with a reservation gets exactly that
                if ip is not None and ip != held.address:
                    raise Conflict(
                        f"{request.owner} has address {held.address} reserved on network"
                        f" {name}, not {ip}"
                    )
                ip, ip6 = held.address, held.ipv6_address
            offset: int | None = None
            ipv6: ipaddress.IPv6Interface | None
            if ip is not None:
                if conn.execute(
                    "SELECT 1 FROM attachments WHERE network = ? AND owner = ?",
                    (name, request.owner),
                ).fetchone():
                    return self._existing(conn, request, name), False
                ipv6 = statics.check_free(conn, config, request.owner, ip, ip6)
                address = ip
            else:
                try:
                    offset = self._next_offset(conn, config, pool)
                except Exhausted:
                    if conn.execute(
                        "SELECT 1 FROM attachments WHERE network = ? AND owner = ?",
                        (name, request.owner),
                    ).fetchone():
                        return self._existing(conn, request, name), False  # retry, full net
                    raise
                address = subnet.network_address + offset
                ipv6 = None
                if config.ipv6_subnet is not None:
                    v6 = config.ipv6_subnet
                    if offset >= v6.num_addresses - 1:
                        raise Exhausted(f"network {name} has no free IPv6 addresses in {v6}")
                    ipv6 = statics.ipv6_twin(config, offset)
            mac = request.mac or generate_mac()
            while True:
                attachment = Attachment(
                    network=name,
                    owner=request.owner,
                    hostname=hostname_for(request.hostname, self.domain),
                    address=ipaddress.IPv4Interface((address, subnet.prefixlen)),
                    gateway=config.ipv4_gateway,
                    mac_address=mac,
                    mtu=request.mtu or network_mtu(config) or self.default_mtu,
                    interface=request.interface,
                    ipv6_address=ipv6,
                    netns=request.netns,
                    strategy=request.strategy,
                )
                try:
                    self._insert(conn, attachment, int(address), subnet.prefixlen)
                    break
                except sqlite3.IntegrityError as exc:
                    if "FOREIGN KEY" in str(exc):  # the network was deleted meanwhile
                        raise NotFound(f"network {name} not found") from None
                    if "attachments.owner" in str(exc):
                        return self._existing(conn, request, name), False
                    if "attachments.mac" not in str(exc):
                        raise
                    if request.mac is not None:
                        holder = conn.execute(
                            "SELECT owner FROM attachments WHERE network = ? AND mac = ?",
                            (name, request.mac),
                        ).fetchone()
                        raise Conflict(
                            f"MAC address {request.mac} is already used on network {name} "
                            f"by {holder['owner']}"
                        ) from None
                    mac = generate_mac()  # a random collision: draw again
            if offset is not None:  # a static address does not move the cursor
                conn.execute(
                    "INSERT INTO alloc_cursor(network, next_offset) VALUES (?, ?)"
                    " ON CONFLICT(network) DO UPDATE SET next_offset = excluded.next_offset",
                    (name, offset + 1),
                )
        log.info(describe("allocated", attachment, self.plugin))
        return attachment, True

    @staticmethod
    def _insert(
        conn: sqlite3.Connection, attachment: Attachment, address: int, prefixlen: int
    ) -> None:
        conn.execute(
            "INSERT INTO attachments(network, owner, hostname, address, prefixlen, gateway,"
            " mac, mtu, interface, ipv6, netns, strategy, host_ifname, state, created_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,NULL,?,?)",
            (
                attachment.network,
                attachment.owner,
                attachment.hostname,
                address,
                prefixlen,
                str(attachment.gateway),
                attachment.mac_address,
                attachment.mtu,
                attachment.interface,
                str(attachment.ipv6_address) if attachment.ipv6_address else None,
                attachment.netns,
                attachment.strategy,
                "allocated" if attachment.strategy else "ready",
                datetime.now(UTC).isoformat(),
            ),
        )

    @staticmethod
    def _existing(conn: sqlite3.Connection, request: AttachmentRequest, network: str) -> Attachment:
        """The owner's attachment, for an idempotent retry; refuse a conflicting one."""
        row = conn.execute(
            "SELECT * FROM attachments WHERE network = ? AND owner = ?", (network, request.owner)
        ).fetchone()
        existing = _row_to_attachment(row)
        if request.ip is not None and request.ip != existing.address.ip:
            raise Conflict(
                f"{request.owner} is already attached to network {network} "
                f"with address {existing.address.ip}"
            )
        if request.mac is not None and request.mac != existing.mac_address:
            raise Conflict(
                f"{request.owner} is already attached to network {network} "
                f"with MAC {existing.mac_address}"
            )
        return existing

    def _next_offset(
        self, conn: sqlite3.Connection, config: NetworkConfiguration, pool: AddressPool
    ) -> int:
        subnet = config.ipv4_subnet
        name = config.name
        base = int(subnet.network_address)
        intervals = pool.bounds(subnet)
        # Offsets never handed out: the IPv4 gateway, the IPv6 gateway (::1) whose host part
        # IPv6 addresses share with IPv4 ones, and the pool's reserved addresses.
        reserved = {int(config.ipv4_gateway) - base}
        reserved.update(int(a) - base for a in pool.reserved if a in subnet)
        if config.ipv6_subnet is not None:
            reserved.add(1)

        def inside(offset: int) -> bool:
            return any(lo <= offset <= hi for lo, hi in intervals)

        row = conn.execute(
            "SELECT next_offset FROM alloc_cursor WHERE network = ?", (name,)
        ).fetchone()
        first = intervals[0][0] if intervals else 1
        start = row[0] if row is not None and inside(row[0]) else first
        if (
            start not in reserved
            and inside(start)
            and not statics.offset_taken(conn, config, start)
        ):
            return start  # the common case: a few indexed look-ups, no scan
        capacity = sum(hi - lo + 1 for lo, hi in intervals)
        capacity -= sum(1 for r in reserved if inside(r))
        in_use = conn.execute(
            "SELECT COUNT(*) FROM attachments WHERE network = ?", (name,)
        ).fetchone()[0] + statics.reserved_count(conn, name)
        if in_use >= capacity:
            raise Exhausted(f"network {name} has no free addresses ({in_use} in use)")
        for offset in _from_cursor(intervals, start):
            if offset not in reserved and not statics.offset_taken(conn, config, offset):
                return offset
        raise Exhausted(f"network {name} has no free addresses ({in_use} in use)")

    # -- reservations (statics.py) ------------------------------------------------------

    def reserve(self, config: NetworkConfiguration, reservation: Reservation) -> Reservation:
        with self.db.write() as conn:
            held, changed = statics.reserve(
                conn, config, reservation.owner, reservation.address, reservation.ipv6_address
            )
        if changed:
            log.info(
                f"container-network-{self.plugin}: reserved [address={held.address}]"
                f" [ipv6={held.ipv6_address}] [owner={held.owner}] [id={held.network}]"
            )
        return held

    def unreserve(self, network: str, owner: str) -> Reservation | None:
        with self.db.write() as conn:
            found = statics.unreserve(conn, network, owner)
        if found is not None:
            log.info(
                f"container-network-{self.plugin}: unreserved [address={found.address}]"
                f" [owner={owner}] [id={network}]"
            )
        return found

    def reservations(self, network: str) -> list[Reservation]:
        with self.db.read() as conn:
            return statics.listed(conn, network)

    def release(self, network: str, owner: str) -> Attachment:
        with self.db.write() as conn:
            row = conn.execute(
                "SELECT * FROM attachments WHERE network = ? AND owner = ?", (network, owner)
            ).fetchone()
            if row is None:
                raise NotFound(f"{owner} is not attached to network {network}")
            conn.execute(
                "DELETE FROM attachments WHERE network = ? AND owner = ?", (network, owner)
            )
        attachment = _row_to_attachment(row)
        log.info(describe("released", attachment, self.plugin))
        return attachment

    def mark_ready(self, network: str, owner: str, host_ifname: str | None) -> None:
        with self.db.write() as conn:
            conn.execute(
                "UPDATE attachments SET state = 'ready', host_ifname = ?"
                " WHERE network = ? AND owner = ?",
                (host_ifname, network, owner),
            )

    def is_ready(self, network: str, owner: str) -> bool:
        """Realised (or allocation only): its request completed."""
        with self.db.read() as conn:
            row = conn.execute(
                "SELECT state FROM attachments WHERE network = ? AND owner = ?",
                (network, owner),
            ).fetchone()
        return row is not None and row[0] == "ready"

    def host_ifname(self, network: str, owner: str) -> str | None:
        with self.db.read() as conn:
            row = conn.execute(
                "SELECT host_ifname FROM attachments WHERE network = ? AND owner = ?",
                (network, owner),
            ).fetchone()
        return None if row is None else row[0]

    def get(self, network: str, owner: str) -> Attachment | None:
        with self.db.read() as conn:
            row = conn.execute(
                "SELECT * FROM attachments WHERE network = ? AND owner = ?", (network, owner)
            ).fetchone()
        return None if row is None else _row_to_attachment(row)

    def rows(self) -> list[sqlite3.Row]:
        with self.db.read() as conn:
            return conn.execute("SELECT * FROM attachments").fetchall()

    def list(self, network: str | None = None, owner: str | None = None) -> list[Attachment]:
        sql = "SELECT * FROM attachments"
        clauses: list[str] = []
        args: list[str] = []
        if network is not None:
            clauses.append("network = ?")
            args.append(network)
        if owner is not None:
            clauses.append("owner = ?")
            args.append(owner)
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY network, address"
        with self.db.read() as conn:
            rows = conn.execute(sql, args).fetchall()
        return [_row_to_attachment(r) for r in rows]
