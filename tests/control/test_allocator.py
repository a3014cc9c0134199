"""The allocator against a real SQLite state database (no kernel needed)."""

from __future__ import annotations

import ipaddress
import json
import logging
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from container_runtime.errors import Conflict, Exhausted, NotFound
from container_runtime.models import AttachmentRequest, NetworkConfiguration
from container_runtime.plugin.allocator import AddressPool, Allocator
from container_runtime.plugin.store import open_store
from container_runtime.state import Database


def make_network(
    db: Database,
    name: str,
    subnet: str,
    gateway: str | None = None,
    v6: str | None = None,
    options: dict[str, str] | None = None,
) -> NetworkConfiguration:
    net = ipaddress.IPv4Network(subnet)
    config = NetworkConfiguration(
        name=name,
        ipv4_subnet=net,
        ipv4_gateway=ipaddress.IPv4Address(gateway) if gateway else net.network_address + 1,
        ipv6_subnet=ipaddress.IPv6Network(v6) if v6 else None,
        options=options or {},
    )
    with db.write() as conn:
        conn.execute(
            "INSERT INTO networks(name, config, created_at) VALUES (?, ?, '')",
            (name, json.dumps(config.to_json())),
        )
    return config


def req(
    owner: str, network: str = "foo", mac: str | None = None, mtu: int | None = None
) -> AttachmentRequest:
    return AttachmentRequest(network=network, owner=owner, hostname=owner, mac=mac, mtu=mtu)


@pytest.fixture
def db(tmp_path: Path) -> Database:
    return open_store(tmp_path / "state.db")


