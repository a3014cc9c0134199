"""The /etc/hosts and /etc/resolv.conf a container gets, from its attachments and its
validated DNS settings (models.DnsSettings).  Pure text: the runtime writes the files.

/etc/hosts: the IPv4 localhost line, then the container's own `IP NAME.DOMAIN NAME` line
for each attachment (primary first, as Docker and Apple's container put it right after
localhost), then the IPv6 localhost line.

/etc/resolv.conf, as Apple's container writes it: `nameserver` lines (--dns, else the
primary gateway, where the embedded DNS answers), `domain D` only with --dns-domain,
`search ...` exactly the --dns-search domains (with no DNS flag at all: the configured
domain, `test` by default, so `web` and `web.test` both resolve), `options ...` from
--dns-option; --no-dns writes an empty file.
"""

from __future__ import annotations

import re
from typing import Any


def short_hostname(name: str) -> str:
    short = re.sub(r"[^a-z0-9-]", "-", name.lower()).strip("-")[:63].strip("-")
    return short or "container"


def hosts_file(name: str, atts: list[dict[str, Any]]) -> str:
    short = short_hostname(name)
    lines = ["127.0.0.1\tlocalhost"]
    for att in atts:
        fqdn = str(att.get("hostname") or "").rstrip(".")
        names = " ".join(dict.fromkeys(n for n in (fqdn, short, name) if n))
        lines.append(f"{att['address'].split('/')[0]}\t{names}")
    lines.append("::1\tlocalhost ip6-localhost ip6-loopback")
    return "\n".join(lines) + "\n"


def resolv_conf(
    dns: dict[str, Any], atts: list[dict[str, Any]], embedded: str | None = None
) -> str:
    """`embedded`: where the embedded DNS serves the primary network (its plugin's
    dnsAddress); by default the primary gateway."""
    if dns.get("disabled"):
        return ""
    default = embedded or (atts[0]["gateway"] if atts else None)
    servers = list(dns.get("nameservers") or ([default] if default else []))
    lines = [f"nameserver {s}" for s in servers]
    if dns.get("domain"):
        lines.append(f"domain {dns['domain']}")
    if dns.get("search"):
        lines.append("search " + " ".join(dns["search"]))
    if dns.get("options"):
        lines.append("options " + " ".join(dns["options"]))
    return "\n".join(lines) + ("\n" if lines else "")
