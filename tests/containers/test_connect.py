"""`network connect|disconnect`, static addresses and DNS aliases, end to end: real CLI,
daemons, runc; interfaces checked inside the containers, names with real DNS queries
(busybox nslookup in a container), published ports with real HTTP."""

from __future__ import annotations

import json
import os
import signal
from typing import Any

from support.instance import Instance, assert_refused, attachments

from container_runtime.client import UnixClient

from .conftest import System
from .test_containers import HELLO, host_wget, inspect, snapshot, wait_http


def nets(inst: Instance, name: str) -> list[dict[str, Any]]:
    return list(inspect(inst, name)["networks"])


def lookup(inst: Instance, via: str, name: str) -> set[str]:
    """The IPv4 addresses `name` resolves to from inside container `via` (empty: none)."""
    r = inst.cli("exec", via, "nslookup", name, check=False)
    if r.returncode != 0:
        return set()
    answer = r.stdout.split("Name:", 1)[-1] if "Name:" in r.stdout else ""
    return {
        line.split()[-1]
        for line in answer.splitlines()
        if line.startswith("Address") and "." in line.split()[-1]
    }


def ifaces(inst: Instance, name: str) -> dict[str, str]:
    """{ifname: 'address/len'} of the IPv4 addresses inside a container."""
    out = inst.cli("exec", name, "ip", "-o", "-4", "addr").stdout.splitlines()
    return {line.split()[1]: line.split()[3] for line in out if line.split()[1] != "lo"}


def routes(inst: Instance, name: str) -> list[str]:
    out = inst.cli("exec", name, "ip", "route").stdout.splitlines()
    return [r for r in out if r.startswith("default")]


def test_live_connect_disconnect_dns_and_primary(system: System) -> None:
    inst, ref = system.inst, system.image
    inst.cli("network", "create", "cn-a", "--subnet", "10.81.1.0/24")
    inst.cli("network", "create", "cn-b", "--subnet", "10.81.2.0/24", "--option", "mtu=1400")
    try:
        inst.cli("run", "-d", "--name", "c1", "--network", "cn-a", "-p", "8090:80", ref)
        inst.cli("run", "-d", "--name", "peer", "--network", "cn-b", ref)
        assert wait_http(inst, "http://127.0.0.1:8090/").strip() == HELLO
        assert lookup(inst, "peer", "c1") == set()  # not on cn-b yet

        inst.cli("network", "connect", "cn-b", "c1", "--alias", "svc", "--ip", "10.81.2.50")
        assert ifaces(inst, "c1") == {"eth0": "10.81.1.2/24", "eth1": "10.81.2.50/24"}
        assert "mtu 1400" in inst.cli("exec", "c1", "ip", "link", "show", "eth1").stdout
        # names appear at once, on that network only
        assert lookup(inst, "peer", "c1") == {"10.81.2.50"}
        assert lookup(inst, "peer", "svc") == {"10.81.2.50"}
        assert lookup(inst, "c1", "peer") == {"10.81.2.2"}
        shown = nets(inst, "c1")
        assert [(n["network"], n["interface"]) for n in shown] == [
            ("cn-a", "eth0"),
            ("cn-b", "eth1"),
        ]
        assert shown[1]["aliases"] == ["svc"] and shown[1]["mtu"] == 1400
        assert "10.81.2.50" in inst.cli("exec", "c1", "cat", "/etc/hosts").stdout

        # connected twice, the primary without --force: refused, nothing changed
        before = snapshot(inst)
        assert_refused(
            inst.cli("network", "connect", "cn-b", "c1", check=False), "already connected"
        )
        assert_refused(
            inst.cli("network", "disconnect", "cn-a", "c1", check=False),
            "primary network of container c1",
            "--force",
        )
        assert snapshot(inst) == before

        # a secondary goes at once, with its names
        inst.cli("network", "disconnect", "cn-b", "c1")
        assert ifaces(inst, "c1") == {"eth0": "10.81.1.2/24"}
        assert lookup(inst, "peer", "c1") == set() and lookup(inst, "peer", "svc") == set()
        assert [n["network"] for n in nets(inst, "c1")] == ["cn-a"]

        # --force on the primary: the default route, DNS server and ports move to cn-b
        inst.cli("network", "connect", "cn-b", "c1")
        inst.cli("network", "disconnect", "-f", "cn-a", "c1")
        left = ifaces(inst, "c1")
        assert list(left) == ["eth1"] and left["eth1"].startswith("10.81.2.")
        assert routes(inst, "c1") == [routes(inst, "c1")[0]]
        assert "via 10.81.2.1 dev eth1" in routes(inst, "c1")[0]
        resolv = inst.cli("exec", "c1", "cat", "/etc/resolv.conf").stdout
        assert "nameserver 10.81.2.1" in resolv
        assert wait_http(inst, "http://127.0.0.1:8090/").strip() == HELLO  # via cn-b now
        assert lookup(inst, "peer", "c1") == {left["eth1"].split("/")[0]}
        assert [n["network"] for n in nets(inst, "c1")] == ["cn-b"]
    finally:
        inst.cli("rm", "-f", "c1", "peer", check=False)
        inst.cli("network", "rm", "cn-a", "cn-b", check=False)
    assert host_wget(inst, "http://127.0.0.1:8090/").returncode != 0


