"""A plugin's nftables tables: `inet container-PLUGIN` (NAT, network isolation, published
ports, IPv4 and IPv6) and `bridge container-PLUGIN` (anti-spoofing, built by antispoof.py);
the names come from names.table_name, so each plugin has its own.

Both tables are rebuilt as one atomic batch; rules match sets and maps keyed by bridge
names, subnets, ports and attachments, so the rule count is fixed however many containers
there are. No other table is ever read or changed.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ...dataplane.names import LEGACY_TABLE, TABLE
from ...errors import Conflict, ContainerError, InvalidArgument
from ...models import NetworkConfiguration, NetworkMode
from . import antispoof
from .antispoof import GuardedPort

FAMILY = "inet"


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# (map name) by (IP version, bound to one host address?)
_MAPS = {(4, False): "pf4", (4, True): "pf4ip", (6, False): "pf6", (6, True): "pf6ip"}


@dataclass(frozen=True)
class PortForward:
    """Host [ip:]port -> container ip:port, IPv4 or IPv6 (host and container the same).

    A host IP of None (or 0.0.0.0 / ::) means every address of the host in that family.
    """

    protocol: str
    host_ip: IPAddress | None
    host_port: int
    container_ip: IPAddress
    container_port: int

    def __post_init__(self) -> None:
        if self.protocol not in ("tcp", "udp"):
            raise InvalidArgument(f"invalid protocol {self.protocol!r} (valid: tcp, udp)")
        for port in (self.host_port, self.container_port):
            if not isinstance(port, int) or not 1 <= port <= 65535:
                raise InvalidArgument(f"invalid port {port!r}: must be between 1 and 65535")
        # Typed fields are trusted elsewhere; here they end up in nft text, so check them
        # (an address object is one already: 10,000-port ranges make this a hot path).
        container_ip = self.container_ip
        if not isinstance(container_ip, ipaddress.IPv4Address | ipaddress.IPv6Address):
            container_ip = ipaddress.ip_address(container_ip)
            object.__setattr__(self, "container_ip", container_ip)
        if self.host_ip is not None:
            host_ip = self.host_ip
            if not isinstance(host_ip, ipaddress.IPv4Address | ipaddress.IPv6Address):
                host_ip = ipaddress.ip_address(host_ip)
            if host_ip.version != container_ip.version:
                raise InvalidArgument(
                    f"host IP {host_ip} and container IP {container_ip} differ in IP version"
                )
            if host_ip.is_loopback and host_ip.version == 6:
                raise InvalidArgument(
                    "cannot publish on ::1: the kernel does not forward IPv6 loopback traffic "
                    "to another interface (use [::] or a host address)"
                )
            object.__setattr__(self, "host_ip", None if host_ip.is_unspecified else host_ip)

    @property
    def version(self) -> int:
        return int(self.container_ip.version)

    @property
    def key(self) -> tuple[int, str, str, int]:
        return (self.version, str(self.host_ip or ""), self.protocol, self.host_port)

    def element(self) -> tuple[str, str]:
        """(map name, element text)."""
        target = f"{self.container_ip} . {self.container_port}"
        name = _MAPS[(self.version, self.host_ip is not None)]
        if self.host_ip is None:
            return name, f"{self.protocol} . {self.host_port} : {target}"
        return name, f"{self.host_ip} . {self.protocol} . {self.host_port} : {target}"


def _q(ifname: str) -> str:
    # Bridge names are generated (ctr-<hex>), never user text; quoting keeps '-' literal.
    if not ifname.replace("-", "").isalnum():
        raise InvalidArgument(f"unsafe interface name {ifname!r}")
    return f'"{ifname}"'


def _set(name: str, type_: str, elements: Iterable[str], flags: str = "") -> str:
    elems = sorted(set(elements))
    body = f"type {type_};"
    if flags:
        body += f" flags {flags};"
    if elems:
        body += " elements = { " + ", ".join(elems) + " };"
    return f"  set {name} {{ {body} }}"


def _map(name: str, type_: str, elements: Iterable[str]) -> str:
    return _set(name, type_, elements).replace("  set ", "  map ", 1)


def _dedupe(forwards: Iterable[PortForward]) -> list[PortForward]:
    seen: dict[tuple[int, str, str, int], PortForward] = {}
    for pf in forwards:
        other = seen.get(pf.key)
        if other is not None and other != pf:
            host = f"{pf.host_ip or '*'}:{pf.host_port}/{pf.protocol}"
            raise Conflict(f"host port {host} is forwarded twice")
        seen[pf.key] = pf
    return list(seen.values())


def build_ruleset(
    networks: list[tuple[NetworkConfiguration, str]],
    forwards: list[PortForward],
    guarded: Iterable[GuardedPort] = (),
    table: str = TABLE,
) -> str:
    """The nft script that replaces our tables (or removes them when there is nothing to hold):
    table inet `table` (isolation, NAT, published ports) and table bridge `table`
    (anti-spoofing, see antispoof.py)."""
    head = f"table {FAMILY} {table}\ndelete table {FAMILY} {table}\n"
    if not networks and not forwards:
        return head + antispoof.remove_table(table)
    bridges = [_q(b) for _, b in networks]
    internal = [_q(b) for c, b in networks if c.mode == NetworkMode.INTERNAL]
    nat4 = [str(c.ipv4_subnet) for c, _ in networks if c.mode == NetworkMode.NAT]
    nat6 = [
        str(c.ipv6_subnet)
        for c, _ in networks
        if c.mode == NetworkMode.NAT and c.ipv6_subnet is not None
    ]
    all4 = [str(c.ipv4_subnet) for c, _ in networks]
    all6 = [str(c.ipv6_subnet) for c, _ in networks if c.ipv6_subnet is not None]
    gw4 = [f"{_q(b)} . {c.ipv4_gateway}" for c, b in networks if c.mode == NetworkMode.INTERNAL]
    gw6 = [
        f"{_q(b)} . {c.ipv6_gateway}"
        for c, b in networks
        if c.mode == NetworkMode.INTERNAL and c.ipv6_gateway is not None
    ]
    maps: dict[str, list[str]] = {name: [] for name in _MAPS.values()}
    for pf in _dedupe(forwards):
        name, elem = pf.element()
        maps[name].append(elem)
    dnat = [
        "    meta nfproto ipv4 dnat ip to ip daddr . meta l4proto . th dport map @pf4ip",
        "    meta nfproto ipv4 fib daddr type local dnat ip to meta l4proto . th dport map @pf4",
        "    meta nfproto ipv6 dnat ip6 to ip6 daddr . meta l4proto . th dport map @pf6ip",
        # ::1 is never DNATed: IPv6 loopback traffic cannot leave lo (no route_localnet).
        "    meta nfproto ipv6 ip6 daddr != ::1 fib daddr type local"
        " dnat ip6 to meta l4proto . th dport map @pf6",
    ]
    service = "inet_proto . inet_service"
    lines = [
        f"table {FAMILY} {table} {{",
        _set("bridges", "ifname", bridges),
        _set("intra", "ifname . ifname", (f"{b} . {b}" for b in bridges)),
        _set("internal", "ifname", internal),
        _set("nat4", "ipv4_addr", nat4, "interval"),
        _set("nat6", "ipv6_addr", nat6, "interval"),
        _set("all4", "ipv4_addr", all4, "interval"),
        _set("all6", "ipv6_addr", all6, "interval"),
        _set("gw4", "ifname . ipv4_addr", gw4),
        _set("gw6", "ifname . ipv6_addr", gw6),
        _map("pf4", f"{service} : ipv4_addr . inet_service", maps["pf4"]),
        _map("pf4ip", f"ipv4_addr . {service} : ipv4_addr . inet_service", maps["pf4ip"]),
        _map("pf6", f"{service} : ipv6_addr . inet_service", maps["pf6"]),
        _map("pf6ip", f"ipv6_addr . {service} : ipv6_addr . inet_service", maps["pf6ip"]),
        "  chain forward {",
        "    type filter hook forward priority filter; policy accept;",
        # br_netfilter: traffic between members of one bridge shows iif = oif = that bridge.
        "    iifname . oifname @intra accept",
        "    iifname @internal drop",
        "    oifname @internal drop",
        "    iifname @bridges oifname @bridges drop",
        "    oifname @bridges ct state established,related accept",
        "    oifname @bridges ct status dnat accept",
        "    oifname @bridges drop",
        "  }",
        "  chain input {",
        "    type filter hook input priority filter; policy accept;",
        # Bridges have route_localnet=1 so that the host can reach published ports on
        # 127.0.0.1; without this rule a member could reach the host's loopback-only
        # services through it (CVE-2020-8558). Only DNATed traffic (the replies of a
        # host -> 127.0.0.1:PORT connection) may arrive from a bridge for 127.0.0.0/8.
        "    iifname @bridges ip daddr 127.0.0.0/8 ct status & dnat == 0 drop",
        # internal members may talk to their own gateway (DNS) and nothing else on the host.
        "    iifname != @internal accept",
        "    ct state established,related accept",
        "    iifname . ip daddr @gw4 accept",
        "    iifname . ip6 daddr @gw6 accept",
        "    icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit } accept",
        "    drop",
        "  }",
        "  chain prerouting {",
        "    type nat hook prerouting priority dstnat; policy accept;",
        *dnat,
        "  }",
        "  chain output {",
        "    type nat hook output priority -100; policy accept;",
        *dnat,
        "  }",
        "  chain postrouting {",
        "    type nat hook postrouting priority srcnat; policy accept;",
        # hairpin: a member reaching a published port through a host address.
        "    ct status dnat oifname @bridges ip saddr @all4 masquerade",
        "    ct status dnat oifname @bridges ip6 saddr @all6 masquerade",
        # the host reaching a published port on 127.0.0.1 (bridges have route_localnet=1).
        "    ct status dnat oifname @bridges ip saddr 127.0.0.0/8 masquerade",
        "    oifname != @bridges ip saddr @nat4 masquerade",
        "    oifname != @bridges ip6 saddr @nat6 masquerade",
        "  }",
        "}",
    ]
    return head + "\n".join(lines) + "\n" + antispoof.build_table(guarded, table)


def remove_legacy_tables() -> str:
    """Drop the pre-11.3 tables (`inet container`, `bridge container`): they were the
    bridge plugin's, and only it runs this (after writing its new ones)."""
    return "".join(
        f"table {family} {LEGACY_TABLE}\ndelete table {family} {LEGACY_TABLE}\n"
        for family in (FAMILY, antispoof.FAMILY)
    )


