"""Hypothesis on the parsers that take hostile input, in-process (fast, many examples).

- The HTTP request parser (http.py), through the one server (with a worker pool and without) on a
  Unix socket: any bytes on one connection get a non-5xx answer, a close, or (only for an
  incomplete request) a wait; a complete request is never left hanging; the server keeps
  serving everyone else, also with many slow partial requests open.
- The `--network` spec, `-p` spec, subnet and MAC parsers (models.py): only InvalidArgument
  escapes, and whatever is accepted is valid (canonical MAC, usable subnet outside
  loopback, link-local, multicast, reserved and unspecified ranges, ports in range, a spec
  that follows the documented grammar).
- The DNS wire parser (dns/wire.py): only WireError escapes and accepted names are
  bounded. (tests/dns/test_dns_fuzz.py throws packets at the running server; this one
  reaches the parser directly, thousands of times faster.)
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import socket
import struct
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from container_runtime.container_config import PortMapping
from container_runtime.dns import wire
from container_runtime.errors import InvalidArgument
from container_runtime.http import Request, Router, SelectorHTTPServer
from container_runtime.models import (
    AttachmentSpec,
    check_usable_subnet,
    parse_ipv4_subnet,
    parse_ipv6_subnet,
    parse_mac,
)

# Bounded for CI; bench/bench_safety.py raises them (FUZZ_SCALE=10: ten times as many).
SCALE = int(os.environ.get("FUZZ_SCALE", "1"))
FUZZ = settings(max_examples=150 * SCALE, deadline=None, suppress_health_check=list(HealthCheck))
FAST = settings(max_examples=2000 * SCALE, deadline=None)
EXAMPLES: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def _report_examples() -> Iterator[None]:
    yield
    print(f"parser fuzz figures: {dict(EXAMPLES)} total {sum(EXAMPLES.values())}")


# ------------------------------------------------------------------------- HTTP servers


def _router() -> Router:
    router = Router()
    router.add("GET", "/v1/ping", lambda req: (200, {"ok": True}))

    def echo(req: Request) -> tuple[int, Any]:
        return 200, {"body": req.body, "query": req.query, "params": req.params}

    router.add("POST", "/v1/echo/{name}", echo)
    return router


# Both ways the one server runs: with a worker pool (the API server) and handlers on the
# selector thread (the helpers). Per test: one death must not hide another.
@pytest.fixture(params=["workers", "selector"])
def server(request: pytest.FixtureRequest) -> Iterator[tuple[str, Path]]:
    directory = Path(tempfile.mkdtemp(prefix="http-fuzz-"))
    path = directory / "s.sock"
    srv: Any
    if request.param == "workers":
        srv = SelectorHTTPServer(path, _router(), mode=0o600, workers=4)
    else:
        srv = SelectorHTTPServer(path, _router(), mode=0o600)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield request.param, path
    finally:
        srv.shutdown()
        srv.server_close()
        shutil.rmtree(directory, ignore_errors=True)


def _exchange(path: Path, data: bytes, timeout: float) -> tuple[bytes, bool]:
    """Send data; (what came back, whether the server closed) after at most timeout."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(str(path))
    got = b""
    closed = False
    try:
        sock.sendall(data)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = sock.recv(65536)
            if not chunk:
                closed = True
                break
            got += chunk
            if _complete_responses(got):
                break
    except TimeoutError:
        pass
    except (ConnectionResetError, BrokenPipeError):
        closed = True
    finally:
        sock.close()
    return got, closed


def _complete_responses(data: bytes) -> list[int]:
    """Statuses of the complete responses at the start of data."""
    statuses = []
    while b"\r\n\r\n" in data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value)
        if len(rest) < length:
            break
        statuses.append(status)
        data = rest[length:]
    return statuses


