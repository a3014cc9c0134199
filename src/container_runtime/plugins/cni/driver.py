"""The cni plugin's driver: each network is a CNI configuration list (conflist.py) run
by the CNI plugin binaries (invoke.py); the CNI IPAM plugin picks the addresses, so this
driver allocates itself (Driver.allocates) and the SDK host keeps its records.

ADD's result becomes the attachment (address, gateway and MAC of the sandbox's
interface) and is committed as the record's data, which DEL (on release, and for every
record left unfinished by a crashed helper), CHECK (`container network check`) and the
portmap plugin (`-p`) are handed as prevResult. GC at start (CNI 1.1 lists) frees what
no valid attachment holds.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
from pathlib import Path
from typing import Any, ClassVar

from ...config import load_config
from ...errors import ContainerError, InvalidArgument
from ...models import (
    RUNTIME_OPTIONS,
    Attachment,
    AttachmentRequest,
    NetworkConfiguration,
    hostname_for,
    network_mtu,
)
from ...plugin.driver import Driver, DriverRecord
from ...plugin.host import PluginHost
from . import conflist as lists
from .invoke import Attachment as CniAttachment
from .invoke import CniError, Invoker, kill_stragglers, version_tuple

PLUGIN = "cni"
log = logging.getLogger("container-network-cni")


class CniDriver(Driver):
    name: ClassVar[str] = PLUGIN
    version: ClassVar[str] = "0.1.0"
    strategies: ClassVar[tuple[str, ...]] = ("veth",)  # the CNI plugin's interface in the sandbox
    allocates: ClassVar[bool] = True
    # as in cni.toml, plus the runtime's own
    options: ClassVar[dict[str, tuple[str, ...] | str]] = {
        "config": "path",
        "type": "string",
        "cni-path": "string",
        "portmap": ("off", "on"),
        "*": "string",
        **RUNTIME_OPTIONS,
    }

    def bind(self, host: PluginHost) -> None:
        super().bind(host)
        self.state_dir = host.paths.root / "cni"
        try:
            self.default_path = list(load_config(host.paths.config_file).cni_path)
        except ContainerError:
            self.default_path = ["/usr/lib/cni"]
        env_path = os.environ.get("CONTAINER_CNI_PATH")
        if env_path:
            self.default_path = [p for p in env_path.split(":") if p]
        self.lists: dict[str, dict[str, Any]] = {}

    # -- a network's list -----------------------------------------------------------------

    def invoker(self, config: NetworkConfiguration) -> Invoker:
        given = config.options.get("cni-path")
        if given is None:
            return Invoker(self.default_path)
        path = [p for p in given.split(":") if p]
        if not path or not all(p.startswith("/") for p in path):
            raise InvalidArgument("option cni-path: expected absolute directories joined by ':'")
        return Invoker(path)

    def list_file(self, network: str) -> Path:
        return self.state_dir / "networks" / f"{network}.conflist"

    def conflist(self, config: NetworkConfiguration) -> dict[str, Any]:
        """The network's list: as kept at creation (else made afresh)."""
        cached = self.lists.get(config.name)
        if cached is not None:
            return cached
        try:
            kept: dict[str, Any] = json.loads(self.list_file(config.name).read_text())
        except (OSError, ValueError):
            kept = lists.build(config, self.state_dir / "ipam")
        self.lists[config.name] = kept
        return kept

    def validate(self, config: NetworkConfiguration) -> None:
        super().validate(config)
        if self.list_file(config.name).exists():
            conflist = self.conflist(config)  # made at creation: the user's file may be gone
        else:
            conflist = lists.build(config, self.state_dir / "ipam")
        lists.check(conflist, config, self.invoker(config))

    def create_network(self, config: NetworkConfiguration) -> None:
        path = self.list_file(config.name)
        if not path.exists():
            lists.save(lists.build(config, self.state_dir / "ipam"), path)
        self.lists.pop(config.name, None)
        log.info(f"container-network-cni: network {config.name} ready")
        return None

    def delete_network(self, name: str) -> None:
        path = self.list_file(name)
        try:
            kept = json.loads(path.read_text())
        except (OSError, ValueError):
            kept = {}
        for plugin in kept.get("plugins") or []:
            if isinstance(plugin, dict) and isinstance(plugin.get("bridge"), str):
                remove_idle_bridge(plugin["bridge"])  # the CNI bridge plugin never does
        self.lists.pop(name, None)
        path.unlink(missing_ok=True)
        log.info(f"container-network-cni: network {name} removed")

    # -- attachments ----------------------------------------------------------------------

    @staticmethod
    def runtime(data: dict[str, Any] | None) -> dict[str, Any]:
        return dict((data or {}).get("runtimeConfig") or {})

    def allocate(
        self, request: AttachmentRequest, config: NetworkConfiguration
    ) -> tuple[Attachment, dict[str, Any]]:
        conflist = self.conflist(config)
        runtime: dict[str, Any] = {}
        if request.mac is not None:
            if "mac" not in lists.capabilities(conflist):
                raise InvalidArgument(
                    f"network {config.name}: its CNI plugins cannot set a MAC address"
                    ' (none declares the "mac" capability)'
                )
            runtime["mac"] = request.mac
        if request.mtu is not None and request.mtu != network_mtu(config):
            # (the network's own mtu= option is mapped into its CNI configuration)
            raise InvalidArgument(
                f"network {config.name}: the MTU of a cni network is its CNI configuration's"
            )
        att = CniAttachment(request.owner, str(request.netns), request.interface)
        invoker = self.invoker(config)
        # On failure the host calls deallocate (DEL without a result), which frees what a
        # plugin of the list did before another one failed.
        result = invoker.add(conflist, att, runtime)
        return self.attachment(request, config, result), {
            "result": result,
            "runtimeConfig": runtime,
        }

    def attachment(
        self, request: AttachmentRequest, config: NetworkConfiguration, result: dict[str, Any]
    ) -> Attachment:
        """The attachment an ADD result describes (the sandbox interface's address, its
        gateway, its MAC); refused if the result has no IPv4 address."""
        interfaces = result.get("interfaces") or []
        v4: dict[str, Any] | None = None
        v6: ipaddress.IPv6Interface | None = None
        for ip in result.get("ips") or []:
            try:
                address = ipaddress.ip_interface(str(ip.get("address")))
            except ValueError:
                continue
            if isinstance(address, ipaddress.IPv4Interface) and v4 is None:
                v4 = ip
            elif isinstance(address, ipaddress.IPv6Interface) and v6 is None:
                v6 = address
        if v4 is None:
            raise CniError(f"network {config.name}: the CNI result has no IPv4 address")
        mac = ""
        index = v4.get("interface")
        if isinstance(index, int) and 0 <= index < len(interfaces):
            mac = str(interfaces[index].get("mac") or "")
        if not mac:
            sandboxed = [i for i in interfaces if i.get("sandbox")]
            mac = str((sandboxed or [{}])[0].get("mac") or "")
        gateway = v4.get("gateway")
        return Attachment(
            network=config.name,
            owner=request.owner,
            hostname=hostname_for(request.hostname, self.host.allocator.domain),
            address=ipaddress.IPv4Interface(v4["address"]),
            gateway=ipaddress.IPv4Address(gateway) if gateway else config.ipv4_gateway,
            mac_address=mac.lower() or "00:00:00:00:00:00",
            mtu=int(
                self.conflist(config)["plugins"][0].get("mtu") or self.host.allocator.default_mtu
            ),
            interface=request.interface,
            ipv6_address=v6,
            netns=request.netns,
            strategy=request.strategy,
        )

    def deallocate(self, record: DriverRecord) -> None:
        config = self.host.network_config(record.network)
        data = record.data or {}
        if record.data is None and kill_stragglers(record.owner, record.interface):
            log.info(f"container-network-cni: ended the unfinished ADD of {record.owner[:12]}")
        att = CniAttachment(record.owner, record.netns or "", record.interface)
        self.invoker(config).delete(
            self.conflist(config), att, data.get("result"), self.runtime(data)
        )

    # -- published ports (the list's portmap plugin) --------------------------------------

    def publish(self, owner: str, forwards: list[dict[str, Any]]) -> None:
        from . import ports

        ports.publish(self, owner, forwards)

    def unpublish(self, owner: str) -> None:
        from . import ports

        ports.unpublish(self, owner)

    # -- verification and life cycle ------------------------------------------------------

    def check(self, config: NetworkConfiguration, attachments: list[Attachment]) -> list[str]:
        """CNI CHECK of every attachment, one line per attachment that fails it."""
        problems: list[str] = []
        conflist = self.conflist(config)
        invoker = self.invoker(config)
        for record in self.host.records.list(config.name):
            data = record.data or {}
            if record.state != "ready" or "result" not in data:
                problems.append(f"{record.owner[:12]}: attachment is {record.state}")
                continue
            att = CniAttachment(record.owner, record.netns or "", record.interface)
            try:
                invoker.check(conflist, att, data["result"], self.runtime(data))
            except CniError as exc:
                problems.append(f"{record.owner[:12]} {record.interface}: {exc.message}")
        return problems

    def reconcile(self) -> None:
        """Release attachments whose sandbox is gone (DEL), then GC where the list's
        version has it (CNI 1.1), with the attachments still valid. A failure is logged,
        never fatal: the helper must start to serve the networks that work."""
        for record in self.host.records.list():
            if record.state == "ready" and record.netns and not os.path.exists(record.netns):
                log.info(
                    f"container-network-cni: {record.owner[:12]} on {record.network}: its"
                    " sandbox is gone; releasing"
                )
                self.host.drop_quietly(record)
        for config in self.host.all_networks():
            valid = [
                {"containerID": r.owner, "ifname": r.interface}
                for r in self.host.records.list(config.name)
                if r.state == "ready"
            ]
            try:  # a network whose creation was refused (or never finished) has no list
                conflist = self.conflist(config)
                if version_tuple(str(conflist.get("cniVersion"))) >= (1, 1, 0):
                    self.invoker(config).gc(conflist, valid)
                # older lists have no GC: the DELs above and the host's are theirs
            except ContainerError as exc:
                log.warning(f"container-network-cni: network {config.name}: {exc.message}")


def remove_idle_bridge(name: str) -> None:
    """Delete the bridge a CNI bridge plugin made for a network, unless something is still
    enslaved to it (then it is someone else's too)."""
    from pyroute2 import IPRoute  # kernel library: helper only

    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=name)
        if not found or ipr.get_links(master=found[0]):
            return
        if (
            ipr.get_links(found[0])[0].get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_KIND")
            != "bridge"
        ):
            return
        ipr.link("del", index=found[0])
        log.info(f"container-network-cni: removed bridge {name}")
