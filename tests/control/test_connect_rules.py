"""Pure rules of `network connect` (apiserver/connect.py) and of DNS round-robin
(dns/records.py), without daemons."""

from __future__ import annotations

import ipaddress

import pytest

from container_runtime.apiserver.connect import connect_spec, refuse_live_change_of_vm
from container_runtime.dns import wire
from container_runtime.dns.records import NetworkInfo, build_snapshot
from container_runtime.errors import Conflict, InvalidArgument


def test_a_running_vm_container_refuses_network_changes_in_one_line() -> None:
    with pytest.raises(Conflict) as info:
        refuse_live_change_of_vm({"isolation": "vm"}, "x")
    assert info.value.message == "container x runs in a VM: stop it to change its networks"
    refuse_live_change_of_vm({}, "x")  # a namespace container: allowed


def test_connect_flags_are_validated_like_a_network_spec() -> None:
    spec = connect_spec("n", {"ip": "10.0.0.5", "aliases": ["A", "a"], "mtu": 1400})
    assert str(spec.ip) == "10.0.0.5" and spec.aliases == ("a",) and spec.mtu == 1400
    for body in ({"mtu": True}, {"ip": 5}, {"aliases": "a"}, {"mac": ""}, {"ip6": "x"}):
        with pytest.raises(InvalidArgument):
            connect_spec("n", body)


def test_a_shared_alias_answers_every_address_round_robin() -> None:
    net = NetworkInfo(
        "n",
        ipaddress.IPv4Address("10.0.0.1"),
        None,
        ipaddress.IPv4Network("10.0.0.0/24"),
        None,
    )
    rows = [
        ("n", "a" * 64, "one.test.", int(ipaddress.IPv4Address("10.0.0.2")), None, "db"),
        ("n", "b" * 64, "two.test.", int(ipaddress.IPv4Address("10.0.0.3")), None, "db x"),
        ("m", "c" * 64, "three.test.", int(ipaddress.IPv4Address("10.1.0.2")), None, "db"),
    ]
    snap = build_snapshot({"n": net}, rows, "test", 5)
    table = snap.table("n", frozenset({"n"}))
    entry = table.lookup(b"key", "db", wire.QTYPE_A)
    assert entry is not None and entry.ancount == 2  # network m's db is not in scope
    firsts = [entry.rotate()[-4:] for _ in range(4)]
    assert firsts[0] != firsts[1] and firsts[0] == firsts[2]  # the order rotates
    assert table.lookup(b"k2", "x.test", wire.QTYPE_A).ancount == 1  # type: ignore[union-attr]
    assert table.lookup(b"k3", "one", wire.QTYPE_A).ancount == 1  # type: ignore[union-attr]
