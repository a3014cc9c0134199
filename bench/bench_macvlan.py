"""Attach and release on a macvlan network beside the bridge plugin, in one run.

    python bench/bench_macvlan.py [--members 100] [--rounds 2]

In a throwaway container system, one bridge network and one macvlan network (parent: a
veth standing in for the host's LAN interface); N bare network namespaces are attached
to each through its helper's socket (what the API server asks for a container: allocate,
commit, build the interface in the namespace), then released. Rounds alternate the two
plugins so both see the same machine. Prints medians of 10-member windows.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import BenchSystem  # noqa: E402

from container_runtime.client import UnixClient  # noqa: E402


def windows(times: list[float]) -> str:
    marks = [m for m in (10, 50, 100) if m <= len(times)] or [len(times)]
    return "  ".join(
        f"{m - 9}-{m}: {statistics.median(times[m - 10 : m]) * 1000:6.2f} ms" for m in marks
    )


def attach_release(
    system: BenchSystem, plugin: str, network: str, members: int, tag: str
) -> tuple[list[float], list[float]]:
    names = [f"{tag}{i}" for i in range(members)]
    for name in names:
        subprocess.run(["ip", "netns", "add", name], check=True)
    client = UnixClient(system.run_dir / f"network-{plugin}.sock")
    strategy = "macvlan" if plugin == "macvlan" else "veth"
    setup, teardown = [], []
    try:
        for name in names:
            body = {
                "owner": name,
                "hostname": name,
                "netns": f"/run/netns/{name}",
                "strategy": strategy,
            }
            start = time.perf_counter()
            client.request("POST", f"/networks/{network}/attachments", body)
            setup.append(time.perf_counter() - start)
        for name in names:
            start = time.perf_counter()
            client.request("DELETE", f"/networks/{network}/attachments/{name}")
            teardown.append(time.perf_counter() - start)
    finally:
        client.close()
        for name in names:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return setup, teardown


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with BenchSystem() as system:
        ns = ["ip", "-n", system.netns]
        subprocess.run([*ns, "link", "add", "lan0", "type", "veth", "peer", "name", "lan1"])
        subprocess.run([*ns, "link", "set", "lan0", "up"], check=True)
        subprocess.run([*ns, "link", "set", "lan1", "up"], check=True)
        system.cli("network", "create", "bn", "--subnet", "10.210.0.0/16")
        system.cli(
            "network", "create", "mn", "--plugin", "macvlan", "--option", "parent=lan0",
            "--subnet", "10.211.0.0/16", "--gateway", "10.211.0.1",
        )  # fmt: skip
        for rnd in range(args.rounds):
            for plugin, network in (("bridge", "bn"), ("macvlan", "mn")):
                setup, teardown = attach_release(
                    system, plugin, network, args.members, f"{plugin[0]}{rnd}x"
                )
                print(f"round {rnd + 1} {plugin:8s} attach:  {windows(setup)}", flush=True)
                print(f"round {rnd + 1} {plugin:8s} release: {windows(teardown)}", flush=True)


if __name__ == "__main__":
    main()