def test_first_address_is_dot_two_and_log_format(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    config = make_network(db, "foo", "192.168.100.0/24")
    allocator = Allocator(db, "test", 1500)
    with caplog.at_level(logging.INFO):
        att, created = allocator.allocate(req("web", mac="02:42:ac:11:00:02"), config)
    assert created
    assert str(att.address) == "192.168.100.2/24"
    assert str(att.gateway) == "192.168.100.1"
    assert att.hostname == "web.test." and att.mtu == 1500
    assert (
        "container-network-bridge: allocated attachment [hostname=web.test.] "
        "[address=192.168.100.2/24] [gateway=192.168.100.1] [mac=02:42:ac:11:00:02] [id=foo]"
    ) in caplog.text
    with caplog.at_level(logging.INFO):
        allocator.release("foo", "web")
    assert "container-network-bridge: released attachment [hostname=web.test.]" in caplog.text


def test_never_network_gateway_or_broadcast_and_exhaustion(db: Database) -> None:
    config = make_network(db, "small", "10.9.0.0/29", gateway="10.9.0.4")
    allocator = Allocator(db, None, 1500)
    got = [allocator.allocate(req(f"c{i}", "small"), config)[0] for i in range(5)]
    addresses = sorted(int(a.address.ip) - int(config.ipv4_subnet.network_address) for a in got)
    assert addresses == [1, 2, 3, 5, 6]  # not 0 (network), 4 (gateway), 7 (broadcast)
    assert got[0].hostname == "c0"  # no domain configured
    with pytest.raises(Exhausted, match=r"network small has no free addresses \(5 in use\)"):
        allocator.allocate(req("c5", "small"), config)
    # Nothing was held by the failed request.
    assert len(allocator.list("small")) == 5


def test_round_robin_after_release(db: Database) -> None:
    config = make_network(db, "foo", "10.1.0.0/24")
    allocator = Allocator(db, "test", 1500)
    a = allocator.allocate(req("a"), config)[0]
    allocator.allocate(req("b"), config)
    allocator.release("foo", "a")
    c = allocator.allocate(req("c"), config)[0]
    assert str(a.address.ip) == "10.1.0.2" and str(c.address.ip) == "10.1.0.4"


def test_generated_macs_are_local_unicast_and_unique(db: Database) -> None:
    config = make_network(db, "foo", "10.1.0.0/22")
    allocator = Allocator(db, "test", 1500)
    macs = [allocator.allocate(req(f"c{i}"), config)[0].mac_address for i in range(300)]
    assert len(set(macs)) == 300
    for mac in macs:
        first = int(mac[:2], 16)
        assert first & 0x02 and not first & 0x01


def test_given_mac_unique_per_network_only(db: Database) -> None:
    foo = make_network(db, "foo", "10.1.0.0/24")
    bar = make_network(db, "bar", "10.2.0.0/24")
    allocator = Allocator(db, "test", 1500)
    allocator.allocate(req("a", mac="02:00:00:00:00:01"), foo)
    with pytest.raises(Conflict, match="already used on network foo by a"):
        allocator.allocate(req("b", mac="02:00:00:00:00:01"), foo)
    allocator.allocate(req("b", "bar", mac="02:00:00:00:00:01"), bar)
    assert [x.owner for x in allocator.list("foo")] == ["a"]


def test_idempotent_per_owner(db: Database) -> None:
    config = make_network(db, "foo", "10.1.0.0/24")
    allocator = Allocator(db, "test", 1500)
    first, created = allocator.allocate(req("a", mtu=1400), config)
    again, created_again = allocator.allocate(req("a"), config)
    assert created and not created_again and first == again
    with pytest.raises(Conflict, match="already attached"):
        allocator.allocate(req("a", mac="02:00:00:00:00:09"), config)


def test_ipv6_follows_ipv4_offset(db: Database) -> None:
    config = make_network(db, "foo", "10.1.0.0/24", v6="fd00:1::/64")
    att = Allocator(db, "test", 1500).allocate(req("a"), config)[0]
    assert str(att.ipv6_address) == "fd00:1::2/64"


def test_release_unknown_is_not_found(db: Database) -> None:
    make_network(db, "foo", "10.1.0.0/24")
    with pytest.raises(NotFound):
        Allocator(db, "test", 1500).release("foo", "ghost")


def test_database_enforces_uniqueness_itself(db: Database) -> None:
    config = make_network(db, "foo", "10.1.0.0/24")
    att = Allocator(db, "test", 1500).allocate(req("a"), config)[0]
    with pytest.raises(sqlite3.IntegrityError), db.write() as conn:
        conn.execute(
            "INSERT INTO attachments(network, owner, hostname, address, prefixlen, gateway, mac,"
            " mtu, interface, state, created_at) VALUES ('foo','b','b',?,24,'10.1.0.1',"
            "'02:00:00:00:00:02',1500,'eth0','ready','')",
            (int(att.address.ip),),
        )
    with pytest.raises(sqlite3.IntegrityError), db.write() as conn:
        conn.execute(
            "INSERT INTO attachments(network, owner, hostname, address, prefixlen, gateway, mac,"
            " mtu, interface, state, created_at) VALUES ('foo','b','b',?,24,'10.1.0.1',?,1500,"
            "'eth0','ready','')",
            (int(att.address.ip) + 1, att.mac_address),
        )


def test_network_with_attachments_cannot_be_deleted(db: Database) -> None:
    config = make_network(db, "foo", "10.1.0.0/24")
    Allocator(db, "test", 1500).allocate(req("a"), config)
    with pytest.raises(sqlite3.IntegrityError), db.write() as conn:
        conn.execute("DELETE FROM networks WHERE name = 'foo'")


operations = st.lists(
    st.tuples(
        st.sampled_from(["alloc", "release"]),
        st.integers(min_value=0, max_value=15),  # owner
        st.sampled_from(["n1", "n2"]),
        st.one_of(st.none(), st.integers(min_value=1, max_value=6)),  # optional fixed MAC
    ),
    max_size=80,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=operations)
def test_no_two_live_attachments_share_address_or_mac(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, int, str, int | None]]
) -> None:
    db = open_store(tmp_path_factory.mktemp("prop") / "state.db")
    configs = {
        "n1": make_network(db, "n1", "10.1.0.0/28"),
        "n2": make_network(db, "n2", "10.2.0.0/29"),
    }
    allocator = Allocator(db, "test", 1500)
    live: dict[tuple[str, str], tuple[str, str]] = {}
    for op, owner_id, net, mac_id in ops:
        owner = f"o{owner_id}"
        if op == "alloc":
            mac = f"02:00:00:00:00:{mac_id:02x}" if mac_id else None
            try:
                att, _ = allocator.allocate(req(owner, net, mac=mac), configs[net])
            except (Conflict, Exhausted):
                continue
            live[(net, owner)] = (str(att.address.ip), att.mac_address)
            assert att.address.ip in configs[net].ipv4_subnet
            assert att.address.ip not in (
                configs[net].ipv4_gateway,
                configs[net].ipv4_subnet.network_address,
                configs[net].ipv4_subnet.broadcast_address,
            )
        else:
            try:
                allocator.release(net, owner)
            except NotFound:
                assert (net, owner) not in live
                continue
            live.pop((net, owner))
        for net_name in configs:
            current = allocator.list(net_name)
            assert len({a.address for a in current}) == len(current)
            assert len({a.mac_address for a in current}) == len(current)
            assert {(net_name, a.owner): (str(a.address.ip), a.mac_address) for a in current} == {
                k: v for k, v in live.items() if k[0] == net_name
            }
    db.close()


