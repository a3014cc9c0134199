#!/usr/bin/env python3
"""host.container.internal vs a container name through container-dns, in one run.

The same lab as bench_dns.py (container-dns on a bridge gateway in a throwaway namespace,
pinned to one core; dnsperf in a client namespace on another): one server, two query
files, `host.container.internal A` (answered from the listener network's gateway) and
`c001 A` (a container's record), measured alternately for --rounds rounds of
--duration seconds each (the order flips every round).  Prints the median throughput and
average latency of each: the floor is the container name, the path every lookup took
before the host names existed.

Run as root:  PYTHONPATH=src python bench/bench_dnsnames.py [--rounds 3] [--duration 3]
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_dns import Bench  # noqa: E402

QUERIES = {"host.container.internal": "host.container.internal A", "container name": "c001 A"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--names", type=int, default=100)
    args = parser.parse_args()
    if not shutil.which("dnsperf"):
        print("dnsperf is not installed (scripts/setup.sh installs it)", file=sys.stderr)
        return 1
    bench = Bench(args.names, args.duration, 20000, srv_cpu=0, cli_cpu=1)
    qps: dict[str, list[float]] = {k: [] for k in QUERIES}
    avg: dict[str, list[float]] = {k: [] for k in QUERIES}
    try:
        bench.setup()
        proc = bench.container_dns(rate=0)()
        if not bench.wait_answer("c001"):
            print("container-dns did not answer", file=sys.stderr)
            return 1
        for round_ in range(args.rounds):
            order = list(QUERIES) if round_ % 2 == 0 else list(reversed(QUERIES))
            for label in order:
                (bench.tmp / "queries.txt").write_text(QUERIES[label] + "\n")
                text, _ = bench.dnsperf(verbose=False)
                got = re.search(r"Queries per second:\s+([0-9.]+)", text)
                lat = re.search(r"Average Latency \(s\):\s+([0-9.]+)", text)
                if not got or "Queries completed" not in text:
                    print(f"dnsperf failed for {label}: {text[-300:]}", file=sys.stderr)
                    return 1
                qps[label].append(float(got.group(1)))
                avg[label].append(float(lat.group(1)) * 1000 if lat else 0.0)
                time.sleep(0.2)
        bench.stop(proc)
    finally:
        bench.cleanup()
    print(f"container-dns, {args.rounds} rounds of {args.duration:g} s, medians:")
    for label in QUERIES:
        print(
            f"  {label:<24} {statistics.median(qps[label]):>9,.0f} q/s"
            f"  avg {statistics.median(avg[label]):.3f} ms"
            f"  (rounds: {', '.join(f'{q:,.0f}' for q in qps[label])})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
