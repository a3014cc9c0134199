"""The DNS view follows the change log incrementally and always equals a full reload."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from container_runtime.apiserver import endpoints
from container_runtime.dns.records import Snapshot, load_snapshot, update_snapshot
from container_runtime.errors import Conflict, Exhausted, NotFound
from container_runtime.models import AttachmentRequest, NetworkConfiguration
from container_runtime.plugin.allocator import Allocator
from container_runtime.plugin.store import open_store
from container_runtime.state import Database


def add_network(db: Database, name: str, subnet: str) -> NetworkConfiguration:
    net = ipaddress.IPv4Network(subnet)
    config = NetworkConfiguration(name=name, ipv4_subnet=net, ipv4_gateway=net.network_address + 1)
    with db.write() as conn:
        conn.execute(
            "INSERT INTO networks(name, config, state, created_at) VALUES (?, ?, 'running', '')",
            (name, json.dumps(config.to_json())),
        )
    return config


class Attacher:
    """Attach and release as the API server does: the plugin's allocator (in its own
    database, beside the API server's), then the API server's endpoints record of its
    reply (what the DNS server reads)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.store = open_store(db.path.parent / "plugins" / "bridge" / "state.db")
        self.allocator = Allocator(self.store, "test", 1500)

    def attach(self, request: AttachmentRequest, config: NetworkConfiguration) -> None:
        with self.store.write() as conn:  # as the plugin was sent it (POST /networks)
            conn.execute(
                "INSERT OR IGNORE INTO networks(name, config, created_at) VALUES (?, ?, '')",
                (config.name, json.dumps(config.to_json())),
            )
        attachment, _ = self.allocator.allocate(request, config)
        with self.db.write() as conn:
            endpoints.record(conn, "bridge", attachment.to_json(), attachment.owner)

    def release(self, network: str, owner: str) -> None:
        with self.db.write() as conn:
            endpoints.forget(conn, owner, [network])
        self.allocator.release(network, owner)


def view(snapshot: Snapshot) -> dict[str, Any]:
    def keys(index: dict[str, list[Any]]) -> dict[str, list[tuple[str, str]]]:
        return {k: sorted((r.network, r.owner) for r in v) for k, v in index.items()}

    return {
        "records": sorted(snapshot.by_key),
        "qnames": keys(snapshot.by_qname),
        "texts": keys(snapshot.by_text),
        "owners": {o: sorted(n) for o, n in snapshot.owner_networks.items()},
    }


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from(["attach", "detach"]),
            st.integers(min_value=0, max_value=6),
            st.sampled_from(["a", "b"]),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_incremental_equals_full_reload(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, int, str]]
) -> None:
    path = tmp_path_factory.mktemp("dnsinc") / "state.db"
    db = Database(path)
    configs = {"a": add_network(db, "a", "10.1.0.0/28"), "b": add_network(db, "b", "10.2.0.0/28")}
    allocator = Attacher(db)
    current = load_snapshot(path, "test", 5)
    for op, n, net in ops:
        owner = f"c{n}"
        try:
            if op == "attach":
                allocator.attach(
                    AttachmentRequest(network=net, owner=owner, hostname=owner), configs[net]
                )
            else:
                allocator.release(net, owner)
        except (Conflict, Exhausted, NotFound):
            pass
        updated = update_snapshot(current, path)
        assert updated is not None, "an attachment change must not need a full reload"
        current = updated
        assert view(current) == view(load_snapshot(path, "test", 5))
    db.close()


def test_network_change_needs_full_reload_and_no_change_is_free(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    db = Database(path)
    add_network(db, "a", "10.1.0.0/28")
    snapshot = load_snapshot(path, "test", 5)
    assert update_snapshot(snapshot, path) is snapshot  # nothing changed: the same object
    add_network(db, "b", "10.2.0.0/28")
    assert update_snapshot(snapshot, path) is None
    db.close()


def test_trimmed_log_needs_full_reload(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    db = Database(path)
    config = add_network(db, "a", "10.1.0.0/16")
    snapshot = load_snapshot(path, "test", 5)
    Attacher(db).attach(AttachmentRequest(network="a", owner="x", hostname="x"), config)
    with db.write() as conn:  # as if 10,000 newer changes had pushed ours out of the log
        conn.execute("DELETE FROM dns_changes WHERE seq <= (SELECT MAX(seq) FROM dns_changes)")
        conn.execute("INSERT INTO dns_changes(network, owner) VALUES ('a', 'y')")
        conn.execute("DELETE FROM dns_changes WHERE seq < (SELECT MAX(seq) FROM dns_changes)")
    assert update_snapshot(snapshot, path) is None
    db.close()


def test_the_dns_listens_where_the_plugin_said(tmp_path: Path) -> None:
    """A network's dnsAddress (stored by the API server from the plugin's reply) is where
    the DNS listens for it and whom it treats as the host: NULL the gateway, '' nowhere."""
    db = Database(tmp_path / "state.db")
    for name, subnet in (("br", "10.40.0.0/24"), ("lan", "10.41.0.0/24"), ("priv", "10.42.0.0/24")):
        add_network(db, name, subnet)
    with db.write() as conn:
        conn.execute("UPDATE networks SET dns_address = '10.41.0.254' WHERE name = 'lan'")
        conn.execute("UPDATE networks SET dns_address = '' WHERE name = 'priv'")
    snapshot = load_snapshot(tmp_path / "state.db", "test", 5)
    listen = {k: [str(a) for a in v] for k, v in snapshot.listen_addresses().items()}
    assert listen == {"br": ["10.40.0.1"], "lan": ["10.41.0.254"], "priv": []}
    assert "10.41.0.254" in snapshot.host_addresses and "10.41.0.1" not in snapshot.host_addresses