def _still_serves(path: Path) -> None:
    got, _ = _exchange(path, b"GET /v1/ping HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 3.0)
    assert _complete_responses(got) == [200], f"the server no longer answers: {got!r}"


TOKEN = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=255), min_size=0, max_size=20)
CONTENT_LENGTHS = st.one_of(
    st.sampled_from(["abc", "-1", "-100", "", " ", "1e3", "0x10", "99999999999999999999", "+5"]),
    st.integers(0, 64).map(str),
    st.integers(2**20, 2**40).map(str),
)


@st.composite
def requests_(draw: st.DrawFn) -> tuple[bytes, bool]:
    """(raw request, complete): complete if the server has all it needs to answer."""
    method = draw(st.one_of(st.sampled_from(["GET", "POST", "DELETE"]), TOKEN))
    target = draw(
        st.one_of(
            st.sampled_from(["/v1/ping", "/v1/echo/x", "/v1/echo/%00", "/v1/echo/a?b=%zz"]),
            TOKEN,
        )
    )
    version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.0", "", "HTTP/9", "x y"]))
    line = f"{method} {target} {version}".encode("latin-1")
    headers = draw(st.lists(st.tuples(TOKEN, TOKEN), max_size=5))
    length = draw(st.one_of(st.none(), CONTENT_LENGTHS))
    body = draw(st.one_of(st.binary(max_size=80), st.just(b'{"a": 1}'), st.just(b"{bad json")))
    head = line + b"\r\n"
    for name, value in headers:
        head += f"{name}: {value}".encode("latin-1").replace(b"\n", b"").replace(b"\r", b"")
        head += b"\r\n"
    if length is not None:
        head += f"Content-Length: {length}\r\n".encode("latin-1")
    head += b"\r\n"
    valid_length = length is None or (length.strip().isdigit() and length.strip() == length)
    complete = not valid_length or int(length or 0) <= len(body)
    return head + body, complete


@FUZZ
@given(request=requests_())
@example(request=(b"GET /v1/ping HTTP/1.1\r\nContent-Length: abc\r\n\r\n", True))
@example(request=(b"POST /v1/echo/x HTTP/1.1\r\nContent-Length: -1\r\n\r\n{}", True))
@example(request=(b"GET /v1/ping HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n", True))
@example(request=(b"\x00\xff garbage\r\n\r\n", True))
@example(request=(b"POST /v1/echo/x HTTP/1.1\r\nContent-Length: 9\r\n\r\n{bad json", True))
def test_any_request_gets_an_answer_or_a_close_and_the_server_lives(
    server: tuple[str, Path], request: tuple[bytes, bool]
) -> None:
    EXAMPLES["http"] += 1
    _, path = server
    data, complete = request
    got, closed = _exchange(path, data, 1.5 if complete else 0.3)
    statuses = _complete_responses(got)
    assert all(s < 500 for s in statuses), (statuses, got)
    if complete:
        assert statuses or closed, f"a complete request was left hanging: {data!r}"
    _still_serves(path)


def test_oversized_headers_and_many_slow_clients(server: tuple[str, Path]) -> None:
    _, path = server
    got, closed = _exchange(path, b"GET /v1/ping HTTP/1.1\r\n" + b"X: y\r\n" * 5000 + b"\r\n", 3)
    assert closed or all(s < 500 for s in _complete_responses(got))
    got, closed = _exchange(path, b"GET /" + b"a" * 100000 + b" HTTP/1.1\r\n\r\n", 3)
    assert closed or all(s < 500 for s in _complete_responses(got))
    slow = []
    try:
        for _ in range(50):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(str(path))
            sock.sendall(b"POST /v1/echo/x HTTP/1.1\r\nContent-Le")
            slow.append(sock)
        _still_serves(path)
    finally:
        for sock in slow:
            sock.close()
    _still_serves(path)


# ----------------------------------------------------------------------------- models


