"""`container network check` for bridge networks: the kernel compared with the state.

Read only: the network's bridge (up, with its gateway address), each attachment's host
port (exists, enslaved to the bridge, its MTU), its interface in the sandbox (exists, up,
the attachment's MAC, MTU and address) and our nft tables. One line per difference.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from pyroute2 import IPRoute

from ...dataplane import links, names, nsutil
from ...errors import InvalidArgument
from ...models import Attachment, NetworkConfiguration

if TYPE_CHECKING:
    from .dataplane import LinuxDataPlane


def _attr(msg: Any, name: str) -> Any:
    return msg.get_attr(name) if msg is not None else None


def _addresses(ipr: IPRoute, index: int) -> set[str]:
    return {f"{_attr(a, 'IFA_ADDRESS')}/{a['prefixlen']}" for a in ipr.get_addr(index=index)}


def check_network(
    dataplane: LinuxDataPlane,
    config: NetworkConfiguration,
    attachments: list[Attachment],
    host_ifnames: dict[str, str | None],
) -> list[str]:
    """Problems of one bridge network; `host_ifnames`: owner -> its host port's name."""
    problems: list[str] = []
    ipr = dataplane._ipr
    bridge_name = dataplane.bridge_name(config.name)
    bridge = links.get_link(ipr, bridge_name)
    if bridge is None:
        problems.append(f"bridge {bridge_name} is missing")
    else:
        if not int(bridge["flags"]) & 1:
            problems.append(f"bridge {bridge_name} is down")
        gateway = f"{config.ipv4_gateway}/{config.ipv4_subnet.prefixlen}"
        if gateway not in _addresses(ipr, int(bridge["index"])):
            problems.append(f"bridge {bridge_name} lacks its gateway address {gateway}")
    if not dataplane.firewall_intact():
        table = names.table_name(dataplane.plugin)
        problems.append(f"nft tables {table} are missing or were changed by someone else")
    for att in attachments:
        if not att.strategy:
            continue  # allocation only: nothing in the kernel
        who = f"{att.owner[:12]} {att.interface}"
        host = host_ifnames.get(att.owner)
        port = links.get_link(ipr, host) if host else None
        if port is None:
            problems.append(f"{who}: host interface {host or '(none)'} is missing")
        else:
            if bridge is not None and _attr(port, "IFLA_MASTER") != bridge["index"]:
                problems.append(f"{who}: host interface {host} is not on bridge {bridge_name}")
            if _attr(port, "IFLA_MTU") != att.mtu:
                problems.append(
                    f"{who}: host interface {host} has MTU {_attr(port, 'IFLA_MTU')},"
                    f" expected {att.mtu}"
                )
        if att.strategy == "veth" and att.netns:
            problems += _check_inside(dataplane, att, who)
    return problems


def _check_inside(dataplane: LinuxDataPlane, att: Attachment, who: str) -> list[str]:
    try:
        fd = nsutil.open_netns(str(att.netns), dataplane.netns_dir)
    except InvalidArgument:
        return [f"{who}: its network namespace {att.netns} is gone"]
    try:
        with nsutil.entered(fd, dataplane._home_fd):
            ipr = IPRoute()
    finally:
        os.close(fd)
    problems: list[str] = []
    try:
        link = links.get_link(ipr, att.interface)
        if link is None:
            return [f"{who}: interface {att.interface} is missing in {att.netns}"]
        if not int(link["flags"]) & 1:
            problems.append(f"{who}: interface {att.interface} is down")
        mac = str(_attr(link, "IFLA_ADDRESS") or "")
        if mac.lower() != att.mac_address:
            problems.append(f"{who}: MAC is {mac}, expected {att.mac_address}")
        mtu = _attr(link, "IFLA_MTU")
        if mtu != att.mtu:
            problems.append(f"{who}: MTU is {mtu}, expected {att.mtu}")
        have = _addresses(ipr, int(link["index"]))
        for address in (att.address, att.ipv6_address):
            if address is not None and str(address) not in have:
                problems.append(f"{who}: address {address} is missing")
    finally:
        ipr.close()
    return problems
