"""`container-dns`: the embedded DNS server process (event loop, listeners, policy).

Owns: the UDP/TCP listeners (each network's gateway, port 53, bound with FREEBIND so
they can exist before the network's link has the address; 127.0.0.1:2053 for the host), the control
socket `$CONTAINER_RUN_DIR/dns.ctl` (reload + acknowledgement), the periodic
`PRAGMA data_version` poll, per-source rate limiting, and the choice between a
precomputed local answer, NXDOMAIN and forwarding (never for an `--internal`
network unless it has `dns-forward=on`: REFUSED).  Rate limiting: ratelimit.py.

Hot path: one non-blocking UDP socket per address drained in a tight recvfrom/sendto
loop; a question matching a precomputed (name, qtype, scope) answer is served by
patching the client's ID and RD bit onto ready bytes.  Anything unusual goes through
the strict parser in wire.py.

Environment (besides CONTAINER_ROOT / CONTAINER_RUN_DIR / CONTAINER_CONFIG):
  CONTAINER_DNS_PORT       port of the gateway listeners (default 53)
  CONTAINER_DNS_HOST_PORT  port on 127.0.0.1 for the host (default 2053; 0 = off)
  CONTAINER_DNS_UPSTREAMS  "ip[:port] ..." overrides config/resolv.conf (tests)
  CONTAINER_DNS_TTL        TTL of container records in seconds (default 5)
  CONTAINER_DNS_RATE       queries/s allowed per source IP (default 20000; 0 = off)
  CONTAINER_DNS_BURST      bucket size per source (default 2 x rate)
  CONTAINER_DNS_UPSTREAM_TIMEOUT  per-upstream timeout in seconds (default 1.0)
"""

from __future__ import annotations

import errno
import logging
import os
import selectors
import signal
import socket
import sqlite3
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import load_config
from ..errors import ContainerError
from ..paths import Paths
from . import wire
from .control import ACK_PREFIX, control_path
from .forward import Forwarder, Upstream, choose_upstreams
from .ratelimit import SourceLimiter
from .records import AnswerTable, Snapshot, data_version, load_snapshot, update_snapshot

log = logging.getLogger("container-dns")

IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)
IPV6_FREEBIND = getattr(socket, "IPV6_FREEBIND", 78)
POLL_INTERVAL = 1.0  # data_version fallback poll and listener retry
MAX_UDP_BATCH = 256
MAX_TCP_CONNECTIONS = 128
TCP_IDLE_TIMEOUT = 5.0
MAX_SOURCES = 65536  # bound on per-source state (scope cache)
SOCKET_BUFFER = 4 << 20

_FAST_COUNTS = b"\x00\x01\x00\x00\x00\x00\x00\x00"


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


@dataclass
class Listener:
    network: str | None  # None: the host listener (scope = every network)
    address: str
    port: int
    udp: socket.socket
    tcp: socket.socket
    # source IP -> answer table of its scope; cleared on every reload
    askers: dict[str, AnswerTable] = field(default_factory=dict)


