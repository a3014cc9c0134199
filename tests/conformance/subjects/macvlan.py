"""The built-in macvlan plugin: real containers, each a macvlan on a parent interface (a
veth made in the instance's namespace stands in for the LAN), names served on the host
shim's address; its kernel objects are the shim, the members' links inside their
sandboxes and the host's /32 routes to them."""

from __future__ import annotations

import ipaddress
from typing import Any

from support.instance import Instance, run

from container_runtime.dataplane import names

from . import Subject, named_kernel_objects

PARENT = "mvparent0"


def make_parent(inst: Instance) -> None:
    inst.sh("ip", "link", "add", PARENT, "type", "veth", "peer", "name", "mvparent1")
    inst.sh("ip", "link", "set", PARENT, "up")
    inst.sh("ip", "link", "set", "mvparent1", "up")


def shim(attachment: dict[str, Any]) -> str:
    """The shim's address: the subnet's highest host (no ip-range, no aux here)."""
    network = ipaddress.ip_interface(attachment["address"]).network
    return str(network.broadcast_address - 1)


def kernel(inst: Instance, plugin: str) -> dict[str, Any]:
    """The named links and tables of the host's namespace (the shim), plus every link of
    ours inside the sandboxes and the host routes the plugin made (protocol 99)."""
    members = {}
    for sandbox in sorted((inst.run_dir / "netns").glob("*")):
        out = run(["nsenter", f"--net={sandbox}", "ip", "-j", "-d", "link"], check=False)
        if out.returncode != 0:
            continue  # being removed
        for link in out.json():
            if names.is_ours(link.get("ifalias"), plugin):
                members[f"{sandbox.name}/{link['ifname']}"] = link["ifalias"]
    routes = sorted(r["dst"] for r in inst.sh("ip", "-j", "route", "show", "proto", "99").json())
    return {**named_kernel_objects(inst, plugin), "members": members, "routes": routes}


SUBJECT = Subject(
    plugin="macvlan",
    subnet="10.78.0.0/24",
    create_args=("--option", f"parent={PARENT}"),
    strategies=("macvlan",),
    container_strategy="macvlan",
    setup=make_parent,
    dns_server=shim,
    kernel=kernel,
)
