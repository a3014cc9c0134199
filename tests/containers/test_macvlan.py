"""The macvlan plugin with real packets, on a LAN the test makes.

Inside the daemons' throwaway namespace, `lan0` (one end of a veth) is the host's LAN
interface; its peer sits on a bridge in a "switch" namespace, with a "router" namespace
(the LAN's gateway, 10.77.0.1) and a "LAN host" namespace (10.77.0.50) on it. The host
has its own LAN address (10.77.0.10/24 on lan0), so its route to the LAN goes through
the parent, as on a real machine.

Promised (docs/PLUGINS.md, "macvlan"): containers get addresses of the ip-range only,
never an aux or the shim's address; the LAN host reaches them by address, the host
through the shim, and they reach each other by name (the embedded DNS on the shim),
with names isolated from other networks; bad parents are refused with one line and
nothing made; after SIGKILL of the helper nothing leaks and nothing is lost, and an
attachment whose namespace went away meanwhile is released.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import probes
from support.instance import Instance, NetnsPool, assert_refused, attachments, run

from .conftest import System

SUBNET = "10.77.0.0/24"
ROUTER = "10.77.0.1"
HOST_LAN = "10.77.0.10"
LAN_HOST = "10.77.0.50"
IP_RANGE = "10.77.0.128/28"
AUX = "10.77.0.129"
SHIM = "10.77.0.143"  # the highest address of the range
NET = "lan"


@dataclass
class Lan:
    switch: str
    router: str
    lanhost: str


def _veth(pool_ns: str, end: str, peer_ns: str, peer: str) -> None:
    """A veth from namespace pool_ns (end) to peer_ns (peer, put on the switch's bridge)."""
    run(["ip", "-n", pool_ns, "link", "add", end, "type", "veth", "peer", "name", peer])
    run(["ip", "-n", pool_ns, "link", "set", peer, "netns", peer_ns])
    run(["ip", "-n", peer_ns, "link", "set", peer, "master", "br0", "up"])
    run(["ip", "-n", pool_ns, "link", "set", end, "up"])


@pytest.fixture(scope="module")
def lan(system: System) -> Iterator[Lan]:
    pool = NetnsPool()
    try:
        switch, router, lanhost = pool.create("sw"), pool.create("rt"), pool.create("lh")
        run(["ip", "-n", switch, "link", "add", "br0", "type", "bridge"])
        run(["ip", "-n", switch, "link", "set", "br0", "up"])
        _veth(system.inst.netns, "lan0", switch, "p-host")
        _veth(router, "r0", switch, "p-router")
        _veth(lanhost, "h0", switch, "p-lanhost")
        run(["ip", "-n", system.inst.netns, "addr", "add", f"{HOST_LAN}/24", "dev", "lan0"])
        run(["ip", "-n", router, "addr", "add", f"{ROUTER}/24", "dev", "r0"])
        run(["ip", "-n", lanhost, "addr", "add", f"{LAN_HOST}/24", "dev", "h0"])
        run(["ip", "-n", lanhost, "route", "add", "default", "via", ROUTER])
        yield Lan(switch, router, lanhost)
    finally:
        pool.cleanup()


def _inspect(inst: Instance, name: str) -> dict:
    return json.loads(inst.cli("inspect", name, "--format", "json").stdout)


def _macvlans(inst: Instance) -> list[str]:
    out = inst.sh("ip", "-d", "-j", "link").json()
    return sorted(
        link["ifname"] for link in out if link.get("linkinfo", {}).get("info_kind") == "macvlan"
    )


def _wait(predicate, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return bool(predicate())


@pytest.fixture(scope="module")
def network(system: System, lan: Lan) -> Iterator[str]:
    inst = system.inst
    inst.cli(
        "network", "create", NET, "--plugin", "macvlan", "--option", "parent=lan0",
        "--subnet", SUBNET, "--gateway", ROUTER, "--option", f"ip-range={IP_RANGE}",
        "--option", f"aux={AUX}",
    )  # fmt: skip
    try:
        yield NET
    finally:
        for name in ("m1", "m2", "m3", "m4", "b1"):
            inst.cli("rm", "-f", name, check=False)
        inst.cli("network", "rm", NET, check=False)


def test_containers_are_on_the_lan(system: System, lan: Lan, network: str) -> None:
    inst, ref = system.inst, system.image
    inst.cli("run", "-d", "--name", "m1", "--network", network, ref)
    inst.cli("run", "-d", "--name", "m2", "--network", f"{network},mac=02:42:0a:4d:00:99", ref)
    m1, m2 = (_inspect(inst, n)["networks"][0] for n in ("m1", "m2"))
    assert m2["macAddress"] == "02:42:0a:4d:00:99"
    assert m1["gateway"] == ROUTER
    for att in (m1, m2):
        ip = ipaddress.ip_interface(att["address"])
        assert str(ip.network) == SUBNET
        assert ip.ip in ipaddress.ip_network(IP_RANGE), att  # ip-range respected
        assert str(ip.ip) not in (AUX, SHIM, ROUTER), att
    ip1, ip2 = (a["address"].split("/")[0] for a in (m1, m2))
    # The LAN host reaches them by address, the host through its shim.
    assert probes.icmp_reaches(lan.lanhost, ip1, timeout=2), "LAN host -> container"
    assert probes.icmp_reaches(lan.lanhost, ip2, timeout=2)
    assert probes.icmp_reaches(inst.netns, ip1, timeout=2), "host -> container (shim)"
    # Inside: eth0 is a macvlan with the allocation, default route via the LAN's router.
    route = inst.cli("exec", "m1", "ip", "route").stdout
    assert f"default via {ROUTER} dev eth0" in route, route
    assert inst.cli("exec", "m1", "cat", "/etc/resolv.conf").stdout.startswith(
        f"nameserver {SHIM}\n"
    )
    # The host's names point at the host: its shim, not the LAN's router.
    assert f"{SHIM}\thost.container.internal" in inst.cli("exec", "m1", "cat", "/etc/hosts").stdout
    answer = probes.dns_query(inst.netns, SHIM, "host.container.internal.")
    assert answer == ("NOERROR", [SHIM]), answer
    # The containers reach the LAN's router and each other by name.
    assert inst.cli("exec", "m1", "ping", "-c1", "-W2", ROUTER, check=False).returncode == 0
    result = inst.cli("exec", "m1", "ping", "-c1", "-W2", "m2", check=False)
    assert result.returncode == 0 and ip2 in result.stdout, result
    # A name on another network does not resolve here (per-network isolation of names).
    inst.cli("network", "create", "mvother", "--subnet", "10.78.0.0/24")
    try:
        inst.cli("run", "-d", "--name", "b1", "--network", "mvother", ref)
        answer = probes.dns_query(inst.netns, SHIM, "m1.test.")
        assert answer is not None and answer[1] == [ip1], answer  # the host sees all
        looked = inst.cli("exec", "m1", "nslookup", "b1", SHIM, check=False)
        assert looked.returncode != 0, looked.stdout
        looked = inst.cli("exec", "b1", "nslookup", "m1", check=False)
        assert ip1 not in looked.stdout, looked.stdout
    finally:
        inst.cli("rm", "-f", "b1", check=False)
        inst.cli("network", "rm", "mvother", check=False)


def test_aux_and_ip_range_are_never_exceeded(system: System, network: str, lan: Lan) -> None:
    """Fill the range: every address but the aux and the shim's, then a clear refusal."""
    inst = system.inst
    owners = [f"fill{i}" for i in range(16)]
    got = []
    try:
        for owner in owners:
            result = inst.cli("network", "attach", network, "--name", owner, check=False)
            if result.returncode != 0:
                assert_refused(result, "no free addresses")
                break
            got.append(json.loads(result.stdout)["address"].split("/")[0])
        held = {a["address"].split("/")[0] for a in attachments(inst, network)}
        assert all(ipaddress.ip_address(a) in ipaddress.ip_network(IP_RANGE) for a in held)
        assert AUX not in held and SHIM not in held
        assert len(held) == 16 - 2, sorted(held)  # /28 minus the aux and the shim
    finally:
        for owner in owners:
            inst.cli("network", "detach", network, "--name", owner, check=False)


def test_parent_is_validated(system: System, lan: Lan, network: str) -> None:
    inst = system.inst
    inst.sh("ip", "link", "add", "down0", "type", "veth", "peer", "name", "down1")
    inst.sh("ip", "link", "add", "other0", "type", "veth", "peer", "name", "other1")
    inst.sh("ip", "link", "set", "other0", "up")
    inst.sh("ip", "link", "set", "other1", "up")
    inst.sh("ip", "addr", "add", "10.79.0.1/24", "dev", "other0")
    bridge = _inspect_network(inst, "default")["status"]["bridge"]
    before_links = sorted(link["ifname"] for link in inst.links())
    before_nets = inst.cli("network", "ls", "-q").stdout
    try:
        cases = [
            ([], "parent=IFACE is required"),
            (["--option", "parent=nope0"], "nope0 does not exist"),
            (["--option", "parent=down0"], "down0 is down"),
            (["--option", f"parent={bridge}"], "runtime's own"),
            (["--option", "parent=lan0", "--option", "mode=sideways"], "mode"),
            (["--option", "parent=lan0", "--option", "ip-range=10.99.0.0/28"], "not inside"),
            (["--option", "parent=lan0", "--internal"], "cannot be --internal"),
        ]
        for extra, fragment in cases:
            result = inst.cli(
                "network", "create", "bad", "--plugin", "macvlan", "--subnet", "10.80.0.0/24",
                *extra, check=False,
            )  # fmt: skip
            assert_refused(result, fragment)
        # Overlaps: another network's subnet, and a host route through another link;
        # the host's own route to the LAN through the parent was accepted above.
        overlap = inst.cli(
            "network", "create", "bad", "--plugin", "macvlan", "--option", "parent=lan0",
            "--subnet", "10.77.0.0/25", check=False,
        )  # fmt: skip
        assert_refused(overlap, f"network {NET}")
        route = inst.cli(
            "network", "create", "bad", "--plugin", "macvlan", "--option", "parent=lan0",
            "--subnet", "10.79.0.0/24", check=False,
        )  # fmt: skip
        assert_refused(route, "host route", "other0")
        assert inst.cli("network", "ls", "-q").stdout == before_nets
        assert sorted(link["ifname"] for link in inst.links()) == before_links
    finally:
        inst.sh("ip", "link", "del", "down0", check=False)
        inst.sh("ip", "link", "del", "other0", check=False)


def _inspect_network(inst: Instance, name: str) -> dict:
    data = json.loads(inst.cli("network", "inspect", name).stdout)
    return data[0] if isinstance(data, list) else data


def test_sigkill_of_the_helper_leaks_nothing(system: System, lan: Lan, network: str) -> None:
    inst, ref = system.inst, system.image
    inst.cli("run", "-d", "--name", "m3", "--network", network, ref)
    ip3 = _inspect(inst, "m3")["networks"][0]["address"].split("/")[0]
    # A bare attachment in a namespace that goes away while the helper is dead.
    pool = NetnsPool()
    try:
        gone = pool.create("gone")
        inst.cli("network", "attach", network, "--name", "doomed", "--netns", f"/run/netns/{gone}")
        gone_ip = next(
            a["address"] for a in attachments(inst, network) if a["owner"] == "doomed"
        ).split("/")[0]
        shims = _macvlans(inst)
        assert len(shims) == 1, shims  # the shim only: members live in their namespaces
        before = {a["owner"]: a["address"] for a in attachments(inst, network)}
        pid = inst.pid("network-macvlan")
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        pool.cleanup()  # the namespace (and its macvlan) is gone
        os.kill(pid, signal.SIGKILL)
        inst.wait_pid_change("network-macvlan", pid)
        assert _wait(lambda: "doomed" not in {a["owner"] for a in attachments(inst, network)})
        after = {a["owner"]: a["address"] for a in attachments(inst, network)}
        assert after == {k: v for k, v in before.items() if k != "doomed"}
        assert _macvlans(inst) == shims, "no leaked link, the same shim"
        assert probes.icmp_reaches(inst.netns, ip3, timeout=2), "host -> m3 after restart"
        assert probes.icmp_reaches(lan.lanhost, ip3, timeout=2)
        routes = inst.sh("ip", "route", "show", "proto", "99").stdout
        assert gone_ip not in routes and ip3 in routes, routes
        # The released address is handed out again, never twice.
        inst.cli("network", "attach", network, "--name", "again")
        held = [a["address"] for a in attachments(inst, network)]
        assert len(held) == len(set(held)), held
    finally:
        pool.cleanup()
        inst.cli("network", "detach", network, "--name", "again", check=False)
        inst.cli("network", "detach", network, "--name", "doomed", check=False)
        inst.cli("rm", "-f", "m3", check=False)


def _plugin_db(inst: Instance) -> Path:
    """Where the macvlan helper keeps its attachments."""
    return inst.root / "plugins" / "macvlan" / "state.db"


def test_a_helper_killed_mid_attach_or_mid_release_leaks_no_link(
    system: System, lan: Lan, network: str
) -> None:
    """The two windows a SIGKILL can hit: after an allocation was committed but before the
    attach finished (state `allocated`, the link already in the namespace), and after a
    release was committed but before the background deletion (`macvlan_deleting`). The
    states are made by editing the helper's database while it is stopped, then it is
    killed: the restarted helper deletes both links and releases the half-made one."""
    inst = system.inst
    pool = NetnsPool()
    pid = None
    try:
        half, released = pool.create("half"), pool.create("rel")
        for owner, ns in (("half", half), ("rel", released)):
            inst.cli("network", "attach", network, "--name", owner, "--netns", f"/run/netns/{ns}")
            assert "eth0" in probes.link_names(ns)
        pid = inst.pid("network-macvlan")
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        conn = sqlite3.connect(_plugin_db(inst), timeout=10)
        try:
            with conn:
                conn.execute("UPDATE attachments SET state = 'allocated' WHERE owner = 'half'")
                row = conn.execute(
                    "SELECT netns, interface FROM attachments WHERE owner = 'rel'"
                ).fetchone()
                conn.execute("DELETE FROM attachments WHERE owner = 'rel'")
                conn.execute(
                    "INSERT INTO macvlan_deleting(netns, interface, alias) VALUES (?, ?, ?)",
                    (row[0], row[1], f"container-runtime:macvlan:macvlan:{network}:rel:eth0"),
                )
        finally:
            conn.close()
        os.kill(pid, signal.SIGKILL)
        inst.wait_pid_change("network-macvlan", pid)
        pid = None
        owners = lambda: {a["owner"] for a in attachments(inst, network)}  # noqa: E731
        assert _wait(lambda: not {"half", "rel"} & owners()), owners()
        assert "eth0" not in probes.link_names(half), "the half-made link was deleted"
        assert "eth0" not in probes.link_names(released), "the released link was deleted"
    finally:
        if pid is not None:
            os.kill(pid, signal.SIGCONT)
        for owner in ("half", "rel"):
            inst.cli("network", "detach", network, "--name", owner, check=False)
        pool.cleanup()


def test_check_reports_what_is_wrong(system: System, lan: Lan, network: str) -> None:
    """`container network check` against the live kernel state of a macvlan network."""
    inst, ref = system.inst, system.image
    inst.cli("run", "-d", "--name", "m4", "--network", network, ref)

    def check() -> list[str]:
        result = inst.cli("network", "check", network, check=False)
        if result.returncode == 0:
            assert result.stdout.strip() == f"{network}: ok", result.stdout
            return []
        assert result.returncode == 1, result.stderr
        return result.stdout.splitlines()

    assert check() == []
    ip1 = _inspect(inst, "m4")["networks"][0]["address"].split("/")[0]
    cid = _inspect(inst, "m4")["id"]
    sandbox = inst.run_dir / "netns" / f"sb-{cid[:32]}"
    run(["nsenter", f"--net={sandbox}", "ip", "link", "set", "eth0", "down"])
    inst.sh("ip", "route", "del", ip1)
    problems = check()
    assert any("eth0 is down" in p for p in problems), problems
    assert any(f"no route to {ip1}" in p for p in problems), problems
    inst.cli("rm", "-f", "m4")


def test_published_ports_are_refused_and_nothing_is_held(system: System, network: str) -> None:
    inst, ref = system.inst, system.image
    inst.cli("image", "pull", ref)  # so the refusal is the only line on stderr
    before = attachments(inst, network)
    result = inst.cli("run", "-d", "--name", "mp", "-p", "8080:80", "--network", network, ref,
                      check=False)  # fmt: skip
    try:
        assert_refused(result, "does not publish ports")
        assert attachments(inst, network) == before
    finally:
        inst.cli("rm", "-f", "mp", check=False)


def test_a_parent_down_at_restart_does_not_stop_the_system(system: System, lan: Lan) -> None:
    """Runs last: restarts the system. A macvlan network whose parent is down when the
    system starts does not stop the start (its helper logs it); everything else starts."""
    inst = system.inst
    inst.sh("ip", "link", "add", "lan9", "type", "veth", "peer", "name", "lan9p")
    try:
        inst.sh("ip", "link", "set", "lan9", "up")
        inst.cli(
            "network", "create", "lan9net", "--plugin", "macvlan", "--option", "parent=lan9",
            "--subnet", "10.81.0.0/24",
        )  # fmt: skip
        inst.cli("system", "stop")
        inst.sh("ip", "link", "set", "lan9", "down")
        inst.cli("system", "start")
        assert "lan9net" in inst.cli("network", "ls", "-q").stdout.split()
        assert inst.cli("network", "inspect", "default").returncode == 0
        inst.sh("ip", "link", "set", "lan9", "up")
        inst.cli("network", "rm", "lan9net")
    finally:
        inst.cli("network", "rm", "lan9net", check=False)
        inst.sh("ip", "link", "del", "lan9", check=False)
