"""One owner per DNS name on a network: the check behind container create/start and
network attach.

A name answers as NAME, NAME.DOMAIN and NAME under each host domain of `system dns
create` (dns/records.py says which names an attachment answers to); two live
attachments on one network must never share one, compared without case (DNS names are
case-insensitive), or clients of one would reach the other.

DNS aliases (`alias=NAME`, stored in `endpoint_aliases`) may be shared by several
owners on a network (answered with one record each, round-robin), but an alias is never
another owner's own name there, and a new name is never someone's alias there: an alias
must not take over a container's name, nor a container an alias.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from ..dns.records import answer_names, record_names
from ..errors import Conflict
from ..state import Database


def check_dns_names(
    db: Database,
    domain: str | None,
    name: str,
    networks: Iterable[str],
    owner: str | None = None,
    what: str = "container",
) -> None:
    """Raise Conflict naming the holder when a live attachment on one of `networks`
    (other than `owner`'s own) answers to one of `name`'s DNS names."""
    nets = list(dict.fromkeys(networks))
    if not nets:
        return
    with db.read() as conn:
        try:
            extra = [str(r[0]).lower() for r in conn.execute("SELECT domain FROM dns_domains")]
        except sqlite3.OperationalError:  # a database from before the table existed
            extra = []
        suffixes = tuple(dict.fromkeys(((domain,) if domain else ()) + tuple(extra)))
        bare = name.lower()
        mine = set(answer_names(bare, f"{bare}.{domain}" if domain else bare, suffixes))
        # Another attachment answers to one of these only if its bare name is one of them,
        # or one of them minus a suffix; its hostname (stored lower-case, as NAME.DOMAIN.)
        # is then one of `hosts`. Plain comparisons, so this stays cheap on big networks.
        bares = mine | {n[: -len(x) - 1] for n in mine for x in suffixes if n.endswith("." + x)}
        hosts = sorted({h + dot for b in bares for h in (b, f"{b}.{domain}") for dot in ("", ".")})
        # A container answers to its name too where its hostname differs (--hostname): the
        # second half finds those (two indexed lookups rather than one scan of the network).
        in_nets = f"a.network IN ({','.join('?' * len(nets))})"
        rows = conn.execute(
            "SELECT a.network, a.owner, a.hostname, c.name FROM endpoints a"
            f" LEFT JOIN containers c ON c.id = a.owner WHERE {in_nets}"
            f" AND a.hostname IN ({','.join('?' * len(hosts))})"
            " UNION SELECT a.network, a.owner, a.hostname, c.name FROM containers c"
            f" JOIN endpoints a ON a.owner = c.id WHERE {in_nets}"
            f" AND lower(c.name) IN ({','.join('?' * len(bares))})",
            (*nets, *hosts, *nets, *sorted(bares)),
        ).fetchall()
        taken = []
        if what != "alias":  # an alias may be shared; a name may not be anyone's alias
            taken = conn.execute(
                "SELECT a.network, a.alias, c.name, a.owner FROM endpoint_aliases a"
                " LEFT JOIN containers c ON c.id = a.owner"
                f" WHERE a.network IN ({','.join('?' * len(nets))})"
                f" AND a.alias IN ({','.join('?' * len(bares))}) AND a.owner IS NOT ?",
                (*nets, *sorted(bares), owner),
            ).fetchall()
    for network, alias, container, other in taken:
        holder = f"container {container}" if container else f"attachment {other}"
        raise Conflict(
            f"the DNS name {alias} of {what} {name} is already an alias of {holder} on"
            f" network {network}"
        )
    for network, other, hostname, container in sorted(rows, key=lambda r: nets.index(r[0])):
        if other == owner:
            continue
        if container == name and what == "container":  # the same name: the usual message
            raise Conflict(f"container name {name} is already in use")
        _, _, theirs = record_names(str(other), str(hostname), container, domain, suffixes)
        clash = sorted(mine.intersection(theirs))
        if clash:
            holder = f"container {container}" if container else f"attachment {other}"
            raise Conflict(
                f"the DNS name {clash[0]} of {what} {name} is already taken on network"
                f" {network} by {holder} (DNS names are case-insensitive)"
            )
