"""The state database: one SQLite file (WAL) shared by the API server and the helpers.

Each table has one writer: the API server writes `networks`, `containers` and
`dns_domains`, the network helper writes `attachments` and `alloc_cursor`.  Uniqueness
of an address or MAC on a network is a database constraint, not a Python check.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS networks (
    name TEXT PRIMARY KEY,
    config TEXT NOT NULL,            -- NetworkConfiguration JSON
    state TEXT NOT NULL,             -- created | running | failed
    bridge TEXT,
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
-- the one-owner-per-DNS-name check (apiserver/dnsnames.py) looks hostnames up per network
CREATE INDEX IF NOT EXISTS attachments_hostname ON attachments(network, hostname);
CREATE TABLE IF NOT EXISTS alloc_cursor (
    network TEXT PRIMARY KEY,
    next_offset INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS port_forwards (
    owner TEXT NOT NULL,             -- container id
    protocol TEXT NOT NULL,
    host_ip TEXT NOT NULL,           -- '' = every host address
    host_port INTEGER NOT NULL,
    container_ip TEXT NOT NULL,
    container_port INTEGER NOT NULL,
    PRIMARY KEY (protocol, host_ip, host_port)
);
CREATE TABLE IF NOT EXISTS dns_domains (
    domain TEXT PRIMARY KEY,         -- `container system dns create DOMAIN` (lower-case)
    mechanism TEXT NOT NULL,         -- how the host was pointed at us: resolved | resolv.conf
    link TEXT,                       -- resolved: the link that carries the route domain
    address TEXT,                    -- the DNS server address the host was pointed at
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS dns_changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    network TEXT,                    -- NULL: networks or DNS domains changed (reload all)
    owner TEXT
);
CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    image TEXT NOT NULL,
    config TEXT NOT NULL,            -- ContainerConfig JSON (networks, ports, dns, env, cmd)
    state TEXT NOT NULL,             -- created | running | stopped
    pid INTEGER,
    exit_code INTEGER,
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT
);
"""


# The change log the DNS server follows, so it re-reads only the attachments that changed
# (a full reload costs ~7 us per attachment). Written by triggers inside each writer's own
# transaction; only the last 10,000 changes are kept (a reader further behind reloads all).
_LOG = "INSERT INTO dns_changes(network, owner) VALUES ({row})"
_TRIM = "DELETE FROM dns_changes WHERE seq <= (SELECT MAX(seq) FROM dns_changes) - 10000"
TRIGGERS = tuple(
    f"CREATE TRIGGER IF NOT EXISTS {name} AFTER {event} ON {table} BEGIN "
    f"{_LOG.format(row=row)}; {_TRIM}; END"
    for name, event, table, row in (
        ("dns_attach", "INSERT", "attachments", "NEW.network, NEW.owner"),
        ("dns_detach", "DELETE", "attachments", "OLD.network, OLD.owner"),
        (
            "dns_reattach",
            "UPDATE OF hostname, address, ipv6",
            "attachments",
            "NEW.network, NEW.owner",
        ),
        ("dns_net_add", "INSERT", "networks", "NULL, NULL"),
        ("dns_net_del", "DELETE", "networks", "NULL, NULL"),
        ("dns_net_set", "UPDATE OF config", "networks", "NULL, NULL"),
        ("dns_dom_add", "INSERT", "dns_domains", "NULL, NULL"),
        ("dns_dom_del", "DELETE", "dns_domains", "NULL, NULL"),
    )
)


def connect(path: Path) -> sqlite3.Connection:
    """Open the database with the settings every process must use."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode is durable against process crashes (kill -9); only power loss
    # can lose the last transactions.
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def initialise(path: Path) -> None:
    conn = connect(path)
    try:
        with transaction(conn):
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            for trigger in TRIGGERS:
                conn.execute(trigger)
            conn.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
    finally:
        conn.close()


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT (write lock taken up front, so no upgrade deadlocks)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    else:
        conn.execute("COMMIT")


class Database:
    """A connection guarded by a lock, for a multi-threaded daemon."""

    def __init__(self, path: Path) -> None:
        initialise(path)
        self.path = path
        self.conn = connect(path)
        self.lock = threading.RLock()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        with self.lock, transaction(self.conn) as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        with self.lock:
            yield self.conn

    def close(self) -> None:
        self.conn.close()
