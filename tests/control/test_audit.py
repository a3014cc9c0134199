"""The chaos audit is not vacuous: each kind of leak it counts, made on purpose, is seen.

(tests/support/audit.py and chaos.py count what the chaos test and bench require to be
zero; a counter that could never move would make those tests pass whatever happened.)
"""

from __future__ import annotations

import subprocess

from support import audit
from support.chaos import namespace_leftovers
from support.instance import Instance, NetnsPool

ZERO = dict.fromkeys(
    (
        "duplicate_addresses",
        "duplicate_macs",
        "addresses_without_owner",
        "orphan_links",
        "stale_nft_elements",
        "running_without_process",
        "leftover_mounts",
        "leftover_conmon",
    ),
    0,
)


def test_audit_counts_each_kind_of_leak(instance: Instance, netns_pool: NetnsPool) -> None:
    inst = instance
    inst.cli("network", "create", "aud", "--subnet", "10.68.0.0/24")
    ns = netns_pool.create("aud")
    inst.cli("network", "attach", "aud", "--name", "m1", "--netns", ns)
    assert audit.consistency(inst) == ZERO
    assert namespace_leftovers(inst, [ns]) == 0

    # A bridge of ours that no network owns.
    inst.sh("ip", "link", "add", "ctr-00deadbeef", "type", "bridge")
    assert audit.consistency(inst)["orphan_links"] == 1
    inst.sh("ip", "link", "del", "ctr-00deadbeef")

    # An element naming a bridge of no network in our nft table.
    inst.sh("nft", "add", "element", "inet", "container-bridge", "bridges", '{ "ctr-00deadbeef" }')
    assert audit.consistency(inst)["stale_nft_elements"] == 1
    # (check=False: a firewall watchdog may already have put the table back)
    inst.sh(
        "nft",
        "delete",
        "element",
        "inet",
        "container-bridge",
        "bridges",
        '{ "ctr-00deadbeef" }',
        check=False,
    )

    # An interface in a client's namespace that no attachment accounts for.
    netns_pool.exec(ns, ["ip", "link", "add", "stray0", "type", "veth", "peer", "name", "stray1"])
    assert namespace_leftovers(inst, [ns]) == 2
    netns_pool.exec(ns, ["ip", "link", "del", "stray0"])

    # A mount under the state root that no running container holds.
    point = inst.root / "containers" / "gone" / "rootfs"
    point.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(point)], check=True)
    try:
        assert audit.consistency(inst)["leftover_mounts"] == 1
    finally:
        subprocess.run(["umount", str(point)], check=True)

    # An address whose owner's namespace is gone.
    subprocess.run(["ip", "netns", "del", ns], check=True)
    assert audit.consistency(inst)["addresses_without_owner"] == 1
