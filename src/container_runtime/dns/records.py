"""The DNS server's view of the state database: records, scopes and precomputed answers.

A `Snapshot` is an immutable read of `networks`, `endpoints` (the API server's record
of every plugin's attachments) and `dns_domains` (the
extra domains of `container system dns create`: every name is also answered as
`NAME.DOMAIN` under each of them).  For each
(listener network, scope) pair it keeps an `AnswerTable`: a dict, filled on first
use of each question, from the lower-case wire question (name + qtype + qclass) to a
ready-made response tail, so the hot path is one dict lookup and a byte concatenation.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import sqlite3
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..netmode import HOST_GATEWAY_NAMES
from . import wire
from .forward import Upstream, parse_upstream

log = logging.getLogger(__name__)

IPv4 = ipaddress.IPv4Address
IPv6 = ipaddress.IPv6Address
Address = IPv4 | IPv6


@dataclass(frozen=True)
class NetworkInfo:
    name: str
    gateway4: IPv4 | None
    gateway6: IPv6 | None
    subnet4: ipaddress.IPv4Network | None
    subnet6: ipaddress.IPv6Network | None
    # an internal network's members get their own names only (option dns-forward=on: all)
    forward: bool = True
    # where the network's members ask (IPv4): its plugin's dnsAddress, by default the
    # gateway (a bridge's); None when the plugin serves no embedded DNS there
    listen4: IPv4 | None = None
    # option dns=false: no listener on its gateway and its members' names not answered
    dns: bool = True
    # option dns-server: this network's upstreams instead of the server's own
    upstreams: tuple[Upstream, ...] = ()


@dataclass(frozen=True)
class Record:
    network: str
    owner: str
    names: tuple[str, ...]  # the lower-case bare name (see bare_name)
    hostname: str  # fully qualified, lower-case, no trailing dot (the PTR target)
    address4: IPv4
    address6: IPv6 | None
    texts: tuple[str, ...] = ()  # str() of the addresses, computed once
    qnames: tuple[str, ...] = ()  # every name it answers to, computed once


@dataclass
class Entry:
    """A precomputed answer: header for RD=0 / RD=1 and everything after the question.

    A name with several addresses (an alias several containers share) answers with all
    of them, rotated by one at every answer (round-robin, as Docker's embedded DNS):
    `rotations` holds each order, `answers` the one to send next (`rotate()`)."""

    rcode: int
    ancount: int
    answers: bytes
    hdr: tuple[bytes, bytes] = field(init=False)
    rotations: tuple[bytes, ...] = ()
    turn: int = 0

    def rotate(self) -> bytes:
        """The answer records to send now; the next call sends the next order."""
        if not self.rotations:
            return self.answers
        self.turn = (self.turn + 1) % len(self.rotations)
        current = self.answers
        self.answers = self.rotations[self.turn]
        return current

    def __post_init__(self) -> None:
        self.hdr = (
            struct.pack("!BBHHHH", 0x84, 0x80 | self.rcode, 1, self.ancount, 0, 0),
            struct.pack("!BBHHHH", 0x85, 0x80 | self.rcode, 1, self.ancount, 0, 0),
        )


class AnswerTable:
    """Answers for one (listener network, scope), made on first use of each question.

    `entries` maps the lower-case wire question to a ready-made response tail; the hot
    path reads it directly. Building every answer up front cost ~50 us a name, which made
    the first query after each reload stall on big networks (226 ms at 4,300 members).
    """

    MAX_ENTRIES = 65536

    def __init__(
        self, snapshot: Snapshot, listener_network: str | None, scope: frozenset[str]
    ) -> None:
        self.entries: dict[bytes, Entry] = {}
        self._snapshot = snapshot
        self._listener = listener_network
        self._scope = scope

    def _records(self, found: list[Record] | None) -> list[Record]:
        if not found:
            return []
        listener = self._listener
        # Addresses on the listener's own network first: the one the asker reaches best.
        return sorted(
            (r for r in found if r.network in self._scope),
            key=lambda r: (r.network != listener, r.network, r.owner),
        )

    def has_name(self, qname: str) -> bool:
        """Whether the name exists in this scope (for an empty NOERROR of other types)."""
        if qname in HOST_GATEWAY_NAMES and self._gateways():
            return True
        if self._records(self._snapshot.by_qname.get(qname)):
            return True
        address = _from_reverse(qname) if qname.endswith("arpa") else None
        return address is not None and bool(self._records(self._snapshot.by_text.get(str(address))))

    def lookup(self, key: bytes, qname: str, qtype: int) -> Entry | None:
        entry = self.entries.get(key)
        if entry is not None:
            return entry
        entry = self._make(qname, qtype)
        if entry is not None and len(self.entries) < self.MAX_ENTRIES:
            self.entries[key] = entry
        return entry

    def _gateways(self) -> tuple[IPv4 | None, IPv6 | None] | None:
        """The listener network's host addresses: where host.container.internal points (the
        network a container asks through is its primary one, its resolv.conf's server):
        where the DNS listens for it (its gateway on a bridge; macvlan's host shim, as
        its gateway is the LAN's router)."""
        info = self._snapshot.networks.get(self._listener) if self._listener else None
        return None if info is None else (info.listen4 or info.gateway4, info.gateway6)

    def _host_entry(self, qtype: int) -> Entry | None:
        gateways = self._gateways()
        if gateways is None:
            return None
        ttl = self._snapshot.ttl
        if qtype == wire.QTYPE_A and gateways[0] is not None:
            return Entry(wire.RCODE_NOERROR, 1, wire.rr_a(ttl, gateways[0]))
        if qtype == wire.QTYPE_AAAA and gateways[1] is not None:
            return Entry(wire.RCODE_NOERROR, 1, wire.rr_aaaa(ttl, gateways[1]))
        if qtype in (wire.QTYPE_A, wire.QTYPE_AAAA):
            return Entry(wire.RCODE_NOERROR, 0, b"")
        return None

    def _make(self, qname: str, qtype: int) -> Entry | None:
        ttl = self._snapshot.ttl
        if qname in HOST_GATEWAY_NAMES:
            return self._host_entry(qtype)
        if qtype in (wire.QTYPE_A, wire.QTYPE_AAAA):
            records = self._records(self._snapshot.by_qname.get(qname))
            if not records:
                return None
            if qtype == wire.QTYPE_A:
                addrs4 = list(dict.fromkeys(r.address4 for r in records))
                return _rotating([wire.rr_a(ttl, a) for a in addrs4])
            # No AAAA record: an empty NOERROR (busybox nslookup needs it).
            addrs6 = list(dict.fromkeys(r.address6 for r in records if r.address6 is not None))
            return _rotating([wire.rr_aaaa(ttl, a) for a in addrs6])
        if qtype == wire.QTYPE_PTR and qname.endswith("arpa"):
            address = _from_reverse(qname)
            if address is None:
                return None
            records = self._records(self._snapshot.by_text.get(str(address)))
            targets = list(dict.fromkeys(r.hostname for r in records))
            if not targets:
                return None
            try:
                rrs = b"".join(wire.rr_ptr(ttl, t) for t in targets)
            except ValueError:
                return None
            return Entry(wire.RCODE_NOERROR, len(targets), rrs)
        return None


def _rotating(rrs: list[bytes]) -> Entry:
    """A NOERROR answer of these records; with several, one order per rotation."""
    entry = Entry(wire.RCODE_NOERROR, len(rrs), b"".join(rrs))
    if len(rrs) > 1:
        entry.rotations = tuple(b"".join(rrs[i:] + rrs[:i]) for i in range(len(rrs)))
    return entry


def _parse_v6(text: str | None) -> IPv6 | None:
    if not text:
        return None
    try:
        return IPv6(text.split("/")[0])
    except ValueError:
        return None


def _network_info(name: str, config_text: str, dns_text: str | None = None) -> NetworkInfo:
    """A network's row: its configuration and the plugin's dnsAddress (None: the
    gateway, '' none)."""
    try:
        config = json.loads(config_text)
    except ValueError:
        config = {}
    if not isinstance(config, dict):
        config = {}
    gw4: IPv4 | None = None
    gw6: IPv6 | None = None
    sub4: ipaddress.IPv4Network | None = None
    sub6: ipaddress.IPv6Network | None = None
    try:
        if config.get("ipv4Subnet"):
            sub4 = ipaddress.IPv4Network(str(config["ipv4Subnet"]), strict=False)
        if config.get("ipv4Gateway"):
            gw4 = IPv4(str(config["ipv4Gateway"]))
        elif sub4 is not None:
            gw4 = sub4.network_address + 1
    except ValueError:
        log.warning("network %s: unusable IPv4 configuration", name)
    try:
        if config.get("ipv6Subnet"):
            sub6 = ipaddress.IPv6Network(str(config["ipv6Subnet"]), strict=False)
            gw6 = sub6.network_address + 1
    except ValueError:
        log.warning("network %s: unusable IPv6 configuration", name)
    options = config.get("options")
    options = options if isinstance(options, dict) else {}
    forward = config.get("mode") != "internal" or options.get("dns-forward") == "on"
    listen4 = gw4
    if dns_text is not None:
        try:
            listen4 = IPv4(dns_text) if dns_text else None
        except ValueError:
            log.warning("network %s: unusable DNS address %r", name, dns_text)
    upstreams = []
    for text in filter(None, str(options.get("dns-server") or "").split(",")):
        try:
            upstreams.append(parse_upstream(text))
        except ValueError:
            log.warning("network %s: ignoring invalid dns-server %r", name, text)
    dns = options.get("dns") != "false"
    return NetworkInfo(name, gw4, gw6, sub4, sub6, forward, listen4, dns, tuple(upstreams))


Key = tuple[str, str]  # (network, owner): one attachment


class Snapshot:
    """One consistent view of the database, plus lazily built answer tables.

    Built whole by `load_snapshot`, or derived from the previous one by `with_changes`
    with only the attachments that changed (copying the indexes is C-speed; only the
    changed names are recomputed in Python).
    """

    def __init__(
        self,
        networks: dict[str, NetworkInfo],
        records: list[Record],
        domain: str | None,
        ttl: int,
        extra_domains: tuple[str, ...] = (),
        seq: int = 0,
    ) -> None:
        self.networks = networks
        self.domain = domain
        self.ttl = ttl
        self.seq = seq  # the last dns_changes entry this view includes
        # Host domains (`container system dns create`): container names are answered under
        # each, anything else there is forwarded (unlike the config domain, they may be
        # real domains, whose other names must keep working).
        self.extra_domains = tuple(d for d in dict.fromkeys(extra_domains) if d and d != domain)
        self.suffixes = ((domain,) if domain else ()) + self.extra_domains
        self.all_networks = frozenset(networks)
        # The host itself: a query to a gateway from the host comes from a gateway address
        # (systemd-resolved pointed at the default network's link by `system dns create`);
        # it sees every network.
        self.host_addresses = frozenset(
            str(gw)
            for info in networks.values()
            for gw in (info.listen4, info.gateway6)
            if gw is not None
        )
        subnets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for info in networks.values():
            if info.subnet4 is not None:
                subnets.append(info.subnet4)
            if info.subnet6 is not None:
                subnets.append(info.subnet6)
        self.subnets = tuple(subnets)
        self._tables: dict[tuple[str | None, frozenset[str]], AnswerTable] = {}
        # Indexes: attachment -> record; every answerable name -> records; address text ->
        # records (PTR, askers); owner -> records (its networks).
        self.by_key: dict[Key, Record] = {}
        self.by_qname: dict[str, list[Record]] = {}
        self.by_text: dict[str, list[Record]] = {}
        self.by_owner: dict[str, list[Record]] = {}
        for rec in records:
            self._add(rec)
        self.owner_networks = {
            owner: frozenset(r.network for r in recs) for owner, recs in self.by_owner.items()
        }

    @property
    def records(self) -> list[Record]:
        return list(self.by_key.values())

    def _add(self, rec: Record) -> None:
        self.by_key[(rec.network, rec.owner)] = rec
        for qname in rec.qnames:
            self.by_qname.setdefault(qname, []).append(rec)
        for text in rec.texts:
            self.by_text.setdefault(text, []).append(rec)
        self.by_owner.setdefault(rec.owner, []).append(rec)

    def with_changes(self, changed: dict[Key, Record | None], seq: int) -> Snapshot:
        """A new snapshot: this one with `changed` attachments replaced (None = gone)."""
        new = object.__new__(Snapshot)
        new.__dict__.update(self.__dict__)
        new.seq = seq
        new._tables = {}
        new.by_key = dict(self.by_key)
        new.by_qname = dict(self.by_qname)
        new.by_text = dict(self.by_text)
        new.by_owner = dict(self.by_owner)
        new.owner_networks = dict(self.owner_networks)
        touched_owners: set[str] = set()
        for key, rec in changed.items():
            old = new.by_key.pop(key, None)
            if old is not None:  # copy the affected lists: the old snapshot keeps its own
                for index, keys in (
                    (new.by_qname, old.qnames),
                    (new.by_text, old.texts),
                    (new.by_owner, (old.owner,)),
                ):
                    for k in keys:
                        rest = [r for r in index.get(k, ()) if r is not old]
                        if rest:
                            index[k] = rest
                        else:
                            index.pop(k, None)
                touched_owners.add(old.owner)
            if rec is not None:
                new.by_key[key] = rec
                for index, keys in (
                    (new.by_qname, rec.qnames),
                    (new.by_text, rec.texts),
                    (new.by_owner, (rec.owner,)),
                ):
                    for k in keys:
                        index[k] = [*index.get(k, ()), rec]
                touched_owners.add(rec.owner)
        for owner in touched_owners:
            recs = new.by_owner.get(owner)
            if recs:
                new.owner_networks[owner] = frozenset(r.network for r in recs)
            else:
                new.owner_networks.pop(owner, None)
        return new

    def owner_at(self, network: str | None, text: str) -> str | None:
        """The owner of an address (on one network, or on any when network is None)."""
        for rec in self.by_text.get(text, ()):
            if network is None or rec.network == network:
                return rec.owner
        return None

    def scope_of(self, listener_network: str | None, source: str) -> frozenset[str]:
        """Which networks an asker may see names of."""
        if listener_network is None or source in self.host_addresses:
            return self.all_networks
        owner = self.owner_at(listener_network, source)
        if owner is None:
            owner = self.owner_at(None, source)
        if owner is not None:
            return self.owner_networks[owner]
        return frozenset((listener_network,))

    def release(self) -> None:
        """Drop the answer tables (they point back here), once a newer snapshot serves."""
        self._tables.clear()

    def table(self, listener_network: str | None, scope: frozenset[str]) -> AnswerTable:
        key = (listener_network, scope)
        table = self._tables.get(key)
        if table is None:
            table = AnswerTable(self, listener_network, scope)
            self._tables[key] = table
        return table

    def is_local(self, qname: str) -> bool:
        """Names we are authoritative for: never forwarded (NXDOMAIN when not found)."""
        if "." not in qname or qname in HOST_GATEWAY_NAMES:
            return True  # bare single label (and the root)
        if self.domain and (qname == self.domain or qname.endswith("." + self.domain)):
            return True
        if qname.endswith(".in-addr.arpa") or qname.endswith(".ip6.arpa"):
            address = _from_reverse(qname)
            if address is not None:
                return any(address in net for net in self.subnets if net.version == address.version)
        return False

    def listen_addresses(self) -> dict[str, list[Address]]:
        out: dict[str, list[Address]] = {}
        for name, info in self.networks.items():
            if not info.dns:
                continue
            addrs: list[Address] = []
            if info.listen4 is not None:
                addrs.append(info.listen4)
            if info.gateway6 is not None:
                addrs.append(info.gateway6)
            out[name] = addrs
        return out


def _from_reverse(qname: str) -> Address | None:
    try:
        if qname.endswith(".in-addr.arpa"):
            parts = qname[: -len(".in-addr.arpa")].split(".")
            if len(parts) != 4:
                return None
            return IPv4(".".join(reversed(parts)))
        parts = qname[: -len(".ip6.arpa")].split(".")
        if len(parts) != 32 or any(len(p) != 1 for p in parts):
            return None
        nibbles = "".join(reversed(parts))
        return IPv6(":".join(nibbles[i : i + 4] for i in range(0, 32, 4)))
    except ValueError:
        return None


def _read_only(database: Path) -> sqlite3.Connection:
    uri = f"file:{database}?mode=ro"
    return sqlite3.connect(uri, uri=True, timeout=5.0, isolation_level=None)


def _last_change(conn: sqlite3.Connection) -> int:
    try:
        return int(conn.execute("SELECT COALESCE(MAX(seq), 0) FROM dns_changes").fetchone()[0])
    except sqlite3.OperationalError:  # a database from before the change log existed
        return 0


# An attachment, its container's name (a container answers to its name on every network,
# and on its first also to its --hostname, which is that attachment's hostname) and its
# DNS aliases on that network (space-separated; NULL when it has none).
_ATTACHMENTS = (
    "SELECT a.network, a.owner, a.hostname, a.address, a.ipv6, c.name,"
    " (SELECT group_concat(x.alias, ' ') FROM endpoint_aliases x"
    " WHERE x.network = a.network AND x.owner = a.owner) FROM endpoints a"
    " LEFT JOIN containers c ON c.id = a.owner"
)


def load_snapshot(database: Path, domain: str | None, ttl: int) -> Snapshot:
    """Read networks and attachments in one read transaction (read-only connection)."""
    conn = _read_only(database)
    extra: list[str] = []
    try:
        conn.execute("BEGIN")
        seq = _last_change(conn)
        try:
            net_rows = conn.execute("SELECT name, config, dns_address FROM networks").fetchall()
        except sqlite3.OperationalError:  # a database from before the column existed
            net_rows = [
                (*r, None) for r in conn.execute("SELECT name, config FROM networks").fetchall()
            ]
        att_rows = conn.execute(_ATTACHMENTS).fetchall()
        try:
            extra = [str(r[0]).lower() for r in conn.execute("SELECT domain FROM dns_domains")]
        except sqlite3.OperationalError:  # a database from before the table existed
            extra = []
        conn.execute("COMMIT")
    finally:
        conn.close()
    networks = {
        str(name): _network_info(str(name), str(cfg), None if dns is None else str(dns))
        for name, cfg, dns in net_rows
    }
    return build_snapshot(networks, att_rows, domain, ttl, tuple(extra), seq)


def update_snapshot(old: Snapshot, database: Path) -> Snapshot | None:
    """The old snapshot plus the attachments changed since it (dns_changes); None when a
    full reload is needed (networks or domains changed, or the log was trimmed past us)."""
    conn = _read_only(database)
    try:
        conn.execute("BEGIN")
        try:
            rows = conn.execute(
                "SELECT seq, network, owner FROM dns_changes WHERE seq > ? ORDER BY seq",
                (old.seq,),
            ).fetchall()
            first = conn.execute("SELECT MIN(seq) FROM dns_changes").fetchone()[0]
        except sqlite3.OperationalError:
            return None
        if not rows:
            return old
        if first is None or first > old.seq + 1 or any(r[1] is None for r in rows):
            return None
        keys = list(dict.fromkeys((str(r[1]), str(r[2])) for r in rows))
        changed: dict[Key, Record | None] = {}
        for network, owner in keys:
            row = conn.execute(
                _ATTACHMENTS + " WHERE a.network = ? AND a.owner = ?", (network, owner)
            ).fetchone()
            info = old.networks.get(network)
            served = row is not None and (info is None or info.dns)
            changed[(network, owner)] = (
                _record(row, old.domain, old.extra_domains) if served else None
            )
        conn.execute("COMMIT")
    finally:
        conn.close()
    return old.with_changes(changed, int(rows[-1][0]))


def _record(
    row: tuple[Any, ...], domain: str | None, extra_domains: tuple[str, ...]
) -> Record | None:
    network, owner, hostname, address, ipv6, container, alias_text = (*row, None, None)[:7]
    aliases = str(alias_text).split() if alias_text else []
    try:
        addr4 = IPv4(int(address))
    except (ValueError, TypeError):
        log.warning("attachment %s/%s: bad address %r", network, owner, address)
        return None
    suffixes = ((domain,) if domain else ()) + extra_domains
    names, fqdn, qnames = record_names(str(owner), hostname, container, domain, suffixes)
    addr6 = _parse_v6(ipv6)
    texts = (str(addr4),) + ((str(addr6),) if addr6 is not None else ())
    for alias in sorted(aliases):  # answered only on this record's network, as its names
        qnames += tuple(n for n in answer_names(alias, alias, suffixes) if n not in qnames)
    return Record(str(network), str(owner), names, fqdn, addr4, addr6, texts, qnames)


def record_names(
    owner: str,
    hostname: str | None,
    container: str | None,
    domain: str | None,
    suffixes: tuple[str, ...],
) -> tuple[tuple[str, ...], str, tuple[str, ...]]:
    """An attachment's bare names, its FQDN (the PTR target) and every name it answers
    to: the bare name of its hostname, and its container's name when that differs (the
    first network of a container with --hostname)."""
    host = str(hostname or owner).strip(".").lower()
    bare = bare_name(owner, host, domain)
    fqdn = host if "." in host or not domain else f"{host}.{domain}"
    qnames = answer_names(bare, fqdn, suffixes)
    names: tuple[str, ...] = (bare,)
    other = str(container).lower() if container else None
    if other and other != bare:
        names = (bare, other)
        extra = answer_names(other, f"{other}.{domain}" if domain else other, suffixes)
        qnames = tuple(dict.fromkeys((*qnames, *extra)))
    return names, fqdn, qnames


def _is_id(owner: str) -> bool:
    return len(owner) == 64 and all(c in "0123456789abcdef" for c in owner)


def bare_name(owner: str, hostname: str, domain: str | None) -> str:
    """The name an attachment answers to without a domain: its owner's name as given.

    Container attachments are owned by container ids; their hostname is `NAME.DOMAIN.`,
    so the name is the hostname without the domain.  Never a prefix of the name: a
    container `a2.evil` is `a2.evil`, not `a2` (that let it take over a2's name).
    """
    if not _is_id(owner):
        return owner.lower()  # a bare attachment: owner and name are one
    host = hostname.strip(".").lower()
    if domain and host.endswith("." + domain):
        return host[: -len(domain) - 1]
    return host


def answer_names(bare: str, fqdn: str, suffixes: tuple[str, ...]) -> tuple[str, ...]:
    """Every name an attachment answers to: its hostname, its bare name, and the bare name
    under the config domain and each host domain of `system dns create`."""
    return tuple(dict.fromkeys([fqdn, bare, *(f"{bare}.{sfx}" for sfx in suffixes)]))


def build_snapshot(
    networks: dict[str, NetworkInfo],
    rows: list[tuple[Any, ...]],
    domain: str | None,
    ttl: int,
    extra_domains: tuple[str, ...] = (),
    seq: int = 0,
) -> Snapshot:
    extra_domains = tuple(d for d in dict.fromkeys(extra_domains) if d and d != domain)
    records: list[Record] = []
    cache: dict[tuple[Any, ...], Record] = {}
    for row in rows:
        info = networks.get(str(row[0]))
        if info is not None and not info.dns:
            continue  # dns=false: nothing of this network is answered
        # Rows that did not change since the last reload keep their parsed Record: parsing
        # addresses dominated a reload of thousands of attachments.
        key = (*row, domain, extra_domains)
        rec = _RECORDS.get(key) or _record(row, domain, extra_domains)
        if rec is not None:
            cache[key] = rec
            records.append(rec)
    _RECORDS.clear()
    _RECORDS.update(cache)
    return Snapshot(networks, records, domain, ttl, extra_domains, seq)


_RECORDS: dict[tuple[Any, ...], Record] = {}


def data_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA data_version").fetchone()[0])
