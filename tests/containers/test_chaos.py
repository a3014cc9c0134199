"""Chaos, bounded for CI: 8 clients doing run/rm and bare attach/detach on one /26 while
20 SIGKILLs hit the API server, the network helper and the DNS server (support/chaos.py).

Afterwards, and after one more full restart: no duplicate address or MAC, no address
without a live owner, no link of ours without an attachment, no nft element of a deleted
network, no container marked running whose process is gone, no leftover mount or conmon;
every failed operation failed with one clean `Error:` line. (tests/control/test_crash.py
covers allocation durability through the API with kills at fixed points; this one adds
containers, bare namespaces, the DNS server and random kill points.)
"""

from __future__ import annotations

from support.chaos import run_chaos

from .conftest import System

CLIENTS = 8
KILL_POINTS = 20
ZERO = {
    "duplicate_addresses": 0,
    "duplicate_macs": 0,
    "addresses_without_owner": 0,
    "orphan_links": 0,
    "stale_nft_elements": 0,
    "running_without_process": 0,
    "leftover_mounts": 0,
    "leftover_conmon": 0,
}


def test_chaos_clients_and_sigkills_leave_a_consistent_world(system: System) -> None:
    inst = system.inst
    inst.cli("network", "create", "chaos", "--subnet", "10.66.0.0/26")
    # A network made and deleted before: none of its nft elements may survive.
    inst.cli("network", "create", "gone", "--subnet", "10.66.1.0/24")
    inst.cli("network", "rm", "gone")
    namespaces = [inst.pool.create("chaos") for _ in range(CLIENTS)]
    report = run_chaos(inst, system.image, "chaos", namespaces, KILL_POINTS, seed=10)
    print(report.summary())
    assert report.kill_points >= KILL_POINTS
    assert all(report.kills.values()), report.kills  # each of the three daemons was hit
    assert report.ops_ok > 0, report.summary()
    assert not report.unclean_failures, "\n".join(report.unclean_failures[:20])
    assert report.counts_after_chaos == ZERO, report.summary()
    assert report.counts_after_restart == ZERO, report.summary()
