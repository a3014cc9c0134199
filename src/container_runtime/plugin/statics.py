"""Static addresses in the SDK allocator: reservations (`ip=`/`ip6=` of a container, held
while it exists, even stopped) and the checks that a static address is free.

Rule (docs/NETWORKING.md, "Static addresses"): a reserved address belongs to its owner
only; the dynamic allocator skips every reserved address and every address an
attachment holds, and a static request is refused when another owner holds or reserves
the address. Reservations live in the plugin's own `reservations` table; the API server
makes and removes them through the protocol (`PUT|DELETE /networks/{name}/reservations/
{owner}`) and reconciles them with `GET /networks/{name}/reservations`.
"""

from __future__ import annotations

import ipaddress
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..errors import Conflict, InvalidArgument, NotFound
from ..models import NetworkConfiguration, check_static_address, validate_owner


@dataclass(frozen=True)
class Reservation:
    """A static address held for an owner on a network (protocol: the reservation reply)."""

    network: str
    owner: str
    address: ipaddress.IPv4Address
    ipv6_address: ipaddress.IPv6Address | None = None

    def __post_init__(self) -> None:
        validate_owner(self.owner)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "network": self.network,
            "owner": self.owner,
            "address": str(self.address),
        }
        if self.ipv6_address is not None:
            out["ipv6Address"] = str(self.ipv6_address)
        return out

    @classmethod
    def from_json(cls, data: Any) -> Reservation:
        if not isinstance(data, dict):
            raise InvalidArgument("a reservation must be a JSON object")
        try:
            v6 = data.get("ipv6Address")
            return cls(
                network=str(data["network"]),
                owner=str(data["owner"]),
                address=ipaddress.IPv4Address(str(data["address"])),
                ipv6_address=ipaddress.IPv6Address(str(v6)) if v6 else None,
            )
        except (KeyError, ValueError) as exc:
            if isinstance(exc, InvalidArgument):
                raise
            raise InvalidArgument(f"invalid reservation: {exc}") from None


def _row(row: sqlite3.Row) -> Reservation:
    return Reservation(
        network=row["network"],
        owner=row["owner"],
        address=ipaddress.IPv4Address(row["address"]),
        ipv6_address=ipaddress.IPv6Address(row["ipv6"]) if row["ipv6"] else None,
    )


def reserved_for(conn: sqlite3.Connection, network: str, owner: str) -> Reservation | None:
    row = conn.execute(
        "SELECT * FROM reservations WHERE network = ? AND owner = ?", (network, owner)
    ).fetchone()
    return None if row is None else _row(row)


def listed(conn: sqlite3.Connection, network: str) -> list[Reservation]:
    rows = conn.execute(
        "SELECT * FROM reservations WHERE network = ? ORDER BY address", (network,)
    ).fetchall()
    return [_row(r) for r in rows]


def ipv6_twin(config: NetworkConfiguration, offset: int) -> ipaddress.IPv6Interface | None:
    """The IPv6 address of a host offset on a dual-stack network (same host part)."""
    v6 = config.ipv6_subnet
    if v6 is None:
        return None
    return ipaddress.IPv6Interface((v6.network_address + offset, v6.prefixlen))


def offset_taken(conn: sqlite3.Connection, config: NetworkConfiguration, offset: int) -> bool:
    """Whether a dynamic allocation must skip a host offset: its IPv4 address (or, on a
    dual-stack network, its IPv6 twin) is held by an attachment or reserved by anyone."""
    address = int(config.ipv4_subnet.network_address) + offset
    name = config.name
    if conn.execute(
        "SELECT 1 FROM attachments WHERE network = ? AND address = ? UNION ALL"
        " SELECT 1 FROM reservations WHERE network = ? AND address = ? LIMIT 1",
        (name, address, name, address),
    ).fetchone():
        return True
    twin = ipv6_twin(config, offset)
    if twin is None:
        return False
    return (
        conn.execute(
            "SELECT 1 FROM attachments WHERE network = ? AND ipv6 = ? UNION ALL"
            " SELECT 1 FROM reservations WHERE network = ? AND ipv6 = ? LIMIT 1",
            (name, str(twin), name, str(twin.ip)),
        ).fetchone()
        is not None
    )


