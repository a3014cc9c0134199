"""Anti-spoofing: the nftables table `bridge container-PLUGIN` (names.table_name), which
lets a member send only from its own MAC and addresses.

Frames arriving on a guarded bridge port (the host end of an attachment of a network with
`spoofcheck=on`, the default) must carry the attachment's MAC as Ethernet source, and its
IPv4 / IPv6 addresses (or its EUI-64 link-local address, or `::` for DAD) as IP source;
ARP must announce the member's own IP and MAC, and IPv6 neighbour advertisements its own
target addresses. Router advertisements and redirects from members are dropped. Every
check is one hash lookup keyed by `port . mac [. address]`, so the cost per packet and per
attachment is constant however many members there are. The hook is bridge prerouting,
which runs before the bridge learns a source MAC: a spoofing frame never moves another
member's FDB entry (link-local frames, which skip that hook, do not teach the bridge
either: our bridges have `no_linklocal_learn` on).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from ...dataplane.names import TABLE

FAMILY = "bridge"


@dataclass(frozen=True)
class GuardedPort:
    """One attachment's host-side port and the addresses it may send from."""

    ifname: str
    mac: str
    ipv4: ipaddress.IPv4Address
    ipv6: ipaddress.IPv6Address | None = None

    def __post_init__(self) -> None:
        # These end up in nft text: accept only what a generated name / MAC looks like.
        if not (self.ifname.isascii() and self.ifname.isalnum() and len(self.ifname) <= 15):
            raise ValueError(f"unsafe interface name {self.ifname!r}")
        parts = self.mac.split(":")
        if len(parts) != 6 or not all(len(p) == 2 for p in parts):
            raise ValueError(f"bad MAC address {self.mac!r}")
        int(self.mac.replace(":", ""), 16)
        object.__setattr__(self, "mac", self.mac.lower())
        object.__setattr__(self, "ipv4", ipaddress.IPv4Address(self.ipv4))
        if self.ipv6 is not None:
            object.__setattr__(self, "ipv6", ipaddress.IPv6Address(self.ipv6))

    def link_local(self) -> ipaddress.IPv6Address:
        """The kernel's default (EUI-64) link-local address for this MAC."""
        raw = bytearray(bytes.fromhex(self.mac.replace(":", "")))
        raw[0] ^= 0x02
        iid = bytes(raw[:3]) + b"\xff\xfe" + bytes(raw[3:])
        return ipaddress.IPv6Address(b"\xfe\x80" + b"\x00" * 6 + iid)

    def elements(self) -> dict[str, list[str]]:
        """{set name: element texts} of this port."""
        head = f'"{self.ifname}" . {self.mac}'
        out: dict[str, list[str]] = {
            "guarded": [f'"{self.ifname}"'],
            "srcmac": [head],
            "src4": [f"{head} . {self.ipv4}"],
        }
        if self.ipv6 is not None:
            v6 = [self.ipv6, self.link_local()]
            out["src6"] = [f"{head} . {a}" for a in v6]
            out["nd6"] = [f"{head} . 0x{a.packed.hex()}" for a in v6]
        return out


def _collect(ports: Iterable[GuardedPort]) -> dict[str, list[str]]:
    sets: dict[str, list[str]] = {n: [] for n in ("guarded", "srcmac", "src4", "src6", "nd6")}
    for port in ports:
        for name, elems in port.elements().items():
            sets[name].extend(elems)
    return sets


SET_TYPES = {
    "guarded": "type ifname",
    "srcmac": "type ifname . ether_addr",
    "src4": "type ifname . ether_addr . ipv4_addr",
    "src6": "type ifname . ether_addr . ipv6_addr",
    # the target address of a neighbour advertisement, read as raw bytes (nft 1.0.6 has
    # no `icmpv6 taddr`): the ICMPv6 header's bytes 8-23
    "nd6": "typeof iifname . ether saddr . @th,64,128",
}


def build_table(ports: Iterable[GuardedPort], table: str = TABLE) -> str:
    """The nft script that replaces table bridge `table`."""
    sets = _collect(ports)
    lines = [f"table {FAMILY} {table} {{"]
    for name, type_ in SET_TYPES.items():
        elems = sorted(set(sets[name]))
        body = f"{type_};" + (" elements = { " + ", ".join(elems) + " };" if elems else "")
        lines.append(f"  set {name} {{ {body} }}")
    lines += [
        "  chain prerouting {",
        "    type filter hook prerouting priority -300; policy accept;",
        "    iifname != @guarded accept",
        # the common case first: one lookup proves port, MAC and IPv4 source together
        "    iifname . ether saddr . ip saddr @src4 accept",
        "    iifname . ether saddr != @srcmac drop",
        "    ether type ip drop",
        "    iifname . arp saddr ether . arp saddr ip @src4 accept",
        "    arp saddr ip 0.0.0.0 accept",  # ARP probes (duplicate address detection)
        "    ether type arp drop",
        "    icmpv6 type { nd-router-advert, nd-redirect } drop",
        "    icmpv6 type nd-neighbor-advert iifname . ether saddr . @th,64,128 != @nd6 drop",
        "    ip6 saddr :: icmpv6 type { nd-neighbor-solicit, mld2-listener-report } accept",
        "    iifname . ether saddr . ip6 saddr @src6 accept",
        "    drop",  # any other protocol, or IPv6 from an address that is not the member's
        "  }",
        "}",
    ]
    return remove_table(table) + "\n".join(lines) + "\n"


def remove_table(table: str = TABLE) -> str:
    return f"table {FAMILY} {table}\ndelete table {FAMILY} {table}\n"


def element_script(verb: str, port: GuardedPort, table: str = TABLE) -> str:
    """`add` or `delete` one port's elements, as one batch."""
    return "".join(
        f"{verb} element {FAMILY} {table} {name} {{ {', '.join(elems)} }}\n"
        for name, elems in port.elements().items()
    )
