"""Time for the network helper to put back our nft tables after someone removed them.

    .venv/bin/python bench/bench_firewall_restore.py [-n 20]

A throwaway container system (tests/support Instance) with one network and a member.
N times, alternating `flush ruleset`, `delete table inet container-bridge` and
`flush chain inet container-bridge forward`: break the firewall, then poll (every 5 ms, through
libnftables) until the listing of our tables is again what it was. Prints the median,
p90 and maximum restore time (the helper checks every 0.5 s, so ~0.25 s is expected).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.instance import Instance, NetnsPool  # noqa: E402

PROBE = r"""
import json, random, sys, time
import nftables
nft = nftables.Nftables()
def listing():
    out = []
    for family in ("inet", "bridge"):
        rc, text, _ = nft.cmd(f"list table {family} container-bridge")
        out.append(text if rc == 0 else "")
    return out
want = listing()
assert all(want), "our tables are missing at the start"
breaks = [
    "flush ruleset",
    "delete table inet container-bridge",
    "flush chain inet container-bridge forward",
]
times = []
for i in range(int(sys.argv[1])):
    rc, _, err = nft.cmd(breaks[i % len(breaks)])
    assert rc == 0, err
    t0 = time.perf_counter()
    while listing() != want:
        if time.perf_counter() - t0 > 10:
            raise SystemExit("not restored within 10 s")
        time.sleep(0.005)
    times.append(time.perf_counter() - t0)
    time.sleep(random.uniform(0.2, 0.7))  # a random point of the check interval
print(json.dumps(times))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=20)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-fw-"))
    base.chmod(0o755)
    pool = NetnsPool()
    inst = Instance(base / "inst", pool)
    try:
        inst.start()
        inst.cli("network", "create", "fw", "--subnet", "10.121.0.0/24")
        inst.cli("network", "attach", "fw", "--name", "m", "--netns", pool.create("m"))
        out = subprocess.run(
            inst.in_ns([sys.executable, "-c", PROBE, str(args.n)]),
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        ).stdout
        times = sorted(float(t) * 1000 for t in json.loads(out))
        p90 = times[min(len(times) - 1, int(len(times) * 0.9))]
        median = times[len(times) // 2]
        print(
            f"firewall restored after flush/delete: median {median:.0f} ms, p90 {p90:.0f} ms,"
            f" max {times[-1]:.0f} ms (n={len(times)})"
        )
    finally:
        inst.cleanup()
        pool.cleanup()


if __name__ == "__main__":
    main()
