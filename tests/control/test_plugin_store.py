"""Each plugin's state is private (issue 11.1): the SDK host keeps it in its own database,
$CONTAINER_ROOT/plugins/NAME/state.db, and at helper start moves what a release before
11.1 kept for it in the shared state.db (plugin/store.py: migrate_legacy)."""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import sqlite3
from pathlib import Path

from support.instance import Instance, attachments

from container_runtime.client import UnixClient
from container_runtime.dataplane import names
from container_runtime.models import NetworkConfiguration
from container_runtime.plugin.store import migrate_legacy, open_store
from container_runtime.plugins.bridge import ports
from container_runtime.state import initialise

# The plugin tables of the shared file before 11.1 (as state.py created them then).
OLD_TABLES = """
CREATE TABLE attachments (
    network TEXT NOT NULL REFERENCES networks(name) ON DELETE RESTRICT,
    owner TEXT NOT NULL, hostname TEXT NOT NULL, address INTEGER NOT NULL,
    prefixlen INTEGER NOT NULL, gateway TEXT NOT NULL, mac TEXT NOT NULL,
    mtu INTEGER NOT NULL, interface TEXT NOT NULL, ipv6 TEXT, netns TEXT, strategy TEXT,
    host_ifname TEXT, state TEXT NOT NULL, created_at TEXT NOT NULL,
    PRIMARY KEY (network, owner), UNIQUE (network, address), UNIQUE (network, mac)
);
CREATE TABLE alloc_cursor (network TEXT PRIMARY KEY, next_offset INTEGER NOT NULL);
CREATE TABLE port_forwards (
    owner TEXT NOT NULL, protocol TEXT NOT NULL, host_ip TEXT NOT NULL,
    host_port INTEGER NOT NULL, container_ip TEXT NOT NULL, container_port INTEGER NOT NULL,
    PRIMARY KEY (protocol, host_ip, host_port)
);
"""


def old_shared_file(path: Path, networks: dict[str, tuple[str, str]]) -> None:
    """A shared state.db as a release before 11.1 left it: networks (name -> (subnet,
    plugin)) with one attachment `old-NAME` at .5 each, a cursor and one published port."""
    initialise(path)
    db = sqlite3.connect(path)
    with db:
        db.execute("ALTER TABLE networks RENAME COLUMN link TO bridge")  # its name then
        db.executescript(OLD_TABLES)
        for name, (subnet, plugin) in networks.items():
            net = ipaddress.IPv4Network(subnet)
            config = NetworkConfiguration(
                name=name, plugin=plugin, ipv4_subnet=net, ipv4_gateway=net.network_address + 1
            )
            db.execute(
                "INSERT INTO networks(name, config, state, bridge, created_at)"
                " VALUES (?, ?, 'running', ?, '')",
                (name, json.dumps(config.to_json()), names.bridge_name(name)),
            )
            db.execute(
                "INSERT INTO attachments VALUES (?, ?, ?, ?, 24, ?, ?, 1500, 'eth0', NULL, NULL,"
                " NULL, NULL, 'ready', '')",
                (
                    name,
                    f"old-{name}",
                    f"old-{name}.test.",
                    int(net.network_address + 5),
                    str(net.network_address + 1),
                    f"02:00:00:00:{net.network_address.packed[1]:02x}:05",
                ),
            )
            db.execute("INSERT INTO alloc_cursor VALUES (?, 6)", (name,))
        db.execute("INSERT INTO port_forwards VALUES ('old-n1', 'tcp', '', 8080, '10.61.0.5', 80)")
    db.close()


def tables(path: Path) -> set[str]:
    db = sqlite3.connect(path)
    try:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        db.close()


