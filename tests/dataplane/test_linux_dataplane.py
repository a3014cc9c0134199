"""LinuxDataPlane against the real kernel, with real packets, each test in its own sandbox."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from container_runtime.errors import Conflict, InvalidArgument
from container_runtime.models import NetworkMode
from container_runtime.plugins.bridge.dataplane import LinuxDataPlane
from container_runtime.plugins.bridge.driver import isolated
from container_runtime.plugins.bridge.firewall import PortForward

from .helpers import PeerServer, member, net, no_ping, ping, run_in, tcp_peer, unreachable

Sandbox = Callable[[Callable[[Path], None]], None]
OUT_HOST = "203.0.113.1"
OUT_PEER = "203.0.113.2"


def make_outside(dp: LinuxDataPlane) -> str:
    """A stand-in for the outside world: a namespace behind a veth of the sandbox 'host'."""
    path = dp.create_netns("outside")
    for cmd in (
        ["ip", "link", "add", "up0", "type", "veth", "peer", "name", "out0", "netns", path],
        ["ip", "addr", "add", f"{OUT_HOST}/24", "dev", "up0"],
        ["ip", "link", "set", "up0", "up"],
        ["nsenter", f"--net={path}", "ip", "addr", "add", f"{OUT_PEER}/24", "dev", "out0"],
        ["nsenter", f"--net={path}", "ip", "link", "set", "out0", "up"],
    ):
        assert run_in(None, *cmd).returncode == 0, cmd
    return path


def snapshot(dp: LinuxDataPlane) -> tuple[object, ...]:
    links = json.loads(run_in(None, "ip", "-j", "link").stdout)
    addrs = json.loads(run_in(None, "ip", "-j", "addr").stdout)
    rules = json.loads(run_in(None, "nft", "-j", "list", "ruleset").stdout)["nftables"]
    return (
        sorted(link["ifname"] for link in links),
        sorted((a["ifname"], i["local"]) for a in addrs for i in a.get("addr_info", [])),
        [r for r in rules if "metainfo" not in r],
    )


def test_members_reach_each_other_and_gateway_but_not_other_networks(sandbox: Sandbox) -> None:
    def body(tmp: Path) -> None:
        dp = LinuxDataPlane(tmp / "netns")
        assert dp.ensure_forwarding(ipv6=True) is True
        assert dp.ensure_forwarding(ipv6=True) is False
        a = net("a", "10.10.0.0/24", ipv6_subnet=ipaddress.IPv6Network("fd00:10::/64"))
        b = net("b", "10.20.0.0/24")
        bra, brb = dp.setup_network(a), dp.setup_network(b)
        assert bra == LinuxDataPlane.bridge_name("a") and len(bra) <= 15 and bra != brb
        assert dp.setup_network(a) == bra  # idempotent
        a1, a2, b1 = (dp.create_netns(n) for n in ("a1", "a2", "b1"))
        v6 = ipaddress.IPv6Interface("fd00:10::2/64")
        att_a1 = member(a, 2)
        att_a1 = type(att_a1)(**{**att_a1.__dict__, "ipv6_address": v6})
        dp.attach(att_a1, bra, a1, "veth", True, False)
        dp.attach(member(a, 3), bra, "a2", "veth", True, False)  # by name under netns_dir
        dp.attach(member(b, 2), brb, b1, "veth", True, False)
        srv_a2, srv_b1, srv_a1 = PeerServer(a2), PeerServer(b1), PeerServer(a1)
        PeerServer(None, port=8001)
        # Control: with no firewall yet, routing alone connects the two networks.
        assert tcp_peer(a1, "10.20.0.2") == "10.10.0.2"
        dp.sync_firewall([(a, bra), (b, brb)], [])
        assert tcp_peer(a1, "10.10.0.3") == "10.10.0.2"
        assert tcp_peer(a2, "10.10.0.2") == "10.10.0.3"
        assert tcp_peer(a1, "10.10.0.1", 8001) == "10.10.0.2"
        assert ping(a1, "10.10.0.1") and ping(a1, "10.10.0.3")
        assert ping(a1, "fd00:10::1")  # IPv6 gateway on the bridge, no DAD wait
        assert ping(b1, "10.20.0.1")  # b1's port is up: the checks below are meaningful
        assert unreachable(a1, "10.20.0.2")
        assert unreachable(b1, "10.10.0.2")
        assert unreachable(b1, "10.10.0.3")
        assert no_ping(b1, "10.10.0.2")
        routes = json.loads(run_in(a1, "ip", "-j", "-6", "route", "show", "default").stdout)
        assert [r["gateway"] for r in routes] == ["fd00:10::1"]
        for s in (srv_a2, srv_b1, srv_a1):
            s.close()
        dp.close()

    sandbox(body)


def test_internal_has_no_egress_and_nat_is_masqueraded(sandbox: Sandbox) -> None:
    def body(tmp: Path) -> None:
        dp = LinuxDataPlane(tmp / "netns")
        dp.ensure_forwarding()
        outside = make_outside(dp)
        n = net("n", "10.30.0.0/24")
        i = net("i", "10.40.0.0/24", mode=NetworkMode.INTERNAL)
        brn, bri = dp.setup_network(n), dp.setup_network(i)
        n1, i1, i2 = (dp.create_netns(x) for x in ("n1", "i1", "i2"))
        dp.attach(member(n, 2), brn, n1, "veth", True, False)
        dp.attach(member(i, 2), bri, i1, "veth", True, False)
        dp.attach(member(i, 3), bri, i2, "veth", True, False)
        PeerServer(outside, port=80)
        PeerServer(None, port=8001)
        PeerServer(n1, port=8002)
        PeerServer(i2, port=8002)
        # Control: before the firewall, the internal member gets out (unmasqueraded).
        assert unreachable(i1, OUT_PEER, 80)  # outside has no route back: no NAT yet
        dp.sync_firewall([(n, brn), (i, bri)], [])
        assert tcp_peer(n1, OUT_PEER, 80) == OUT_HOST  # outside sees the host's address
        assert tcp_peer(i1, "10.40.0.1", 8001) == "10.40.0.2"  # own gateway: yes
        assert tcp_peer(i1, "10.40.0.3", 8002) == "10.40.0.2"  # own members: yes
        assert unreachable(i1, OUT_PEER, 80)
        assert no_ping(i1, OUT_PEER)
        assert unreachable(i1, OUT_HOST, 8001)  # other host addresses: no
        assert unreachable(i1, "10.30.0.2", 8002)
        # The outside cannot open connections to members even with a route to them.
        route = ("ip", "route", "add", "10.30.0.0/24", "via", OUT_HOST)
        assert run_in(outside, *route).returncode == 0
        assert unreachable(outside, "10.30.0.2", 8002)
        dp.close()

    sandbox(body)


def test_isolated_variant_members_reach_only_the_gateway(sandbox: Sandbox) -> None:
    def body(tmp: Path) -> None:
        dp = LinuxDataPlane(tmp / "netns")
        dp.ensure_forwarding()
        v = net("v", "10.50.0.0/24", options={"variant": "isolated"})
        brv = dp.setup_network(v)
        dp.sync_firewall([(v, brv)], [])
        v1, v2 = dp.create_netns("v1"), dp.create_netns("v2")
        assert isolated(v)
        dp.attach(member(v, 2), brv, v1, "veth", True, True)
        dp.attach(member(v, 3), brv, v2, "veth", True, True)
        PeerServer(v1)
        PeerServer(v2)
        PeerServer(None, port=8001)
        assert tcp_peer(v1, "10.50.0.1", 8001) == "10.50.0.2"
        assert tcp_peer(v2, "10.50.0.1", 8001) == "10.50.0.3"
        assert unreachable(v1, "10.50.0.3")
        assert unreachable(v2, "10.50.0.2")
        assert no_ping(v1, "10.50.0.3")
        dp.close()

    sandbox(body)


def test_mac_mtu_and_second_interface_without_second_default_route(sandbox: Sandbox) -> None:
    def body(tmp: Path) -> None:
        dp = LinuxDataPlane(tmp / "netns")
        dp.ensure_forwarding()
        a, b = net("a", "10.60.0.0/24"), net("b", "10.70.0.0/24")
        bra, brb = dp.setup_network(a), dp.setup_network(b)
        dp.sync_firewall([(a, bra), (b, brb)], [])
        x = dp.create_netns("x")
        first = member(a, 2, "x", mac="02:aa:bb:cc:dd:ee", mtu=1400)
        host = dp.attach(first, bra, x, "veth", True, False)
        dp.attach(member(b, 2, "x", interface="eth1"), brb, x, "veth", False, False)
        eth0 = json.loads(run_in(x, "ip", "-j", "link", "show", "eth0").stdout)[0]
        assert eth0["address"] == "02:aa:bb:cc:dd:ee"
        assert (eth0["mtu"], eth0["operstate"]) == (1400, "UP")
        assert json.loads(run_in(None, "ip", "-j", "link", "show", host).stdout)[0]["mtu"] == 1400
        lo = json.loads(run_in(x, "ip", "-j", "link", "show", "lo").stdout)[0]
        assert "UP" in lo["flags"]
        assert ping(x, "10.60.0.1", "-M", "do", "-s", "1372")
        assert no_ping(x, "10.60.0.1", "-M", "do", "-s", "1373")
        routes = json.loads(run_in(x, "ip", "-j", "route", "show", "default").stdout)
        assert [(r["gateway"], r["dev"]) for r in routes] == [("10.60.0.1", "eth0")]
        addrs = json.loads(run_in(x, "ip", "-j", "-4", "addr", "show", "eth1").stdout)
        assert addrs[0]["addr_info"][0]["local"] == "10.70.0.2"
        assert ping(x, "10.70.0.1")
        dp.close()

    sandbox(body)


def test_teardown_leaves_nothing_behind(sandbox: Sandbox) -> None:
    def body(tmp: Path) -> None:
        dp = LinuxDataPlane(tmp / "netns")
        before = snapshot(dp)
        a = net("a", "10.80.0.0/24", ipv6_subnet=ipaddress.IPv6Network("fd00:80::/64"))
        i = net("i", "10.90.0.0/24", mode=NetworkMode.INTERNAL)
        bra, bri = dp.setup_network(a), dp.setup_network(i)
        nss = [dp.create_netns(f"m{k}") for k in range(3)]
        hosts = [
            dp.attach(member(a, 2), bra, nss[0], "veth", True, False),
            dp.attach(member(a, 3), bra, nss[1], "veth", True, True),
            dp.attach(member(i, 2), bri, nss[2], "veth", True, False),
            dp.attach(member(a, 4, "vm"), bra, None, "tap", True, False),
        ]
        pf = PortForward("tcp", None, 8080, ipaddress.IPv4Address("10.80.0.2"), 80)
        dp.sync_firewall([(a, bra), (i, bri)], [pf])
        owned = dp.owned_links()
        assert set(owned) == {bra, bri, *hosts}
        assert owned[bra] == "container-runtime:bridge:net:a"
        assert snapshot(dp) != before
        for h in hosts:
            dp.detach(h)
            dp.detach(h)  # idempotent
        dp.teardown_network(bra)
        dp.teardown_network(bri)
        dp.teardown_network(bri)  # idempotent
        dp.sync_firewall([], [])
        dp.wait_pending()
        for k in range(3):
            dp.delete_netns(f"m{k}")
        dp.delete_netns("m0")  # idempotent
        assert not dp.netns_exists("m0")
        assert dp.owned_links() == {}
        assert snapshot(dp) == before
        dp.close()

    sandbox(body)


def test_bad_input_is_refused_and_leaves_nothing(sandbox: Sandbox) -> None:
    def body(tmp: Path) -> None:
        dp = LinuxDataPlane(tmp / "netns")
        a = net("a", "10.11.0.0/24")
        bra = dp.setup_network(a)
        x = dp.create_netns("x")
        state = snapshot(dp)

        def refused(exc: type[Exception], match: str, *args: object) -> None:
            with pytest.raises(exc, match=match):
                dp.attach(*args)  # type: ignore[arg-type]
            assert snapshot(dp) == state
            assert dp.owned_links() == {bra: "container-runtime:bridge:net:a"}

        ok, bad_mac = member(a, 2), member(a, 2, mac="01:00:5e:00:00:01")
        missing = str(tmp / "nope")
        refused(InvalidArgument, "does not exist", ok, bra, missing, "veth", True, False)
        refused(InvalidArgument, "does not exist", ok, bra, "nope", "veth", True, False)
        (tmp / "plain").write_text("")
        plain = str(tmp / "plain")
        refused(InvalidArgument, "not a network namespace", ok, bra, plain, "veth", True, False)
        refused(InvalidArgument, "refused MAC", bad_mac, bra, x, "veth", True, False)
        refused(InvalidArgument, "refused MAC", bad_mac, bra, None, "tap", True, False)
        refused(InvalidArgument, "ctr-nope does not exist", ok, "ctr-nope", x, "veth", True, False)
        inside = run_in(x, "ip", "-j", "link").stdout
        assert [link["ifname"] for link in json.loads(inside)] == ["lo"]

        dp.attach(member(a, 2), bra, x, "veth", True, False)
        state = snapshot(dp)
        with pytest.raises(Conflict, match="eth0 already exists"):
            dp.attach(member(a, 3), bra, x, "veth", True, False)
        assert snapshot(dp) == state

        foreign = LinuxDataPlane.bridge_name("foo")
        assert run_in(None, "ip", "link", "add", foreign, "type", "bridge").returncode == 0
        state = snapshot(dp)
        with pytest.raises(Conflict, match=f"bridge name {foreign} is already used"):
            dp.setup_network(net("foo", "10.12.0.0/24"))
        assert snapshot(dp) == state
        with pytest.raises(Conflict):
            dp.teardown_network(foreign)
        dp.close()

    sandbox(body)


def test_port_forwards_from_host_outside_and_hairpin(sandbox: Sandbox) -> None:
    def body(tmp: Path) -> None:
        dp = LinuxDataPlane(tmp / "netns")
        dp.ensure_forwarding()
        outside = make_outside(dp)
        p = net("p", "10.33.0.0/24")
        brp = dp.setup_network(p)
        p1, p2 = dp.create_netns("p1"), dp.create_netns("p2")
        dp.attach(member(p, 2), brp, p1, "veth", True, False)
        dp.attach(member(p, 3), brp, p2, "veth", True, False)
        PeerServer(p1, port=80)
        c1 = ipaddress.IPv4Address("10.33.0.2")
        fwd = [
            PortForward("tcp", None, 8080, c1, 80),
            PortForward("tcp", ipaddress.IPv4Address(OUT_HOST), 9090, c1, 80),
        ]
        dp.sync_firewall([(p, brp)], fwd)
        assert tcp_peer(None, "127.0.0.1", 8080) == "10.33.0.1"
        assert tcp_peer(None, OUT_HOST, 8080) == OUT_HOST
        assert tcp_peer(outside, OUT_HOST, 8080) == OUT_PEER  # client address preserved
        assert tcp_peer(p2, OUT_HOST, 8080) == "10.33.0.1"  # hairpin, masqueraded
        assert tcp_peer(p1, OUT_HOST, 8080) == "10.33.0.1"  # to itself
        assert tcp_peer(outside, OUT_HOST, 9090) == OUT_PEER
        assert unreachable(None, "127.0.0.1", 9090)  # bound to one host address
        assert unreachable(None, OUT_HOST, 7070)
        extra = PortForward("tcp", None, 7070, c1, 80)
        dp.add_port_forwards([extra])
        assert tcp_peer(outside, OUT_HOST, 7070) == OUT_PEER
        dp.remove_port_forwards([extra])
        dp.remove_port_forwards([extra])  # idempotent
        assert unreachable(outside, OUT_HOST, 7070)
        assert tcp_peer(outside, OUT_HOST, 8080) == OUT_PEER
        with pytest.raises(Conflict):
            dp.sync_firewall([(p, brp)], [*fwd, PortForward("tcp", None, 8080, c1, 81)])
        dp.close()

    sandbox(body)


def test_reattach_after_detach_and_namespaces(sandbox: Sandbox) -> None:
    def body(tmp: Path) -> None:
        dp = LinuxDataPlane(tmp / "netns")
        a = net("a", "10.44.0.0/24")
        bra = dp.setup_network(a)
        path = dp.create_netns("r")
        assert dp.create_netns("r") == path and dp.netns_exists(path) and dp.netns_exists("r")
        lo = json.loads(run_in(path, "ip", "-j", "link", "show", "lo").stdout)[0]
        assert "UP" in lo["flags"]
        for _ in range(3):
            host = dp.attach(member(a, 2), bra, path, "veth", True, False)
            assert ping(path, "10.44.0.1")
            dp.detach(host)  # the deletion runs in the background
        dp.wait_pending()
        assert LinuxDataPlane.bridge_name("a") == bra
        with pytest.raises(InvalidArgument):
            dp.detach("eth0")  # never deletes a link that is not an attachment
        with pytest.raises(InvalidArgument):
            dp.create_netns("../etc")
        dp.delete_netns("r")
        assert not dp.netns_exists(path)
        assert not (tmp / "netns" / "r").exists()
        dp.close()

    sandbox(body)
