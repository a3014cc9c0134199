"""Hostile input: random, truncated, oversized and pointer-loop packets never stop the server."""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import Lab

HOST = "127.0.0.1"
PORT = 2053


def _still_answers(lab: Lab) -> None:
    r = lab.agent("srv").query("web", server=HOST, port=PORT, timeout=2)
    assert r.get("answers") == ["10.77.1.10"], r
    assert lab.server is not None and lab.server.poll() is None, lab.server_log()


def _header(
    qid: int = 0x1234, flags: int = 0x0100, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0
) -> bytes:
    return struct.pack("!HHHHHH", qid, flags, qd, an, ns, ar)


HANDCRAFTED = [
    b"",
    b"\x00",
    _header()[:11],
    _header(),  # qdcount 1, no question
    _header() + b"\x03web",  # truncated name
    _header() + b"\x03web\x00\x00",  # truncated qtype
    _header() + b"\xc0\x0c\x00\x01\x00\x01",  # pointer to itself
    _header() + b"\x01a\xc0\x0c\x00\x01\x00\x01",  # pointer loop
    _header() + b"\xc0\xff\x00\x01\x00\x01",  # pointer forward, past the end
    _header() + b"\x40" + b"a" * 64 + b"\x00\x00\x01\x00\x01",  # label too long
    _header() + b"\x3f" + b"a" * 63 * 5 + b"\x00\x00\x01\x00\x01",  # name too long
    _header() + (b"\x3fa" + b"a" * 62) * 5 + b"\x00\x00\x01\x00\x01",  # name > 255
    _header(qd=0xFFFF) + b"\x03web\x00\x00\x01\x00\x01",
    _header(ar=0xFFFF) + b"\x03web\x00\x00\x01\x00\x01",
    _header(ar=1) + b"\x03web\x00\x00\x01\x00\x01" + b"\x00\x00\x29",  # truncated OPT
    _header(flags=0x8180) + b"\x03web\x00\x00\x01\x00\x01",  # a response: must be ignored
    _header(flags=0x2900) + b"\x03web\x00\x00\x01\x00\x01",  # UPDATE opcode
    _header() + b"\x03web\x00\x00\x01\x00\x01" + b"\x00" * 3000,  # trailing garbage
    _header() + b"\x03web\x00\x00\x01\x00\x01" + b"\xff" * 60000,  # oversized
    _header() + b"\x80\x00\x00\x01\x00\x01",  # reserved label type
    _header() + b"\x03w\xffb\x00\x00\x01\x00\x01",  # non-ASCII label
    _header() + b"\x03web\x00\x00\xff\x00\xff",  # ANY/ANY
    _header() + b"\x03web\x00\x00\x01\x00\x03",  # CHAOS class
]


def test_handcrafted_hostile_packets(lab: Lab) -> None:
    srv = lab.agent("srv")
    out = srv.call(
        op="raw", server=HOST, port=PORT, wait=0.5, packets=[p.hex() for p in HANDCRAFTED]
    )
    replies = [bytes.fromhex(r) for r in out["replies"]]
    for reply in replies:
        assert len(reply) >= 12 and reply[2] & 0x80  # only well-formed responses come back
        assert reply[:2] == b"\x12\x34"
        rcode = reply[3] & 0x0F
        assert rcode in (0, 1, 3, 4, 5), reply.hex()
    # the response packet (QR=1) got no reply: fewer replies than packets with a header
    assert len(replies) < len(HANDCRAFTED)
    _still_answers(lab)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    st.lists(
        st.one_of(
            st.binary(min_size=0, max_size=600),
            # a valid-looking header followed by random bytes: reaches deeper parser paths
            st.builds(
                lambda qid, flags, counts, body: (
                    struct.pack("!HH", qid, flags & 0x79FF) + counts + body
                ),
                st.integers(0, 0xFFFF),
                st.integers(0, 0xFFFF),
                st.sampled_from(
                    [
                        b"\x00\x01\x00\x00\x00\x00\x00\x00",
                        b"\x00\x01\x00\x00\x00\x00\x00\x01",
                        b"\x00\x01\x00\x01\x00\x01\x00\x01",
                    ]
                ),
                st.binary(min_size=0, max_size=300),
            ),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_random_packets(lab: Lab, packets: list[bytes]) -> None:
    out = lab.agent("srv").call(
        op="raw", server=HOST, port=PORT, wait=0.0, packets=[p.hex() for p in packets]
    )
    assert "replies" in out


def test_still_answering_after_fuzz(lab: Lab) -> None:
    _still_answers(lab)
    assert "Traceback" not in lab.server_log(), lab.server_log()
