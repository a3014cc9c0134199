"""Packets between test namespaces: responders, TCP/UDP/ICMP/DNS probes, raw frames.

Shared by the isolation matrix, the chaos test and the benches. Every socket is made by a
thread that has entered the namespace (setns affects only the calling thread), so many
probes run in parallel from one process without a subprocess each. Only addresses inside
namespaces a test made are ever targeted.
"""

from __future__ import annotations

import fcntl
import os
import random
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

from container_runtime.dataplane import nsutil

T = TypeVar("T")

ETH_P_IP = 0x0800
ETH_P_ALL = 0x0003
SIOCGIFHWADDR = 0x8927


def netns_path(ns: str) -> str:
    return ns if ns.startswith("/") else f"/run/netns/{ns}"


@contextmanager
def entered(ns: str | None) -> Iterator[None]:
    """Run the body with this thread in namespace ns (None: stay where we are)."""
    if ns is None:
        yield
        return
    home = nsutil.current_netns_fd()
    fd = os.open(netns_path(ns), os.O_RDONLY)
    try:
        with nsutil.entered(fd, home):
            yield
    finally:
        os.close(fd)
        os.close(home)


def socket_in(
    ns: str | None, kind: int = socket.SOCK_STREAM, family: int = socket.AF_INET, proto: int = 0
) -> socket.socket:
    with entered(ns):
        return socket.socket(family, kind, proto)


