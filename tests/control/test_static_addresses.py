"""Static addresses in the SDK allocator (plugin/allocator.py, plugin/statics.py) against
a real SQLite state database: validation, reservations held while their owner exists,
the dynamic allocator skipping them, and a hypothesis state machine that no address (or
IPv6 twin) is ever handed to two owners."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from container_runtime.errors import Conflict, ContainerError, Exhausted, InvalidArgument
from container_runtime.models import AttachmentRequest, AttachmentSpec
from container_runtime.plugin.allocator import Allocator
from container_runtime.plugin.statics import Reservation
from container_runtime.plugin.store import open_store
from container_runtime.state import Database

from .test_allocator import make_network

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address


def req(owner: str, ip: str | None = None, ip6: str | None = None, mtu: int | None = None) -> Any:
    return AttachmentRequest(
        network="foo",
        owner=owner,
        hostname=owner,
        ip=V4(ip) if ip else None,
        ip6=V6(ip6) if ip6 else None,
        mtu=mtu,
    )


@pytest.fixture
def db(tmp_path: Path) -> Database:
    return open_store(tmp_path / "state.db")


def rows(db: Database) -> tuple[int, int]:
    with db.read() as conn:
        return (
            conn.execute("SELECT COUNT(*) FROM attachments").fetchone()[0],
            conn.execute("SELECT COUNT(*) FROM reservations").fetchone()[0],
        )


def test_spec_parses_ip_ip6_and_repeated_aliases() -> None:
    spec = AttachmentSpec.parse("foo,ip=10.0.0.5,ip6=fd00::5,alias=DB,alias=cache.x,alias=db")
    assert spec.ip == V4("10.0.0.5") and spec.ip6 == V6("fd00::5")
    assert spec.aliases == ("db", "cache.x")
    assert AttachmentSpec.from_json(spec.to_json()) == spec
    for bad in ("foo,ip=10.0.0", "foo,ip6=10.0.0.1", "foo,alias=a b", "foo,ip=1.2.3.4,ip=1.2.3.5"):
        with pytest.raises(InvalidArgument):
            AttachmentSpec.parse(bad)


def test_static_address_is_validated_against_the_subnet(db: Database) -> None:
    config = make_network(db, "foo", "10.5.0.0/24", v6="fd00:5::/64")
    alloc = Allocator(db, "test", 1500)
    for ip, ip6, why in (
        ("10.6.0.5", None, "not in the subnet"),
        ("10.5.0.0", None, "network address"),
        ("10.5.0.255", None, "broadcast address"),
        ("10.5.0.1", None, "gateway"),
        ("10.5.0.9", "fd00:6::9", "not in the IPv6 subnet"),
        ("10.5.0.9", "fd00:5::1", "IPv6 gateway"),
        ("10.5.0.9", "fd00:5::", "network address"),
    ):
        with pytest.raises(InvalidArgument, match=why):
            alloc.allocate(req("a", ip, ip6), config)
        with pytest.raises(InvalidArgument, match=why):
            alloc.reserve(config, Reservation("foo", "a", V4(ip), V6(ip6) if ip6 else None))
    assert rows(db) == (0, 0)  # every refusal held nothing


def test_reserved_address_goes_to_its_owner_only_and_dynamic_skips_it(db: Database) -> None:
    config = make_network(db, "foo", "10.5.0.0/24", v6="fd00:5::/64")
    alloc = Allocator(db, "test", 1500)
    held = alloc.reserve(config, Reservation("foo", "web", V4("10.5.0.2")))
    assert held.ipv6_address == V6("fd00:5::2")  # the IPv4 address's twin
    assert alloc.reserve(config, Reservation("foo", "web", V4("10.5.0.2"))) == held  # idempotent
    with pytest.raises(Conflict, match="reserved on network foo by web"):
        alloc.allocate(req("other", "10.5.0.2"), config)
    with pytest.raises(Conflict, match="reserved"):
        alloc.reserve(config, Reservation("foo", "other", V4("10.5.0.2")))
    dyn, _ = alloc.allocate(req("dyn"), config)
    assert str(dyn.address.ip) == "10.5.0.3"  # .2 is reserved: skipped
    mine, _ = alloc.allocate(req("web"), config)  # no ip= given: its reservation
    assert str(mine.address.ip) == "10.5.0.2" and str(mine.ipv6_address) == "fd00:5::2/64"
    alloc.release("foo", "web")  # stopped: the reservation stays
    again, _ = alloc.allocate(req("late"), config)
    assert str(again.address.ip) == "10.5.0.4"
    with pytest.raises(Conflict, match="in use on network foo by dyn"):
        alloc.reserve(config, Reservation("foo", "x", V4("10.5.0.3")))
    assert alloc.unreserve("foo", "web") is not None
    assert alloc.unreserve("foo", "web") is None  # idempotent


def test_a_static_ipv6_twin_is_skipped_by_the_dynamic_allocator(db: Database) -> None:
    config = make_network(db, "foo", "10.5.0.0/24", v6="fd00:5::/64")
    alloc = Allocator(db, "test", 1500)
    alloc.allocate(req("s", "10.5.0.9", "fd00:5::2"), config)  # takes the twin of .2
    dyn, _ = alloc.allocate(req("d"), config)
    assert str(dyn.address.ip) == "10.5.0.3" and str(dyn.ipv6_address) == "fd00:5::3/64"
    with pytest.raises(Conflict, match="fd00:5::2"):
        alloc.allocate(req("e", "10.5.0.2"), config)  # its twin is taken


def test_reservations_count_towards_exhaustion(db: Database) -> None:
    config = make_network(db, "foo", "10.5.0.0/29")  # hosts .2-.6
    alloc = Allocator(db, "test", 1500)
    for i in range(2, 5):
        alloc.reserve(config, Reservation("foo", f"r{i}", V4(f"10.5.0.{i}")))
    alloc.allocate(req("a"), config)
    alloc.allocate(req("b"), config)
    with pytest.raises(Exhausted, match="no free addresses"):
        alloc.allocate(req("c"), config)


def test_network_mtu_option_is_the_default_and_mtu_wins(db: Database) -> None:
    config = make_network(db, "foo", "10.5.0.0/24", options={"mtu": "1400"})
    alloc = Allocator(db, "test", 1500)
    assert alloc.allocate(req("a"), config)[0].mtu == 1400
    assert alloc.allocate(req("b", mtu=9000), config)[0].mtu == 9000


class StaticsMachine(RuleBasedStateMachine):
    """Random reserve / unreserve / allocate (dynamic or static) / release on one small
    dual-stack network: no two owners ever hold or reserve one address or IPv6 address,
    a reservation is only ever used by its owner, and refusals change nothing."""

    OWNERS = [f"o{i}" for i in range(8)]

    def __init__(self) -> None:
        super().__init__()
        import tempfile

        self.dir = tempfile.TemporaryDirectory()
        self.db = open_store(Path(self.dir.name) / "state.db")
        self.config = make_network(self.db, "foo", "10.9.0.0/28", v6="fd00:9::/120")
        self.alloc = Allocator(self.db, None, 1500)

    def teardown(self) -> None:
        self.db.close()
        self.dir.cleanup()

    @rule(owner=st.sampled_from(OWNERS), host=st.integers(0, 15))
    def reserve(self, owner: str, host: int) -> None:
        before = self._state()
        try:
            self.alloc.reserve(self.config, Reservation("foo", owner, V4(f"10.9.0.{host}")))
        except ContainerError:
            assert self._state() == before

    @rule(owner=st.sampled_from(OWNERS))
    def unreserve(self, owner: str) -> None:
        self.alloc.unreserve("foo", owner)

    @rule(owner=st.sampled_from(OWNERS), host=st.none() | st.integers(0, 15))
    def allocate(self, owner: str, host: int | None) -> None:
        before = self._state()
        try:
            self.alloc.allocate(req(owner, None if host is None else f"10.9.0.{host}"), self.config)
        except ContainerError:
            assert self._state() == before

    @rule(owner=st.sampled_from(OWNERS))
    def release(self, owner: str) -> None:
        try:
            self.alloc.release("foo", owner)
        except ContainerError:
            pass

    def _state(self) -> tuple[object, ...]:
        with self.db.read() as conn:
            return tuple(
                tuple(map(tuple, conn.execute(f"SELECT * FROM {t} ORDER BY owner").fetchall()))
                for t in ("attachments", "reservations")
            )

    @invariant()
    def nothing_held_twice(self) -> None:
        with self.db.read() as conn:
            atts = conn.execute("SELECT owner, address, ipv6 FROM attachments").fetchall()
            res = conn.execute("SELECT owner, address, ipv6 FROM reservations").fetchall()
        holders: dict[object, str] = {}
        for owner, address, ipv6 in [*atts, *res]:
            for key in (("v4", address), ("v6", str(ipv6).split("/")[0])):
                assert holders.setdefault(key, owner) == owner, (key, owner, holders[key])
        reserved = {owner: address for owner, address, _ in res}
        for owner, address, _ in atts:
            assert reserved.get(owner, address) == address  # its own reservation, if any
            assert address not in (int(V4("10.9.0.0")), int(V4("10.9.0.1")), int(V4("10.9.0.15")))


TestStaticsMachine = StaticsMachine.TestCase
TestStaticsMachine.settings = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
