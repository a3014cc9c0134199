"""Published ports of the bridge plugin: a publish request's forwards (IPv4 and IPv6), the
checks that a host port is free (our table and the host's sockets), and their rows in
`port_forwards` (host_ip '' = every IPv4 address, '::' = every IPv6 address, so that
the key (protocol, host_ip, host_port) stays unique per family).
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import socket
import sqlite3
from typing import Any

from ...errors import Conflict, InvalidArgument
from ...state import Database
from .firewall import PortForward

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# The plugin's own table in its private database (plugin/store.py).
SCHEMA = """
CREATE TABLE IF NOT EXISTS port_forwards (
    owner TEXT NOT NULL,             -- container id
    protocol TEXT NOT NULL,
    host_ip TEXT NOT NULL,           -- '' = every IPv4 address, '::' = every IPv6 address
    host_port INTEGER NOT NULL,
    container_ip TEXT NOT NULL,
    container_port INTEGER NOT NULL,
    PRIMARY KEY (protocol, host_ip, host_port)
)
"""
_COLUMNS = "owner, protocol, host_ip, host_port, container_ip, container_port"


def migrate_legacy(
    old: sqlite3.Connection, new: sqlite3.Connection, owners: set[str]
) -> tuple[str, ...]:
    """Move the published ports out of the pre-11.1 shared file: all of them, as only the
    bridge published ports then (reconcile drops those whose owner has no attachment)."""
    if not old.execute("SELECT 1 FROM sqlite_master WHERE name = 'port_forwards'").fetchone():
        return ()
    rows = old.execute(f"SELECT {_COLUMNS} FROM port_forwards").fetchall()
    new.executemany(
        f"INSERT OR IGNORE INTO port_forwards({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
        [tuple(r) for r in rows],
    )
    old.execute("DELETE FROM port_forwards")
    return ("port_forwards",)


def row_forward(row: Any) -> PortForward:
    return PortForward(
        protocol=row["protocol"],
        host_ip=_ip(row["host_ip"]) if row["host_ip"] else None,
        host_port=row["host_port"],
        container_ip=_ip(row["container_ip"]),
        container_port=row["container_port"],
    )


def wanted_forwards(
    ipv6: dict[str, ipaddress.IPv6Address | None], forwards: list[dict[str, Any]]
) -> list[PortForward]:
    """The kernel forwards of a publish request. ipv6: the owner's IPv4 addresses -> its
    IPv6 address on the same attachment. A spec without host IP becomes an IPv4 and, when
    the container has an IPv6 address on that network, an IPv6 forward."""
    wanted: dict[tuple[int, str, str, int], PortForward] = {}
    for f in _expand(forwards):
        container4 = _ip(str(f["containerIP"]))
        if container4.version != 4:
            raise InvalidArgument(f"containerIP {container4} is not an IPv4 address")
        host_ip = _ip(str(f["hostIP"])) if f.get("hostIP") else None
        container6 = ipv6.get(str(container4))
        targets: list[tuple[IPAddress | None, IPAddress]] = []
        if host_ip is None or host_ip.version == 4:
            targets.append((host_ip, container4))
        if host_ip is not None and host_ip.version == 6 and container6 is None:
            raise InvalidArgument(
                f"cannot publish on [{host_ip}]:{f['hostPort']}: the container has no IPv6"
                " address on its primary network (create it with --subnet-v6)"
            )
        if container6 is not None and (host_ip is None or host_ip.version == 6):
            targets.append((host_ip or ipaddress.IPv6Address("::"), container6))
        for host, container in targets:
            fwd = PortForward(
                protocol=str(f["protocol"]),
                host_ip=host,
                host_port=int(f["hostPort"]),
                container_ip=container,
                container_port=int(f["containerPort"]),
            )
            other = wanted.setdefault(fwd.key, fwd)
            if other != fwd:
                raise Conflict(f"host port {fwd.host_port}/{fwd.protocol} is published twice")
    return list(wanted.values())


def record(db: Database, owner: str, wanted: list[PortForward]) -> None:
    """Replace the owner's rows; refuse a port another owner publishes in the same family
    (one of the two on every address, or both on the same one) or a host socket holds."""
    with db.write() as conn:
        taken: dict[tuple[str, int], list[Any]] = {}
        for row in conn.execute("SELECT * FROM port_forwards WHERE owner != ?", (owner,)):
            taken.setdefault((row["protocol"], row["host_port"]), []).append(row)
        for fwd in wanted:
            for row in taken.get((fwd.protocol, fwd.host_port), []):
                held = row_forward(row)
                if held.version == fwd.version and (
                    held.host_ip is None or fwd.host_ip is None or held.host_ip == fwd.host_ip
                ):
                    raise Conflict(
                        f"host port {fwd.host_port}/{fwd.protocol} is already published by "
                        f"container {row['owner'][:12]}"
                    )
            if port_in_use(fwd.protocol, fwd.host_port, fwd.host_ip, fwd.version):
                raise Conflict(
                    f"host port {fwd.host_port}/{fwd.protocol} is already in use on this host"
                )
        conn.execute("DELETE FROM port_forwards WHERE owner = ?", (owner,))
        conn.executemany(
            "INSERT INTO port_forwards VALUES (?, ?, ?, ?, ?, ?)",
            [
                (
                    owner,
                    fwd.protocol,
                    _host_key(fwd),
                    fwd.host_port,
                    str(fwd.container_ip),
                    fwd.container_port,
                )
                for fwd in wanted
            ],
        )


@functools.lru_cache(maxsize=256)
def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """Parsed once per distinct address (a 10,000-port range repeats one address)."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise InvalidArgument(f"invalid IP address {text!r}") from None


def _expand(forwards: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entries with a `count` (a run of consecutive ports) as one entry per port."""
    out: list[dict[str, Any]] = []
    for f in forwards:
        if not isinstance(f, dict):
            raise InvalidArgument("each forward must be an object")
        count = f.get("count", 1)
        if not isinstance(count, int) or not 1 <= count <= 65535:
            raise InvalidArgument(f"invalid count {count!r} in a forward")
        host, container = int(f["hostPort"]), int(f["containerPort"])
        out.extend(
            {**f, "hostPort": host + i, "containerPort": container + i} for i in range(count)
        )
    return out


def _host_key(fwd: Any) -> str:
    if fwd.host_ip is not None:
        return str(fwd.host_ip)
    return "::" if fwd.version == 6 else ""


def port_in_use(protocol: str, port: int, host_ip: Any, version: int = 4) -> bool:
    """Whether a socket of this host (namespace) is bound to the port: try to bind it."""
    kind = socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM
    family = socket.AF_INET6 if version == 6 else socket.AF_INET
    address = str(host_ip) if host_ip is not None else ("::" if version == 6 else "0.0.0.0")
    with socket.socket(family, kind) as probe:
        if kind == socket.SOCK_STREAM:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            probe.bind((address, port))
        except OSError as exc:
            if exc.errno == errno.EADDRNOTAVAIL:
                raise InvalidArgument(f"host IP {host_ip} is not an address of this host") from None
            return True
    return False
