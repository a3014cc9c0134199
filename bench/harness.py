"""Benchmark harness: a throwaway container system in its own network namespace."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


class BenchSystem:
    def __init__(self) -> None:
        self.netns = f"bench-{secrets.token_hex(3)}"
        subprocess.run(["ip", "netns", "add", self.netns], check=True)
        subprocess.run(["ip", "-n", self.netns, "link", "set", "lo", "up"], check=True)
        self.base = Path(tempfile.mkdtemp(prefix="ctr-bench-"))
        self.run_dir = self.base / "run"
        self.env = {
            **os.environ,
            "CONTAINER_ROOT": str(self.base / "root"),
            "CONTAINER_RUN_DIR": str(self.run_dir),
            "HOME": str(self.base / "home"),
        }

    def argv(self, *args: str) -> list[str]:
        return ["nsenter", f"--net=/run/netns/{self.netns}", str(VENV_BIN / "container"), *args]

    def plain_argv(self, *args: str) -> list[str]:
        """The CLI as a user runs it: it only needs the socket, not the namespace."""
        return [str(VENV_BIN / "container"), *args]

    def cli(self, *args: str) -> str:
        return subprocess.run(
            self.argv(*args), env=self.env, check=True, capture_output=True, text=True
        ).stdout

    def __enter__(self) -> BenchSystem:
        self.cli("system", "start")
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run(self.argv("system", "stop"), env=self.env, capture_output=True)
        marker = f"CONTAINER_RUN_DIR={self.run_dir}".encode()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if marker in (entry / "environ").read_bytes().split(b"\0"):
                        os.kill(int(entry.name), signal.SIGKILL)
                except OSError:
                    pass
        for line in Path("/proc/self/mounts").read_text().splitlines():
            if line.split()[1].startswith(str(self.base)):
                subprocess.run(["umount", "-l", line.split()[1]], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)


def time_process(argv: list[str], runs: int, env: dict[str, str] | None = None) -> list[float]:
    """Wall times in ms of running a whole process (after two warm-up runs)."""
    for _ in range(2):
        subprocess.run(argv, env=env, capture_output=True, check=True)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, env=env, capture_output=True, check=True)
        times.append((time.perf_counter() - start) * 1000)
    return times


def summary(values: list[float]) -> str:
    values = sorted(values)
    p90 = values[int(len(values) * 0.9) - 1] if len(values) >= 10 else values[-1]
    return f"median {statistics.median(values):7.2f} ms  p90 {p90:7.2f} ms  (n={len(values)})"


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def runc_round(runc: str, runc_root: str, bundle: Path, name: str) -> tuple[float, float]:
    """The floor: `runc run -d` of a bundle, then `runc delete -f`; seconds for each."""
    start = time.perf_counter()
    subprocess.run(
        [runc, "--root", runc_root, "run", "-d", "-b", str(bundle), name],
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    started = time.perf_counter()
    subprocess.run([runc, "--root", runc_root, "delete", "-f", name], check=True)
    return started - start, time.perf_counter() - started
