"""Kernel object names and ownership marks (IFLA_IFALIAS) of the links the data plane owns.

Names are hashes of validated inputs, so no user text ever reaches a kernel name or an
nft rule; the alias says whose link it is, so reconciliation can find orphans.

Every kernel object carries the plugin that owns it: links are marked
`container-runtime:PLUGIN:...` and the nft tables are `inet container-PLUGIN` and
`bridge container-PLUGIN`, so two plugins built on this data plane each reconcile only
their own. Releases before 11.3 used `container-runtime:net:...` / `container-runtime:veth:...`
marks and tables named `container`: those are the bridge plugin's (LEGACY_*), adopted or
removed by it at start.
"""

from __future__ import annotations

import hashlib
import re

ROOT_PREFIX = "container-runtime:"
PLUGIN = "bridge"  # the plugin this package serves unless told otherwise
PLUGIN_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")  # as manifests allow, bounded
LEGACY_TABLE = "container"
LEGACY_KINDS = ("net", "veth", "tap")  # second field of a pre-11.3 alias
BRIDGE_PREFIX = "ctr-"
VETH_PREFIX = "cv"
TAP_PREFIX = "ct"
SHIM_PREFIX = "cm"
IFNAMSIZ = 15


def check_plugin(plugin: str) -> str:
    """A plugin name fit for kernel names (short, no separators, not an old alias kind)."""
    if not PLUGIN_RE.match(plugin) or plugin in LEGACY_KINDS:
        raise ValueError(f"unusable plugin name {plugin!r} for kernel object names")
    return plugin


def alias_prefix(plugin: str = PLUGIN) -> str:
    return f"{ROOT_PREFIX}{check_plugin(plugin)}:"


def table_name(plugin: str = PLUGIN) -> str:
    """Name of the plugin's nft tables (one per family: inet and bridge)."""
    return f"container-{check_plugin(plugin)}"


ALIAS_PREFIX = alias_prefix()
TABLE = table_name()


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def bridge_name(network: str) -> str:
    """`ctr-` + 10 hex digits of the network name's hash: 14 chars, stable, collision-safe."""
    return BRIDGE_PREFIX + _digest("net", network)[:10]


def bridge_alias(network: str, plugin: str = PLUGIN) -> str:
    return f"{alias_prefix(plugin)}net:{network}"


def bridge_mac(network: str) -> str:
    """A fixed, locally administered unicast MAC for the bridge (the gateway's MAC).

    Left alone, a bridge takes the lowest port MAC, which changes as members come and go
    and leaves stale gateway entries in members' ARP caches.
    """
    raw = bytes.fromhex(_digest("mac", network)[:12])
    first = (raw[0] & 0xFC) | 0x02
    return ":".join(f"{b:02x}" for b in (first, *raw[1:]))


def shim_name(network: str) -> str:
    """A plugin's host-side link of a network (the macvlan shim): `cm` + 12 hex digits."""
    return SHIM_PREFIX + _digest("shim", network)[:12]


def shim_alias(network: str, plugin: str = PLUGIN) -> str:
    return f"{alias_prefix(plugin)}shim:{network}"


def host_ifname(strategy: str, network: str, owner: str, interface: str) -> str:
    """Host-side name of an attachment: `cv`/`ct` + 12 hex digits (14 chars)."""
    prefix = TAP_PREFIX if strategy == "tap" else VETH_PREFIX
    return prefix + _digest(strategy, network, owner, interface)[:12]


def attachment_alias(
    strategy: str, network: str, owner: str, interface: str, plugin: str = PLUGIN
) -> str:
    return f"{alias_prefix(plugin)}{strategy}:{network}:{owner}:{interface}"


def is_ours(alias: str | None, plugin: str = PLUGIN) -> bool:
    return bool(alias) and str(alias).startswith(alias_prefix(plugin))


def is_legacy(alias: str | None) -> bool:
    """A pre-11.3 mark (`container-runtime:net:...`, `...:veth:...`, `...:tap:...`)."""
    text = str(alias or "")
    if not text.startswith(ROOT_PREFIX):
        return False
    return text[len(ROOT_PREFIX) :].split(":", 1)[0] in LEGACY_KINDS


def from_legacy(alias: str, plugin: str = PLUGIN) -> str:
    """The current mark of a link that carries a pre-11.3 one."""
    return alias_prefix(plugin) + alias[len(ROOT_PREFIX) :]


def looks_like_attachment(ifname: str) -> bool:
    return (
        len(ifname) == 14
        and ifname[:2] in (VETH_PREFIX, TAP_PREFIX)
        and all(c in "0123456789abcdef" for c in ifname[2:])
    )
