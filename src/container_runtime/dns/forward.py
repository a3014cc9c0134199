"""Forwarding of non-container names to the upstream resolvers.

Upstreams come from config.toml `[dns] upstreams`, else the nameservers of
/etc/resolv.conf.  Each server gets a short timeout (default 1 s, well under a
client's 5 s), failures move to the next server, a truncated UDP answer is retried
over TCP, and when every server fails the client gets SERVFAIL, never silence.
Forwarding runs in a small thread pool so a slow upstream never stalls the
answers for container names.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
import socket
import struct
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from threading import Lock

from . import wire

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 1.0
TOTAL_BUDGET = 3.5  # overall cap per query, still under a stub resolver's 5 s
MAX_PENDING = 512
DOWN_TIME = 30.0  # a server that failed is tried last for this long


@dataclass(frozen=True)
class Upstream:
    host: str
    port: int = 53

    @property
    def family(self) -> int:
        return socket.AF_INET6 if ":" in self.host else socket.AF_INET

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_upstream(text: str) -> Upstream:
    """`1.1.1.1`, `1.1.1.1:5353`, `::1`, `[::1]:5353` (ValueError otherwise)."""
    text = text.strip()
    port = 53
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest.startswith(":"):
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, _, p = text.partition(":")
        port = int(p)
    else:
        host = text
    address = ipaddress.ip_address(host)
    if not 0 < port < 65536:
        raise ValueError(f"bad port in {text!r}")
    return Upstream(str(address), port)


def resolv_conf_upstreams(path: Path = Path("/etc/resolv.conf")) -> list[Upstream]:
    out: list[Upstream] = []
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return out
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            try:
                out.append(parse_upstream(parts[1].split("%")[0]))
            except ValueError:
                continue
    return out


def choose_upstreams(
    configured: Iterable[str], own: set[tuple[str, int]], resolv_conf: Path
) -> list[Upstream]:
    """Configured servers, else resolv.conf's; never one of our own listeners (a loop)."""
    env = os.environ.get("CONTAINER_DNS_UPSTREAMS")
    candidates: list[Upstream] = []
    if env is not None:
        texts: Iterable[str] = [t for t in env.replace(",", " ").split() if t]
    else:
        texts = list(configured)
    for text in texts:
        try:
            candidates.append(parse_upstream(text))
        except ValueError:
            log.warning("ignoring invalid upstream %r", text)
    if not candidates and env is None:
        candidates = resolv_conf_upstreams(resolv_conf)
    chosen = [u for u in candidates if (u.host, u.port) not in own]
    for skipped in set(candidates) - set(chosen):
        log.warning("ignoring upstream %s: it is this server (would loop)", skipped)
    return chosen


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    buf = bytearray()
    while len(buf) < size:
        chunk = sock.recv(size - len(buf))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return bytes(buf)


def _matches(reply: bytes, query: bytes, qid: int) -> bool:
    if len(reply) < 12 or not reply[2] & 0x80 or wire.response_id(reply) != qid:
        return False
    # Same question (case-insensitive): guards against stray or spoofed datagrams.
    qlen = _question_len(query)
    return (
        qlen > 0
        and reply[4:6] == query[4:6]
        and reply[12 : 12 + qlen].lower() == query[12 : 12 + qlen].lower()
    )


def _question_len(query: bytes) -> int:
    pos = 12
    while pos < len(query):
        length = query[pos]
        if length == 0:
            return pos + 5 - 12 if pos + 5 <= len(query) else 0
        if length & 0xC0:
            return pos + 6 - 12 if pos + 6 <= len(query) else 0
        pos += 1 + length
    return 0