def test_stopped_container_connect_changes_its_next_start(system: System) -> None:
    inst, ref = system.inst, system.image
    inst.cli("network", "create", "cs-a", "--subnet", "10.82.1.0/24")
    inst.cli("network", "create", "cs-b", "--subnet", "10.82.2.0/24")
    try:
        inst.cli("create", "--name", "idle", "--network", "cs-a", ref)
        inst.cli("network", "connect", "cs-b", "idle", "--ip", "10.82.2.9", "--alias", "later")
        shown = nets(inst, "idle")
        assert shown == [
            {"network": "cs-a", "interface": "eth0"},
            {
                "network": "cs-b",
                "interface": "eth1",
                "address": "10.82.2.9/24",
                "aliases": ["later"],
            },
        ]
        assert attachments(inst, "cs-b") == []  # nothing built while stopped
        inst.cli("start", "idle")
        assert ifaces(inst, "idle") == {"eth0": "10.82.1.2/24", "eth1": "10.82.2.9/24"}
        inst.cli("run", "-d", "--name", "asker", "--network", "cs-b", ref)
        assert lookup(inst, "asker", "later") == {"10.82.2.9"}
        inst.cli("stop", "idle")
        inst.cli("network", "disconnect", "cs-b", "idle")
        assert [n["network"] for n in nets(inst, "idle")] == ["cs-a"]
        # its static address was given back with the disconnect
        inst.cli("run", "-d", "--name", "taker", "--network", "cs-b,ip=10.82.2.9", ref)
        assert ifaces(inst, "taker") == {"eth0": "10.82.2.9/24"}
    finally:
        inst.cli("rm", "-f", "idle", "asker", "taker", check=False)
        inst.cli("network", "rm", "cs-a", "cs-b", check=False)


def test_aliases_shared_round_robin_and_scoped_to_their_network(system: System) -> None:
    inst, ref = system.inst, system.image
    inst.cli("network", "create", "al-a", "--subnet", "10.83.1.0/24")
    inst.cli("network", "create", "al-b", "--subnet", "10.83.2.0/24")
    try:
        inst.cli("run", "-d", "--name", "db1", "--network", "al-a,alias=db,alias=DB.pool", ref)
        inst.cli(
            "run", "-d", "--name", "db2", "--network", "al-a,alias=db", "--network", "al-b", ref
        )
        inst.cli("run", "-d", "--name", "app", "--network", "al-a", ref)
        inst.cli("run", "-d", "--name", "outsider", "--network", "al-b", ref)
        both = {"10.83.1.2", "10.83.1.3"}
        assert lookup(inst, "app", "db") == both
        assert lookup(inst, "app", "db.test") == both
        assert lookup(inst, "app", "db.pool") == {"10.83.1.2"}
        # round-robin: the first answer alternates
        firsts = set()
        for _ in range(4):
            out = inst.cli("exec", "app", "nslookup", "db").stdout.split("Name:", 1)[1]
            firsts.add(next(x.split()[-1] for x in out.splitlines() if x.startswith("Address")))
        assert firsts == both
        # db2 is on al-b too, but its alias is al-a's only
        assert lookup(inst, "outsider", "db") == set()
        assert lookup(inst, "outsider", "db2") == {"10.83.2.2"}
        # an alias may not be another container's name, nor a name someone's alias
        before = snapshot(inst)
        assert_refused(
            inst.cli("network", "connect", "al-a", "outsider", "--alias", "app", check=False),
            "DNS name app",
        )
        assert_refused(
            inst.cli("run", "-d", "--name", "db", "--network", "al-a", ref, check=False),
            "already an alias of container db",
        )
        assert_refused(
            inst.cli(
                "run", "-d", "--name", "x", "--network", "al-a,alias=bad name", ref, check=False
            ),
            "invalid alias",
        )
        assert snapshot(inst) == before
        inst.cli("rm", "-f", "db1")
        assert lookup(inst, "app", "db") == {"10.83.1.3"}
    finally:
        inst.cli("rm", "-f", "db1", "db2", "app", "outsider", check=False)
        inst.cli("network", "rm", "al-a", "al-b", check=False)


