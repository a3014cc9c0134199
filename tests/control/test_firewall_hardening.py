"""The firewall against hostile members, through the daemons, with forged packets:
no way into the host's loopback services, no spoofed source IP or MAC, no ARP poisoning,
no FDB move, and our tables put back when someone flushes them.

Members are namespaces this test made, attached with `network attach`; they send as a
container with CAP_NET_RAW can (raw frames, changed addresses).
"""

from __future__ import annotations

import socket
import time

from support import frames
from support.instance import Instance, NetnsPool
from support.ports import fwd, peer_server, publish, seen_by_server

from container_runtime.dataplane import names


def member(inst: Instance, pool: NetnsPool, network: str, name: str) -> tuple[str, str, str]:
    """(namespace, IPv4 address, MAC) of a new bare attachment."""
    ns = pool.create("m")
    att = inst.cli("network", "attach", network, "--name", name, "--netns", ns).json()
    return ns, str(att["address"]).split("/")[0], str(att["macAddress"])


def ping(pool: NetnsPool, ns: str, addr: str) -> bool:
    result = pool.exec(ns, ["ping", "-c1", "-i0.2", "-w2", "-q", addr], check=False)
    return result.returncode == 0


def our_table_present(inst: Instance) -> bool:
    tables = inst.nft_tables()
    return "table inet container-bridge" in tables and "table bridge container-bridge" in tables


def test_members_cannot_reach_the_hosts_loopback_services(
    instance: Instance, netns_pool: NetnsPool
) -> None:
    inst, pool = instance, netns_pool
    inst.cli("network", "create", "lo1", "--subnet", "10.95.0.0/24")
    ns, ip, mac = member(inst, pool, "lo1", "m")
    gateway_mac = names.bridge_mac("lo1")
    # A loopback-only service of the host (like the DNS server's 127.0.0.1:2053).
    service = frames.ns_socket(inst.netns, socket.AF_INET, socket.SOCK_DGRAM)
    with service:
        service.bind(("127.0.0.1", 5999))
        to_gateway = frames.ipv4_udp(ip, "10.95.0.1", 4000, 5999, b"via-gateway")
        to_loopback = frames.ipv4_udp(ip, "127.0.0.1", 4000, 5999, b"via-loopback")
        frames.send(
            ns,
            "eth0",
            [frames.ethernet(gateway_mac, mac, frames.ETH_P_IP, p) for p in (to_loopback,)],
        )
        assert frames.udp_received(service) == [], "a member reached 127.0.0.1 on the host"
    # The frame itself was fine: the same frame to a service on the gateway arrives.
    on_gateway = frames.ns_socket(inst.netns, socket.AF_INET, socket.SOCK_DGRAM)
    with on_gateway:
        on_gateway.bind(("10.95.0.1", 5999))
        frames.send(ns, "eth0", [frames.ethernet(gateway_mac, mac, frames.ETH_P_IP, to_gateway)])
        assert (b"via-gateway", ip) in frames.udp_received(on_gateway)


def three_members(inst: Instance, pool: NetnsPool) -> dict[str, tuple[str, str, str]]:
    """a and b honest, s the spoofer, on network sp (10.96.0.0/24); o on another network."""
    inst.cli("network", "create", "sp", "--subnet", "10.96.0.0/24")
    found = {name: member(inst, pool, "sp", name) for name in ("a", "b", "s")}
    assert ping(pool, found["s"][0], found["b"][1]) and ping(pool, found["a"][0], found["b"][1])
    return found


def fdb_port(inst: Instance, mac: str) -> str:
    entries = inst.sh("bridge", "-j", "fdb", "show", "br", names.bridge_name("sp")).json()
    return next(str(e["ifname"]) for e in entries if e.get("mac") == mac)


def test_forged_source_addresses_never_arrive(instance: Instance, netns_pool: NetnsPool) -> None:
    inst, pool = instance, netns_pool
    m = three_members(inst, pool)
    (b_ns, b_ip, b_mac), (s_ns, s_ip, s_mac), a_ip = m["b"], m["s"], m["a"][1]
    inst.cli("network", "create", "other", "--subnet", "10.97.0.0/24")
    o_ip = member(inst, pool, "other", "o")[1]
    # A neighbour's address, another network's member's: dropped; the sender's own: arrives.
    listener = frames.ns_socket(b_ns, socket.AF_INET, socket.SOCK_DGRAM)
    with listener:
        listener.bind((b_ip, 6000))
        forged = [
            frames.ethernet(b_mac, s_mac, frames.ETH_P_IP, frames.ipv4_udp(src, b_ip, 1, 6000, t))
            for src, t in ((a_ip, b"as-a"), (o_ip, b"as-other"), (s_ip, b"honest"))
        ]
        frames.send(s_ns, "eth0", forged)
        got = {payload for payload, _ in frames.udp_received(listener)}
        assert got == {b"honest"}, got


