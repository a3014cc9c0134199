"""`container run -d` with a 10,000-port `-p` range vs with one published port.

    .venv/bin/python bench/bench_publish_range.py [-n 5] [--ports 10000]

A throwaway container system (tests/support Instance) and the busybox test image from a
registry on its namespace's loopback. N rounds, alternating: `run -d -p 8080:80`,
`rm -f`; `run -d -p 20000-(20000+P-1):20000-(20000+P-1)`, `rm -f`. Prints the medians
(one nft map element per port: the helper probes, records and loads every port).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.instance import Instance, NetnsPool  # noqa: E402
from support.registry import build_busybox_image, running_registry  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=5)
    ap.add_argument("--ports", type=int, default=10000)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-pub-"))
    base.chmod(0o755)
    pool = NetnsPool()
    inst = Instance(base / "inst", pool)
    last = 20000 + args.ports - 1
    wide = f"20000-{last}:20000-{last}"
    try:
        inst.start()
        layout = build_busybox_image(base / "oci")
        with running_registry(base / "registry", netns=inst.netns) as reg:
            ref = reg.push(layout, "latest", "test/busybox", "1")
            inst.cli("image", "pull", ref)
        timings: dict[str, list[float]] = {"one port": [], f"{args.ports} ports": []}
        run_rm: dict[str, list[float]] = {k: [] for k in timings}
        for i in range(args.n):
            for label, spec in (("one port", "8080:80"), (f"{args.ports} ports", wide)):
                t = time.perf_counter()
                inst.cli("run", "-d", "--name", f"c{i}", "-p", spec, ref, "sleep", "1000")
                timings[label].append(time.perf_counter() - t)
                if i == 0 and label != "one port":
                    elements = inst.sh(
                        "nft", "list", "map", "inet", "container-bridge", "pf4"
                    ).stdout
                    assert elements.count("tcp . ") == args.ports, "one map element per port"
                t = time.perf_counter()
                inst.cli("rm", "-f", f"c{i}")
                run_rm[label].append(time.perf_counter() - t)
        for label, values in timings.items():
            print(
                f"run -d -p ({label}): median {statistics.median(values) * 1000:.0f} ms;"
                f" rm -f: median {statistics.median(run_rm[label]) * 1000:.0f} ms (n={args.n})"
            )
    finally:
        inst.cleanup()
        pool.cleanup()


if __name__ == "__main__":
    main()
