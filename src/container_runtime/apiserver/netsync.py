"""Keeping each plugin's own record of networks equal to the API server's.

A plugin keeps the network configurations it was sent (`POST /networks`) in its private
state (plugin/store.py); the API server's `networks` table is the truth.  Whenever a
helper starts or restarts, before callers use it, the API server compares the networks
its `GET /status` names with its own networks of that plugin: it sends the ones the
helper lacks (a create it never saw, or state it lost) and deletes the ones the helper
should not have (a delete it never saw), releasing their attachments first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..errors import ContainerError
from ..models import NetworkConfiguration
from ..plugin.protocol import StatusReply

log = logging.getLogger("container-apiserver")

Ask = Callable[..., Any]  # (method, path, body=None) -> the helper's reply


def sync_networks(
    plugin: str,
    wanted: dict[str, NetworkConfiguration],
    ask: Ask,
    send: Callable[[NetworkConfiguration], None],
) -> None:
    """Make the helper hold exactly `wanted`: `send` (POST /networks and record the
    reply) each one it lacks, delete each one it should not have."""
    held = set(StatusReply.from_json(ask("GET", "/status")).networks)
    helper = f"container-network-{plugin}"
    for name in sorted(set(wanted) - held):
        try:
            send(wanted[name])
            log.info(f"container-apiserver: sent network {name} to {helper}")
        except ContainerError as exc:  # the others are still sent; it stays `created`
            log.warning(f"container-apiserver: {helper} refused network {name}: {exc.message}")
    for name in sorted(held - set(wanted)):
        try:
            for attachment in ask("GET", f"/networks/{name}/attachments"):
                ask("DELETE", f"/networks/{name}/attachments/{attachment['owner']}")
            ask("DELETE", f"/networks/{name}")
            log.info(f"container-apiserver: deleted network {name} from {helper}")
        except ContainerError as exc:
            log.warning(f"container-apiserver: deleting network {name} from {helper}: {exc}")