def query_udp(server: Upstream, query: bytes, timeout: float) -> bytes:
    qid = secrets.randbits(16)
    packet = struct.pack("!H", qid) + query[2:]
    deadline = time.monotonic() + timeout
    with socket.socket(server.family, socket.SOCK_DGRAM) as sock:
        sock.connect((server.host, server.port))
        sock.settimeout(timeout)
        sock.send(packet)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("upstream timed out")
            sock.settimeout(remaining)
            reply = sock.recv(65535)
            if _matches(reply, packet, qid):
                return query[:2] + reply[2:]


def query_tcp(server: Upstream, query: bytes, timeout: float) -> bytes:
    qid = secrets.randbits(16)
    packet = struct.pack("!H", qid) + query[2:]
    with socket.create_connection((server.host, server.port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack("!H", len(packet)) + packet)
        (length,) = struct.unpack("!H", _recv_exact(sock, 2))
        reply = _recv_exact(sock, length)
    if not _matches(reply, packet, qid):
        raise ConnectionError("mismatched reply")
    return query[:2] + reply[2:]


class Forwarder:
    """Resolves queries through the upstream list, in worker threads."""

    def __init__(self, upstreams: list[Upstream], timeout: float = DEFAULT_TIMEOUT) -> None:
        self.upstreams = upstreams
        self.timeout = timeout
        self.pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="dns-forward")
        self._pending = 0
        self._lock = Lock()
        # servers that failed recently are tried last (until this monotonic time)
        self._down_until: dict[Upstream, float] = {}

    def ordered(self, upstreams: Iterable[Upstream] | None = None) -> list[Upstream]:
        now = time.monotonic()
        servers = list(self.upstreams if upstreams is None else upstreams)
        up = [u for u in servers if self._down_until.get(u, 0.0) <= now]
        return up + [u for u in servers if u not in up]

    def resolve(
        self, query: wire.Query, data: bytes, tcp: bool, upstreams: list[Upstream] | None = None
    ) -> bytes:
        """Blocking: the upstream's answer (client's ID), or SERVFAIL when all fail.
        `upstreams`: a network's own servers (its dns-server option) instead of ours."""
        deadline = time.monotonic() + TOTAL_BUDGET
        fallback: bytes | None = None
        for server in self.ordered(upstreams):
            remaining = deadline - time.monotonic()
            if remaining <= 0.05:
                break
            timeout = min(self.timeout, remaining)
            try:
                if tcp:
                    reply = query_tcp(server, data, timeout)
                else:
                    reply = query_udp(server, data, timeout)
                    if reply[2] & 0x02:  # TC: the full answer over TCP
                        try:
                            reply = query_tcp(server, data, timeout)
                        except (OSError, ValueError, struct.error) as exc:
                            log.debug("TCP retry to %s failed: %s", server, exc)
            except (OSError, ValueError, struct.error) as exc:
                log.debug("upstream %s failed: %s", server, exc)
                self._down_until[server] = time.monotonic() + DOWN_TIME
                continue
            self._down_until.pop(server, None)
            if wire.rcode_of(reply) in (wire.RCODE_SERVFAIL, wire.RCODE_REFUSED):
                fallback = fallback or reply
                continue  # try the next server, as stub resolvers do
            return reply
        if fallback is not None:
            return fallback
        return wire.response(query, wire.RCODE_SERVFAIL)

    def submit(
        self,
        query: wire.Query,
        data: bytes,
        tcp: bool,
        reply: Callable[[bytes], None],
        upstreams: list[Upstream] | None = None,
    ) -> None:
        """Resolve in a worker and call reply(answer) there; SERVFAIL at once when saturated."""
        with self._lock:
            if self._pending >= MAX_PENDING:
                busy = True
            else:
                busy = False
                self._pending += 1
        if busy:
            reply(wire.response(query, wire.RCODE_SERVFAIL))
            return

        def run() -> None:
            try:
                answer = self.resolve(query, data, tcp, upstreams)
                reply(answer)
            except Exception:  # noqa: BLE001 - a worker must never die silently
                log.exception("forwarding failed")
            finally:
                with self._lock:
                    self._pending -= 1

        self.pool.submit(run)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
