"""Per-attachment setup and teardown through the real daemons (allocation + state + kernel),
beside the CNI reference plugins, in one run.

    python bench/bench_attach_system.py [--members 500]

First runs bench_attach.py (our data-plane library vs CNI bridge + host-local, ipMasq
true, whole plugin processes), then, in a throwaway container system, attaches N bare
network namespaces to one network through the helper's socket (what the API server
does for a container: allocate, commit, build the veth) and through the API server (plus
the DNS update), and reports medians of 10-member windows, and `network create` through
the API.
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
    marks = [m for m in (10, 100, 500) if m <= len(times)] or [len(times)]
    return "  ".join(
        f"{m - 9}-{m}: {statistics.median(times[m - 10 : m]) * 1000:6.2f} ms" for m in marks
    )


def attach_many(system: BenchSystem, sock: Path, api: bool, members: int, tag: str) -> None:
    network = f"{tag}net"
    system.cli(
        "network", "create", network, "--subnet", "10.200.0.0/16" if api else "10.201.0.0/16"
    )
    names = [f"{tag}{i}" for i in range(members)]
    for name in names:
        subprocess.run(["ip", "netns", "add", name], check=True)
    client = UnixClient(sock)
    setup, teardown = [], []
    try:
        for name in names:
            body = (
                {"name": name, "netns": f"/run/netns/{name}"}
                if api
                else {"owner": name, "hostname": name, "netns": f"/run/netns/{name}"}
            )
            path = (
                f"/v1/networks/{network}/attachments" if api else f"/networks/{network}/attachments"
            )
            start = time.perf_counter()
            client.request("POST", path, body)
            setup.append(time.perf_counter() - start)
        for name in names:
            path = (
                f"/v1/networks/{network}/attachments/{name}"
                if api
                else f"/networks/{network}/attachments/{name}"
            )
            start = time.perf_counter()
            client.request("DELETE", path)
            teardown.append(time.perf_counter() - start)
    finally:
        client.close()
        for name in names:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
    what = "API server -> helper (+DNS)" if api else "helper socket"
    print(f"ours via {what}, setup:    {windows(setup)}")
    print(f"ours via {what}, teardown: {windows(teardown)}  (kernel deletion in background)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", type=int, default=500)
    parser.add_argument("--skip-library", action="store_true")
    args = parser.parse_args()
    if not args.skip_library:
        print("== data-plane library vs CNI (bench_attach.py) ==", flush=True)
        subprocess.run(
            [
                sys.executable,
                str(Path(__file__).with_name("bench_attach.py")),
                "--members",
                str(args.members),
            ],
            check=True,
        )
    print("== through the daemons ==", flush=True)
    with BenchSystem() as system:
        attach_many(system, system.run_dir / "network-bridge.sock", False, args.members, "h")
        attach_many(system, system.run_dir / "apiserver.sock", True, min(args.members, 100), "a")
        client = UnixClient(system.run_dir / "apiserver.sock")
        creates = []
        for i in range(20):
            start = time.perf_counter()
            client.request("POST", "/v1/networks", {"name": f"c{i}"})
            creates.append((time.perf_counter() - start) * 1000)
        median = statistics.median(creates)
        print(f"network create through the API (auto subnet): median {median:.2f} ms")


if __name__ == "__main__":
    main()
