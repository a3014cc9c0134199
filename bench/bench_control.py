"""Control-plane figures: allocations/s through the helper (with persistence), median API
round trip, `network create` time, and `container network list` wall time as a process,
each beside a peer or floor measured in the same run.

    python bench/bench_control.py [--allocations 2000] [--clients 4]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import BenchSystem, summary, time_process  # noqa: E402

from container_runtime.client import UnixClient  # noqa: E402


def allocate_range(
    socket: str, network: str, start: int, count: int, via_api: bool, start_at: float
) -> float:
    """Allocate `count` addresses from `start_at` (wall clock, so that every client starts
    together, after process start-up); returns the wall-clock end time."""
    client = UnixClient(Path(socket))
    prefix = "/v1/networks" if via_api else "/networks"
    client.request("GET", "/v1/ping" if via_api else "/status")  # connect before the start
    time.sleep(max(0.0, start_at - time.time()))
    for i in range(start, start + count):
        client.request(
            "POST",
            f"{prefix}/{network}/attachments",
            {"name": f"a{i}", "owner": f"a{i}", "hostname": f"a{i}"},
            idempotent=True,
        )
    return time.time()


def throughput(socket: Path, network: str, total: int, clients: int, via_api: bool) -> float:
    per = total // clients
    start_at = time.time() + 1.5
    with ProcessPoolExecutor(clients) as pool:
        futures = [
            pool.submit(allocate_range, str(socket), network, i * per, per, via_api, start_at)
            for i in range(clients)
        ]
        end = max(f.result() for f in futures)
    return per * clients / (end - start_at)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--allocations", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    with BenchSystem() as system:
        helper_sock = system.run_dir / "network-bridge.sock"
        api_sock = system.run_dir / "apiserver.sock"
        system.cli("network", "create", "big1", "--subnet", "10.128.0.0/16")
        system.cli("network", "create", "big2", "--subnet", "10.129.0.0/16")
        fresh = time_process(system.plain_argv("network", "list"), args.runs, system.env)
        print(
            f"`container network list` (process, 3 networks):  {summary(fresh)}   (target <= 80 ms)"
        )
        system.cli("network", "create", "rt", "--subnet", "10.130.0.0/24")
        client = UnixClient(api_sock)
        pings, allocs = [], []
        for i in range(200):
            t = time.perf_counter()
            client.request("GET", "/v1/ping")
            pings.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            client.request("POST", "/v1/networks/rt/attachments", {"name": f"rt{i}"})
            allocs.append((time.perf_counter() - t) * 1000)
        ping_ms, alloc_ms = statistics.median(pings), statistics.median(allocs)
        print(f"API round trip, GET /v1/ping:                     median {ping_ms:.3f} ms")
        print(
            f"API round trip, allocation (API -> helper -> DB -> DNS update), 200 members: "
            f"median {alloc_ms:.3f} ms"
        )

        rate_helper = throughput(helper_sock, "big1", args.allocations, args.clients, False)
        rate_api = throughput(api_sock, "big2", args.allocations, args.clients, True)
        print(
            f"allocations/s directly through the helper ({args.clients} clients, "
            f"committed to SQLite): {rate_helper:8.0f}/s   (target >= 2000/s)"
        )
        print(
            f"allocations/s through API server -> helper ({args.clients} clients):     "
            f"{rate_api:8.0f}/s"
        )

        creates = []
        for i in range(20):
            t = time.perf_counter()
            system.cli("network", "create", f"n{i}")
            creates.append((time.perf_counter() - t) * 1000)
        print(f"`container network create` (process, auto subnet): {summary(creates)}")

        ls = time_process(system.plain_argv("network", "list"), args.runs, system.env)
        held = 2 * args.allocations + 300
        print(f"`container network list` (process, 23 networks, {held} attachments): {summary(ls)}")
        floor = time_process([sys.executable, "-c", "pass"], args.runs)
        print(f"floor: `python -c pass` (process):                {summary(floor)}")
        if shutil.which("podman"):
            peer = time_process(["podman", "network", "ls"], args.runs)
            print(f"peer: `podman network ls` (process):              {summary(peer)}")
        else:
            print("peer: podman not installed; skipped")


if __name__ == "__main__":
    main()