class Nft:
    """One libnftables context (0.1 ms a batch); the `nft` binary only if the library is absent."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ctx: Any = None
        try:
            import nftables  # type: ignore[import-not-found,unused-ignore]

            self._ctx = nftables.Nftables()
        except Exception:  # noqa: BLE001 - missing module or libnftables.so
            if shutil.which("nft") is None:
                raise ContainerError(
                    "neither libnftables nor the nft command is available"
                ) from None

    def run(self, script: str) -> str:
        """Run an nft script as one batch."""
        with self._lock:
            if self._ctx is not None:
                rc, out, err = self._ctx.cmd(script)
            else:
                proc = subprocess.run(
                    ["nft", "-f", "-"], input=script, capture_output=True, text=True, check=False
                )
                rc, out, err = proc.returncode, proc.stdout, proc.stderr
        if rc != 0:
            first = next((ln for ln in str(err).splitlines() if ln.strip()), "unknown error")
            raise ContainerError(f"nftables refused the update: {first}")
        return str(out)


def element_script(verb: str, forwards: list[PortForward], table: str = TABLE) -> str:
    by_map: dict[str, list[str]] = {}
    for pf in _dedupe(forwards):
        name, elem = pf.element()
        if verb == "delete":
            elem = elem.split(" : ")[0]
        by_map.setdefault(name, []).append(elem)
    return "".join(
        f"{verb} element {FAMILY} {table} {name} {{ {', '.join(elems)} }}\n"
        for name, elems in sorted(by_map.items())
    )
