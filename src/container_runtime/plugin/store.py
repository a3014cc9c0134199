"""A plugin's private state: its own SQLite database, $CONTAINER_ROOT/plugins/NAME/state.db,
owned by the SDK host (host.py).

It holds the network configurations the API server sent (`POST /networks`), the
allocator's `attachments` and `alloc_cursor`, and any tables the driver declares
(`Driver.schema`, e.g. the bridge's `port_forwards`).  Nothing outside the plugin reads
it, and the plugin never reads the API server's database, with one exception: at start,
`migrate_legacy` moves the rows a release before 11.1 kept for this plugin in the shared
$CONTAINER_ROOT/state.db into this file (idempotent: copied and committed here first,
then deleted there, so a crash in between is finished by the next start).

Durability: WAL with synchronous=NORMAL (state.connect).  A transaction is in the WAL
file when COMMIT returns, so it survives a SIGKILL of the helper (commit before reply
holds across process crashes); only an OS crash or power loss can lose the last
transactions before the next checkpoint, as for the API server's database.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path

from ..models import DEFAULT_PLUGIN
from ..state import Database, apply_schema, connect, transaction

log = logging.getLogger("container-network")

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS networks (
    name TEXT PRIMARY KEY,
    config TEXT NOT NULL,            -- NetworkConfiguration JSON, as the API server sent it
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS attachments (
    network TEXT NOT NULL REFERENCES networks(name) ON DELETE RESTRICT,
    owner TEXT NOT NULL,             -- container id or bare attachment name
    hostname TEXT NOT NULL,
    address INTEGER NOT NULL,        -- IPv4 as integer
    prefixlen INTEGER NOT NULL,
    gateway TEXT NOT NULL,
    mac TEXT NOT NULL,
    mtu INTEGER NOT NULL,
    interface TEXT NOT NULL,
    ipv6 TEXT,
    netns TEXT,
    strategy TEXT,
    host_ifname TEXT,
    state TEXT NOT NULL,             -- allocated | ready
    created_at TEXT NOT NULL,
    PRIMARY KEY (network, owner),
    UNIQUE (network, address),
    UNIQUE (network, mac)
);
CREATE UNIQUE INDEX IF NOT EXISTS attachments_ipv6 ON attachments(network, ipv6)
    WHERE ipv6 IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS attachments_host_ifname ON attachments(host_ifname)
    WHERE host_ifname IS NOT NULL;
-- Static addresses held for an owner (a container's ip=/ip6=) while it exists, even
-- stopped: the allocator hands them to no one else (statics.py).
CREATE TABLE IF NOT EXISTS reservations (
    network TEXT NOT NULL REFERENCES networks(name) ON DELETE RESTRICT,
    owner TEXT NOT NULL,             -- container id
    address INTEGER NOT NULL,        -- IPv4 as integer
    ipv6 TEXT,                       -- IPv6 address text (no prefix), or NULL
    created_at TEXT NOT NULL,
    PRIMARY KEY (network, owner),
    UNIQUE (network, address)
);
CREATE UNIQUE INDEX IF NOT EXISTS reservations_ipv6 ON reservations(network, ipv6)
    WHERE ipv6 IS NOT NULL;
CREATE TABLE IF NOT EXISTS alloc_cursor (
    network TEXT PRIMARY KEY,
    next_offset INTEGER NOT NULL
);
-- Attachments whose driver allocates itself (Driver.allocates, e.g. the cni plugin): the
-- host's intent record, committed before the driver acts (state pending -> ready ->
-- releasing), with the driver's own data (the CNI ADD result) once it has acted.
CREATE TABLE IF NOT EXISTS driver_attachments (
    network TEXT NOT NULL,
    owner TEXT NOT NULL,
    plugin TEXT NOT NULL,
    netns TEXT,
    interface TEXT NOT NULL,
    state TEXT NOT NULL,             -- pending | ready | releasing
    data TEXT,                       -- the driver's JSON (NULL until it acted)
    created_at TEXT NOT NULL,
    PRIMARY KEY (network, owner)
)
"""

# Tables of the shared file a release before 11.1 kept for the plugins (all the bridge's).
LEGACY_TABLES = ("attachments", "alloc_cursor")
ATTACHMENT_COLUMNS = (
    "network, owner, hostname, address, prefixlen, gateway, mac, mtu, interface, ipv6,"
    " netns, strategy, host_ifname, state, created_at"
)

# A driver's hook for its own legacy tables: (old shared connection, new connection, the
# owners moved) -> the tables of the old file it emptied of this plugin's rows.
LegacyHook = Callable[[sqlite3.Connection, sqlite3.Connection, set[str]], tuple[str, ...]]


def open_store(path: Path, driver_schema: str = "") -> Database:
    """The plugin's database, its tables created (the driver's too) if missing."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    return Database(
        path, schema=lambda p: apply_schema(p, SCHEMA + ";" + driver_schema, SCHEMA_VERSION)
    )


def migrate_legacy(db: Database, legacy: Path, plugin: str, hook: LegacyHook | None) -> int:
    """Move this plugin's networks and attachments out of the pre-11.1 shared state file;
    returns the number of attachments moved. The old tables are dropped once empty."""
    if not legacy.exists() or legacy == db.path:
        return 0
    old = connect(legacy)
    try:
        tables = {r[0] for r in old.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not {"networks", "attachments"} <= tables:
            return 0
        with transaction(old), db.write() as new:  # new commits first, then old
            nets = [
                (r["name"], r["config"], r["created_at"])
                for r in old.execute("SELECT name, config, created_at FROM networks")
                if json.loads(r["config"]).get("plugin", DEFAULT_PLUGIN) == plugin
            ]
            names = [n for n, _, _ in nets]
            marks = ",".join("?" * len(names))
            rows = old.execute(
                f"SELECT {ATTACHMENT_COLUMNS} FROM attachments WHERE network IN ({marks})", names
            ).fetchall()
            cursors = []
            if "alloc_cursor" in tables:
                cursors = old.execute(
                    f"SELECT network, next_offset FROM alloc_cursor WHERE network IN ({marks})",
                    names,
                ).fetchall()
            new.executemany(
                "INSERT OR IGNORE INTO networks(name, config, created_at) VALUES (?, ?, ?)", nets
            )
            new.executemany(
                f"INSERT OR IGNORE INTO attachments({ATTACHMENT_COLUMNS})"
                f" VALUES ({','.join('?' * 15)})",
                [tuple(r) for r in rows],
            )
            new.executemany(
                "INSERT OR REPLACE INTO alloc_cursor(network, next_offset) VALUES (?, ?)",
                [tuple(r) for r in cursors],
            )
            emptied: tuple[str, ...] = ()
            if hook is not None:
                emptied = hook(old, new, {r["owner"] for r in rows})
            old.execute(f"DELETE FROM attachments WHERE network IN ({marks})", names)
            if "alloc_cursor" in tables:
                old.execute(f"DELETE FROM alloc_cursor WHERE network IN ({marks})", names)
            for table in (*LEGACY_TABLES, *emptied):
                if table in tables and not old.execute(f"SELECT 1 FROM {table}").fetchone():
                    old.execute(f"DROP TABLE {table}")
    finally:
        old.close()
    if rows:
        log.info(
            f"container-network-{plugin}: moved {len(rows)} attachment(s) of {len(nets)}"
            f" network(s) from {legacy} to {db.path}"
        )
    return len(rows)
