"""The plugins the conformance suite runs against: one module per plugin in this package,
each defining `SUBJECT = Subject(...)` (see ../README.md).  `discover()` finds them all."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support.instance import Instance

from container_runtime.dataplane import names


def gateway(attachment: dict[str, Any]) -> str:
    """The DNS server a member asks: the network's gateway (the default)."""
    return str(attachment["gateway"])


def named_kernel_objects(inst: Instance, plugin: str) -> dict[str, Any]:
    """What a plugin owns in the kernel by the naming rules of dataplane/names.py: links
    marked `container-runtime:PLUGIN:` (name -> mark) and its nft tables' rulesets."""
    links = {
        link["ifname"]: link.get("ifalias", "")
        for link in inst.sh("ip", "-j", "-d", "link").json()
        if names.is_ours(link.get("ifalias"), plugin)
    }
    tables = {}
    table = names.table_name(plugin)
    for family in ("inet", "bridge", "ip", "ip6"):
        out = inst.sh("nft", "list", "table", family, table, check=False)
        if out.returncode == 0:
            tables[f"{family} {table}"] = out.stdout
    return {"links": links, "tables": tables}


@dataclass(frozen=True)
class Subject:
    """How to make a network of one plugin in a test system, and what it can do."""

    plugin: str  # as `--plugin` names it
    subnet: str  # IPv4 subnet of its test network; unique among the subjects
    create_args: tuple[str, ...] = ()  # more `network create` arguments (`--option k=v`)
    strategies: tuple[str, ...] = ()  # interface strategies, as its GET /status says
    # The strategy the runtime asks for a container's interface on it ("veth" for the
    # bridge), tested with real containers; None: allocation only (bare attach/detach).
    container_strategy: str | None = None
    ports: bool = False  # publishes ports (`run -p`)
    plugin_path: Path | None = None  # directory for CONTAINER_PLUGIN_PATH (out of tree)
    # Called once in the started system before its network is created (e.g. make a parent
    # interface in inst.netns); it must build only inside the instance's namespace.
    setup: Callable[[Instance], None] | None = None
    dns_server: Callable[[dict[str, Any]], str] = gateway  # where a member's names resolve
    # A snapshot of every kernel object the plugin owns (compared before/after).
    kernel: Callable[[Instance, str], dict[str, Any]] = named_kernel_objects

    @property
    def network(self) -> str:
        return f"n-{self.plugin}"

    @property
    def containers(self) -> bool:
        return self.container_strategy is not None

    def kernel_objects(self, inst: Instance) -> dict[str, Any]:
        return self.kernel(inst, self.plugin)


def discover() -> list[Subject]:
    found = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        subject = getattr(module, "SUBJECT", None)
        if not isinstance(subject, Subject):
            raise TypeError(f"{module.__name__} defines no SUBJECT = Subject(...)")
        if subject.plugin != info.name:
            raise ValueError(f"{module.__name__}: SUBJECT.plugin must be {info.name!r}")
        found.append(subject)
    subnets = [s.subnet for s in found]
    if len(set(subnets)) != len(subnets):
        raise ValueError(f"conformance subjects share a subnet: {subnets}")
    return found
