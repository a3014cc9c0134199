"""The API server's side of VM containers (isolation "vm", docs/VM.md): what a create
refuses, how a start hands the plugin's TAP attachments and the /etc files to the VM
runtime (runtime/vm/machine.py), and what inspect shows of a VM.

The rest of a VM container's life cycle is the namespace container's (containers.py):
the same attachments (strategy "tap" instead of "veth", no sandbox), published ports,
DNS names, watcher, stop/kill/rm and recovery, through VmRuntime's runc-like interface.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import InvalidArgument
from ..models import NetworkConfiguration
from ..runtime.images import ImageInfo
from ..runtime.oci import ProcessSpec
from ..runtime.vm import guest
from ..runtime.vm.machine import (
    DEFAULT_CPUS,
    DEFAULT_MEMORY_MB,
    VmRuntime,
    attachment_nic,
    probe_accelerator,
)
from .etcfiles import short_hostname


def check_create(cfg: dict[str, Any]) -> None:
    """Refuse at create what a VM container cannot do (so nothing is made)."""
    if cfg.get("isolation") != "vm":
        return
    for key, flag in (("volumes", "-v/--volume"), ("tty", "-t/--tty"), ("interactive", "-i")):
        if cfg.get(key):
            raise InvalidArgument(f"{flag} is not supported with --vm")
    guest.check_guest()


def check_network(
    cfg: dict[str, Any], config: NetworkConfiguration, strategies: Sequence[str]
) -> None:
    """Refuse, before anything is held, a VM container on a network whose plugin cannot
    give it a TAP (macvlan and cni build interfaces in a namespace only)."""
    if cfg.get("isolation") == "vm" and "tap" not in strategies:
        has = ", ".join(strategies) or "none"
        raise InvalidArgument(
            f"network {config.name} (plugin {config.plugin}) cannot attach VM containers:"
            f" the plugin lacks the tap interface strategy (it has: {has})"
        )


def process_of(image: ImageInfo, cfg: dict[str, Any]) -> ProcessSpec:
    return ProcessSpec.from_image(
        image,
        command=cfg.get("cmd"),
        entrypoint=cfg.get("entrypoint"),
        env=cfg.get("env"),
        cwd=cfg.get("workdir"),
    )


def start_vm(
    vms: VmRuntime,
    cid: str,
    image: ImageInfo,
    name: str,
    cfg: dict[str, Any],
    atts: list[dict[str, Any]],
    hosts: str,
    resolv: str,
) -> int:
    """Boot the container's VM on its TAP attachments; returns QEMU's pid."""
    nics = [attachment_nic(reply) for reply in atts]
    vms.prepare(cid, image)
    return vms.start(
        cid,
        process_of(image, cfg),
        cfg.get("hostname") or short_hostname(name),  # --hostname, as a namespace's UTS
        nics,
        {"hosts": hosts, "resolv.conf": resolv},
        cpus=int(cfg.get("cpus") or DEFAULT_CPUS),
        memory_mb=int(cfg.get("memoryMB") or DEFAULT_MEMORY_MB),
        accel=probe_accelerator(),
        domainname=cfg.get("domainname"),
    )


def inspect_fields(vms: VmRuntime, cid: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """In inspect: the accelerator QEMU runs on (kvm, tcg); CPUs, memory, boot parts."""
    if cfg.get("isolation") != "vm":
        return {}
    return {
        "accelerator": vms.accelerator(cid),
        "vm": {
            "cpus": int(cfg.get("cpus") or DEFAULT_CPUS),
            "memoryMB": int(cfg.get("memoryMB") or DEFAULT_MEMORY_MB),
            "bootMs": vms.boot_times(cid),
        },
    }
