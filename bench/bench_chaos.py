"""Chaos bench: K clients (default 20) doing `run -d`/`rm -f` and bare `network attach
--netns`/`detach` on one /26, while N (default 100) SIGKILLs hit the API server, the
network helper and the DNS server at random moments, with restarts.

    .venv/bin/python bench/bench_chaos.py [-k 20] [-n 100] [--seed 1]

Prints the kill points, operations completed and per second, failed operations (and how
many failed without one clean `Error:` line), and the audit counts (tests/support/audit.py)
after the chaos and after one more crash restart: duplicate addresses and MACs, addresses
without a live owner, links of ours without an attachment, nft elements of deleted
networks, containers marked running whose process is gone, leftover mounts and conmons.
All must be zero. The same driver runs bounded in CI (tests/containers/test_chaos.py).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.chaos import run_chaos  # noqa: E402
from support.instance import Instance, NetnsPool  # noqa: E402
from support.registry import build_busybox_image, running_registry  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-k", "--clients", type=int, default=20)
    ap.add_argument("-n", "--kills", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    pool = NetnsPool()
    base = Path(tempfile.mkdtemp(prefix="ctr-bench-"))
    base.chmod(0o755)
    inst = Instance(base, pool)
    try:
        inst.start()
        layout = build_busybox_image(base / "oci")
        with running_registry(base / "registry", netns=inst.netns) as registry:
            image = registry.push(layout, "latest", "test/busybox", "1")
            inst.cli("network", "create", "chaos", "--subnet", "10.66.0.0/26")
            inst.cli("network", "create", "gone", "--subnet", "10.66.1.0/24")
            inst.cli("network", "rm", "gone")
            namespaces = [pool.create("chaos") for _ in range(args.clients)]
            report = run_chaos(inst, image, "chaos", namespaces, args.kills, seed=args.seed)
    finally:
        inst.cleanup()
        pool.cleanup()
    print(f"clients: {report.clients}")
    print(f"kill points: {report.kill_points} {report.kills}")
    print(f"operations completed: {report.ops_ok} in {report.elapsed:.1f} s")
    print(f"operations per second: {report.ops_per_second:.1f}")
    print(f"operations failed: {report.ops_failed} ({len(report.unclean_failures)} unclean)")
    for kind, count in sorted(report.failure_kinds.items(), key=lambda kv: -kv[1])[:5]:
        print(f"  {count:5d}  {kind}")
    for label, counts in (
        ("after chaos", report.counts_after_chaos),
        ("after one more restart", report.counts_after_restart),
    ):
        print(f"{label}:")
        for key, value in counts.items():
            print(f"  {key}: {value}")
    bad = (
        report.unclean_failures
        or any(report.counts_after_chaos.values())
        or any(report.counts_after_restart.values())
    )
    for line in report.unclean_failures[:10]:
        print(f"unclean: {line}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