def test_forged_arp_does_not_poison_the_host(instance: Instance, netns_pool: NetnsPool) -> None:
    inst, pool = instance, netns_pool
    m = three_members(inst, pool)
    (a_ns, a_ip, a_mac), (s_ns, _s_ip, s_mac) = m["a"], m["s"]
    bridge, gateway_mac = names.bridge_name("sp"), names.bridge_mac("sp")
    inst.sh("ping", "-c1", "-W2", a_ip)  # the host has a neighbour entry for a
    time.sleep(1.1)  # past the entry's locktime (1 s), when a reply may override it
    # "a's IP is at s's MAC", as a reply to the host and as a gratuitous broadcast.
    lies = [
        frames.ethernet(
            gateway_mac,
            s_mac,
            frames.ETH_P_ARP,
            frames.arp(2, s_mac, a_ip, gateway_mac, "10.96.0.1"),
        ),
        frames.ethernet(
            "ff:ff:ff:ff:ff:ff",
            s_mac,
            frames.ETH_P_ARP,
            frames.arp(2, s_mac, a_ip, "ff:ff:ff:ff:ff:ff", a_ip),
        ),
    ]
    frames.send(s_ns, "eth0", lies)
    time.sleep(0.2)
    neigh = inst.sh("ip", "neigh", "show", a_ip, "dev", bridge).stdout
    assert a_mac in neigh and s_mac not in neigh, neigh
    assert ping(pool, a_ns, "10.96.0.1")


def test_a_member_taking_anothers_address_or_mac_reaches_no_one(
    instance: Instance, netns_pool: NetnsPool
) -> None:
    inst, pool = instance, netns_pool
    m = three_members(inst, pool)
    (a_ns, a_ip, a_mac), (b_ns, b_ip, _), (s_ns, s_ip, _) = m["a"], m["b"], m["s"]
    a_port = names.host_ifname("veth", "sp", "a", "eth0")
    assert fdb_port(inst, a_mac) == a_port
    # s takes a's IP: it reaches no one, a still does.
    pool.exec(s_ns, ["ip", "addr", "flush", "dev", "eth0"])
    pool.exec(s_ns, ["ip", "addr", "add", f"{a_ip}/24", "dev", "eth0"])
    assert not ping(pool, s_ns, b_ip)
    assert not ping(pool, s_ns, "10.96.0.1")
    assert ping(pool, b_ns, a_ip) and ping(pool, a_ns, "10.96.0.1")
    # s takes a's MAC (with its own IP back): it reaches no one, and the bridge still sends
    # a's frames to a's port, also after a link-local (LLDP) frame, which skips prerouting.
    pool.exec(s_ns, ["ip", "addr", "flush", "dev", "eth0"])
    pool.exec(s_ns, ["ip", "addr", "add", f"{s_ip}/24", "dev", "eth0"])
    pool.exec(s_ns, ["ip", "link", "set", "eth0", "address", a_mac])
    assert not ping(pool, s_ns, b_ip)
    lldp = frames.ethernet("01:80:c2:00:00:0e", a_mac, 0x88CC, b"\x00" * 46)
    frames.send(s_ns, "eth0", [lldp])
    time.sleep(0.1)
    assert fdb_port(inst, a_mac) == a_port
    assert ping(pool, b_ns, a_ip) and ping(pool, b_ns, "10.96.0.1")
    # A detached member leaves no anti-spoofing element behind; a deleted network neither.
    s_port = names.host_ifname("veth", "sp", "s", "eth0")
    assert s_port in inst.sh("nft", "list", "table", "bridge", "container-bridge").stdout
    inst.cli("network", "detach", "sp", "--name", "s")
    assert s_port not in inst.sh("nft", "list", "table", "bridge", "container-bridge").stdout
    for name in ("a", "b"):
        inst.cli("network", "detach", "sp", "--name", name)
    inst.cli("network", "delete", "sp")
    assert "cv" not in inst.sh("nft", "list", "table", "bridge", "container-bridge").stdout


def test_spoofcheck_off_lets_a_member_send_from_any_address(
    instance: Instance, netns_pool: NetnsPool
) -> None:
    inst, pool = instance, netns_pool
    inst.cli("network", "create", "free", "--subnet", "10.98.0.0/24", "--option", "spoofcheck=off")
    assert "spoofcheck" in inst.cli("network", "inspect", "free").stdout
    _a_ns, a_ip, _ = member(inst, pool, "free", "a")
    b_ns, b_ip, _ = member(inst, pool, "free", "b")
    s_ns, _s_ip, _ = member(inst, pool, "free", "s")
    pool.exec(s_ns, ["ip", "addr", "flush", "dev", "eth0"])
    pool.exec(s_ns, ["ip", "addr", "add", "10.98.0.200/24", "dev", "eth0"])
    assert ping(pool, s_ns, b_ip)
    assert ping(pool, b_ns, a_ip)


