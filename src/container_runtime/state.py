"""The state database: the API server's SQLite file (WAL), read by the DNS server.

The API server writes `networks`, `containers`, `endpoints` (with `endpoint_aliases`)
and `dns_domains`; the DNS server follows `dns_changes`.  A plugin's state is its own
database file (plugin/store.py), which nothing here reads: everything the rest of the
system knows of an attachment is the API server's `endpoints` record of the helper's reply
(apiserver/endpoints.py).  `Database` and `connect` serve both kinds of file.

A writer waits at most BUSY_TIMEOUT for the write lock; a database that stays locked
(or cannot be written) is a StateUnavailable naming the file, the cause and, for a
lock, the process holding it (found in /proc/locks).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import DatabaseLocked, Unavailable

# Long enough for any of our own transactions (milliseconds each), short enough that a
# lock held by a stuck or foreign process is reported instead of waited on.
BUSY_TIMEOUT = 5.0
# SQLite's WAL write lock: one byte of the -shm file (WALINDEX_LOCK_OFFSET 120 + 0).
_WAL_WRITE_LOCK_BYTE = 120

SCHEMA_VERSION = 4  # 2: endpoints (the DNS change log follows it); 3: no plugin tables;
# 4: networks.link (was `bridge`: the plugin's kernel link, whatever its kind)

SCHEMA = """
CREATE TABLE IF NOT EXISTS networks (
    name TEXT PRIMARY KEY,
    config TEXT NOT NULL,            -- NetworkConfiguration JSON
    state TEXT NOT NULL,             -- created | running | failed
    link TEXT,                       -- the plugin's reply `link` (its kernel link), or NULL
    created_at TEXT NOT NULL,
    dns_address TEXT                 -- the plugin's dnsAddress ('': none, NULL: the gateway)
);
-- What each plugin's helper replied to an attach, as the API server recorded it (the only
-- attachment data inspect, DNS, network users and reconciliation read).
CREATE TABLE IF NOT EXISTS endpoints (
    network TEXT NOT NULL REFERENCES networks(name) ON DELETE RESTRICT,
    owner TEXT NOT NULL,             -- container id or bare attachment name
    plugin TEXT NOT NULL,
    hostname TEXT NOT NULL,          -- as the helper replied (NAME.DOMAIN., lower-case)
    address INTEGER NOT NULL,        -- IPv4 as integer (what the DNS server answers)
    ipv6 TEXT,                       -- IPv6 interface text, or NULL
    attachment TEXT NOT NULL,        -- the helper's reply (Attachment JSON)
    created_at TEXT NOT NULL,
    PRIMARY KEY (network, owner)
);
-- the one-owner-per-DNS-name check (apiserver/dnsnames.py) looks hostnames up per network
CREATE INDEX IF NOT EXISTS endpoints_hostname ON endpoints(network, hostname);
CREATE INDEX IF NOT EXISTS endpoints_owner ON endpoints(owner);
-- DNS aliases of an endpoint (`--network NET,alias=NAME`, `network connect --alias`):
-- written and removed with it by the API server, read by the DNS server. Several owners
-- may share an alias (answered with several records, round-robin).
CREATE TABLE IF NOT EXISTS endpoint_aliases (
    network TEXT NOT NULL,
    owner TEXT NOT NULL,
    alias TEXT NOT NULL,             -- lower-case DNS name
    PRIMARY KEY (network, owner, alias),
    FOREIGN KEY (network, owner) REFERENCES endpoints(network, owner) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS endpoint_aliases_alias ON endpoint_aliases(network, alias);
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


# The change log the DNS server follows, so it re-reads only the endpoints that changed
# (a full reload costs ~7 us per attachment). Written by triggers inside each writer's own
# transaction; only the last 10,000 changes are kept (a reader further behind reloads all).
_LOG = "INSERT INTO dns_changes(network, owner) VALUES ({row})"
_TRIM = "DELETE FROM dns_changes WHERE seq <= (SELECT MAX(seq) FROM dns_changes) - 10000"
TRIGGERS = tuple(
    f"CREATE TRIGGER IF NOT EXISTS {name} AFTER {event} ON {table} BEGIN "
    f"{_LOG.format(row=row)}; {_TRIM}; END"
    for name, event, table, row in (
        ("dns_ep_attach", "INSERT", "endpoints", "NEW.network, NEW.owner"),
        ("dns_ep_detach", "DELETE", "endpoints", "OLD.network, OLD.owner"),
        (
            "dns_ep_reattach",
            "UPDATE OF hostname, address, ipv6",
            "endpoints",
            "NEW.network, NEW.owner",
        ),
        ("dns_alias_add", "INSERT", "endpoint_aliases", "NEW.network, NEW.owner"),
        ("dns_alias_del", "DELETE", "endpoint_aliases", "OLD.network, OLD.owner"),
        ("dns_net_add", "INSERT", "networks", "NULL, NULL"),
        ("dns_net_del", "DELETE", "networks", "NULL, NULL"),
        ("dns_net_set", "UPDATE OF config", "networks", "NULL, NULL"),
        ("dns_dom_add", "INSERT", "dns_domains", "NULL, NULL"),
        ("dns_dom_del", "DELETE", "dns_domains", "NULL, NULL"),
    )
) + (
    # Where a network's DNS listens (its plugin's dnsAddress), when it changes.
    "CREATE TRIGGER IF NOT EXISTS dns_net_listen AFTER UPDATE OF dns_address ON networks"
    " WHEN OLD.dns_address IS NOT NEW.dns_address BEGIN"
    f" {_LOG.format(row='NULL, NULL')}; {_TRIM}; END",
)


# Schema 1 logged the plugin's attachments table (the endpoints of a schema-1 database are
# filled at the API server's next start, from the helpers' replies: apiserver/endpoints.py).
_OLD_TRIGGERS = ("dns_attach", "dns_detach", "dns_reattach")


def connect(path: Path) -> sqlite3.Connection:
    """Open the database with the settings every process must use."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        conn = sqlite3.connect(
            str(path), timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
        )
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode is durable against process crashes (kill -9); only power loss
        # can lose the last transactions.
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT * 1000)}")
    except sqlite3.OperationalError as exc:
        raise unavailable(path, exc) from None
    return conn


class StateUnavailable(Unavailable):
    """The state database cannot be written (its locked case is errors.DatabaseLocked)."""


_LOCKED = ("database is locked", "database table is locked", "database is busy")
_UNWRITABLE = (
    "readonly database",
    "disk is full",
    "disk i/o error",
    "unable to open database file",
    "out of memory",
)


def is_state_message(message: str) -> bool:
    """Whether an error message (e.g. relayed by a helper) is a StateUnavailable's."""
    return message.startswith("state database ")


def is_state_error(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return any(m in text for m in _LOCKED + _UNWRITABLE)


def unavailable(path: Path, exc: sqlite3.Error) -> Unavailable:
    """The user-facing error for a locked or unwritable database."""
    text = str(exc).lower()
    if any(m in text for m in _LOCKED):
        holders = lock_holders(path)
        if holders:
            who = "pid " + ", ".join(str(p) for p in holders)
        else:
            users = open_by(path)
            who = ("pid unknown; open in pid " + ", ".join(map(str, users))) if users else ""
        return DatabaseLocked(
            f"state database {path} is locked by another process"
            f"{f' ({who})' if who else ''}; gave up after {BUSY_TIMEOUT:.0f} s"
        )
    return StateUnavailable(f"state database {path} cannot be written: {exc}")


def _file_ids(path: Path) -> dict[tuple[int, int, int], str]:
    ids = {}
    for p, kind in ((path, "db"), (path.with_name(path.name + "-shm"), "shm")):
        try:
            st = os.stat(p)
        except OSError:
            continue
        ids[(os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)] = kind
    return ids


def lock_holders(path: Path, locks: str | None = None) -> list[int]:
    """Pids (not ours) holding SQLite's write lock on the database, from /proc/locks:
    a WRITE lock on the WAL index byte of the write lock, or any WRITE lock on the
    database file itself (rollback-journal locking, or a foreign tool's flock-style
    lock).  OFD locks carry no pid (-1) and are skipped."""
    ids = _file_ids(path)
    if locks is None:
        try:
            locks = Path("/proc/locks").read_text()
        except OSError:
            return []
    found: list[int] = []
    for line in locks.splitlines():
        # "3: POSIX  ADVISORY  WRITE 1234 08:01:5678 120 120"; waiters have "->" after "3:"
        fields = line.split()
        if len(fields) < 8 or fields[1] == "->" or fields[3] != "WRITE":
            continue
        try:
            pid = int(fields[4])
            major, minor, inode = fields[5].split(":")
            key = (int(major, 16), int(minor, 16), int(inode))
            start = int(fields[6])
            end = -1 if fields[7] == "EOF" else int(fields[7])
        except ValueError:
            continue
        kind = ids.get(key)
        if kind is None or pid <= 0 or pid == os.getpid():
            continue
        covers = start <= _WAL_WRITE_LOCK_BYTE and (end == -1 or end >= _WAL_WRITE_LOCK_BYTE)
        if (kind == "shm" and covers) or kind == "db":
            if pid not in found:
                found.append(pid)
    return found


def open_by(path: Path, limit: int = 5) -> list[int]:
    """Pids (not ours) with the database open (a fuser-like scan of /proc/*/fd)."""
    wanted = {str(path), str(path.resolve())}
    pids: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) in wanted:
                    pids.append(int(entry.name))
                    break
            except OSError:
                continue
        if len(pids) >= limit:
            break
    return sorted(pids)


def apply_schema(path: Path, schema: str, version: int, extra: Iterable[str] = ()) -> None:
    """Create a database's tables (statements separated by `;`), then run `extra` (whole
    statements, e.g. triggers), and record its schema version in `meta`."""
    conn = connect(path)
    try:
        with transaction(conn):
            conn.execute(
                "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )
            for statement in schema.split(";"):
                if statement.strip():
                    conn.execute(statement)
            for statement in extra:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO meta(key, value) VALUES ('schema_version', ?)"
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (str(version),),
            )
    finally:
        conn.close()


def _migrate_networks(path: Path) -> None:
    """Bring an older database's networks table up to date, in one transaction: one from
    before plugins said where their DNS listens lacks `dns_address` (the triggers below
    refer to it, so it is added before they are made); one from before schema 4 calls the
    plugin's link `bridge` (renamed in place: the rows keep their values)."""
    conn = connect(path)
    try:
        columns = {r[1] for r in conn.execute("PRAGMA table_info(networks)")}
        steps = []
        if columns and "dns_address" not in columns:
            steps.append("ALTER TABLE networks ADD COLUMN dns_address TEXT")
        if "bridge" in columns and "link" not in columns:
            steps.append("ALTER TABLE networks RENAME COLUMN bridge TO link")
        if steps:
            with transaction(conn):
                for step in steps:
                    conn.execute(step)
    finally:
        conn.close()


def initialise(path: Path) -> None:
    """The API server's database (the DNS server's triggers with it)."""
    _migrate_networks(path)
    drops = [f"DROP TRIGGER IF EXISTS {old}" for old in _OLD_TRIGGERS]
    apply_schema(path, SCHEMA, SCHEMA_VERSION, [*drops, *TRIGGERS])


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT (write lock taken up front, so no upgrade deadlocks).

    A lock not granted within BUSY_TIMEOUT, or a database that cannot be written, raises
    DatabaseLocked or StateUnavailable (nothing was changed)."""
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        raise _unavailable(conn, exc) from None
    try:
        yield conn
    except BaseException as exc:
        if conn.in_transaction:  # SQLite may already have rolled back (disk full, I/O)
            conn.execute("ROLLBACK")
        if isinstance(exc, sqlite3.OperationalError) and is_state_error(exc):
            raise _unavailable(conn, exc) from None
        raise
    try:
        conn.execute("COMMIT")
    except sqlite3.OperationalError as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise _unavailable(conn, exc) from None


def _unavailable(conn: sqlite3.Connection, exc: sqlite3.OperationalError) -> Exception:
    if not is_state_error(exc):
        return exc
    row = conn.execute("PRAGMA database_list").fetchone()
    return unavailable(Path(row[2]) if row and row[2] else Path("state.db"), exc)


class Database:
    """A connection guarded by a lock, for a multi-threaded daemon."""

    def __init__(self, path: Path, schema: Callable[[Path], None] = initialise) -> None:
        schema(path)
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