def test_migration_moves_a_plugins_rows_once_and_drops_the_emptied_tables(
    tmp_path: Path,
) -> None:
    shared = tmp_path / "state.db"
    old_shared_file(
        shared,
        {
            "n1": ("10.61.0.0/24", "bridge"),
            "n2": ("10.62.0.0/24", "bridge"),
            "o1": ("10.63.0.0/24", "other"),
        },
    )
    store = open_store(tmp_path / "plugins" / "bridge" / "state.db", ports.SCHEMA)
    # A crash after the plugin's commit and before the shared file's: n1 is already here.
    db = sqlite3.connect(shared)
    n1 = db.execute("SELECT name, config, created_at FROM networks WHERE name = 'n1'").fetchone()
    db.close()
    with store.write() as conn:
        conn.execute("INSERT INTO networks VALUES (?, ?, ?)", n1)
    assert migrate_legacy(store, shared, "bridge", ports.migrate_legacy) == 2
    with store.read() as conn:
        moved = conn.execute("SELECT network, owner, address FROM attachments").fetchall()
        cursors = dict(conn.execute("SELECT network, next_offset FROM alloc_cursor").fetchall())
        forwards = conn.execute("SELECT owner, host_port FROM port_forwards").fetchall()
        nets = [r[0] for r in conn.execute("SELECT name FROM networks ORDER BY name")]
    assert sorted(tuple(r) for r in moved) == [
        ("n1", "old-n1", int(ipaddress.IPv4Address("10.61.0.5"))),
        ("n2", "old-n2", int(ipaddress.IPv4Address("10.62.0.5"))),
    ]
    assert cursors == {"n1": 6, "n2": 6} and [tuple(f) for f in forwards] == [("old-n1", 8080)]
    assert nets == ["n1", "n2"]  # not the other plugin's
    db = sqlite3.connect(shared)
    left = db.execute("SELECT network, owner FROM attachments").fetchall()
    db.close()
    assert left == [("o1", "old-o1")]  # the other plugin's rows stay for it
    assert "port_forwards" not in tables(shared)
    assert migrate_legacy(store, shared, "bridge", None) == 0  # once only

    other = open_store(tmp_path / "plugins" / "other" / "state.db")
    assert migrate_legacy(other, shared, "other", None) == 1
    assert not tables(shared) & {"attachments", "alloc_cursor", "port_forwards"}
    assert {"networks", "endpoints", "containers"} <= tables(shared)  # the API server's


def test_a_helper_start_moves_old_state_and_keeps_every_address(instance: Instance) -> None:
    inst = instance
    inst.cli("system", "stop")
    old_shared_file(inst.root / "state.db", {"legacy": ("10.61.0.0/24", "bridge")})
    inst.start()
    assert not tables(inst.root / "state.db") & {"attachments", "alloc_cursor", "port_forwards"}
    # its networks.bridge column is now `link` and keeps what the helper replied then
    status = inst.cli("network", "inspect", "legacy").json()["status"]
    assert status["link"] == status["bridge"] == names.bridge_name("legacy")
    assert {"attachments", "port_forwards"} <= tables(inst.root / "plugins" / "bridge" / "state.db")
    held = [a for a in attachments(inst, "legacy")]
    assert [(a["owner"], a["address"]) for a in held] == [("old-legacy", "10.61.0.5/24")]
    # The same owner gets the same attachment; a new one continues from the old cursor.
    again = inst.cli("network", "attach", "legacy", "--name", "old-legacy").json()
    assert again["address"] == "10.61.0.5/24"
    fresh = inst.cli("network", "attach", "legacy", "--name", "new1").json()
    assert fresh["address"] == "10.61.0.6/24"
    for owner in ("old-legacy", "new1"):
        inst.cli("network", "detach", "legacy", "--name", owner)
    inst.cli("network", "delete", "legacy")


def test_a_restarted_helper_is_sent_the_networks_it_lacks(instance: Instance) -> None:
    """Its state lost (the file removed under a frozen helper, then SIGKILL): the API
    server sends its networks again before callers use it."""
    inst = instance
    inst.cli("network", "create", "kept", "--subnet", "10.64.0.0/24")
    pid = inst.pid("network-bridge")
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        for path in (inst.root / "plugins" / "bridge").glob("state.db*"):
            path.unlink()
    finally:
        os.kill(pid, signal.SIGKILL)
    inst.wait_pid_change("network-bridge", pid)
    got = inst.cli("network", "attach", "kept", "--name", "m1").json()  # waits for the sync
    assert got["address"] == "10.64.0.2/24"
    status = UnixClient(inst.run_dir / "network-bridge.sock").request("GET", "/status")
    assert sorted(status["networks"]) == ["default", "kept"]
    inst.cli("network", "detach", "kept", "--name", "m1")
