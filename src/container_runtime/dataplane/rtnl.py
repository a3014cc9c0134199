"""A minimal batched rtnetlink client for the attach hot path.

pyroute2 0.9 spends about 1 ms of asyncio machinery per request; an attachment needs ~8
requests. Here the few message types of an attachment are packed by hand and sent
several per sendmsg, which is what `ip -batch` does. Everything else uses pyroute2.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct

NETLINK_ROUTE = 0
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLA_F_NESTED = 0x8000

RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_SETLINK = 19
RTM_NEWADDR = 20
RTM_NEWROUTE = 24
RTM_DELROUTE = 25

IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_LINK = 5
IFLA_MASTER = 10
IFLA_LINKINFO = 18
IFLA_IFALIAS = 20
IFLA_NET_NS_FD = 28
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
VETH_INFO_PEER = 1
IFLA_MACVLAN_MODE = 1
MACVLAN_MODES = {"private": 1, "vepa": 2, "bridge": 4, "passthru": 8}
IFLA_INFO_SLAVE_DATA = 5
IFLA_BRPORT_MODE = 4  # hairpin
IFLA_BRPORT_ISOLATED = 33
IFLA_BR_MULTI_BOOLOPT = 46
BR_BOOLOPT_NO_LL_LEARN = 0
IFLA_AF_SPEC = 26
AF_INET6 = 10
IFLA_INET6_ADDR_GEN_MODE = 8
IN6_ADDR_GEN_MODE_NONE = 1

IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_BROADCAST = 4
IFA_FLAGS = 8
IFA_F_NODAD = 0x02

RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RT_TABLE_MAIN = 254
RTPROT_BOOT = 3
RTPROT_CONTAINER = 0x63  # marks host routes a plugin made (reconciled by their protocol)
RT_SCOPE_LINK = 253
RTN_UNICAST = 1
RTA_PREFSRC = 7

IFF_UP = 0x1

_HDR = struct.Struct("=LHHLL")
_IFINFO = struct.Struct("=BxHiII")


class RtnlError(OSError):
    """A kernel refusal; .step is the index of the failing message in its batch."""

    def __init__(self, code: int, step: int) -> None:
        super().__init__(code, os.strerror(code))
        self.step = step


def attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * ((4 - length % 4) % 4)


def attr_str(kind: int, text: str) -> bytes:
    return attr(kind, text.encode() + b"\0")


def attr_u32(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("=I", value))


def mac_bytes(mac: str) -> bytes:
    return bytes(int(part, 16) for part in mac.replace("-", ":").split(":"))


def ifinfo(index: int = 0, flags: int = 0, change: int = 0, family: int = 0) -> bytes:
    return _IFINFO.pack(family, 0, index, flags, change)


def new_veth(
    host: str,
    host_mtu: int,
    master: int,
    peer: str,
    peer_mac: str,
    peer_mtu: int,
    peer_netns_fd: int,
) -> tuple[int, int, bytes]:
    """RTM_NEWLINK for a veth pair, host end down, the peer born in another namespace.

    The peer can not be created up: veth_open fails (ENOTCONN) before the pair is linked.
    """
    peer_msg = (
        ifinfo()
        + attr_str(IFLA_IFNAME, peer)
        + attr(IFLA_ADDRESS, mac_bytes(peer_mac))
        + attr_u32(IFLA_MTU, peer_mtu)
        + attr_u32(IFLA_NET_NS_FD, peer_netns_fd)
    )
    linkinfo = attr_str(IFLA_INFO_KIND, "veth") + attr(
        IFLA_INFO_DATA | NLA_F_NESTED, attr(VETH_INFO_PEER, peer_msg)
    )
    body = (
        ifinfo()  # brought up by up_by_name() after its IPv6 link-local is switched off
        + attr_str(IFLA_IFNAME, host)
        + attr_u32(IFLA_MTU, host_mtu)
        + attr_u32(IFLA_MASTER, master)
        + attr(IFLA_LINKINFO | NLA_F_NESTED, linkinfo)
    )
    return RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body


def new_macvlan(
    ifname: str, parent: int, mode: str, mac: str, mtu: int, netns_fd: int | None = None
) -> tuple[int, int, bytes]:
    """RTM_NEWLINK for a macvlan on `parent` (an index in the caller's namespace), down,
    born in the namespace of `netns_fd` when given (no window where it sits in ours)."""
    data = attr_u32(IFLA_MACVLAN_MODE, MACVLAN_MODES[mode])
    linkinfo = attr_str(IFLA_INFO_KIND, "macvlan") + attr(IFLA_INFO_DATA | NLA_F_NESTED, data)
    body = (
        ifinfo()
        + attr_str(IFLA_IFNAME, ifname)
        + attr(IFLA_ADDRESS, mac_bytes(mac))
        + attr_u32(IFLA_MTU, mtu)
        + attr_u32(IFLA_LINK, parent)
        + attr(IFLA_LINKINFO | NLA_F_NESTED, linkinfo)
    )
    if netns_fd is not None:
        body += attr_u32(IFLA_NET_NS_FD, netns_fd)
    return RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body


def set_alias(index: int, alias: str) -> tuple[int, int, bytes]:
    return RTM_NEWLINK, 0, ifinfo(index=index) + attr_str(IFLA_IFALIAS, alias)


def mark_alias(ifname: str, alias: str) -> tuple[int, int, bytes]:
    """RTM_NEWLINK on an existing link, by name: its ownership mark (IFLA_IFALIAS)."""
    body = ifinfo() + attr_str(IFLA_IFNAME, ifname) + attr_str(IFLA_IFALIAS, alias)
    return RTM_NEWLINK, 0, body


def del_link(index: int) -> tuple[int, int, bytes]:
    return RTM_DELLINK, 0, ifinfo(index=index)


def _host_route(index: int, dst: ipaddress.IPv4Address, src: ipaddress.IPv4Address) -> bytes:
    body = struct.pack(
        "=BBBBBBBBI",
        socket.AF_INET,
        32,
        0,
        0,
        RT_TABLE_MAIN,
        RTPROT_CONTAINER,
        RT_SCOPE_LINK,
        RTN_UNICAST,
        0,
    )
    return (
        body + attr(RTA_DST, dst.packed) + attr(RTA_PREFSRC, src.packed) + attr_u32(RTA_OIF, index)
    )


def new_host_route(
    index: int, dst: ipaddress.IPv4Address, src: ipaddress.IPv4Address
) -> tuple[int, int, bytes]:
    """A /32 route to `dst` through link `index`, from `src` (replaces one to `dst`)."""
    return RTM_NEWROUTE, NLM_F_CREATE | 0x100, _host_route(index, dst, src)  # NLM_F_REPLACE


def del_host_route(
    index: int, dst: ipaddress.IPv4Address, src: ipaddress.IPv4Address
) -> tuple[int, int, bytes]:
    return RTM_DELROUTE, 0, _host_route(index, dst, src)


def mark_port(ifname: str, alias: str, isolated: bool) -> tuple[int, int, bytes]:
    """RTM_NEWLINK on an existing bridge port, by name: alias, hairpin and isolation.

    Hairpin lets a member reach its own published port through a host address: with
    br_netfilter the DNATed frame is bridged back out of the port it came in on.
    """
    slave = attr(IFLA_BRPORT_MODE, b"\x01") + attr(IFLA_BRPORT_ISOLATED, bytes([isolated]))
    body = (
        ifinfo()
        + attr_str(IFLA_IFNAME, ifname)
        + attr_str(IFLA_IFALIAS, alias)
        + attr(IFLA_LINKINFO | NLA_F_NESTED, attr(IFLA_INFO_SLAVE_DATA | NLA_F_NESTED, slave))
    )
    return RTM_NEWLINK, 0, body


def bridge_no_linklocal_learn(index: int) -> tuple[int, int, bytes]:
    """Stop a bridge learning source MACs from link-local frames (01:80:c2:00:00:0X).

    Those skip the bridge prerouting hook where anti-spoofing checks the source MAC; all
    other frames are learnt only after that check.
    """
    bit = 1 << BR_BOOLOPT_NO_LL_LEARN
    opt = attr(IFLA_BR_MULTI_BOOLOPT, struct.pack("=II", bit, bit))
    info = attr_str(IFLA_INFO_KIND, "bridge") + attr(IFLA_INFO_DATA | NLA_F_NESTED, opt)
    return RTM_NEWLINK, 0, ifinfo(index=index) + attr(IFLA_LINKINFO | NLA_F_NESTED, info)


def no_link_local(ifname: str = "", index: int = 0) -> tuple[int, int, bytes]:
    """Switch off IPv6 address generation on a link that is still down.

    Every link-local address costs DAD and MLD multicast that the bridge floods to every
    port: with hundreds of members that flood made each new attachment slower. Bridge
    ports need no address at all, and a member needs none without an IPv6 subnet.
    """
    mode = attr(IFLA_INET6_ADDR_GEN_MODE, bytes([IN6_ADDR_GEN_MODE_NONE]))
    spec = attr(IFLA_AF_SPEC | NLA_F_NESTED, attr(AF_INET6 | NLA_F_NESTED, mode))
    name = attr_str(IFLA_IFNAME, ifname) if ifname else b""
    return RTM_NEWLINK, 0, ifinfo(index=index) + name + spec


def up_by_name(ifname: str) -> tuple[int, int, bytes]:
    return RTM_NEWLINK, 0, ifinfo(flags=IFF_UP, change=IFF_UP) + attr_str(IFLA_IFNAME, ifname)


def set_up(index: int) -> tuple[int, int, bytes]:
    return RTM_SETLINK, 0, ifinfo(index=index, flags=IFF_UP, change=IFF_UP)


def get_link(ifname: str) -> tuple[int, int, bytes]:
    return RTM_GETLINK, 0, ifinfo() + attr_str(IFLA_IFNAME, ifname)


def new_addr(
    index: int, iface: ipaddress.IPv4Interface | ipaddress.IPv6Interface
) -> tuple[int, int, bytes]:
    family = socket.AF_INET if iface.version == 4 else socket.AF_INET6
    packed = iface.ip.packed
    body = struct.pack("=BBBBI", family, iface.network.prefixlen, 0, 0, index)
    body += attr(IFA_LOCAL, packed) + attr(IFA_ADDRESS, packed)
    if isinstance(iface, ipaddress.IPv4Interface):
        body += attr(IFA_BROADCAST, iface.network.broadcast_address.packed)
    else:
        body += attr_u32(IFA_FLAGS, IFA_F_NODAD)  # usable at once, no tentative state
    return RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, body


def new_default_route(
    index: int, gateway: ipaddress.IPv4Address | ipaddress.IPv6Address, replace: bool = False
) -> tuple[int, int, bytes]:
    """The default route via `gateway` on `index`; with `replace`, instead of any other."""
    family = socket.AF_INET if gateway.version == 4 else socket.AF_INET6
    body = struct.pack("=BBBBBBBBI", family, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, 0, RTN_UNICAST, 0)
    body += attr(RTA_GATEWAY, gateway.packed) + attr_u32(RTA_OIF, index)
    return RTM_NEWROUTE, NLM_F_CREATE | (NLM_F_REPLACE if replace else NLM_F_EXCL), body


class Rtnl:
    """A NETLINK_ROUTE socket, bound to the namespace of the thread that creates it."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        self.sock.bind((0, 0))
        self._seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def batch(self, msgs: list[tuple[int, int, bytes]]) -> list[bytes]:
        """Send all messages in one sendmsg; return each one's reply payload (b"" for an ack).

        Raise RtnlError for the first refused message. The kernel runs every message of
        the batch even after a failure, so callers undo the whole batch on error.
        """
        buf = bytearray()
        first = self._seq + 1
        for kind, flags, body in msgs:
            self._seq += 1
            buf += _HDR.pack(16 + len(body), kind, NLM_F_REQUEST | NLM_F_ACK | flags, self._seq, 0)
            buf += body
        self.sock.send(bytes(buf))
        replies: dict[int, bytes] = {}
        errors: dict[int, int] = {}
        pending = set(range(first, self._seq + 1))
        while pending:
            data = self.sock.recv(65536)
            offset = 0
            while offset + 16 <= len(data):
                length, kind, _flags, seq, _pid = _HDR.unpack_from(data, offset)
                if length < 16:
                    break
                payload = data[offset + 16 : offset + length]
                if seq in pending:
                    if kind == NLMSG_ERROR:
                        code = -struct.unpack_from("=i", payload)[0]
                        if code:
                            errors[seq] = code
                        pending.discard(seq)
                    elif kind != NLMSG_DONE:
                        replies[seq] = payload
                offset += (length + 3) & ~3
        if errors:
            seq = min(errors)
            raise RtnlError(errors[seq], seq - first)
        return [replies.get(seq, b"") for seq in range(first, self._seq + 1)]


def link_alias(reply: bytes) -> str | None:
    """The IFLA_IFALIAS of an RTM_NEWLINK reply payload, if it has one."""
    offset = _IFINFO.size
    while offset + 4 <= len(reply):
        length, kind = struct.unpack_from("=HH", reply, offset)
        if length < 4:
            break
        if kind & ~NLA_F_NESTED == IFLA_IFALIAS:
            return reply[offset + 4 : offset + length].rstrip(b"\0").decode(errors="replace")
        offset += (length + 3) & ~3
    return None


def ifindex_of(reply: bytes) -> int:
    """The interface index of an RTM_NEWLINK reply payload."""
    return int(_IFINFO.unpack_from(reply)[2])
