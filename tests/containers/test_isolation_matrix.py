"""The isolation matrix: who reaches whom, exactly as docs/NETWORKING.md and docs/DNS.md say.

Three shared networks of three members each, one member of two of them, an `--internal`
network and a `variant=isolated` one. Every ordered pair of members, to every address of
the target, with TCP, UDP and ICMP; every ordered pair with a DNS lookup. Members are bare
attachments in test namespaces (the same veth, bridge and rules a container gets);
containers only where the behaviour is a container's (resolv.conf, its mount namespace).

Promised: members of one network reach each other unless it is `variant=isolated`;
nothing crosses between networks; `internal` members reach only their own gateway on the
host; names resolve only between networks the asker is on; an internal network does not
forward DNS; no member reaches the host's 127.0.0.0/8 (only DNATed published ports may);
a container sees neither the API nor the helper socket.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from support import probes
from support.containers import FakeUpstream
from support.instance import Instance

from .conftest import System

PORT = 7001  # responders in every member
HOST_LOOPBACK_PORT = 7002  # a service on the host's 127.0.0.1 only
HOST_PORT = 7003  # a service on every host address (control for the raw-frame probe)
UPSTREAM_PORT = 5399  # a fake upstream DNS server on the host's 127.0.0.1
OUTSIDE = "outside.example."
OUTSIDE_ADDR = "198.51.100.7"

NETWORKS = {
    "mxa": ("10.61.1.0/24", []),
    "mxb": ("10.61.2.0/24", []),
    "mxc": ("10.61.3.0/24", []),
    "mxint": ("10.61.4.0/24", ["--internal"]),
    "mxiso": ("10.61.5.0/24", ["--option", "variant=isolated"]),
}
MEMBERS = {
    **{f"{n}{i}": [f"mx{n}"] for n in "abc" for i in (1, 2, 3)},
    "ab": ["mxa", "mxb"],
    "int1": ["mxint"],
    "int2": ["mxint"],
    "iso1": ["mxiso"],
    "iso2": ["mxiso"],
}
FIGURES: dict[str, int] = {}


@dataclass
class Member:
    name: str
    ns: str
    addresses: dict[str, str] = field(default_factory=dict)  # network -> address
    gateways: dict[str, str] = field(default_factory=dict)
    interfaces: dict[str, str] = field(default_factory=dict)


@dataclass
class World:
    inst: Instance
    system: System
    members: dict[str, Member]
    gateways: dict[str, str]  # network -> gateway


@pytest.fixture(scope="module")
def world(system: System) -> Iterator[World]:
    inst = system.inst
    # Restart with a known upstream so forwarding can be observed (no internet here).
    inst.cli("system", "stop")
    inst.env["CONTAINER_DNS_UPSTREAMS"] = f"127.0.0.1:{UPSTREAM_PORT}"
    inst.start()
    closers: list[Callable[[], None]] = []
    members: dict[str, Member] = {}
    try:
        upstream = FakeUpstream(inst.netns, "127.0.0.1", UPSTREAM_PORT, OUTSIDE_ADDR)
        closers.append(upstream.close)
        for name, (subnet, extra) in NETWORKS.items():
            inst.cli("network", "create", name, "--subnet", subnet, *extra)
        nets = {n["id"]: n for n in inst.cli("network", "ls", "--format", "json").json()}
        gateways = {n: nets[n]["configuration"]["ipv4Gateway"] for n in NETWORKS}
        for name, networks in MEMBERS.items():
            ns = inst.pool.create("mx")
            member = Member(name, ns)
            for index, net in enumerate(networks):
                iface = f"eth{index}"
                argv = [
                    "network",
                    "attach",
                    net,
                    "--name",
                    name,
                    "--netns",
                    ns,
                    "--interface",
                    iface,
                ]
                att = inst.cli(*argv, *(["--secondary"] if index else [])).json()
                member.addresses[net] = att["address"].split("/")[0]
                member.gateways[net] = att["gateway"]
                member.interfaces[net] = iface
            responder = probes.Responder(ns, PORT)
            closers.append(responder.close)
            members[name] = member
        for port, addr in ((HOST_LOOPBACK_PORT, "127.0.0.1"), (HOST_PORT, "0.0.0.0")):
            responder = probes.Responder(inst.netns, port, addr)
            closers.append(responder.close)
        yield World(inst, system, members, gateways)
    finally:
        for close in closers:
            close()
        for name, networks in MEMBERS.items():
            for net in networks:
                inst.cli("network", "detach", net, "--name", name, check=False)
        inst.cli("network", "rm", *NETWORKS, check=False)


def _expected(src: Member, dst_net: str) -> bool:
    """May src reach a target's address on dst_net (TCP, UDP, ICMP)?"""
    return dst_net in src.addresses and dst_net != "mxiso"


