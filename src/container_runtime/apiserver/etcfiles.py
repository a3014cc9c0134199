"""The /etc/hosts and /etc/resolv.conf a container gets, from its attachments and its
validated DNS settings (container_config.DnsSettings).  Pure text: the runtime writes the files.

/etc/hosts: the IPv4 localhost line, then the container's own `IP NAME.DOMAIN NAME` line
for each attachment (primary first, as Docker and Apple's container put it right after
localhost; with --hostname H [--domainname D] the primary line starts `IP H.D H.DOMAIN H`),
then each --add-host entry (before ours, so a user's own host.docker.internal wins), then
`GATEWAY host.container.internal host.docker.internal` (the primary network's gateway),
then the IPv6 localhost line.  `--network host`: the host's own /etc/hosts, then the
--add-host entries and the host names as 127.0.0.1 (the host is the container's host).

/etc/resolv.conf, as Apple's container writes it: `nameserver` lines (--dns, else the
primary gateway, where the embedded DNS answers), `domain D` only with --dns-domain,
`search ...` exactly the --dns-search domains (with no DNS flag at all: the configured
domain, `test` by default, so `web` and `web.test` both resolve), `options ...` from
--dns-option; --no-dns writes an empty file.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..netmode import HOST_GATEWAY, HOST_GATEWAY_NAMES


def short_hostname(name: str) -> str:
    short = re.sub(r"[^a-z0-9-]", "-", name.lower()).strip("-")[:63].strip("-")
    return short or "container"


def _extra_lines(extra_hosts: Sequence[Sequence[str]], gateway: str | None) -> list[str]:
    lines = []
    for host, ip in extra_hosts:
        address = gateway if ip == HOST_GATEWAY else ip
        if address:
            lines.append(f"{address}\t{host}")
    return lines


def hosts_file(
    name: str,
    atts: list[dict[str, Any]],
    hostname: str | None = None,
    domainname: str | None = None,
    extra_hosts: Sequence[Sequence[str]] = (),
    gateway6: str | None = None,
    host_address: str | None = None,
) -> str:
    """`gateway6`: the primary network's IPv6 gateway, a second line for the host names;
    `host_address`: where the host is on the primary network when that is not its gateway
    (macvlan: the host shim, the gateway being the LAN's router)."""
    short = short_hostname(name)
    lines = ["127.0.0.1\tlocalhost"]
    for i, att in enumerate(atts):
        fqdn = str(att.get("hostname") or "").rstrip(".")
        own: tuple[str | None, ...] = (fqdn, short, name)
        if i == 0 and hostname:
            own = (f"{hostname}.{domainname}" if domainname else None, fqdn, hostname, name)
        names = " ".join(dict.fromkeys(n for n in own if n))
        lines.append(f"{att['address'].split('/')[0]}\t{names}")
    gateway = host_address or (str(atts[0]["gateway"]) if atts else None)
    lines += _extra_lines(extra_hosts, gateway)
    for address in (gateway, gateway6) if gateway else ():
        if address:
            lines.append(f"{address}\t{' '.join(HOST_GATEWAY_NAMES)}")
    lines.append("::1\tlocalhost ip6-localhost ip6-loopback")
    return "\n".join(lines) + "\n"


def host_network_hosts_file(
    extra_hosts: Sequence[Sequence[str]], hosts: Path = Path("/etc/hosts")
) -> str:
    """`--network host`: the host's /etc/hosts (its names are the container's own)."""
    try:
        text = hosts.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    lines = [text.rstrip("\n"), *_extra_lines(extra_hosts, "127.0.0.1")]
    lines.append(f"127.0.0.1\t{' '.join(HOST_GATEWAY_NAMES)}")
    return "\n".join(lines) + "\n"


def host_nameservers(
    configured: Sequence[str], resolv: Path = Path("/etc/resolv.conf")
) -> list[str]:
    """The resolvers a container uses where the embedded DNS does not serve it (its
    primary network has `dns=false`): `[dns] upstreams`, else the host's nameservers that
    a container can reach (not loopback: that is the container's own)."""
    servers = [s.rsplit(":", 1)[0] if s.count(":") == 1 else s for s in configured]
    if not servers:
        try:
            lines = resolv.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            lines = []
        servers = [
            ln.split()[1] for ln in lines if ln.startswith("nameserver") and len(ln.split()) > 1
        ]
    out = []
    for text in servers:
        try:
            ip = ipaddress.ip_address(text.strip("[]").split("%")[0])
        except ValueError:
            continue
        if not ip.is_loopback:
            out.append(str(ip))
    return list(dict.fromkeys(out))


def resolv_conf(
    dns: dict[str, Any], atts: list[dict[str, Any]], servers: Sequence[str] | None = None
) -> str:
    """`servers`: the nameservers instead of the primary gateway (`dns=false`, host mode)."""
    if dns.get("disabled"):
        return ""
    if servers is None:
        servers = [atts[0]["gateway"]] if atts else []
    servers = list(dns.get("nameservers") or servers)
    lines = [f"nameserver {s}" for s in servers]
    if dns.get("domain"):
        lines.append(f"domain {dns['domain']}")
    if dns.get("search"):
        lines.append("search " + " ".join(dns["search"]))
    if dns.get("options"):
        lines.append("options " + " ".join(dns["options"]))
    return "\n".join(lines) + ("\n" if lines else "")