def test_static_addresses_reserved_while_the_container_exists(system: System) -> None:
    inst, ref = system.inst, system.image
    inst.cli("network", "create", "st", "--subnet", "10.84.0.0/24", "--subnet-v6", "fd84::/64")
    try:
        inst.cli("run", "-d", "--name", "s1", "--network", "st,ip=10.84.0.2,ip6=fd84::99", ref)
        shown = nets(inst, "s1")[0]
        assert shown["address"] == "10.84.0.2/24" and shown["ipv6Address"] == "fd84::99/64"
        inst.cli("stop", "s1")
        # stopped, its address stays its own: refused to others, skipped by the allocator
        before = snapshot(inst)
        for spec, why in (
            ("st,ip=10.84.0.2", "reserved on network st by container s1"),
            ("st,ip=10.85.0.7", "not in the subnet 10.84.0.0/24"),
            ("st,ip=10.84.0.1", "gateway"),
            ("st,ip=10.84.0.0", "network address"),
            ("st,ip=10.84.0.255", "broadcast address"),
            ("st,ip=10.84.0.7,ip6=fd85::7", "not in the IPv6 subnet"),
            ("st,ip6=fd84::7", "ip6= needs ip="),
            ("st,ip=10.84.0", "not an IPv4 address"),
        ):
            assert_refused(
                inst.cli("run", "-d", "--name", "s2", "--network", spec, ref, check=False), why
            )
        assert_refused(
            inst.cli("create", "--name", "s2", "--network", "st,ip=10.84.0.2", ref, check=False),
            "reserved",
        )
        assert snapshot(inst) == before  # no container, no address held, no link
        inst.cli("run", "-d", "--name", "dyn", "--network", "st", ref)
        assert nets(inst, "dyn")[0]["address"] == "10.84.0.3/24"
        inst.cli("start", "s1")
        assert ifaces(inst, "s1") == {"eth0": "10.84.0.2/24"}
        assert_refused(
            inst.cli("network", "connect", "st", "outside", "--ip", "10.84.0.3", check=False),
            "not found",
        )
        inst.cli("rm", "-f", "s1")  # removal gives it back
        inst.cli("run", "-d", "--name", "s2", "--network", "st,ip=10.84.0.2", ref)
        assert ifaces(inst, "s2") == {"eth0": "10.84.0.2/24"}
    finally:
        inst.cli("rm", "-f", "s1", "s2", "dyn", check=False)
        inst.cli("network", "rm", "st", check=False)


def _kill(inst: Instance, name: str) -> None:
    old = inst.pid(name)
    assert old is not None
    os.kill(old, signal.SIGKILL)
    inst.wait_pid_change(name, old)


