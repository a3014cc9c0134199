"""A container's network namespace mode in the API server (netmode.NamespaceMode):
`--network host` (no namespace), `--network container:NAME` (another container's), and
the names every container gets (--hostname, --domainname, --add-host, the host's names).

Decisions (docs/CONTAINERS.md, "Shared network namespaces"), after Docker's and
Podman's behaviour:
- `container:NAME` is resolved to NAME's id at create; NAME must exist and have a
  namespace of its own (not host, not itself a joiner).  Starting the joiner needs NAME
  running (Docker: "cannot join network of a non running container"); the joiner gets
  NAME's /etc/hosts, /etc/resolv.conf and hostname, no attachment, no published port.
- Stopping NAME is allowed (as Docker): its attachments are released and its sandbox
  unmounted, so a running joiner keeps only loopback until it is restarted after NAME.
- Removing NAME while a joiner exists (running or not) is refused, even with -f, naming
  the joiners (Podman's rule; Docker lets it go and leaves joiners that can never start).
"""

from __future__ import annotations

import json
import socket
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import Conflict, InvalidArgument, NotFound
from ..netmode import HOST_MODE, NamespaceMode, validate_hostname
from ..netoptions import option_list
from ..runtime.spec import UtsNames
from .etcfiles import (
    host_nameservers,
    host_network_hosts_file,
    hosts_file,
    resolv_conf,
    short_hostname,
)

if TYPE_CHECKING:
    from .containers import ContainerService

HOST_RESOLV_CONF = Path("/etc/resolv.conf")
HOST_HOSTS = Path("/etc/hosts")


def mode_of(cfg: dict[str, Any]) -> NamespaceMode:
    return NamespaceMode.from_json(cfg.get("namespace"))


def resolve_owner(svc: ContainerService, cfg: dict[str, Any]) -> None:
    """At create: `container:NAME` -> the owner's id (stored), or a refusal."""
    mode = mode_of(cfg)
    if mode.kind != "container" or mode.owner is None:
        return
    try:
        owner = svc.resolve(mode.owner)
    except NotFound:
        raise NotFound(
            f"container {mode.owner} not found (--network container:{mode.owner})"
        ) from None
    row = svc._row(owner)
    if row is None:
        raise NotFound(f"container {mode.owner} not found (--network container:{mode.owner})")
    theirs = mode_of(json.loads(row["config"]))
    if theirs.kind != "private":
        raise InvalidArgument(
            f"cannot join the network namespace of container {row['name']}: it has none of"
            f" its own (it uses --network {_text(svc, theirs)})"
        )
    cfg["namespace"] = NamespaceMode("container", owner).to_json()


def _text(svc: ContainerService, mode: NamespaceMode) -> str:
    if mode.kind == HOST_MODE:
        return HOST_MODE
    return f"container:{_name(svc, mode.owner)}"


def _name(svc: ContainerService, cid: str | None) -> str:
    row = svc._row(cid) if cid else None
    return str(row["name"]) if row is not None else str(cid)


def joiners(conn: sqlite3.Connection, cid: str) -> list[str]:
    """Names of the containers that use `cid`'s network namespace."""
    rows = conn.execute(
        "SELECT name FROM containers WHERE json_extract(config, '$.namespace.kind') ="
        " 'container' AND json_extract(config, '$.namespace.owner') = ? ORDER BY name",
        (cid,),
    ).fetchall()
    return [str(r[0]) for r in rows]


def check_removable(svc: ContainerService, cid: str, name: str) -> None:
    with svc.db.read() as conn:
        users = joiners(conn, cid)
    if users:
        raise Conflict(
            f"container {name} is the network namespace of container{'s' if len(users) > 1 else ''}"
            f" {', '.join(users)} (--network container:{name}): remove "
            f"{'them' if len(users) > 1 else 'it'} first"
        )


def refuse_network_change(svc: ContainerService, cfg: dict[str, Any], name: str) -> None:
    """`network connect|disconnect` of a container without a namespace of its own: it has
    no networks to change (they are its owner's, or the host's)."""
    mode = mode_of(cfg)
    if mode.kind != "private":
        raise Conflict(
            f"container {name} uses --network {_text(svc, mode)}: it has no networks of its"
            " own to connect or disconnect"
            + (f" (change those of container {_name(svc, mode.owner)})" if mode.owner else "")
        )