def reserved_count(conn: sqlite3.Connection, network: str) -> int:
    """Reserved addresses no attachment holds yet (they count as in use)."""
    return int(
        conn.execute(
            "SELECT COUNT(*) FROM reservations r WHERE r.network = ? AND NOT EXISTS"
            " (SELECT 1 FROM attachments a WHERE a.network = r.network AND a.address = r.address)",
            (network,),
        ).fetchone()[0]
    )


def static_ipv6(
    config: NetworkConfiguration,
    ip: ipaddress.IPv4Address,
    ip6: ipaddress.IPv6Address | None,
) -> ipaddress.IPv6Interface | None:
    """The IPv6 address a static attachment gets: ip6=, else the IPv4 address's twin."""
    v6 = config.ipv6_subnet
    if v6 is None:
        return None
    if ip6 is not None:
        return ipaddress.IPv6Interface((ip6, v6.prefixlen))
    return ipv6_twin(config, int(ip) - int(config.ipv4_subnet.network_address))


def check_free(
    conn: sqlite3.Connection,
    config: NetworkConfiguration,
    owner: str,
    ip: ipaddress.IPv4Address,
    ip6: ipaddress.IPv6Address | None,
) -> ipaddress.IPv6Interface | None:
    """Refuse a static address that is invalid, or held or reserved by another owner;
    return the IPv6 address it comes with."""
    check_static_address(config, ip, ip6)
    name = config.name
    v6 = static_ipv6(config, ip, ip6)
    for table, column, value, shown in (
        ("attachments", "address", int(ip), str(ip)),
        ("reservations", "address", int(ip), str(ip)),
        ("attachments", "ipv6", str(v6) if v6 else None, str(v6.ip) if v6 else ""),
        ("reservations", "ipv6", str(v6.ip) if v6 else None, str(v6.ip) if v6 else ""),
    ):
        if value is None:
            continue
        row = conn.execute(
            f"SELECT owner FROM {table} WHERE network = ? AND {column} = ? AND owner != ?",
            (name, value, owner),
        ).fetchone()
        if row is not None:
            how = "in use" if table == "attachments" else "reserved"
            raise Conflict(f"address {shown} is already {how} on network {name} by {row[0]}")
    return v6


def reserve(
    conn: sqlite3.Connection,
    config: NetworkConfiguration,
    owner: str,
    ip: ipaddress.IPv4Address,
    ip6: ipaddress.IPv6Address | None,
) -> tuple[Reservation, bool]:
    """Hold a static address for an owner (inside a write transaction); idempotent: the
    same request again changes nothing, another address replaces the owner's old one.
    Returns (reservation, changed)."""
    name = config.name
    v6 = check_free(conn, config, owner, ip, ip6)
    wanted = Reservation(name, owner, ip, v6.ip if v6 else None)
    if reserved_for(conn, name, owner) == wanted:
        return wanted, False
    att = conn.execute(
        "SELECT address FROM attachments WHERE network = ? AND owner = ?", (name, owner)
    ).fetchone()
    if att is not None and att[0] != int(ip):
        raise Conflict(
            f"{owner} is attached to network {name} with address"
            f" {ipaddress.IPv4Address(att[0])}: detach it before reserving {ip}"
        )
    try:
        conn.execute(
            "INSERT INTO reservations(network, owner, address, ipv6, created_at)"
            " VALUES (?,?,?,?,?) ON CONFLICT(network, owner) DO UPDATE SET"
            " address = excluded.address, ipv6 = excluded.ipv6",
            (
                name,
                owner,
                int(ip),
                str(wanted.ipv6_address) if wanted.ipv6_address else None,
                datetime.now(UTC).isoformat(),
            ),
        )
    except sqlite3.IntegrityError as exc:
        if "FOREIGN KEY" in str(exc):
            raise NotFound(f"network {name} not found") from None
        raise Conflict(f"address {ip} is already reserved on network {name}") from None
    return wanted, True


def unreserve(conn: sqlite3.Connection, network: str, owner: str) -> Reservation | None:
    found = reserved_for(conn, network, owner)
    if found is not None:
        conn.execute("DELETE FROM reservations WHERE network = ? AND owner = ?", (network, owner))
    return found