def test_firewall_is_restored_after_a_flush_or_a_deleted_table(
    instance: Instance, netns_pool: NetnsPool
) -> None:
    inst, pool = instance, netns_pool
    inst.cli("network", "create", "fw1", "--subnet", "10.99.1.0/24")
    inst.cli("network", "create", "fw2", "--subnet", "10.99.2.0/24")
    a_ns, a_ip, _ = member(inst, pool, "fw1", "a")
    b_ns, b_ip, _ = member(inst, pool, "fw2", "b")
    server = peer_server(a_ns)
    try:
        publish(inst, "a", [fwd(None, 8080, a_ip)])
        assert seen_by_server(inst.netns, "127.0.0.1", 8080) == "10.99.1.1"
        assert our_table_present(inst)
        before = inst.sh("nft", "list", "table", "inet", "container-bridge").stdout
        for breaking in (
            ["nft", "flush", "ruleset"],
            ["nft", "delete", "table", "inet", "container-bridge"],
            ["nft", "delete", "table", "bridge", "container-bridge"],
            ["nft", "flush", "chain", "inet", "container-bridge", "forward"],
        ):
            inst.sh(*breaking)
            began = time.monotonic()
            while time.monotonic() - began < 3.0:
                if our_table_present(inst) and (
                    inst.sh("nft", "list", "table", "inet", "container-bridge").stdout == before
                ):
                    break
                time.sleep(0.02)
            waited = time.monotonic() - began
            assert waited <= 2.0, (breaking, waited)
            # Published ports, isolation and the members' gateways work again.
            assert seen_by_server(inst.netns, "127.0.0.1", 8080) == "10.99.1.1", breaking
            assert ping(pool, a_ns, "10.99.1.1") and ping(pool, b_ns, "10.99.2.1")
            assert not ping(pool, a_ns, b_ip), breaking
    finally:
        server.close()
    log = (inst.run_dir / "network-bridge.log").read_text()
    assert log.count("were changed or removed by someone else; restored") >= 4, log


def test_ipv6_members_work_and_cannot_spoof(instance: Instance, netns_pool: NetnsPool) -> None:
    inst, pool = instance, netns_pool
    inst.cli("network", "create", "v6", "--subnet", "10.96.6.0/24", "--subnet-v6", "fd00:96::/64")
    atts = {}
    for name in ("a", "b", "s"):
        ns = pool.create("m")
        att = inst.cli("network", "attach", "v6", "--name", name, "--netns", ns).json()
        atts[name] = (ns, str(att["ipv6Address"]).split("/")[0])
    (a_ns, a6), (b_ns, b6), (s_ns, s6) = atts["a"], atts["b"], atts["s"]
    # Honest members: neighbour discovery, link-local and global addresses all work.
    assert ping(pool, a_ns, b6) and ping(pool, s_ns, b6) and ping(pool, b_ns, "fd00:96::1")
    # A forged neighbour advertisement "a's address is at s's MAC", sent from s's own
    # address, does not change the host's neighbour entry for a.
    bridge = names.bridge_name("v6")
    a_mac, s_mac = frames.link_mac(a_ns), frames.link_mac(s_ns)
    inst.sh("ping", "-c1", "-W2", a6)
    time.sleep(1.1)
    advert = frames.ipv6_neighbour_advert(s6, "ff02::1", a6, s_mac)
    frames.send(
        s_ns, "eth0", [frames.ethernet("33:33:00:00:00:01", s_mac, frames.ETH_P_IPV6, advert)]
    )
    time.sleep(0.2)
    neigh = inst.sh("ip", "-6", "neigh", "show", a6, "dev", bridge).stdout
    assert a_mac in neigh and s_mac not in neigh, neigh
    # s takes a's IPv6 address (nodad: at once): it reaches no one; a still works.
    pool.exec(s_ns, ["ip", "-6", "addr", "flush", "dev", "eth0", "scope", "global"])
    pool.exec(s_ns, ["ip", "-6", "addr", "add", f"{a6}/64", "dev", "eth0", "nodad"])
    assert not ping(pool, s_ns, b6)
    assert not ping(pool, s_ns, "fd00:96::1")
    assert ping(pool, b_ns, a6) and ping(pool, a_ns, "fd00:96::1")
