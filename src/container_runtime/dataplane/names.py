"""Kernel object names and ownership marks (IFLA_IFALIAS) of the links the data plane owns.

Names are hashes of validated inputs, so no user text ever reaches a kernel name or an
nft rule; the alias says whose link it is, so reconciliation can find orphans.
"""

from __future__ import annotations

import hashlib

ALIAS_PREFIX = "container-runtime:"
BRIDGE_PREFIX = "ctr-"
VETH_PREFIX = "cv"
TAP_PREFIX = "ct"
IFNAMSIZ = 15


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def bridge_name(network: str) -> str:
    """`ctr-` + 10 hex digits of the network name's hash: 14 chars, stable, collision-safe."""
    return BRIDGE_PREFIX + _digest("net", network)[:10]


def bridge_alias(network: str) -> str:
    return f"{ALIAS_PREFIX}net:{network}"


def bridge_mac(network: str) -> str:
    """A fixed, locally administered unicast MAC for the bridge (the gateway's MAC).

    Left alone, a bridge takes the lowest port MAC, which changes as members come and go
    and leaves stale gateway entries in members' ARP caches.
    """
    raw = bytes.fromhex(_digest("mac", network)[:12])
    first = (raw[0] & 0xFC) | 0x02
    return ":".join(f"{b:02x}" for b in (first, *raw[1:]))


def host_ifname(strategy: str, network: str, owner: str, interface: str) -> str:
    """Host-side name of an attachment: `cv`/`ct` + 12 hex digits (14 chars)."""
    prefix = TAP_PREFIX if strategy == "tap" else VETH_PREFIX
    return prefix + _digest(strategy, network, owner, interface)[:12]


def attachment_alias(strategy: str, network: str, owner: str, interface: str) -> str:
    return f"{ALIAS_PREFIX}{strategy}:{network}:{owner}:{interface}"


def is_ours(alias: str | None) -> bool:
    return bool(alias) and str(alias).startswith(ALIAS_PREFIX)


def looks_like_attachment(ifname: str) -> bool:
    return (
        len(ifname) == 14
        and ifname[:2] in (VETH_PREFIX, TAP_PREFIX)
        and all(c in "0123456789abcdef" for c in ifname[2:])
    )
