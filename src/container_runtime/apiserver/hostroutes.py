"""Read the host's routes (IPv4 and IPv6) from /proc, to refuse overlapping subnets.

Reading /proc is enough here and keeps netlink libraries out of the API server.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class HostRoute:
    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    device: str

    def __str__(self) -> str:
        return f"{self.network} (dev {self.device})"


def host_routes(ignore_devices: set[str], proc: Path = Path("/proc/net")) -> list[HostRoute]:
    routes: list[HostRoute] = []
    try:
        lines = (proc / "route").read_text().splitlines()[1:]
    except OSError:
        lines = []
    for line in lines:
        fields = line.split()
        if len(fields) < 8 or fields[0] in ignore_devices:
            continue
        dest = socket.inet_ntoa(struct.pack("<I", int(fields[1], 16)))
        mask = socket.inet_ntoa(struct.pack("<I", int(fields[7], 16)))
        net = ipaddress.IPv4Network(f"{dest}/{mask}", strict=False)
        if net.prefixlen == 0:
            continue  # the default route overlaps everything by definition
        routes.append(HostRoute(net, fields[0]))
    try:
        lines6 = (proc / "ipv6_route").read_text().splitlines()
    except OSError:
        lines6 = []
    for line in lines6:
        fields = line.split()
        if len(fields) < 10 or fields[9] in ignore_devices or fields[9] == "lo":
            continue
        prefixlen = int(fields[1], 16)
        if prefixlen == 0:
            continue
        address = ipaddress.IPv6Address(bytes.fromhex(fields[0]))
        net6 = ipaddress.IPv6Network((address, prefixlen), strict=False)
        if net6.is_link_local or net6.is_multicast:
            continue
        routes.append(HostRoute(net6, fields[9]))
    return routes