def _probe(kind: str, src: Member, addr: str, allowed: bool, port: int = PORT) -> bool:
    tries = 3 if allowed else 1  # a positive check must not fail on a lost first packet
    timeout = 1.0 if allowed else 0.6
    for _ in range(tries):
        if kind == "tcp":
            ok = probes.tcp_reaches(src.ns, addr, port, timeout=timeout)
        elif kind == "udp":
            ok = probes.udp_reaches(src.ns, addr, port, timeout=timeout)
        else:
            ok = probes.icmp_reaches(src.ns, addr, timeout=timeout)
        if ok:
            return True
    return False


def test_reachability_matrix_tcp_udp_icmp(world: World) -> None:
    cases = []
    for src in world.members.values():
        for dst in world.members.values():
            if dst is src:
                continue
            for net, addr in dst.addresses.items():
                for kind in ("tcp", "udp", "icmp"):
                    cases.append((kind, src, dst, net, addr, _expected(src, net)))
    results = probes.parallel(
        [lambda c=c: _probe(c[0], c[1], c[4], c[5]) for c in cases], workers=64
    )
    wrong = [
        f"{kind} {src.name} -> {dst.name} on {net} ({addr}): "
        f"{'reached' if got else 'blocked'}, expected {'reached' if exp else 'blocked'}"
        for (kind, src, dst, net, addr, exp), got in zip(cases, results, strict=True)
        if got != exp
    ]
    FIGURES["reachability_probes"] = len(cases)
    FIGURES["reachability_leaks"] = sum(
        1 for c, got in zip(cases, results, strict=True) if got and not c[5]
    )
    print(f"isolation matrix: {len(cases)} probes, {FIGURES['reachability_leaks']} leaks")
    assert not wrong, "\n".join(wrong)


def test_members_reach_their_gateway_and_internal_only_its_own(world: World) -> None:
    cases = []
    for src in world.members.values():
        for net, gw in world.gateways.items():
            for kind in ("icmp", "tcp", "udp"):
                if net in src.addresses:
                    cases.append((kind, src, net, gw, True))
                elif "mxint" in src.addresses:
                    # internal: its own gateway and no other host address
                    cases.append((kind, src, net, gw, False))
    results = probes.parallel(
        [lambda c=c: _probe(c[0], c[1], c[3], c[4], port=HOST_PORT) for c in cases]
    )
    wrong = [
        f"{kind} {src.name} -> gateway of {net} ({gw}): {'reached' if got else 'blocked'}"
        for (kind, src, net, gw, exp), got in zip(cases, results, strict=True)
        if got != exp
    ]
    assert not wrong, "\n".join(wrong)


def test_dns_matrix(world: World) -> None:
    cases = []
    for src in world.members.values():
        server = next(iter(src.gateways.values()))
        for dst in world.members.values():
            if dst is src:
                continue
            expected = sorted(a for n, a in dst.addresses.items() if n in src.addresses)
            cases.append((src, dst, server, expected))
    results = probes.parallel(
        [lambda c=c: probes.dns_query(c[0].ns, c[2], f"{c[1].name}.test.") for c in cases]
    )
    wrong = []
    for (src, dst, server, expected), got in zip(cases, results, strict=True):
        if got is None:
            wrong.append(f"{src.name} asking {server} for {dst.name}: no answer at all")
            continue
        rcode, answers = got
        ok = sorted(answers) == expected and (
            rcode == "NOERROR" if expected else rcode == "NXDOMAIN"
        )
        if not ok:
            wrong.append(
                f"{src.name} -> {dst.name}: {rcode} {answers}, expected {expected or 'NXDOMAIN'}"
            )
    FIGURES["dns_pairs"] = len(cases)
    FIGURES["dns_leaks"] = sum(
        1 for c, got in zip(cases, results, strict=True) if got and got[1] and not c[3]
    )
    print(f"isolation matrix: {len(cases)} DNS pairs, {FIGURES['dns_leaks']} leaks")
    assert not wrong, "\n".join(wrong)


