"""The built-in cni plugin, as `--option type=bridge --option portmap=on`: the reference
CNI bridge + host-local + portmap plugins, real containers through their veth, published
ports through portmap, names served on the CNI bridge's gateway. What it holds per
attachment is named by CNI, not by dataplane/names.py: the veth ports on the network's
bridge `cni-<hash>` and the per-container iptables chains (`CNI-<hash>`, `CNI-DN-<hash>`)
with the rules that use them, in the instance's namespace. The bridge itself and the
shared chains (CNI-HOSTPORT-*) appear at the first ADD and stay with the network."""

import re
from typing import Any

from support.instance import Instance

from container_runtime.plugins.cni.conflist import link_name

from . import Subject

PER_CONTAINER = re.compile(r"CNI-(DN-)?[0-9a-f]{16,}")


def cni_kernel_objects(inst: Instance, plugin: str) -> dict[str, Any]:
    bridge = link_name(f"n-{plugin}")
    ports = sorted(
        link["ifname"]
        for link in inst.sh("ip", "-j", "link").json()
        if link.get("master") == bridge
    )
    rules = []
    for table in ("nat", "filter"):
        for line in inst.sh("iptables-save", "-t", table).stdout.splitlines():
            if PER_CONTAINER.search(line):
                rules.append(line.split()[0] if line.startswith(":") else line)
    return {"ports": ports, "rules": sorted(rules)}


SUBJECT = Subject(
    plugin="cni",
    subnet="10.83.0.0/24",
    create_args=("--option", "type=bridge", "--option", "portmap=on"),
    strategies=("veth",),
    container_strategy="veth",
    ports=True,
    kernel=cni_kernel_objects,
)