def _bind(family: int, kind: int, address: str, port: int) -> socket.socket:
    sock = socket.socket(family, kind)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_FREEBIND, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
        if kind == socket.SOCK_DGRAM:
            for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)
                except OSError:
                    pass
        sock.bind((address, port))
        if kind == socket.SOCK_STREAM:
            sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class DNSServer:
    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        config = load_config(paths.config_file)
        self.domain = config.dns_domain
        self.configured_upstreams = config.dns_upstreams
        self.port = _env_int("CONTAINER_DNS_PORT", 53)
        self.host_port = _env_int("CONTAINER_DNS_HOST_PORT", 2053)
        self.ttl = max(0, _env_int("CONTAINER_DNS_TTL", 5))
        rate = max(0, _env_int("CONTAINER_DNS_RATE", 20000))
        burst = max(1, _env_int("CONTAINER_DNS_BURST", 2 * rate or 1))
        # None: no limit (CONTAINER_DNS_RATE=0)
        self.limiter = SourceLimiter(rate, burst, time.monotonic()) if rate else None
        self.selector = selectors.DefaultSelector()
        self.listeners: dict[tuple[str | None, str, int], Listener] = {}
        self.snapshot = Snapshot({}, [], self.domain, self.ttl)
        self.running = True
        self.tcp_connections = 0
        self.tcp_lock = threading.Lock()
        self.forwarder = Forwarder([], _env_float("CONTAINER_DNS_UPSTREAM_TIMEOUT", 1.0))
        self.network_upstreams: dict[str, list[Upstream]] = {}
        self.ctl: socket.socket | None = None
        self.poll_conn: sqlite3.Connection | None = None
        self.version = -1
        self.generation = 0

    # -- setup ---------------------------------------------------------------------

    def open_control(self) -> None:
        path = control_path(self.paths.run_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        ctl = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        ctl.bind(str(path))
        os.chmod(path, 0o660)
        ctl.setblocking(False)
        self.ctl = ctl
        self.selector.register(ctl, selectors.EVENT_READ, self._on_control)

    def _poll_connection(self) -> sqlite3.Connection | None:
        if self.poll_conn is None:
            db = self.paths.database
            if not db.exists():
                return None
            try:
                self.poll_conn = sqlite3.connect(
                    f"file:{db}?mode=ro", uri=True, timeout=5.0, isolation_level=None
                )
            except sqlite3.Error:
                return None
        return self.poll_conn

    def reload(self) -> None:
        """Re-read the database; swap the snapshot and the listener set (no socket closed
        except those of networks that are gone)."""
        conn = self._poll_connection()
        try:
            version = data_version(conn) if conn is not None else -1
            if conn is not None:
                snapshot = (
                    update_snapshot(self.snapshot, self.paths.database)
                    if self.snapshot.networks
                    else None
                ) or load_snapshot(self.paths.database, self.domain, self.ttl)
            else:
                snapshot = Snapshot({}, [], self.domain, self.ttl)
        except sqlite3.Error as exc:
            log.warning("cannot read the state database: %s", exc)
            if self.poll_conn is not None:
                self.poll_conn.close()
                self.poll_conn = None
            return
        if snapshot is self.snapshot:
            self.version = version
            return  # nothing changed for us
        self.snapshot.release()  # break its table <-> snapshot cycles: freed by refcount
        self.snapshot = snapshot
        self.version = version
        self.generation += 1
        for listener in self.listeners.values():
            listener.askers = {}
        self.sync_listeners()
        own = {(addr, port) for (_n, addr, port) in self.listeners}
        self.forwarder.upstreams = choose_upstreams(
            self.configured_upstreams, own, Path("/etc/resolv.conf")
        )
        # A network's own servers (dns-server), never one of our listeners (a loop).
        self.network_upstreams = {
            name: [u for u in info.upstreams if (u.host, u.port) not in own]
            for name, info in snapshot.networks.items()
            if info.upstreams
        }
        log.debug(
            "loaded %d records on %d networks (generation %d)",
            len(snapshot.records),
            len(snapshot.networks),
            self.generation,
        )

    def sync_listeners(self) -> None:
        wanted: set[tuple[str | None, str, int]] = set()
        for net_name, addresses in self.snapshot.listen_addresses().items():
            for gateway in addresses:
                wanted.add((net_name, str(gateway), self.port))
        if self.host_port:
            wanted.add((None, "127.0.0.1", self.host_port))
        for key in list(self.listeners):
            if key not in wanted:
                self._close_listener(self.listeners.pop(key))
                log.info("stopped listening on %s port %d", key[1], key[2])
        for key in wanted - set(self.listeners):
            network, address, port = key
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            try:
                udp = _bind(family, socket.SOCK_DGRAM, address, port)
            except OSError as exc:
                log.warning("cannot listen on %s port %d/udp: %s", address, port, exc)
                continue
            try:
                tcp = _bind(family, socket.SOCK_STREAM, address, port)
            except OSError as exc:
                udp.close()
                log.warning("cannot listen on %s port %d/tcp: %s", address, port, exc)
                continue
            listener = Listener(network, address, port, udp, tcp)
            self.listeners[key] = listener
            self.selector.register(udp, selectors.EVENT_READ, self._udp_handler(listener))
            self.selector.register(tcp, selectors.EVENT_READ, self._tcp_accept_handler(listener))
            log.info("listening on %s port %d (network %s)", address, port, network or "-")

    def _close_listener(self, listener: Listener) -> None:
        for sock in (listener.udp, listener.tcp):
            try:
                self.selector.unregister(sock)
            except (KeyError, ValueError):
                pass
            sock.close()

    # -- control -------------------------------------------------------------------

    def _on_control(self, _sock: Any) -> None:
        assert self.ctl is not None
        senders: list[Any] = []
        while True:  # coalesce a burst of notifications into one reload
            try:
                _data, addr = self.ctl.recvfrom(256)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            if addr:
                senders.append(addr)
        self.reload()
        ack = ACK_PREFIX + b" %d" % self.generation
        for addr in senders:
            try:
                self.ctl.sendto(ack, addr)
            except OSError:
                pass

    def poll(self) -> None:
        conn = self._poll_connection()
        if conn is None:
            return
        try:
            version = data_version(conn)
        except sqlite3.Error:
            self.poll_conn = None
            return
        if version != self.version:
            self.reload()
        elif len(self.listeners) < self._wanted_count():
            self.sync_listeners()  # retry listeners that failed to bind

    def _wanted_count(self) -> int:
        count = sum(len(a) for a in self.snapshot.listen_addresses().values())
        return count + (1 if self.host_port else 0)

    # -- queries -------------------------------------------------------------------

    def _table_for(self, listener: Listener, source: str) -> AnswerTable:
        table = listener.askers.get(source)
        if table is None:
            snapshot = self.snapshot
            table = snapshot.table(listener.network, snapshot.scope_of(listener.network, source))
            if len(listener.askers) >= MAX_SOURCES:
                listener.askers.clear()
            listener.askers[source] = table
        return table

    def _udp_handler(self, listener: Listener) -> Callable[[Any], None]:
        sock = listener.udp
        recvfrom = sock.recvfrom
        sendto = sock.sendto
        limiter = self.limiter
        fast_counts = _FAST_COUNTS

        def on_readable(_sock: Any) -> None:
            askers = listener.askers
            for _ in range(MAX_UDP_BATCH):
                try:
                    data, addr = recvfrom(4096)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError:
                    continue  # e.g. ICMP errors reported on the socket
                source = addr[0]
                if limiter is not None:  # SourceLimiter.allow, inlined
                    if source != limiter.lone:
                        limiter.saw(source)
                    if limiter.contended and not limiter.take(source):
                        continue
                table = askers.get(source)
                if table is None:
                    table = self._table_for(listener, source)
                    askers = listener.askers
                # Fast path: a plain one-question query whose answer is precomputed.
                # The key matches only if data[12:] is exactly a well-formed question of a
                # known name (lower() cannot turn another qtype into A/AAAA/PTR), so no
                # separate parse is needed here.
                if data[4:12] == fast_counts and not data[2] & 0xFE:
                    entry = table.entries.get(data[12:].lower())
                    if entry is not None:
                        try:
                            sendto(
                                b"".join(
                                    (
                                        data[:2],
                                        entry.hdr[data[2]],
                                        data[12:],
                                        entry.rotate() if entry.rotations else entry.answers,
                                    )
                                ),
                                addr,
                            )
                        except OSError:
                            pass
                        continue
                answer = self.answer(data, listener, table, addr, sock)
                if answer is not None:
                    try:
                        sendto(answer, addr)
                    except OSError:
                        pass

        return on_readable

    def answer(
        self,
        data: bytes,
        listener: Listener,
        table: AnswerTable,
        addr: Any,
        sock: socket.socket | None,
    ) -> bytes | None:
        """The slow path: full parse; local answer, NXDOMAIN, or forward.

        Returns the response, or None when there is none now (dropped, or forwarded
        over UDP: the worker sends it to `addr` through `sock` itself)."""
        if len(data) < 12 or data[2] & 0x80:
            return None  # not even a header, or a response: never answer those
        opcode = (data[2] >> 3) & 0x0F
        if opcode != 0:
            return wire.error_response(data, wire.RCODE_NOTIMP)
        try:
            query = wire.parse_query(data)
        except (wire.WireError, struct.error):
            return wire.error_response(data, wire.RCODE_FORMERR)
        max_size = query.udp_size if sock is not None else 65535
        entry = (
            table.lookup(query.key, query.qname, query.qtype)
            if query.qclass == wire.QCLASS_IN
            else None
        )
        if entry is not None:
            return self._fit(
                wire.response(query, entry.rcode, entry.ancount, entry.rotate()), query, max_size
            )
        if query.qclass != wire.QCLASS_IN and query.qclass != 255:
            return wire.response(query, wire.RCODE_REFUSED)
        snapshot = self.snapshot
        if table.has_name(query.qname):
            return wire.response(query, wire.RCODE_NOERROR)  # name exists, no such type
        if snapshot.is_local(query.qname):
            if snapshot.domain and query.qname == snapshot.domain:
                return wire.response(query, wire.RCODE_NOERROR)
            return wire.response(query, wire.RCODE_NXDOMAIN)
        upstreams = None
        if listener.network is not None:
            info = snapshot.networks.get(listener.network)
            if info is not None and not info.forward:
                # An internal network must not reach the outside, not even through DNS.
                return wire.response(query, wire.RCODE_REFUSED)
            upstreams = self.network_upstreams.get(listener.network)
        if sock is None:
            return self.forwarder.resolve(query, data, tcp=True, upstreams=upstreams)

        def reply(answer: bytes) -> None:
            try:
                sock.sendto(self._fit(answer, query, max_size), addr)
            except OSError:
                pass

        self.forwarder.submit(query, data, False, reply, upstreams)
        return None

    @staticmethod
    def _fit(answer: bytes, query: wire.Query, max_size: int) -> bytes:
        return answer if len(answer) <= max_size else wire.truncated(query)

    # -- TCP -----------------------------------------------------------------------

    def _tcp_accept_handler(self, listener: Listener) -> Callable[[Any], None]:
        def on_accept(_sock: Any) -> None:
            for _ in range(32):
                try:
                    conn, addr = listener.tcp.accept()
                except (BlockingIOError, InterruptedError):
                    return
                except OSError:
                    return
                with self.tcp_lock:
                    if self.tcp_connections >= MAX_TCP_CONNECTIONS:
                        conn.close()
                        continue
                    self.tcp_connections += 1
                thread = threading.Thread(
                    target=self._tcp_session, args=(conn, addr, listener), daemon=True
                )
                thread.start()

        return on_accept

    def _tcp_session(self, conn: socket.socket, addr: Any, listener: Listener) -> None:
        source = addr[0]
        try:
            conn.setblocking(True)
            conn.settimeout(TCP_IDLE_TIMEOUT)
            while self.running:
                header = self._recv_exact(conn, 2)
                if header is None:
                    return
                (length,) = struct.unpack("!H", header)
                if length < 12:
                    return
                data = self._recv_exact(conn, length)
                if data is None:
                    return
                if self.limiter is not None and not self.limiter.allow(source):
                    return  # flood over TCP: hang up
                table = self.snapshot.table(
                    listener.network, self.snapshot.scope_of(listener.network, source)
                )
                answer = self.answer(data, listener, table, addr, None)
                if answer is None:
                    return
                conn.sendall(struct.pack("!H", len(answer)) + answer)
        except (OSError, ValueError):
            return
        except Exception:  # noqa: BLE001 - never let a connection kill anything
            log.exception("TCP session failed")
        finally:
            conn.close()
            with self.tcp_lock:
                self.tcp_connections -= 1

    @staticmethod
    def _recv_exact(conn: socket.socket, size: int) -> bytes | None:
        buf = bytearray()
        while len(buf) < size:
            chunk = conn.recv(size - len(buf))
            if not chunk:
                return None
            buf += chunk
        return bytes(buf)

    # -- loop ----------------------------------------------------------------------

    def run(self) -> None:
        self.open_control()
        self.reload()
        next_poll = time.monotonic() + POLL_INTERVAL
        select = self.selector.select
        limiter = self.limiter
        while self.running:
            now = time.monotonic()
            if now >= next_poll:
                self.poll()
                next_poll = now + POLL_INTERVAL
            try:
                events = select(max(0.0, next_poll - now))
            except InterruptedError:
                continue
            if limiter is not None:
                limiter.tick(time.monotonic())  # before the queries: no stale state
            for key, _mask in events:
                try:
                    key.data(key.fileobj)
                except Exception:  # noqa: BLE001 - the server must keep answering
                    log.exception("handler failed")

    def close(self) -> None:
        self.running = False
        for listener in self.listeners.values():
            self._close_listener(listener)
        self.listeners.clear()
        if self.ctl is not None:
            self.ctl.close()
            try:
                control_path(self.paths.run_dir).unlink()
            except OSError:
                pass
        self.forwarder.close()
        if self.poll_conn is not None:
            self.poll_conn.close()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.DEBUG if os.environ.get("CONTAINER_DNS_DEBUG") else logging.INFO,
        format="container-dns: %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    paths = Paths.from_env()
    try:
        server = DNSServer(paths)
    except ContainerError as exc:
        log.error("%s", exc.message)
        return 1

    def stop(_signum: int, _frame: Any) -> None:
        server.running = False

    def hup(_signum: int, _frame: Any) -> None:
        server.version = -2  # force a reload at the next poll

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, hup)
    try:
        server.run()
    except OSError as exc:
        if exc.errno in (errno.EADDRINUSE, errno.EACCES):
            log.error("cannot start: %s", exc)
            return 1
        raise
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