class Responder:
    """TCP and UDP on one port in a namespace; each answers with b"ok " + the peer's address."""

    def __init__(self, ns: str | None, port: int, addr: str = "0.0.0.0") -> None:
        self.tcp = socket_in(ns, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind((addr, port))
        self.tcp.listen(64)
        self.udp = socket_in(ns, socket.SOCK_DGRAM)
        self.udp.bind((addr, port))
        self._threads = [
            threading.Thread(target=self._serve_tcp, daemon=True),
            threading.Thread(target=self._serve_udp, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _serve_tcp(self) -> None:
        while True:
            try:
                conn, peer = self.tcp.accept()
            except OSError:
                return
            with conn:
                try:
                    conn.sendall(b"ok " + peer[0].encode())
                except OSError:
                    pass

    def _serve_udp(self) -> None:
        while True:
            try:
                _, peer = self.udp.recvfrom(2048)
                if not peer:  # shut down
                    return
                self.udp.sendto(b"ok " + peer[0].encode(), peer)
            except OSError:
                return

    def close(self) -> None:
        for sock in (self.tcp, self.udp):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


def tcp_reaches(ns: str | None, addr: str, port: int, timeout: float = 0.5) -> bool:
    sock = socket_in(ns, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect((addr, port))
        return sock.recv(64).startswith(b"ok")
    except OSError:
        return False
    finally:
        sock.close()


def udp_reaches(ns: str | None, addr: str, port: int, timeout: float = 0.5) -> bool:
    sock = socket_in(ns, socket.SOCK_DGRAM)
    sock.settimeout(timeout)
    try:
        sock.sendto(b"probe", (addr, port))
        data, _ = sock.recvfrom(64)
        return data.startswith(b"ok")
    except OSError:
        return False
    finally:
        sock.close()


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def icmp_reaches(ns: str | None, addr: str, timeout: float = 0.5) -> bool:
    """One ICMP echo over a raw socket; True if the matching reply came from addr."""
    sock = socket_in(ns, socket.SOCK_RAW, proto=socket.IPPROTO_ICMP)
    ident, seq = random.randrange(1, 0xFFFF), random.randrange(1, 0xFFFF)
    payload = os.urandom(16)
    body = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + payload
    packet = body[:2] + struct.pack("!H", _checksum(body)) + body[4:]
    deadline = time.monotonic() + timeout
    try:
        sock.sendto(packet, (addr, 0))
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([sock], [], [], left)
            if not ready:
                return False
            data, peer = sock.recvfrom(2048)
            header_len = (data[0] & 0x0F) * 4
            icmp = data[header_len:]
            if len(icmp) < 8 or peer[0] != addr:
                continue
            kind, _, _, got_id, got_seq = struct.unpack("!BBHHH", icmp[:8])
            if kind == 0 and (got_id, got_seq) == (ident, seq) and icmp[8:] == payload:
                return True
        return False
    except OSError:
        return False
    finally:
        sock.close()


def dns_query(
    ns: str | None,
    server: str,
    name: str,
    qtype: str = "A",
    port: int = 53,
    timeout: float = 1.0,
    tries: int = 2,
) -> tuple[str, list[str]] | None:
    """(rcode name, answer values) from server, or None if it never answered."""
    from dnslib import QTYPE, RCODE, DNSRecord

    query = DNSRecord.question(name, qtype)
    sock = socket_in(ns, socket.SOCK_DGRAM)
    sock.settimeout(timeout)
    try:
        for _ in range(tries):
            try:
                sock.sendto(query.pack(), (server, port))
                while True:
                    data, _ = sock.recvfrom(4096)
                    reply = DNSRecord.parse(data)
                    if reply.header.id == query.header.id:
                        break
            except OSError:
                continue
            answers = [str(rr.rdata) for rr in reply.rr if rr.rtype == getattr(QTYPE, qtype)]
            return RCODE[reply.header.rcode], answers
        return None
    finally:
        sock.close()


def parallel(jobs: Iterable[Callable[[], T]], workers: int = 48) -> list[T]:
    """Run the callables in a thread pool; results in order."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(job) for job in jobs]
        return [f.result() for f in futures]


# ------------------------------------------------------------------ raw frames (CAP_NET_RAW)


def _mac_bytes(mac: str) -> bytes:
    return bytes(int(x, 16) for x in mac.split(":"))


def link_mac(ns: str | None, ifname: str) -> str:
    """ifname's MAC in namespace ns (an ioctl: /sys shows the namespace it was mounted in,
    not the calling thread's)."""
    sock = socket_in(ns, socket.SOCK_DGRAM)
    try:
        info = fcntl.ioctl(sock.fileno(), SIOCGIFHWADDR, struct.pack("256s", ifname.encode()[:15]))
    finally:
        sock.close()
    return ":".join(f"{b:02x}" for b in info[18:24])


def link_names(ns: str | None) -> list[str]:
    """Interface names in namespace ns."""
    with entered(ns):
        return [name for _, name in socket.if_nameindex()]


def ipv4_frame(
    src_mac: str, dst_mac: str, src_ip: str, dst_ip: str, proto: int, l4: bytes
) -> bytes:
    """An Ethernet frame carrying one IPv4 packet whose L4 checksum is already filled in."""
    total = 20 + len(l4)
    head = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        total,
        random.randrange(0xFFFF),
        0,
        64,
        proto,
        0,
        socket.inet_aton(src_ip),
        socket.inet_aton(dst_ip),
    )
    head = head[:10] + struct.pack("!H", _checksum(head)) + head[12:]
    return _mac_bytes(dst_mac) + _mac_bytes(src_mac) + struct.pack("!H", ETH_P_IP) + head + l4


def _pseudo(src_ip: str, dst_ip: str, proto: int, length: int) -> bytes:
    return (
        socket.inet_aton(src_ip) + socket.inet_aton(dst_ip) + struct.pack("!BBH", 0, proto, length)
    )


def tcp_syn(src_ip: str, dst_ip: str, sport: int, dport: int) -> bytes:
    seg = struct.pack(
        "!HHIIBBHHH", sport, dport, random.randrange(1 << 32), 0, 5 << 4, 0x02, 64240, 0, 0
    )
    csum = _checksum(_pseudo(src_ip, dst_ip, socket.IPPROTO_TCP, len(seg)) + seg)
    return seg[:16] + struct.pack("!H", csum) + seg[18:]


def udp_datagram(src_ip: str, dst_ip: str, sport: int, dport: int, payload: bytes) -> bytes:
    length = 8 + len(payload)
    seg = struct.pack("!HHHH", sport, dport, length, 0) + payload
    csum = _checksum(_pseudo(src_ip, dst_ip, socket.IPPROTO_UDP, length) + seg) or 0xFFFF
    return seg[:6] + struct.pack("!H", csum) + seg[8:]


def raw_exchange(
    ns: str, ifname: str, frames: list[bytes], match: Callable[[bytes], bool], timeout: float = 1.0
) -> bool:
    """Send frames out of ifname (AF_PACKET, as a container with CAP_NET_RAW can) and say
    whether a frame for which match(frame) holds came back on it within timeout."""
    with entered(ns):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    try:
        sock.bind((ifname, 0))
        for frame in frames:
            sock.send(frame)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([sock], [], [], left)
            if not ready:
                return False
            data, info = sock.recvfrom(65536)
            if info[2] == socket.PACKET_OUTGOING:
                continue
            if match(data):
                return True
        return False
    finally:
        sock.close()


def ipv4_from(frame: bytes, src_ip: str, proto: int, sport: int | None = None) -> bool:
    """Is frame an IPv4 packet of protocol proto from src_ip (and L4 source port sport)?"""
    if len(frame) < 34 or frame[12:14] != struct.pack("!H", ETH_P_IP):
        return False
    ip = frame[14:]
    if ip[9] != proto or ip[12:16] != socket.inet_aton(src_ip):
        return False
    if sport is None:
        return True
    l4 = ip[(ip[0] & 0x0F) * 4 :]
    return len(l4) >= 2 and struct.unpack("!H", l4[:2])[0] == sport