def test_connections_and_reservations_survive_restarts(system: System) -> None:
    inst, ref = system.inst, system.image
    inst.cli("network", "create", "rs-a", "--subnet", "10.86.1.0/24")
    inst.cli("network", "create", "rs-b", "--subnet", "10.86.2.0/24")
    try:
        inst.cli("run", "-d", "--name", "r1", "--network", "rs-a", ref)
        inst.cli("run", "-d", "--name", "r2", "--network", "rs-b", ref)
        inst.cli("create", "--name", "r3", "--network", "rs-b,ip=10.86.2.77", ref)
        inst.cli("network", "connect", "rs-b", "r1", "--alias", "kept", "--ip", "10.86.2.40")
        # A connect the API server died in: the helper built the interface, nothing was
        # committed. The next API server start must release it.
        r2 = inspect(inst, "r2")["id"]
        helper = UnixClient(inst.run_dir / "network-bridge.sock")
        try:
            request = {
                "owner": r2,
                "hostname": "r2",
                "netns": str(inst.run_dir / "netns" / f"sb-{r2[:32]}"),
                "strategy": "veth",
                "interface": "eth1",
                "primary": False,
            }
            helper.request("POST", "/networks/rs-a/attachments", request)
        finally:
            helper.close()
        assert "eth1" in ifaces(inst, "r2")
        _kill(inst, "network-bridge")
        old = inst.pid("apiserver")
        assert old is not None
        os.kill(old, signal.SIGKILL)
        inst.start()  # a new API server: reconciles with the helper
        assert ifaces(inst, "r1") == {"eth0": "10.86.1.2/24", "eth1": "10.86.2.40/24"}
        assert list(ifaces(inst, "r2")) == ["eth0"]  # the uncommitted connect: undone
        assert [a["owner"] for a in attachments(inst, "rs-a")] == [inspect(inst, "r1")["id"]]
        assert lookup(inst, "r2", "kept") == {"10.86.2.40"}
        assert [n["network"] for n in nets(inst, "r1")] == ["rs-a", "rs-b"]
        assert_refused(
            inst.cli(
                "run", "-d", "--name", "r4", "--network", "rs-b,ip=10.86.2.77", ref, check=False
            ),
            "reserved on network rs-b by container r3",
        )
        inst.cli("network", "disconnect", "rs-b", "r1")
        assert lookup(inst, "r2", "kept") == set()
        held = json.dumps(attachments(inst, "rs-b"))
        assert "10.86.2.40" not in held
    finally:
        inst.cli("rm", "-f", "r1", "r2", "r3", "r4", check=False)
        inst.cli("network", "rm", "rs-a", "rs-b", check=False)


def test_connect_a_none_container_and_bad_input_changes_nothing(system: System) -> None:
    inst, ref = system.inst, system.image
    inst.cli("network", "create", "nn", "--subnet", "10.87.0.0/24")
    try:
        inst.cli("run", "-d", "--name", "loner", "--network", "none", ref)
        before = snapshot(inst)
        for args, why in (
            (("connect", "nn", "loner", "--ip", "10.87.0.1"), "gateway of network nn"),
            (("connect", "nn", "loner", "--mac", "01:00:00:00:00:01"), "multicast"),
            (("connect", "nn", "loner", "--mtu", "100"), "invalid MTU 100"),
            (("connect", "nn", "loner", "--alias=-x"), "invalid alias"),
            (("connect", "nope", "loner"), "network nope not found"),
            (("connect", "nn", "ghost"), "container ghost not found"),
            (("disconnect", "nn", "loner"), "not connected to network nn"),
            (("create", "bad-mtu", "--option", "mtu=100"), "invalid MTU 100"),
            (("create", "bad-mtu", "--option", "mtu=x"), "expected an integer"),
        ):
            assert_refused(inst.cli("network", *args, check=False), why)
        assert snapshot(inst) == before  # no address held, no link, no network
        # a container with no network gets its first one as primary
        inst.cli("network", "connect", "nn", "loner", "--alias", "solo")
        assert ifaces(inst, "loner") == {"eth0": "10.87.0.2/24"}
        assert "via 10.87.0.1 dev eth0" in routes(inst, "loner")[0]
        assert "nameserver 10.87.0.1" in inst.cli("exec", "loner", "cat", "/etc/resolv.conf").stdout
        assert lookup(inst, "loner", "solo") == {"10.87.0.2"}
        # a container's attachment is not a bare one: detach points at disconnect
        assert_refused(
            inst.cli("network", "detach", "nn", "--name", "loner", check=False),
            "container network disconnect nn loner",
        )
        inst.cli("network", "disconnect", "nn", "loner")
        assert ifaces(inst, "loner") == {}
    finally:
        inst.cli("rm", "-f", "loner", check=False)
        inst.cli("network", "rm", "nn", check=False)
