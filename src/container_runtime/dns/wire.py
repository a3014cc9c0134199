"""DNS wire format for the embedded server: a strict query parser and response builders.

Only what the server needs: parse one question (with bounded compression-pointer
following), detect an EDNS OPT record, and build responses from precomputed answer
sections.  Nothing here trusts the packet: every offset is bounds-checked, pointer
chains are limited, and any inconsistency raises `WireError` (-> FORMERR or drop).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

QTYPE_A = 1
QTYPE_PTR = 12
QTYPE_AAAA = 28
QTYPE_OPT = 41
QTYPE_ANY = 255
QCLASS_IN = 1

RCODE_NOERROR = 0
RCODE_FORMERR = 1
RCODE_SERVFAIL = 2
RCODE_NXDOMAIN = 3
RCODE_NOTIMP = 4
RCODE_REFUSED = 5

MAX_NAME = 255
MAX_POINTERS = 32
EDNS_PAYLOAD = 1232  # what we advertise in our own OPT record (DNS flag day 2020)
OPT_RR = b"\x00" + struct.pack("!HHIH", QTYPE_OPT, EDNS_PAYLOAD, 0, 0)

_HDR = struct.Struct("!HBBHHHH")
_U16 = struct.Struct("!H")


class WireError(ValueError):
    """The packet is not a well-formed DNS message."""


def encode_name(name: str) -> bytes:
    """`web.test` -> b'\\x03web\\x04test\\x00' (lower-case; ValueError if not encodable)."""
    name = name.strip(".").lower()
    out = bytearray()
    if name:
        for label in name.split("."):
            raw = label.encode("ascii")
            if not 1 <= len(raw) <= 63:
                raise ValueError(f"invalid DNS label in {name!r}")
            out.append(len(raw))
            out += raw
    out.append(0)
    if len(out) > MAX_NAME:
        raise ValueError(f"DNS name too long: {name!r}")
    return bytes(out)


def question_key(name: str, qtype: int, qclass: int = QCLASS_IN) -> bytes:
    """The lookup key of a question: lower-case wire name + qtype + qclass."""
    return encode_name(name) + struct.pack("!HH", qtype, qclass)


def reverse_name(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    return address.reverse_pointer


@dataclass(frozen=True)
class Query:
    id: int
    rd: int  # 0 or 1
    qname: str  # lower-case, no trailing dot ("" for the root)
    qtype: int
    qclass: int
    question: bytes  # the question section as the client wrote it (case kept)
    key: bytes  # question_key(qname, qtype, qclass)
    edns: bool
    udp_size: int  # largest UDP response the client accepts


def _read_name(data: bytes, offset: int) -> tuple[list[bytes], int, bool]:
    """Labels of the name at offset, the offset after it, and whether a pointer was used."""
    labels: list[bytes] = []
    total = 1
    end = -1
    hops = 0
    pos = offset
    size = len(data)
    while True:
        if pos >= size:
            raise WireError("name runs past the end of the packet")
        length = data[pos]
        if length == 0:
            pos += 1
            break
        kind = length & 0xC0
        if kind == 0xC0:
            if pos + 1 >= size:
                raise WireError("truncated compression pointer")
            target = ((length & 0x3F) << 8) | data[pos + 1]
            hops += 1
            # Only backward pointers, and few of them: no loops, no amplification.
            if target >= pos or hops > MAX_POINTERS:
                raise WireError("bad compression pointer")
            if end < 0:
                end = pos + 2
            pos = target
            continue
        if kind:
            raise WireError("unsupported label type")
        if pos + 1 + length > size:
            raise WireError("label runs past the end of the packet")
        labels.append(data[pos + 1 : pos + 1 + length])
        total += length + 1
        if total > MAX_NAME:
            raise WireError("name too long")
        pos += 1 + length
    return labels, (end if end >= 0 else pos), end >= 0


def _skip_rr(data: bytes, offset: int) -> tuple[int, int, int, int]:
    """Skip one resource record; returns (type, class, name was root, offset after it)."""
    labels, pos, _ = _read_name(data, offset)
    if pos + 10 > len(data):
        raise WireError("truncated resource record")
    rtype, rclass, _ttl, rdlen = struct.unpack_from("!HHIH", data, pos)
    pos += 10 + rdlen
    if pos > len(data):
        raise WireError("truncated rdata")
    return rtype, rclass, int(not labels), pos


def parse_query(data: bytes) -> Query:
    """Parse a query with exactly one question; WireError for anything malformed."""
    if len(data) < 12:
        raise WireError("shorter than a header")
    qid, flags1, _flags2, qdcount, ancount, nscount, arcount = _HDR.unpack_from(data, 0)
    if flags1 & 0x80:
        raise WireError("not a query")
    if qdcount != 1:
        raise WireError("expected exactly one question")
    labels, pos, compressed = _read_name(data, 12)
    if pos + 4 > len(data):
        raise WireError("truncated question")
    qtype, qclass = struct.unpack_from("!HH", data, pos)
    qend = pos + 4
    try:
        qname = b".".join(labels).decode("ascii").lower()
    except UnicodeDecodeError:
        qname = b".".join(labels).decode("latin-1").lower()
    wire_name = b"".join(bytes((len(label),)) + label for label in labels) + b"\x00"
    if compressed:
        question = wire_name + data[pos:qend]
    else:
        question = data[12:qend]
    key = wire_name.lower() + data[pos:qend]
    edns = False
    udp_size = 512
    if arcount:
        # Walk answer/authority/additional; the OPT record, if any, gives the UDP size.
        offset = qend
        for index in range(ancount + nscount + arcount):
            rtype, rclass, root, offset = _skip_rr(data, offset)
            if index >= ancount + nscount and rtype == QTYPE_OPT:
                if not root or edns:
                    raise WireError("bad OPT record")
                edns = True
                udp_size = max(512, min(rclass, 4096))
    return Query(
        id=qid,
        rd=flags1 & 1,
        qname=qname,
        qtype=qtype,
        qclass=qclass,
        question=question,
        key=key,
        edns=edns,
        udp_size=udp_size,
    )


def header(qid: int, rd: int, rcode: int, qd: int, an: int, ar: int, aa: bool = True) -> bytes:
    flags1 = 0x80 | (0x04 if aa else 0) | rd
    return _HDR.pack(qid, flags1, 0x80 | rcode, qd, an, 0, ar)


def response(query: Query, rcode: int, ancount: int = 0, answers: bytes = b"") -> bytes:
    """A full response to `query` (question echoed, OPT added when the client sent one)."""
    ar = 1 if query.edns else 0
    out = header(query.id, query.rd, rcode, 1, ancount, ar) + query.question + answers
    return out + OPT_RR if ar else out


def error_response(data: bytes, rcode: int) -> bytes | None:
    """FORMERR/NOTIMP-style answer without a question, or None when not even a header."""
    if len(data) < 12 or data[2] & 0x80:
        return None
    return _HDR.pack(
        _U16.unpack_from(data, 0)[0], 0x80 | (data[2] & 0x79), 0x80 | rcode, 0, 0, 0, 0
    )


def truncated(query: Query) -> bytes:
    """An empty TC=1 response: the client retries over TCP."""
    ar = 1 if query.edns else 0
    flags1 = 0x80 | 0x02 | query.rd
    out = _HDR.pack(query.id, flags1, 0x80, 1, 0, 0, ar) + query.question
    return out + OPT_RR if ar else out


def rr_a(ttl: int, address: ipaddress.IPv4Address) -> bytes:
    return b"\xc0\x0c" + struct.pack("!HHIH", QTYPE_A, QCLASS_IN, ttl, 4) + address.packed


def rr_aaaa(ttl: int, address: ipaddress.IPv6Address) -> bytes:
    return b"\xc0\x0c" + struct.pack("!HHIH", QTYPE_AAAA, QCLASS_IN, ttl, 16) + address.packed


def rr_ptr(ttl: int, target: str) -> bytes:
    rdata = encode_name(target)
    return b"\xc0\x0c" + struct.pack("!HHIH", QTYPE_PTR, QCLASS_IN, ttl, len(rdata)) + rdata


def response_id(data: bytes) -> int:
    return int(_U16.unpack_from(data, 0)[0])


def rcode_of(data: bytes) -> int:
    return data[3] & 0x0F if len(data) >= 4 else RCODE_SERVFAIL
