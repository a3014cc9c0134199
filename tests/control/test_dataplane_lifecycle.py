"""Kernel life cycle through the daemons: delete, reload, SIGKILL + reconciliation, bad input.

The packet-level behaviour of the data plane (isolation, NAT, MTU, ...) is tested in
tests/dataplane; here the network helper owns the kernel and the CLI drives it.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from typing import Any

from support.instance import Instance, NetnsPool, attachments

from container_runtime.plugins.bridge.dataplane import LinuxDataPlane


def link_names(inst: Instance) -> set[str]:
    return {link["ifname"] for link in inst.links()}


def our_table(inst: Instance) -> str:
    result = inst.sh("nft", "-j", "list", "table", "inet", "container-bridge", check=False)
    return result.stdout if result.returncode == 0 else ""


def bridge_of(inst: Instance, network: str) -> str:
    return str(inst.cli("network", "inspect", network).json()["status"]["bridge"])


def kernel_view(inst: Instance) -> tuple[Any, ...]:
    links = sorted(
        (link["ifname"], link.get("address"), link.get("mtu"))
        for link in inst.sh("ip", "-j", "link").json()
    )
    addrs = sorted(
        (a["ifname"], i["local"], i["prefixlen"])
        for a in inst.sh("ip", "-j", "addr").json()
        for i in a.get("addr_info", [])
        if i.get("scope") != "link"
    )
    table = json.loads(our_table(inst) or "{}")
    rules = sorted(
        json.dumps(item, sort_keys=True)
        for item in table.get("nftables", [])
        if "metainfo" not in item and "table" not in item
    )
    return links, addrs, rules


def test_delete_removes_bridge_and_rules(instance: Instance) -> None:
    inst = instance
    before = kernel_view(inst)
    inst.cli("network", "create", "foo", "--subnet", "10.90.0.0/24")
    bridge = bridge_of(inst, "foo")
    assert bridge in link_names(inst)
    assert bridge in our_table(inst) and "10.90.0.0" in our_table(inst)
    inst.cli("network", "delete", "foo")
    assert bridge not in link_names(inst)
    assert bridge not in our_table(inst) and "10.90.0.0" not in our_table(inst)
    assert kernel_view(inst) == before


def test_reload_restores_flushed_rules(instance: Instance, netns_pool: NetnsPool) -> None:
    inst = instance
    inst.cli("network", "create", "foo", "--subnet", "10.91.0.0/24")
    member = netns_pool.create("m")
    inst.cli("network", "attach", "foo", "--name", "m", "--netns", member)
    before = kernel_view(inst)
    # (The helper's watch also restores a flushed ruleset within 0.5 s, see
    # test_firewall_hardening.py; here `network reload` must do it at once.)
    inst.sh("nft", "flush", "ruleset")
    inst.cli("network", "reload")
    assert kernel_view(inst) == before
    netns_pool.exec(member, ["ping", "-c", "1", "-W", "2", "10.91.0.1"])


def test_sigkill_and_restart_reconciles_kernel_with_state(
    instance: Instance, netns_pool: NetnsPool
) -> None:
    inst = instance
    inst.cli("network", "create", "foo", "--subnet", "10.92.0.0/24")
    inst.cli("network", "create", "gone", "--subnet", "10.93.0.0/24")
    keep, vanish, orphan = (netns_pool.create(p) for p in ("keep", "van", "orph"))
    kept = inst.cli("network", "attach", "foo", "--name", "keep", "--netns", keep).json()
    inst.cli("network", "attach", "foo", "--name", "vanish", "--netns", vanish)
    inst.cli("network", "attach", "foo", "--name", "orphan", "--netns", orphan)
    foo_bridge, gone_bridge = bridge_of(inst, "foo"), bridge_of(inst, "gone")
    expected = kernel_view(inst)

    helper = inst.pid("network-bridge")
    assert helper is not None
    os.kill(helper, signal.SIGSTOP)  # freeze it, break the world, then kill it
    try:
        inst.sh("ip", "link", "del", foo_bridge)  # a bridge of ours someone removed
        netns_pool.exec(vanish, ["true"])
        os.system(f"ip netns del {vanish}")  # a member's namespace that went away
        # The bridge plugin's own database (white box: what its helper had committed).
        db = sqlite3.connect(inst.root / "plugins" / "bridge" / "state.db")
        with db:  # a release committed just before the helper died: its veth is an orphan
            db.execute("DELETE FROM attachments WHERE owner = 'orphan'")
        db.close()
        db = sqlite3.connect(inst.root / "state.db")
        with db:  # a network the API server deleted just before asking the helper to
            db.execute("DELETE FROM networks WHERE name = 'gone'")
        db.close()
    finally:
        os.kill(helper, signal.SIGKILL)
    inst.wait_pid_change("network-bridge", helper)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and gone_bridge in link_names(inst):
        time.sleep(0.1)

    names = link_names(inst)
    assert foo_bridge in names, "missing bridge was re-created"
    assert gone_bridge not in names, "orphan bridge was removed"
    listed = {a["owner"] for a in attachments(inst, "foo")}
    assert listed == {"keep"}, "the vanished member was released, the orphan's row stays gone"
    assert "orphan" not in str(inst.links()) and not any(
        "orphan" in str(link) for link in inst.sh("ip", "-j", "-d", "link").json()
    )
    # The kept member still works through the re-created bridge.
    netns_pool.exec(keep, ["ping", "-c", "1", "-W", "2", kept["gateway"]])
    inst.cli("network", "detach", "foo", "--name", "keep")
    inst.cli("network", "delete", "foo")
    links, addrs, rules = kernel_view(inst)
    # Only the default network's bridge and loopback remain: no veth, bridge or rule of
    # foo, gone, or the orphan.
    assert {name for name, _, _ in links} == {"lo", bridge_of(inst, "default")}
    assert not any(a[0] in (foo_bridge, gone_bridge) for a in addrs)
    assert not any(foo_bridge in r or gone_bridge in r for r in rules)
    assert any(foo_bridge in r for r in expected[2])  # (the rules did name it before)


def test_attach_failures_roll_back(instance: Instance, netns_pool: NetnsPool) -> None:
    inst = instance
    inst.cli("network", "create", "foo", "--subnet", "10.94.0.0/24")
    member = netns_pool.create("m")
    inst.cli("network", "attach", "foo", "--name", "first", "--netns", member)
    before = kernel_view(inst), inst.cli("network", "inspect", "foo").json()["containers"]

    missing = inst.cli(
        "network",
        "attach",
        "foo",
        "--name",
        "x",
        "--netns",
        "/run/netns/does-not-exist",
        check=False,
    )
    assert missing.returncode != 0 and missing.stderr.startswith("Error: ")
    assert "does not exist" in missing.stderr and len(missing.stderr.splitlines()) == 1
    clash = inst.cli("network", "attach", "foo", "--name", "y", "--netns", member, check=False)
    assert clash.returncode != 0 and "eth0 already exists" in clash.stderr
    after = kernel_view(inst), inst.cli("network", "inspect", "foo").json()["containers"]
    assert after == before
    # The rolled-back addresses are free: the next member gets the next address.
    second = inst.cli(
        "network",
        "attach",
        "foo",
        "--name",
        "z",
        "--netns",
        member,
        "--interface",
        "eth1",
        "--secondary",
    ).json()
    assert second["interface"] == "eth1"
    routes = netns_pool.exec(member, ["ip", "-j", "route", "show", "default"]).json()
    assert len(routes) == 1 and routes[0]["dev"] == "eth0"


def test_bridge_name_taken_by_foreign_link(instance: Instance) -> None:
    inst = instance
    taken = LinuxDataPlane.bridge_name("victim")
    inst.sh("ip", "link", "add", taken, "type", "bridge")
    before = kernel_view(inst)
    result = inst.cli("network", "create", "victim", "--subnet", "10.95.0.0/24", check=False)
    assert result.returncode != 0 and len(result.stderr.splitlines()) == 1
    assert f"bridge name {taken} is already used by a link that is not ours" in result.stderr
    assert inst.cli("network", "ls", "-q").stdout.split() == ["default"]
    assert kernel_view(inst) == before


def test_tap_attachment(instance: Instance) -> None:
    inst = instance
    inst.cli("network", "create", "vms", "--subnet", "10.96.0.0/24")
    att = inst.cli(
        "network", "attach", "vms", "--name", "vm1", "--strategy", "tap", "--mtu", "9000"
    ).json()
    bridge = bridge_of(inst, "vms")
    taps = [
        link
        for link in inst.sh("ip", "-j", "-d", "link", "show", "master", bridge).json()
        if link.get("linkinfo", {}).get("info_kind") == "tun"
    ]
    assert len(taps) == 1
    assert taps[0]["address"] == att["macAddress"] and taps[0]["mtu"] == 9000
    inst.cli("network", "detach", "vms", "--name", "vm1")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and taps[0]["ifname"] in link_names(inst):
        time.sleep(0.05)
    assert taps[0]["ifname"] not in link_names(inst)
