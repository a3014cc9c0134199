"""Hand-made Ethernet frames sent from a test's namespace, as a container with CAP_NET_RAW
could send them (forged sources, ARP replies, packets to 127.0.0.1 through the gateway).
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import struct
import subprocess

from container_runtime.dataplane import nsutil

ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ethernet(dst: str, src: str, ethertype: int, payload: bytes) -> bytes:
    return mac_bytes(dst) + mac_bytes(src) + struct.pack("!H", ethertype) + payload


def ipv4_udp(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload  # no UDP checksum
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(udp),
        0x1234,
        0,
        64,
        socket.IPPROTO_UDP,
        0,
        ipaddress.IPv4Address(src).packed,
        ipaddress.IPv4Address(dst).packed,
    )
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    return header + udp


ETH_P_IPV6 = 0x86DD


def ipv6_neighbour_advert(src: str, dst: str, target: str, target_mac: str) -> bytes:
    """An IPv6 packet carrying an unsolicited neighbour advertisement with the override
    flag: "target is at target_mac"."""
    icmp = struct.pack("!BBHI", 136, 0, 0, 0x20000000) + ipaddress.IPv6Address(target).packed
    icmp += struct.pack("!BB", 2, 1) + mac_bytes(target_mac)  # target link-layer address
    pseudo = (
        ipaddress.IPv6Address(src).packed
        + ipaddress.IPv6Address(dst).packed
        + struct.pack("!I3xB", len(icmp), 58)
    )
    icmp = icmp[:2] + struct.pack("!H", _checksum(pseudo + icmp)) + icmp[4:]
    header = struct.pack("!IHBB", 0x60000000, len(icmp), 58, 255)
    return header + ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed + icmp


def arp(op: int, sender_mac: str, sender_ip: str, target_mac: str, target_ip: str) -> bytes:
    """op 1: request, 2: reply."""
    return struct.pack(
        "!HHBBH6s4s6s4s",
        1,
        ETH_P_IP,
        6,
        4,
        op,
        mac_bytes(sender_mac),
        ipaddress.IPv4Address(sender_ip).packed,
        mac_bytes(target_mac),
        ipaddress.IPv4Address(target_ip).packed,
    )


def ns_socket(netns: str | None, family: int, kind: int, proto: int = 0) -> socket.socket:
    """A socket opened in namespace /run/netns/NAME (None: the caller's namespace)."""
    if netns is None:
        return socket.socket(family, kind, proto)
    home = nsutil.current_netns_fd()
    fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        with nsutil.entered(fd, home):
            return socket.socket(family, kind, proto)
    finally:
        os.close(fd)
        os.close(home)


def send(netns: str, ifname: str, frames: list[bytes], repeat: int = 3) -> None:
    """Send raw frames out of ifname inside the named namespace."""
    with ns_socket(netns, socket.AF_PACKET, socket.SOCK_RAW) as sock:
        sock.bind((ifname, 0))
        for _ in range(repeat):
            for frame in frames:
                sock.send(frame)


def udp_received(sock: socket.socket, timeout: float = 1.0) -> list[tuple[bytes, str]]:
    """Every datagram (payload, source IP) that arrives on sock within timeout."""
    got: list[tuple[bytes, str]] = []
    sock.settimeout(timeout)
    while True:
        try:
            data, addr = sock.recvfrom(2048)
        except TimeoutError:
            return got
        got.append((data, addr[0]))
        sock.settimeout(0.2)


def link_mac(netns: str, ifname: str = "eth0") -> str:
    out = subprocess.run(
        ["ip", "-n", netns, "-j", "link", "show", ifname],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return str(json.loads(out)[0]["address"])