def test_internal_network_does_not_forward_dns(world: World) -> None:
    shared, internal = world.members["a1"], world.members["int1"]
    # Control: forwarding works from a shared network, so the refusal below means something.
    got = probes.dns_query(shared.ns, shared.gateways["mxa"], OUTSIDE, timeout=3)
    assert got is not None and got[1] == [OUTSIDE_ADDR], got
    got = probes.dns_query(internal.ns, internal.gateways["mxint"], OUTSIDE, timeout=3)
    assert got is not None, "the internal network's DNS did not answer at all"
    assert OUTSIDE_ADDR not in got[1], f"an internal member resolved {OUTSIDE} through forwarding"
    assert got[0] in ("NXDOMAIN", "REFUSED"), got
    # Its own members still resolve.
    own = probes.dns_query(internal.ns, internal.gateways["mxint"], "int2.test.")
    assert own is not None and own[1] == [world.members["int2"].addresses["mxint"]], own


def _raw_to_host(member: Member, net: str, dst_ip: str, proto: str, port: int) -> bool:
    """Send a frame from member's interface to the host's bridge MAC for dst_ip:port, as a
    container with CAP_NET_RAW can; True if any reply from dst_ip:port came back."""
    iface = member.interfaces[net]
    src_mac = probes.link_mac(member.ns, iface)
    gw_mac = _bridge_mac(member, net)
    src_ip = member.addresses[net]
    sport = 40000 + (port % 1000)
    if proto == "tcp":
        l4 = probes.tcp_syn(src_ip, dst_ip, sport, port)
        number = socket.IPPROTO_TCP
    else:
        query = _dns_query_bytes()
        l4 = probes.udp_datagram(src_ip, dst_ip, sport, port, query)
        number = socket.IPPROTO_UDP
    frame = probes.ipv4_frame(src_mac, gw_mac, src_ip, dst_ip, number, l4)
    return probes.raw_exchange(
        member.ns,
        iface,
        [frame, frame],
        lambda f: probes.ipv4_from(f, dst_ip, number, port),
        timeout=1.0,
    )


_BRIDGE_MACS: dict[tuple[str, str], str] = {}


def _bridge_mac(member: Member, net: str) -> str:
    """The gateway's MAC as the member learns it (ARP after one ping)."""
    key = (member.ns, net)
    if key not in _BRIDGE_MACS:
        gw = member.gateways[net]
        assert probes.icmp_reaches(member.ns, gw, timeout=2.0), f"{member.name} cannot ping {gw}"
        with probes.entered(member.ns):
            with open("/proc/thread-self/net/arp") as fh:
                rows = [line.split() for line in fh.readlines()[1:]]
        _BRIDGE_MACS[key] = next(r[3] for r in rows if r[0] == gw)
    return _BRIDGE_MACS[key]


def _dns_query_bytes() -> bytes:
    from dnslib import DNSRecord

    return DNSRecord.question("a2.test.", "A").pack()


def test_members_cannot_reach_host_loopback(world: World) -> None:
    """CVE-2020-8558's class: route_localnet must not let members in to 127.0.0.0/8."""
    wrong = []
    for name in ("a1", "int1", "iso1"):
        member = world.members[name]
        net = next(iter(member.addresses))
        # Control: the same raw path reaches a service on the gateway address.
        if name != "int1":
            assert _raw_to_host(member, net, member.gateways[net], "tcp", HOST_PORT), name
        for proto, port in (
            ("tcp", HOST_LOOPBACK_PORT),
            ("udp", HOST_LOOPBACK_PORT),
            ("udp", 2053),
        ):
            if _raw_to_host(member, net, "127.0.0.1", proto, port):
                wrong.append(f"{name} reached the host's 127.0.0.1:{port}/{proto}")
    assert not wrong, "\n".join(wrong)


def test_containers_resolve_only_their_networks_and_see_no_daemon_socket(world: World) -> None:
    inst, ref = world.inst, world.system.image
    a2, b1 = world.members["a2"], world.members["b1"]
    sockets = [
        inst.run_dir / "apiserver.sock",
        inst.run_dir / "network-bridge.sock",
        inst.run_dir / "dns.ctl",
    ]
    script = "; ".join(
        [
            "nslookup a2 2>&1 | tail -n +3",
            "echo ---",
            "nslookup b1 2>&1 | tail -n +3",
            "echo ---",
            *[f"test -e {s} && echo VISIBLE {s}" for s in sockets],
            *[f"test -e /proc/1/root{s} && echo VISIBLE {s}" for s in sockets],
            f"ls {inst.run_dir} 2>/dev/null && echo VISIBLE {inst.run_dir}",
            "true",
        ]
    )
    out = inst.cli("run", "--rm", "--network", "mxa", ref, "sh", "-c", script, timeout=60).stdout
    own, other, rest = out.split("---\n", 2)
    assert a2.addresses["mxa"] in own, out
    assert b1.addresses["mxb"] not in other, out
    assert "VISIBLE" not in rest, out
