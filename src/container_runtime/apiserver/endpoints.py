"""The API server's record of attachments: the `endpoints` table, one row per (network,
owner), written from the plugin helper's reply to an attach and removed on release.

This record, not any plugin's own state, is what inspect, DNS (dns/records.py follows
its change log), network users and reconciliation read: a plugin keeps its state where
it likes and is reached only through the protocol (docs/PLUGINS.md).

The row is committed before the API server replies to its client.  If the API server
dies between the helper's reply and that commit, `sync` at its next start repairs the
record from each helper's list of attachments (`GET /networks/{name}/attachments`).
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from ..plugin.protocol import parse_attachment
from ..state import Database

log = logging.getLogger("container-apiserver")

# What inspect shows of an attachment (the helper's reply may carry more).
_SHOWN = ("network", "hostname", "address", "gateway", "macAddress", "mtu", "interface")


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def record(
    conn: sqlite3.Connection,
    plugin: str,
    reply: dict[str, Any],
    owner: str,
    aliases: Iterable[str] = (),
) -> None:
    """Insert or replace the endpoint for a helper's attach reply, with its DNS aliases
    (inside a transaction); a malformed reply is a ProtocolError naming the plugin, and
    records nothing."""
    attachment = parse_attachment(plugin, reply)
    conn.execute(
        "INSERT INTO endpoints(network, owner, plugin, hostname, address, ipv6, attachment,"
        " created_at) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(network, owner) DO UPDATE SET"
        " plugin = excluded.plugin, hostname = excluded.hostname, address = excluded.address,"
        " ipv6 = excluded.ipv6, attachment = excluded.attachment",
        (
            attachment.network,
            owner,
            plugin,
            attachment.hostname,
            int(attachment.address.ip),
            str(attachment.ipv6_address) if attachment.ipv6_address else None,
            json.dumps(reply, sort_keys=True),
            _now(),
        ),
    )
    set_aliases(conn, attachment.network, owner, aliases)


def set_aliases(conn: sqlite3.Connection, network: str, owner: str, aliases: Iterable[str]) -> None:
    """Replace an endpoint's DNS aliases (they go with it: ON DELETE CASCADE)."""
    wanted = list(dict.fromkeys(aliases))
    have = [
        r[0]
        for r in conn.execute(
            "SELECT alias FROM endpoint_aliases WHERE network = ? AND owner = ? ORDER BY alias",
            (network, owner),
        )
    ]
    if sorted(wanted) == have:
        return
    conn.execute("DELETE FROM endpoint_aliases WHERE network = ? AND owner = ?", (network, owner))
    conn.executemany(
        "INSERT INTO endpoint_aliases(network, owner, alias) VALUES (?, ?, ?)",
        [(network, owner, a) for a in wanted],
    )


def aliases_of(conn: sqlite3.Connection, owner: str) -> dict[str, list[str]]:
    """An owner's DNS aliases, by network."""
    out: dict[str, list[str]] = {}
    for network, alias in conn.execute(
        "SELECT network, alias FROM endpoint_aliases WHERE owner = ? ORDER BY network, alias",
        (owner,),
    ):
        out.setdefault(str(network), []).append(str(alias))
    return out


def forget(conn: sqlite3.Connection, owner: str, networks: Iterable[str] | None = None) -> None:
    """Delete an owner's endpoints (on the given networks, or all; inside a transaction)."""
    if networks is None:
        conn.execute("DELETE FROM endpoints WHERE owner = ?", (owner,))
        return
    conn.executemany(
        "DELETE FROM endpoints WHERE network = ? AND owner = ?", [(n, owner) for n in networks]
    )


def held(conn: sqlite3.Connection, owner: str) -> list[tuple[str, str]]:
    """(plugin, network) of each endpoint an owner holds."""
    return [
        (str(r[0]), str(r[1]))
        for r in conn.execute(
            "SELECT plugin, network FROM endpoints WHERE owner = ? ORDER BY network", (owner,)
        )
    ]


def shown(conn: sqlite3.Connection, owner: str) -> dict[str, dict[str, Any]]:
    """An owner's attachments as inspect shows them, by network."""
    out: dict[str, dict[str, Any]] = {}
    aliases = aliases_of(conn, owner)
    for (text,) in conn.execute("SELECT attachment FROM endpoints WHERE owner = ?", (owner,)):
        reply = json.loads(text)
        item = {k: reply[k] for k in _SHOWN if k in reply}
        if reply.get("ipv6Address"):
            item["ipv6Address"] = reply["ipv6Address"]
        if aliases.get(str(reply["network"])):
            item["aliases"] = aliases[str(reply["network"])]
        out[str(reply["network"])] = item
    return out


def forget_released(
    db: Database,
    plugin: str,
    networks: Iterable[str],
    listing: Callable[[str], list[dict[str, Any]]],
) -> None:
    """Forget the endpoints of `plugin` its helper no longer holds (its reconciliation at
    a restart releases attachments whose sandbox or link is gone).  `listing(network)` is
    the helper's GET /networks/{network}/attachments.  Endpoints recorded after the
    listing began are left alone: their attach may be in flight."""
    since = _now()
    live: set[tuple[str, str]] = set()
    listed: set[str] = set()
    for network in networks:
        try:
            replies = listing(network)
        except Exception as exc:
            log.warning(f"container-apiserver: listing the attachments of {network}: {exc}")
            continue
        listed.add(network)
        live.update((network, str(r["owner"])) for r in replies)
    with db.write() as conn:
        rows = conn.execute(
            "SELECT network, owner FROM endpoints WHERE plugin = ? AND created_at < ?",
            (plugin, since),
        ).fetchall()
        for network, owner in rows:
            if network in listed and (network, owner) not in live:
                forget(conn, owner, [network])
                log.info(f"container-apiserver: {plugin} released {owner[:12]} on {network}")
