"""Kernel object names per plugin (issue 11.3): the bridge helper's reconciliation touches
only its own links and tables, leaves a second plugin's alone, and upgrades the pre-11.3
names (`container-runtime:net:...` marks, tables named `container`) it once wrote."""

from __future__ import annotations

import os
import signal
import sys
import time

from support.instance import Instance, attachments

# A second plugin built on dataplane/: its network's bridge, one attachment and its tables,
# made by LinuxDataPlane itself inside the instance's namespace.
OTHER = """
import ipaddress, sys
from pathlib import Path
from container_runtime.plugins.bridge.dataplane import LinuxDataPlane
from container_runtime.models import Attachment, NetworkConfiguration
subnet = ipaddress.IPv4Network("10.77.0.0/24")
cfg = NetworkConfiguration(name="n-other", ipv4_subnet=subnet,
                           ipv4_gateway=subnet.network_address + 1)
dp = LinuxDataPlane(Path(sys.argv[1]), plugin="other")
bridge = dp.setup_network(cfg)
att = Attachment(network="n-other", owner="o1", hostname="o1", interface="eth0",
                 address=ipaddress.IPv4Interface("10.77.0.2/24"),
                 gateway=subnet.network_address + 1, mac_address="02:00:00:00:77:02", mtu=1500)
print(bridge, dp.attach(att, bridge, None, strategy="tap"))
dp.sync_firewall([(cfg, bridge)], [])
dp.close()
"""


def aliases(inst: Instance) -> dict[str, str]:
    out = inst.sh("ip", "-j", "-d", "link").json()
    return {link["ifname"]: link.get("ifalias", "") for link in out}


def restart_bridge_helper(inst: Instance) -> None:
    pid = inst.pid("network-bridge")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    inst.wait_pid_change("network-bridge", pid)
    deadline = time.monotonic() + 20
    while True:  # wait until the restarted helper has reconciled and answers
        try:
            attachments(inst, "n-ours")
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_reconcile_spares_another_plugins_objects_and_upgrades_old_names(
    instance: Instance,
) -> None:
    inst = instance
    inst.cli("network", "create", "n-ours", "--subnet", "10.66.0.0/24")
    ours = inst.cli("network", "attach", "n-ours", "--name", "keep").json()
    tables = inst.nft_tables()
    assert "table inet container-bridge" in tables and "table bridge container-bridge" in tables
    ours_links = {n: a for n, a in aliases(inst).items() if a.startswith("container-runtime:")}
    assert ours_links
    assert all(a.startswith("container-runtime:bridge:") for a in ours_links.values())

    other_bridge, other_tap = inst.sh(
        sys.executable, "-c", OTHER, str(inst.base / "other-netns")
    ).stdout.split()
    assert aliases(inst)[other_bridge] == "container-runtime:other:net:n-other"

    # What a pre-11.3 bridge helper left: old marks on our live links, an orphan bridge
    # with an old mark, and the old tables.
    for ifname, alias in ours_links.items():
        old = alias.replace("container-runtime:bridge:", "container-runtime:", 1)
        inst.sh("ip", "link", "set", "dev", ifname, "alias", old)
    inst.sh("ip", "link", "add", "ctr-00000old00", "type", "bridge")
    inst.sh("ip", "link", "set", "dev", "ctr-00000old00", "alias", "container-runtime:net:gone")
    for family in ("inet", "bridge"):
        inst.sh("nft", "add", "table", family, "container")
        inst.sh("nft", "add", "set", family, "container", "bridges", "{ type ifname; }")
    other_before = inst.sh("nft", "list", "table", "inet", "container-other").stdout

    restart_bridge_helper(inst)

    now = aliases(inst)
    assert now[other_bridge] == "container-runtime:other:net:n-other"
    assert now[other_tap].startswith("container-runtime:other:tap:n-other:o1:")
    assert inst.sh("nft", "list", "table", "inet", "container-other").stdout == other_before
    assert "table bridge container-other" in inst.nft_tables()
    # the old names: live links adopted (same links, new marks), the orphan and tables gone
    assert {n: now.get(n) for n in ours_links} == ours_links
    assert "ctr-00000old00" not in now
    tables = inst.nft_tables().splitlines()
    assert "table inet container" not in tables and "table bridge container" not in tables
    assert "table inet container-bridge" in tables
    [kept] = [a for a in attachments(inst, "n-ours") if a["owner"] == "keep"]
    assert kept["address"] == ours["address"]