def check_joinable(svc: ContainerService, cfg: dict[str, Any]) -> None:
    """Before a start changes anything: a joiner's owner must be running."""
    mode = mode_of(cfg)
    if mode.kind == "container":
        namespace_path(svc, mode)


def namespace_path(svc: ContainerService, mode: NamespaceMode) -> str | None:
    """At start, for host and container modes: no path (host), or the owner's sandbox."""
    if mode.kind == HOST_MODE:
        return None
    row = svc._row(mode.owner) if mode.owner else None
    if row is None:
        raise Conflict(
            f"cannot join the network namespace of container {mode.owner}: it no longer exists"
        )
    owner = str(row["id"])
    if row["state"] != "running" or not svc.sandboxes.exists(owner):
        raise Conflict(
            f"cannot join the network namespace of container {row['name']}: it is not running"
            f" (start it first)"
        )
    return str(svc.sandboxes.path(owner))


def uts_names(
    svc: ContainerService, name: str, cfg: dict[str, Any], mode: NamespaceMode
) -> UtsNames:
    """The container's UTS hostname and domain name (the owner's in container mode, the
    host's hostname in host mode unless --hostname)."""
    if mode.kind == "container" and mode.owner:
        row = svc._row(mode.owner)
        owner_cfg = json.loads(row["config"]) if row is not None else {}
        host = svc.runtime.etc_text(mode.owner, "hostname").strip() or None
        return UtsNames(host, owner_cfg.get("domainname"))
    hostname = cfg.get("hostname")
    if hostname is None and mode.kind == HOST_MODE:
        try:
            hostname = validate_hostname(socket.gethostname())
        except InvalidArgument:
            hostname = short_hostname(name)
    return UtsNames(hostname, cfg.get("domainname"), host_network=mode.kind == HOST_MODE)


def etc_files(
    svc: ContainerService,
    name: str,
    cfg: dict[str, Any],
    atts: list[dict[str, Any]],
    mode: NamespaceMode,
) -> tuple[str, str]:
    """/etc/hosts and /etc/resolv.conf for each mode (etcfiles.py writes the text)."""
    dns = cfg["dns"]
    extra = cfg.get("extraHosts") or []
    if mode.kind == "container" and mode.owner:
        return svc.runtime.etc_text(mode.owner, "hosts"), svc.runtime.etc_text(
            mode.owner, "resolv.conf"
        )
    if mode.kind == HOST_MODE:
        hosts = host_network_hosts_file(extra, HOST_HOSTS)
        if dns.get("nameservers") or dns.get("disabled"):
            return hosts, resolv_conf(dns, [])
        try:
            return hosts, HOST_RESOLV_CONF.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return hosts, ""
    servers = None
    gateway6 = None
    host_address = None
    if atts:
        primary = svc.networks.get(cfg["networks"][0]["network"]).configuration
        gateway6 = str(primary.ipv6_gateway) if primary.ipv6_gateway else None
        host_address = svc.networks.dns_address(primary.name)  # the host, for its names
        embedded = None
        if primary.options.get("dns") != "false":  # where its plugin says it serves it
            embedded = svc.networks.dns_address(primary.name)
        if embedded is not None:
            servers = [embedded]
        else:  # no embedded DNS: the network's upstreams, else the host's
            servers = option_list(primary.options, "dns-server") or host_nameservers(
                svc.config.dns_upstreams, HOST_RESOLV_CONF
            )
    hosts = hosts_file(
        name,
        atts,
        cfg.get("hostname"),
        cfg.get("domainname"),
        extra,
        gateway6=gateway6,
        host_address=host_address,
    )
    return hosts, resolv_conf(dns, atts, servers)


def inspect_fields(svc: ContainerService, cfg: dict[str, Any]) -> dict[str, Any]:
    """What inspect says of the mode: `networkMode` (`private`, `host`, `container:NAME`)
    and, when shared, `networkNamespaceOf` {id, name}."""
    mode = mode_of(cfg)
    out: dict[str, Any] = {"networkMode": mode.kind}
    if mode.kind == "container":
        out["networkMode"] = f"container:{_name(svc, mode.owner)}"
        out["networkNamespaceOf"] = {"id": mode.owner, "name": _name(svc, mode.owner)}
    if cfg.get("domainname"):
        out["domainname"] = cfg["domainname"]
    out["extraHosts"] = [f"{h}:{ip}" for h, ip in cfg.get("extraHosts") or []]
    return out