MAC_CANON = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
HEX = "0123456789abcdefABCDEF"
MACS = st.one_of(
    st.text(max_size=20),
    st.lists(st.text(alphabet=HEX, min_size=0, max_size=3), min_size=5, max_size=7).flatmap(
        lambda parts: st.sampled_from([":", "-", ".", ""]).map(lambda sep: sep.join(parts))
    ),
)


def _user_subnet(parse: Any) -> Any:
    """A subnet as `network create` takes it: parsed, then checked for usable ranges (the
    check is kept out of the parser so that rows stored before it stay readable)."""

    def parse_and_check(text: str) -> Any:
        net = parse(text)
        check_usable_subnet(net)
        return net

    return parse_and_check


def _refused_or(fn: Any, *args: Any) -> Any:
    """fn's result, or None if it refused with InvalidArgument (anything else escapes)."""
    try:
        return fn(*args)
    except InvalidArgument as exc:
        assert "\n" not in str(exc) and str(exc)
        return None


@FAST
@given(MACS)
@example("")
@example("01:00:5e:00:00:01")
@example("00:00:00:00:00:00")
def test_mac_parser(text: str) -> None:
    EXAMPLES["mac"] += 1
    mac = _refused_or(parse_mac, text)
    if mac is None:
        return
    assert MAC_CANON.match(mac), mac
    octets = bytes(int(x, 16) for x in mac.split(":"))
    assert not octets[0] & 1 and any(octets)
    assert parse_mac(mac) == mac
    assert mac == text.lower().replace("-", ":")


def _v4_text() -> st.SearchStrategy[str]:
    octet = st.integers(0, 300).map(str)
    return st.one_of(
        st.text(max_size=25),
        st.builds(
            lambda a, b, c, d, p, sep: f"{a}.{b}.{c}.{d}{sep}{p}",
            octet,
            octet,
            octet,
            octet,
            st.integers(-1, 40),
            st.sampled_from(["/", "/", "//", ""]),
        ),
    )


