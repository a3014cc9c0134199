"""Fuzz and isolation figures: the CI safety tests, run larger, with their counts.

    .venv/bin/python bench/bench_safety.py [--scale 10]

Runs tests/control/test_fuzz_api.py (schemathesis over the API socket),
tests/control/test_fuzz_parsers.py (hypothesis on the HTTP, models and DNS wire parsers)
with FUZZ_SCALE times the CI examples, and tests/containers/test_isolation_matrix.py,
then prints examples run, failing tests, pairs probed and leaks. The chaos figures come
from bench/bench_chaos.py.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUITES = {
    "api fuzz": "tests/control/test_fuzz_api.py",
    "parser fuzz": "tests/control/test_fuzz_parsers.py",
    "isolation matrix": "tests/containers/test_isolation_matrix.py",
}


def run(path: str, scale: int) -> tuple[str, str]:
    env = {**os.environ, "FUZZ_SCALE": str(scale)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-s",
            "-p",
            "no:warnings",
            "-p",
            "no:cacheprovider",
            path,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    summary = next(
        (
            line
            for line in reversed(proc.stdout.splitlines())
            if re.search(r"\d+ (passed|failed)", line)
        ),
        "no summary",
    )
    failed = [
        line.split("::", 1)[1].split(" ")[0]
        for line in proc.stdout.splitlines()
        if line.startswith("FAILED")
    ]
    return proc.stdout, f"{summary}" + (f"\n    failing: {', '.join(failed)}" if failed else "")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=int, default=10, help="times the CI number of examples")
    args = ap.parse_args()
    for label, path in SUITES.items():
        out, summary = run(path, args.scale)
        print(f"{label}: {summary}")
        figures = [
            line for line in out.splitlines() if "figures" in line or "isolation matrix:" in line
        ]
        if label == "api fuzz" and figures:
            figures = figures[-1:]  # cumulative
        for line in figures:
            print(f"    {re.sub(r'^[.FE]+', '', line)}")


if __name__ == "__main__":
    main()
