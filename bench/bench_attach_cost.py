"""What one bare attach + detach costs the daemons: wall time through the API server,
CPU time of the API server and of the bridge helper per cycle, and the sync system calls
(fsync, fdatasync, ...) the helper makes per attach, counted with strace.

    python bench/bench_attach_cost.py [--cycles 300]

CPU time (utime + stime from /proc/PID/stat) is far less sensitive to a loaded machine
than wall time, so two versions can be compared in one session by running this script
under each (`PYTHONPATH=OTHER/src`); the helper's sync calls say whether a commit costs
a disk flush (WAL with synchronous=NORMAL: none until a checkpoint).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import BenchSystem  # noqa: E402

from container_runtime.client import UnixClient  # noqa: E402

TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")
SYNC_CALLS = "fsync,fdatasync,sync_file_range,msync"


def cpu_ms(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * TICK_MS  # utime, stime


def pid_of(system: BenchSystem, name: str) -> int:
    return int((system.run_dir / f"{name}.pid").read_text())


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cycles", type=int, default=300)
    args = parser.parse_args()
    with BenchSystem() as system:
        system.cli("network", "create", "cost", "--subnet", "10.202.0.0/16")
        api = UnixClient(system.run_dir / "apiserver.sock")
        helper = UnixClient(system.run_dir / "network-bridge.sock")
        api_pid, helper_pid = pid_of(system, "apiserver"), pid_of(system, "network-bridge")

        def cycle(i: int) -> float:
            began = time.perf_counter()
            api.request("POST", "/v1/networks/cost/attachments", {"name": f"m{i}"})
            api.request("DELETE", f"/v1/networks/cost/attachments/m{i}")
            return (time.perf_counter() - began) * 1000

        for i in range(20):  # warm up: connections, caches, WAL
            cycle(i)
        api_cpu, helper_cpu = cpu_ms(api_pid), cpu_ms(helper_pid)
        walls = [cycle(i) for i in range(args.cycles)]
        api_cpu = (cpu_ms(api_pid) - api_cpu) / args.cycles
        helper_cpu = (cpu_ms(helper_pid) - helper_cpu) / args.cycles

        # The helper's sync calls per attach (+ detach), straight to its socket.
        trace = system.base / "strace.txt"
        tracer = subprocess.Popen(
            [
                "strace",
                "-f",
                "-c",
                "-e",
                f"trace={SYNC_CALLS}",
                "-o",
                str(trace),
                "-p",
                str(helper_pid),
            ],
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)  # attached
        traced = 50
        for i in range(traced):
            body = {"owner": f"s{i}", "hostname": f"s{i}", "interface": "eth0"}
            helper.request("POST", "/networks/cost/attachments", body)
            helper.request("DELETE", f"/networks/cost/attachments/s{i}")
        tracer.terminate()
        tracer.wait(timeout=10)
        calls = sum(  # strace -c rows: % seconds usecs/call calls [errors] syscall
            int(fields[3])
            for fields in (line.split() for line in trace.read_text().splitlines())
            if len(fields) >= 5 and fields[-1] in SYNC_CALLS.split(",")
        )
        api.close()
        helper.close()
    print(f"attach + detach through the API server, {args.cycles} cycles:")
    print(
        f"  wall: median {statistics.median(walls):.2f} ms, p90 "
        f"{sorted(walls)[int(len(walls) * 0.9)]:.2f} ms"
    )
    print(f"  CPU per cycle: API server {api_cpu:.2f} ms, bridge helper {helper_cpu:.2f} ms")
    print(f"  helper sync calls ({SYNC_CALLS}) per attach + detach: {calls / traced:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