FORBIDDEN_V4 = [
    ipaddress.ip_network(n)
    for n in ("0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "240.0.0.0/4")
]


@FAST
@given(_v4_text())
@example("")
@example("127.0.0.0/8")
@example("0.0.0.0/8")
@example("169.254.0.0/24")
@example("224.0.0.0/24")
@example("240.0.0.0/24")
@example("255.255.255.0/24")
def test_ipv4_subnet_parser(text: str) -> None:
    EXAMPLES["subnet"] += 1
    net = _refused_or(_user_subnet(parse_ipv4_subnet), text)
    if net is None:
        return
    assert isinstance(net, ipaddress.IPv4Network)
    assert 8 <= net.prefixlen <= 29
    bad = [f for f in FORBIDDEN_V4 if net.overlaps(f)]
    assert not bad, f"{text!r} accepted as {net}, which overlaps reserved {bad[0]}"


FORBIDDEN_V6 = [
    ipaddress.ip_network(n) for n in ("fe80::/10", "ff00::/8", "::/127", "::ffff:0:0/96")
]


@FAST
@given(
    st.one_of(
        st.text(max_size=30),
        st.builds(
            lambda a, b, p: f"{a:x}:{b:x}::/{p}",
            st.integers(0, 0xFFFF),
            st.integers(0, 0xFFFF),
            st.integers(-1, 130),
        ),
    )
)
@example("")
@example("fe80::/64")
@example("ff02::/64")
@example("::/64")
def test_ipv6_subnet_parser(text: str) -> None:
    EXAMPLES["subnet6"] += 1
    net = _refused_or(_user_subnet(parse_ipv6_subnet), text)
    if net is None:
        return
    assert isinstance(net, ipaddress.IPv6Network)
    assert 64 <= net.prefixlen <= 120
    bad = [f for f in FORBIDDEN_V6 if net.overlaps(f)]
    assert not bad, f"{text!r} accepted as {net}, which overlaps reserved {bad[0]}"


PUBLISH_GRAMMAR = re.compile(  # docs: -p syntax; an IPv6 host IP in brackets, any case
    r"^((\d{1,3}\.){3}\d{1,3}:|\[[0-9a-fA-F:.]+\]:)?\d+(-\d+)?:\d+(-\d+)?(/(tcp|udp))?$",
    re.IGNORECASE,
)
PORT_TEXT = st.one_of(
    st.text(alphabet="0123456789:-/.tcpudx ", max_size=25),
    st.builds(
        lambda ip, h, c, proto: f"{ip}{h}:{c}{proto}",
        st.sampled_from(["", "127.0.0.1:", "0.0.0.0:", "1.2.3:", "::", "[::]:", "[::1]:", "[x]:"]),
        st.one_of(st.integers(-1, 70000).map(str), st.just("8000-8002")),
        st.one_of(st.integers(-1, 70000).map(str), st.just("80-82")),
        st.sampled_from(["", "/tcp", "/udp", "/", "/sctp", "/TCP"]),
    ),
)


@FAST
@given(PORT_TEXT)
@example("8080:80/")
@example("8080:80")
def test_publish_parser(text: str) -> None:
    EXAMPLES["publish"] += 1
    mappings = _refused_or(PortMapping.parse, text)
    if mappings is None:
        return
    assert PUBLISH_GRAMMAR.match(text), (
        f"{text!r} accepted but is not [IP:]HOST:CONTAINER[/tcp|udp]"
    )
    assert mappings
    for m in mappings:
        assert 1 <= m.host_port <= 65535 and 1 <= m.container_port <= 65535
        assert m.protocol in ("tcp", "udp")


NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$")


@FAST
@given(
    st.one_of(
        st.text(max_size=40),
        st.builds(
            lambda name, props: ",".join([name, *props]),
            st.sampled_from(["default", "none", "foo", "Foo", "", "a" * 64, "a;b"]),
            st.lists(
                st.builds(
                    lambda k, v: f"{k}={v}" if k else v,
                    st.sampled_from(["mac", "mtu", "", "color", "MAC"]),
                    st.one_of(MACS, st.integers(-5, 70000).map(str)),
                ),
                max_size=3,
            ),
        ),
    )
)
def test_network_spec_parser(text: str) -> None:
    EXAMPLES["network_spec"] += 1
    spec = _refused_or(AttachmentSpec.parse, text)
    if spec is None:
        return
    assert spec.network in ("default", "none", "host") or (
        len(spec.network) <= 63 and NAME_RE.match(spec.network)
    )
    assert spec.mac is None or MAC_CANON.match(spec.mac)
    assert spec.mtu is None or 1280 <= spec.mtu <= 65535


# ---------------------------------------------------------------------------- DNS wire


def _query_like() -> st.SearchStrategy[bytes]:
    labels = st.lists(st.binary(min_size=0, max_size=70), max_size=6)
    name = labels.map(lambda ls: b"".join(bytes((len(x) & 0xFF,)) + x for x in ls) + b"\x00")
    counts = st.tuples(*(st.integers(0, 3) for _ in range(4)))
    return st.builds(
        lambda qid, flags, c, qname, tail: struct.pack("!HHHHHH", qid, flags, *c) + qname + tail,
        st.integers(0, 0xFFFF),
        st.integers(0, 0xFFFF),
        counts,
        st.one_of(name, st.binary(max_size=40)),
        st.binary(max_size=60),
    )


@FAST
@given(st.one_of(st.binary(max_size=600), _query_like()))
def test_dns_wire_parser(data: bytes) -> None:
    EXAMPLES["dns_wire"] += 1
    try:
        query = wire.parse_query(data)
    except wire.WireError:
        return
    assert len(query.qname) <= 255
    assert 512 <= query.udp_size <= 4096
    assert query.rd in (0, 1)
    # An answer to what was accepted can always be built.
    assert wire.response(query, 0)[:2] == data[:2]
    json.dumps(query.qname)