def test_custom_gateway_frees_dot_one_unless_ipv6_needs_it(db: Database) -> None:
    plain = make_network(db, "plain", "10.3.0.0/24", gateway="10.3.0.254")
    dual = make_network(db, "dual", "10.4.0.0/24", gateway="10.4.0.254", v6="fd00:4::/64")
    allocator = Allocator(db, "test", 1500)
    assert str(allocator.allocate(req("a", "plain"), plain)[0].address.ip) == "10.3.0.1"
    att = allocator.allocate(req("a", "dual"), dual)[0]
    assert att.ipv6_address is not None
    assert str(att.address.ip) == "10.4.0.2" and str(att.ipv6_address.ip) == "fd00:4::2"


def test_retry_on_a_full_network_returns_the_existing_attachment(db: Database) -> None:
    config = make_network(db, "tiny", "10.5.0.0/29")
    allocator = Allocator(db, "test", 1500)
    first = [allocator.allocate(req(f"c{i}", "tiny"), config)[0] for i in range(5)]
    again, created = allocator.allocate(req("c3", "tiny"), config)
    assert again == first[3] and not created


def test_a_pool_limits_allocations_to_its_ranges_and_skips_reserved(db: Database) -> None:
    """A driver's AddressPool (macvlan's ip-range and aux): only addresses of its ranges,
    never a reserved one, round-robin and wrapping inside the range, then exhaustion."""
    config = make_network(db, "foo", "10.5.0.0/24", gateway="10.5.0.130")
    pool = AddressPool(
        (ipaddress.IPv4Network("10.5.0.128/29"),),
        frozenset({ipaddress.IPv4Address("10.5.0.129"), ipaddress.IPv4Address("10.5.0.135")}),
    )
    allocator = Allocator(db, None, 1500)
    got = [str(allocator.allocate(req(f"o{i}"), config, pool)[0].address.ip) for i in range(5)]
    # .128-.135 minus the reserved .129, .135 and the gateway .130
    assert got == ["10.5.0.128", "10.5.0.131", "10.5.0.132", "10.5.0.133", "10.5.0.134"]
    with pytest.raises(Exhausted, match="no free addresses"):
        allocator.allocate(req("o5"), config, pool)
    allocator.release("foo", "o1")
    assert str(allocator.allocate(req("o6"), config, pool)[0].address.ip) == "10.5.0.131"


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(start=st.integers(0, 255), size=st.integers(26, 30), reserved=st.sets(st.integers(0, 255)))
def test_pool_allocations_stay_inside(
    tmp_path_factory: pytest.TempPathFactory, start: int, size: int, reserved: set[int]
) -> None:
    db = open_store(tmp_path_factory.mktemp("pool") / "state.db")
    config = make_network(db, "foo", "10.6.0.0/24")
    block = ipaddress.IPv4Network((f"10.6.0.{start}", size), strict=False)
    held = frozenset(ipaddress.IPv4Address(f"10.6.0.{r}") for r in reserved)
    pool = AddressPool((block,), held)
    allocator = Allocator(db, None, 1500)
    seen = set()
    for i in range(block.num_addresses + 1):
        try:
            att, _ = allocator.allocate(req(f"o{i}"), config, pool)
        except Exhausted:
            break
        ip = att.address.ip
        assert ip in block and ip not in held and ip != config.ipv4_gateway
        assert ip not in (config.ipv4_subnet.network_address, config.ipv4_subnet.broadcast_address)
        assert ip not in seen
        seen.add(ip)
    usable = {
        a for a in block if a not in held and a != config.ipv4_gateway
        and a not in (config.ipv4_subnet.network_address, config.ipv4_subnet.broadcast_address)
    }  # fmt: skip
    assert seen == usable
