"""`/v1/system/dns`: the host domains of `container system dns create|delete|list DOMAIN`.

A host domain makes the host resolve `*.DOMAIN` through the embedded DNS server, which
answers `NAME.DOMAIN` for every attachment (on every listener, in addition to the
config domain) and forwards the other names under DOMAIN upstream.

How the host is pointed at the server (checked in this order):

- `resolved`: systemd-resolved is running (`resolvectl status` succeeds).  The link
  of the `default` network (its plugin's reply `link`: the bridge) gets a route-only
  domain `~DOMAIN` per host domain and the DNS server `GATEWAY` (port 53, where
  container-dns listens on every gateway; older resolved versions cannot use another
  port, so 127.0.0.1:2053 is not used), and `default-route no`, so only those domains
  go there.  The whole list is set on each change; deleting the last domain reverts the
  link.  The settings live on the link, so they are re-applied when the API server
  starts (the link may be new).
- `resolv.conf`: the first `nameserver` of /etc/resolv.conf is one of our gateway
  addresses (the administrator made the container DNS server the host's resolver; it
  forwards everything else).  Nothing to configure: the server answers for DOMAIN.
- Otherwise the request is refused with one line saying what would work; nothing is
  recorded.  (Linux has no per-domain resolver drop-in like macOS's /etc/resolver/,
  and /etc/hosts cannot hold wildcards.)

The row is committed before the host is configured; when configuring fails the row
is removed again and the error returned, so a refusal changes nothing.

Environment (tests): CONTAINER_DNS_RESOLV_CONF is the resolv.conf that is inspected
(default /etc/resolv.conf); `resolvectl` is found on PATH.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import shutil
import sqlite3
import subprocess
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..dns import notify_dns
from ..errors import Conflict, ContainerError, InvalidArgument, NotFound, Unavailable
from ..http import Request, Router
from ..models import DEFAULT_NETWORK, validate_domain
from ..paths import Paths
from ..state import Database

log = logging.getLogger("container-apiserver")

RESOLVED = "resolved"
RESOLV_CONF = "resolv.conf"
COMMAND_TIMEOUT = 10.0


@dataclass(frozen=True)
class HostDomain:
    domain: str
    mechanism: str
    link: str | None
    address: str | None
    created_at: str

    def to_json(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "mechanism": self.mechanism,
            "link": self.link,
            "address": self.address,
            "createdAt": self.created_at,
        }


def _resolv_conf() -> Path:
    return Path(os.environ.get("CONTAINER_DNS_RESOLV_CONF", "/etc/resolv.conf"))


def _first_nameserver(path: Path) -> str | None:
    try:
        text = path.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            return fields[1]
    return None


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(argv, 1, "", str(exc))


def _resolvectl() -> str | None:
    return shutil.which("resolvectl")


def resolved_running() -> bool:
    exe = _resolvectl()
    return exe is not None and _run([exe, "status"]).returncode == 0


class HostDnsService:
    def __init__(self, db: Database, paths: Paths) -> None:
        self.db = db
        self.paths = paths
        self.lock = threading.Lock()

    # -- reading ----------------------------------------------------------------------------

    def domains(self) -> list[HostDomain]:
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT domain, mechanism, link, address, created_at FROM dns_domains"
                " ORDER BY domain"
            ).fetchall()
        return [HostDomain(*tuple(r)) for r in rows]

    def _gateways(self) -> dict[str, tuple[str, str | None]]:
        """network name -> (IPv4 gateway, its link)."""
        out: dict[str, tuple[str, str | None]] = {}
        with self.db.read() as conn:
            for row in conn.execute("SELECT name, config, link FROM networks"):
                try:
                    gateway = str(json.loads(row["config"])["ipv4Gateway"])
                except (ValueError, KeyError, TypeError):
                    continue
                out[str(row["name"])] = (gateway, row["link"])
        return out

    # -- choosing the mechanism -------------------------------------------------------------

    def _mechanism(self) -> tuple[str, str | None, str]:
        """(mechanism, link, address), or an error that says what would work."""
        gateways = self._gateways()
        default = gateways.get(DEFAULT_NETWORK)
        if resolved_running():
            if default is None or not default[1]:
                raise Unavailable(
                    f"network {DEFAULT_NETWORK} has no link yet; cannot point "
                    "systemd-resolved at the container DNS server"
                )
            return RESOLVED, default[1], default[0]
        first = _first_nameserver(_resolv_conf())
        ours = {gw for gw, _link in gateways.values()}
        if first is not None and _same_address(first, ours):
            return RESOLV_CONF, None, first
        hint = default[0] if default else "the default network's gateway"
        raise Unavailable(
            "cannot make the host resolve names through the container DNS server: "
            "systemd-resolved is not running and the first nameserver in "
            f"{_resolv_conf()} is {first or 'missing'}; start systemd-resolved, or put "
            f"'nameserver {hint}' first in {_resolv_conf()} (it forwards other names), "
            "or query 127.0.0.1 port 2053 directly"
        )

    # -- applying ---------------------------------------------------------------------------

    def _apply_resolved(self, link: str, address: str, domains: list[str]) -> None:
        exe = _resolvectl()
        if exe is None:
            raise Unavailable("resolvectl is no longer available")
        if not domains:
            result = _run([exe, "revert", link])
            if result.returncode != 0:
                raise ContainerError(f"resolvectl revert {link} failed: {_tail(result)}")
            return
        steps = [
            [exe, "dns", link, address],
            [exe, "domain", link, *(f"~{d}" for d in domains)],
        ]
        for argv in steps:
            result = _run(argv)
            if result.returncode != 0:
                raise ContainerError(f"{' '.join(argv[1:])}: resolvectl failed: {_tail(result)}")
        # Only the route domains go to us (resolved >= 240); older versions: ignored.
        _run([exe, "default-route", link, "no"])

    def _apply(self, mechanism: str, link: str | None, address: str | None) -> None:
        """Make the host configuration of `mechanism` match the table."""
        if mechanism != RESOLVED or link is None or address is None:
            return  # resolv.conf: the host already asks us; nothing to configure
        domains = [d.domain for d in self.domains() if d.mechanism == RESOLVED and d.link == link]
        self._apply_resolved(link, address, domains)

    def reapply(self) -> None:
        """At start: links may have been rebuilt (the settings live on the link)."""
        links = {(d.link, d.address) for d in self.domains() if d.mechanism == RESOLVED}
        for link, address in links:
            try:
                self._apply(RESOLVED, link, address)
            except ContainerError as exc:
                log.warning("system dns: cannot re-apply the resolved settings: %s", exc.message)

    # -- writing ----------------------------------------------------------------------------

    def create(self, body: dict[str, Any]) -> HostDomain:
        raw = body.get("domain")
        if not isinstance(raw, str):
            raise InvalidArgument("missing domain")
        domain = _validate(raw)
        with self.lock:
            if any(d.domain == domain for d in self.domains()):
                raise Conflict(f"dns domain {domain} already exists")
            mechanism, link, address = self._mechanism()
            row = HostDomain(domain, mechanism, link, address, datetime.now(UTC).isoformat())
            with self.db.write() as conn:
                conn.execute(
                    "INSERT INTO dns_domains(domain, mechanism, link, address, created_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (row.domain, row.mechanism, row.link, row.address, row.created_at),
                )
            try:
                self._apply(mechanism, link, address)
            except ContainerError:
                with self.db.write() as conn:
                    conn.execute("DELETE FROM dns_domains WHERE domain = ?", (domain,))
                self._restore(mechanism, link, address)
                raise
            finally:
                notify_dns(self.paths.run_dir)
        log.info("system dns: created %s (%s)", domain, mechanism)
        return row

    def delete(self, raw: str) -> HostDomain:
        domain = _validate(raw)
        with self.lock:
            found = [d for d in self.domains() if d.domain == domain]
            if not found:
                raise NotFound(f"dns domain {domain} not found")
            row = found[0]
            with self.db.write() as conn:
                conn.execute("DELETE FROM dns_domains WHERE domain = ?", (domain,))
            try:
                self._apply(row.mechanism, row.link, row.address)
            except ContainerError:
                with self.db.write() as conn:
                    conn.execute(
                        "INSERT INTO dns_domains(domain, mechanism, link, address, created_at)"
                        " VALUES (?, ?, ?, ?, ?)",
                        (row.domain, row.mechanism, row.link, row.address, row.created_at),
                    )
                self._restore(row.mechanism, row.link, row.address)
                raise
            finally:
                notify_dns(self.paths.run_dir)
        log.info("system dns: deleted %s", domain)
        return row

    def _restore(self, mechanism: str, link: str | None, address: str | None) -> None:
        try:
            self._apply(mechanism, link, address)
        except ContainerError as exc:
            log.warning("system dns: cannot restore the host settings: %s", exc.message)


def _validate(raw: str) -> str:
    domain = validate_domain(raw)
    if domain == "arpa" or domain.endswith(".arpa") or domain in ("local", "localhost"):
        raise InvalidArgument(f"invalid DNS domain {domain!r}: reserved")
    return domain


def _same_address(text: str, ours: set[str]) -> bool:
    try:
        return str(ipaddress.ip_address(text.split("%")[0])) in ours
    except ValueError:
        return False


def _tail(result: subprocess.CompletedProcess[str]) -> str:
    text = (result.stderr or result.stdout or "").strip()
    return text.splitlines()[-1] if text else f"exit status {result.returncode}"


def register_routes(router: Router, api: Any) -> HostDnsService | None:
    """Add the /v1/system/dns routes.  `api` may be a stand-in without a database (route
    enumeration in tests): then the routes exist but are never called."""
    service: HostDnsService | None = None
    db = getattr(api, "db", None)
    paths = getattr(api, "paths", None)
    if isinstance(db, Database) and isinstance(paths, Paths):
        service = HostDnsService(db, paths)
        try:
            service.reapply()
        except sqlite3.Error as exc:
            log.warning("system dns: cannot read the domains: %s", exc)

    def _service() -> HostDnsService:
        if service is None:
            raise Unavailable("system dns is not available")
        return service

    @router.route("GET", "/v1/system/dns")
    def list_domains(_: Request) -> tuple[int, Any]:
        return 200, [d.to_json() for d in _service().domains()]

    @router.route("POST", "/v1/system/dns")
    def create_domain(req: Request) -> tuple[int, Any]:
        if not isinstance(req.body, dict):
            raise InvalidArgument("expected a JSON object")
        return 201, _service().create(req.body).to_json()

    @router.route("DELETE", "/v1/system/dns/{domain}")
    def delete_domain(req: Request) -> tuple[int, Any]:
        return 200, {"deleted": _service().delete(req.params["domain"]).domain}

    return service
