"""Pure rules of `network connect` (apiserver/connect.py) and of DNS round-robin
(dns/records.py), without daemons."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest

from container_runtime.apiserver import endpoints, vmstart
from container_runtime.apiserver.connect import (
    connect_spec,
    refuse_live_change_of_vm,
)
from container_runtime.dns import wire
from container_runtime.dns.records import load_snapshot
from container_runtime.errors import Conflict, InvalidArgument
from container_runtime.models import NetworkConfiguration
from container_runtime.network.plugins import find_plugin
from container_runtime.state import Database


def test_a_running_vm_container_refuses_network_changes_in_one_line() -> None:
    with pytest.raises(Conflict) as info:
        refuse_live_change_of_vm({"isolation": "vm"}, "x")
    assert info.value.message == "container x runs in a VM: stop it to change its networks"
    refuse_live_change_of_vm({}, "x")  # a namespace container: allowed


def _net(name: str, plugin: str = "bridge") -> NetworkConfiguration:
    subnet = ipaddress.IPv4Network("10.9.0.0/24")
    return NetworkConfiguration(name, subnet, subnet.network_address + 1, plugin=plugin)


def test_a_vm_container_needs_a_plugin_with_the_tap_strategy() -> None:
    vm, ns = {"isolation": "vm"}, {"isolation": "namespace"}
    for plugin in ("macvlan", "cni"):  # their manifests, as shipped
        config = _net("lan", plugin)
        strategies = find_plugin(plugin).strategies
        with pytest.raises(InvalidArgument) as info:
            vmstart.check_network(vm, config, strategies)
        assert info.value.message == (
            f"network lan (plugin {plugin}) cannot attach VM containers: the plugin lacks the"
            f" tap interface strategy (it has: {', '.join(strategies)})"
        )
        vmstart.check_network(ns, config, strategies)  # a namespace container: allowed
    vmstart.check_network(vm, _net("b"), find_plugin("bridge").strategies)


def test_connect_flags_are_validated_like_a_network_spec() -> None:
    spec = connect_spec("n", {"ip": "10.0.0.5", "aliases": ["A", "a"], "mtu": 1400})
    assert str(spec.ip) == "10.0.0.5" and spec.aliases == ("a",) and spec.mtu == 1400
    for body in ({"mtu": True}, {"ip": 5}, {"aliases": "a"}, {"mac": ""}, {"ip6": "x"}):
        with pytest.raises(InvalidArgument):
            connect_spec("n", body)


def test_a_shared_alias_answers_every_address_round_robin(tmp_path: Path) -> None:
    db = Database(tmp_path / "state.db")
    with db.write() as conn:
        for net, subnet in (("n", "10.0.0.0/24"), ("m", "10.1.0.0/24")):
            config = {"name": net, "ipv4Subnet": subnet, "ipv4Gateway": subnet[:-4] + "1"}
            conn.execute(
                "INSERT INTO networks(name, config, state, created_at)"
                " VALUES (?, ?, 'running', '')",
                (net, json.dumps(config)),
            )
        for net, owner, host, address, aliases in (
            ("n", "a" * 64, "one", "10.0.0.2", ["db"]),
            ("n", "b" * 64, "two", "10.0.0.3", ["db", "x"]),
            ("m", "c" * 64, "three", "10.1.0.2", ["db"]),
        ):
            reply = {
                "network": net,
                "owner": owner,
                "hostname": f"{host}.test.",
                "address": f"{address}/24",
                "gateway": address.rsplit(".", 1)[0] + ".1",
                "macAddress": "02:00:00:00:00:0" + address[-1],
                "mtu": 1500,
                "interface": "eth0",
            }
            endpoints.record(conn, "bridge", reply, owner, aliases)
    snap = load_snapshot(tmp_path / "state.db", "test", 5)
    db.close()
    table = snap.table("n", frozenset({"n"}))
    entry = table.lookup(b"key", "db", wire.QTYPE_A)
    assert entry is not None and entry.ancount == 2  # network m's db is not in scope
    lasts = [entry.rotate()[-4:] for _ in range(4)]
    assert lasts[0] != lasts[1] and lasts[0] == lasts[2]  # the order rotates
    assert table.lookup(b"k2", "x.test", wire.QTYPE_A).ancount == 1  # type: ignore[union-attr]
    assert table.lookup(b"k3", "one", wire.QTYPE_A).ancount == 1  # type: ignore[union-attr]
