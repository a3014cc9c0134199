"""The API server's database migrates in place: a file in an older layout (schema 3, its
networks' link in a column named `bridge`; before that, no `dns_address`) keeps every row
and reads as the current one after `state.initialise`."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from container_runtime import state

# The networks table as schema 3 (and, without dns_address, schema 2) made it.
OLD_NETWORKS = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES ('schema_version', '{version}');
CREATE TABLE networks (
    name TEXT PRIMARY KEY,
    config TEXT NOT NULL,
    state TEXT NOT NULL,
    bridge TEXT,
    created_at TEXT NOT NULL{dns}
);
INSERT INTO networks(name, config, state, bridge, created_at)
    VALUES ('default', '{{}}', 'running', 'br-default0', '2026-01-01'),
           ('quiet', '{{}}', 'created', NULL, '2026-01-02');
"""


def old_database(path: Path, version: int, dns_address: bool) -> None:
    db = sqlite3.connect(path)
    try:
        dns = ",\n    dns_address TEXT" if dns_address else ""
        db.executescript(OLD_NETWORKS.format(version=version, dns=dns))
    finally:
        db.close()


def columns(path: Path) -> list[str]:
    db = sqlite3.connect(path)
    try:
        return [r[1] for r in db.execute("PRAGMA table_info(networks)")]
    finally:
        db.close()


def test_an_old_networks_table_gets_link_and_keeps_its_rows(tmp_path: Path) -> None:
    for version, dns in ((3, True), (2, False)):
        path = tmp_path / f"v{version}.db"
        old_database(path, version, dns)
        state.initialise(path)
        assert "bridge" not in columns(path)
        assert {"link", "dns_address"} <= set(columns(path))
        db = state.Database(path)  # a second start: nothing left to migrate
        try:
            with db.read() as conn:
                rows = conn.execute("SELECT name, state, link FROM networks ORDER BY name")
                assert [tuple(r) for r in rows] == [
                    ("default", "running", "br-default0"),
                    ("quiet", "created", None),
                ]
                version_now = conn.execute(
                    "SELECT value FROM meta WHERE key = 'schema_version'"
                ).fetchone()[0]
                assert version_now == str(state.SCHEMA_VERSION)
            # the DNS triggers work on the migrated table (a new network logs a change)
            with db.write() as conn:
                before = conn.execute("SELECT COUNT(*) FROM dns_changes").fetchone()[0]
                conn.execute(
                    "INSERT INTO networks(name, config, state, link, created_at)"
                    " VALUES ('n', '{}', 'running', 'ln0', '')"
                )
                assert conn.execute("SELECT COUNT(*) FROM dns_changes").fetchone()[0] == before + 1
        finally:
            db.close()


def test_a_new_database_has_link_and_no_bridge(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    state.initialise(path)
    state.initialise(path)  # idempotent: the rename runs only where `bridge` exists
    assert "link" in columns(path) and "bridge" not in columns(path)
