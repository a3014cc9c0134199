"""Our nft tables as a stateful whole: every write of ours (one batch each), and the
check that nobody else flushed or deleted them since.

The check is cheap whatever the table holds: the kernel's ruleset generation (one netlink
round trip) tells whether anyone committed anything since our last write; only then are
our chains' rules counted (a netlink dump without set elements; a libnftables listing
would fetch every element, ~0.5 s with a 10,000-port map).
"""

from __future__ import annotations

import os
import socket
import struct
import threading

from ...dataplane import names
from ...errors import ContainerError
from ...models import NetworkConfiguration
from . import antispoof
from .antispoof import GuardedPort
from .firewall import Nft, PortForward, build_ruleset, element_script, remove_legacy_tables

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_GETRULE = 7
NFT_MSG_GETGEN = 16
NFTA_GEN_ID = 1
NFTA_RULE_TABLE = 1
NFTA_RULE_CHAIN = 2
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3
NFPROTO = {"inet": 1, "bridge": 7}
_HDR = struct.Struct("=LHHLL")


class Ruleset:
    """Cheap probes of the kernel's nftables state over raw netlink (libnftables would
    fetch every set element, ~0.5 s with a 10,000-port map): the ruleset generation,
    which changes with every committed batch of anyone, and the number of rules in each
    of our chains. Bound to the namespace it was opened in."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.sock.bind((0, 0))
        self.seq = 0

    def _request(self, msg: int, family: int, flags: int, attrs: bytes = b"") -> list[bytes]:
        """Payloads (after nfgenmsg) of the replies to one request."""
        self.seq += 1
        body = struct.pack("=BBH", family, 0, 0) + attrs  # nfgenmsg (res_id 0)
        kind = (NFNL_SUBSYS_NFTABLES << 8) | msg
        self.sock.send(_HDR.pack(16 + len(body), kind, NLM_F_REQUEST | flags, self.seq, 0) + body)
        out: list[bytes] = []
        while True:
            data = self.sock.recv(1 << 16)
            offset = 0
            while offset + 16 <= len(data):
                length, kind, _f, seq, _pid = _HDR.unpack_from(data, offset)
                if length < 16:
                    return out
                payload = data[offset + 16 : offset + length]
                offset += (length + 3) & ~3
                if seq != self.seq:
                    continue
                if kind == NLMSG_DONE:
                    return out
                if kind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", payload)[0]
                    if code:
                        raise OSError(code, os.strerror(code))
                    return out
                out.append(payload[4:])
                if not flags & NLM_F_DUMP:
                    return out

    @staticmethod
    def _attrs(payload: bytes) -> dict[int, bytes]:
        found: dict[int, bytes] = {}
        offset = 0
        while offset + 4 <= len(payload):
            length, kind = struct.unpack_from("=HH", payload, offset)
            if length < 4:
                break
            found[kind & 0x7FFF] = payload[offset + 4 : offset + length]
            offset += (length + 3) & ~3
        return found

    def generation(self) -> int:
        [reply] = self._request(NFT_MSG_GETGEN, 0, 0)
        return int(struct.unpack("!I", self._attrs(reply)[NFTA_GEN_ID][:4])[0])

    def rule_counts(self, name: str = names.TABLE) -> dict[str, int]:
        """{"family chain": rules} of the tables called `name` (a missing table: no entries)."""
        counts: dict[str, int] = {}
        table = name.encode() + b"\0"
        attr = struct.pack("=HH", 4 + len(table), NFTA_RULE_TABLE) + table
        attr += b"\0" * (-len(attr) % 4)
        for family, number in NFPROTO.items():
            try:
                replies = self._request(NFT_MSG_GETRULE, number, NLM_F_DUMP, attr)
            except FileNotFoundError:
                continue  # no such table
            for reply in replies:
                chain = self._attrs(reply).get(NFTA_RULE_CHAIN, b"").rstrip(b"\0").decode()
                key = f"{family} {chain}"
                counts[key] = counts.get(key, 0) + 1
        return counts

    def close(self) -> None:
        self.sock.close()


class Tables:
    """The writer of a plugin's tables inet/bridge container-PLUGIN, bound to the namespace
    it was made in."""

    def __init__(self, plugin: str = names.PLUGIN) -> None:
        self.table = names.table_name(plugin)
        self._lock = threading.Lock()
        self._nft = Nft()
        self._probe = Ruleset()
        self._layout: dict[str, int] | None = None  # rules per chain as last written
        self._ours = -1  # the ruleset generation our last write produced (-2: unknown)

    def close(self) -> None:
        self._probe.close()

    def _write(self, script: str) -> None:
        """Run one batch; when the generation moved by more than our one batch, someone
        else wrote in between and the next intact() counts our rules."""
        before = self._probe.generation()
        self._nft.run(script)
        after = self._probe.generation()
        self._ours = after if after == before + 1 and self._ours in (before, -1) else -2

    def sync(
        self,
        networks: list[tuple[NetworkConfiguration, str]],
        port_forwards: list[PortForward],
        guarded: list[GuardedPort] | None = None,
    ) -> None:
        """Replace our tables in one atomic batch; with nothing to hold, remove them."""
        script = build_ruleset(networks, port_forwards, guarded or (), self.table)
        with self._lock:
            self._write(script)
            self._layout = self._probe.rule_counts(self.table)
            self._ours = self._probe.generation()

    def intact(self) -> bool:
        """False when our tables no longer look as we wrote them (someone flushed the
        ruleset, deleted a table or chain, flushed or deleted rules)."""
        with self._lock:
            if self._layout is None:
                return True
            now = self._probe.generation()
            if now == self._ours:
                return True  # nobody changed any ruleset since our last write
            intact = self._probe.rule_counts(self.table) == self._layout
            if intact:
                self._ours = now  # someone else's table changed, not ours
            return intact

    def guard_port(self, port: GuardedPort) -> None:
        with self._lock:
            self._write(antispoof.element_script("add", port, self.table))

    def unguard_port(self, port: GuardedPort) -> None:
        with self._lock:
            try:
                self._write(antispoof.element_script("delete", port, self.table))
            except ContainerError:
                pass  # already gone (a full rebuild ran in between): idempotent

    def add_port_forwards(self, port_forwards: list[PortForward]) -> None:
        if port_forwards:
            with self._lock:
                self._write(element_script("add", port_forwards, self.table))

    def remove_port_forwards(self, port_forwards: list[PortForward]) -> None:
        if not port_forwards:
            return
        with self._lock:
            try:
                self._write(element_script("delete", port_forwards, self.table))
            except ContainerError:
                # One missing element fails the whole batch: delete one by one, ignore absent.
                for pf in port_forwards:
                    try:
                        self._write(element_script("delete", [pf], self.table))
                    except ContainerError:
                        pass

    def remove_legacy(self) -> bool:
        """Delete the pre-11.3 tables named `container` (the bridge plugin's); True if any
        existed. Run once at start, after sync(), so our rules never lapse in an upgrade."""
        with self._lock:
            listing = self._nft.run("list tables")
            if not any(ln.split()[-1:] == [names.LEGACY_TABLE] for ln in listing.splitlines()):
                return False
            self._write(remove_legacy_tables())
            return True
