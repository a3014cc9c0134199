"""Chaos: concurrent clients on one small network while the daemons are SIGKILLed.

K client threads loop `run -d`/`rm -f` of containers and bare `network attach --netns` /
`network detach`, each as a real CLI process; a killer SIGKILLs the API server, the network
helper or the DNS server at random moments and brings the API server back with `system
start` (the helpers are restarted by it). Used by tests/containers/test_chaos.py (bounded)
and bench/bench_chaos.py (longer). Every failed CLI call must have failed with exactly one
`Error:` line and no traceback; the world is audited afterwards with support.audit.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .audit import consistency
from .instance import Instance, Result

DAEMONS = ("apiserver", "network-bridge", "dns")
# The API server is hit less often: each of its restarts costs seconds of `system start`.
WEIGHTS = (1, 2, 2)


@dataclass
class ChaosReport:
    clients: int
    kill_points: int = 0
    kills: dict[str, int] = field(default_factory=dict)
    ops_ok: int = 0
    ops_failed: int = 0
    unclean_failures: list[str] = field(default_factory=list)
    failure_kinds: dict[str, int] = field(default_factory=dict)
    elapsed: float = 0.0
    counts_after_chaos: dict[str, int] = field(default_factory=dict)
    counts_after_restart: dict[str, int] = field(default_factory=dict)

    @property
    def ops_per_second(self) -> float:
        return self.ops_ok / self.elapsed if self.elapsed else 0.0

    def summary(self) -> str:
        return (
            f"chaos: {self.clients} clients, {self.kill_points} kill points {self.kills}, "
            f"{self.ops_ok} ops ok, {self.ops_failed} failed ({len(self.unclean_failures)} "
            f"unclean), {self.ops_per_second:.1f} ops/s over {self.elapsed:.1f} s; "
            f"after chaos {self.counts_after_chaos}; after restart {self.counts_after_restart}"
        )


def _clean_failure(result: Result) -> bool:
    """One `Error:` line, the last one (a `run` may print pull progress before it)."""
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("Error: ")]
    return (
        len(errors) == 1
        and lines[-1] == errors[0]
        and "Traceback" not in result.stderr + result.stdout
    )


def _gone(result: Result) -> bool:
    """A removal refused because there was nothing to remove (the make had failed)."""
    return result.returncode != 0 and (
        "not found" in result.stderr or "not attached" in result.stderr
    )


def namespace_leftovers(inst: Instance, namespaces: list[str]) -> int:
    """Interfaces in the clients' namespaces that no attachment accounts for."""
    from . import probes
    from .audit import plugin_attachments

    held = Counter(Path(n).name for *_, n in plugin_attachments(inst) if n)
    extra = 0
    for ns in namespaces:
        links = [name for name in probes.link_names(ns) if name != "lo"]
        extra += max(0, len(links) - held[ns])
    return extra


def wait_ready(inst: Instance, timeout: float = 30) -> None:
    """Until the API answers and both helpers have pids that are alive."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ok = inst.cli("system", "status", check=False, timeout=30).returncode == 0
        pids = [inst.pid(name) for name in ("network-bridge", "dns")]
        if ok and all(p and os.path.exists(f"/proc/{p}") for p in pids):
            return
        time.sleep(0.2)
    raise AssertionError("the system did not come back")


def run_chaos(
    inst: Instance,
    image: str,
    network: str,
    namespaces: list[str],
    kill_points: int,
    seed: int = 0,
    gap: tuple[float, float] = (0.2, 0.7),
) -> ChaosReport:
    """One client per namespace in namespaces; returns when every kill point was hit."""
    rng = random.Random(seed)
    report = ChaosReport(clients=len(namespaces), kills=dict.fromkeys(DAEMONS, 0))
    stop = threading.Event()
    lock = threading.Lock()

    def record(result: Result, what: str) -> bool:
        if result.returncode != 0 and "not running" in result.stderr:
            time.sleep(0.2)  # the API server is down: do not spin while it restarts
        with lock:
            if result.returncode == 0:
                report.ops_ok += 1
                return True
            report.ops_failed += 1
            kind = " ".join(result.stderr.strip()[:60].split()[:6])
            report.failure_kinds[kind] = report.failure_kinds.get(kind, 0) + 1
            if not _clean_failure(result):
                report.unclean_failures.append(f"{what}: rc={result.returncode} {result.stderr!r}")
            return False

    def undo(argv: list[str], what: str) -> None:
        """Remove what a make may have left, retried through restarts (bounded), so the
        clients end with nothing of theirs: whatever remains after is the system's leak."""
        deadline = time.monotonic() + 60
        while True:
            r = inst.cli(*argv, check=False)
            if _gone(r):
                return
            if record(r, what) or time.monotonic() > deadline:
                return

    def client(index: int, ns: str) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            name = f"k{index}-{n}"
            if n % 2:
                r = inst.cli("run", "-d", "--name", name, "--network", network, image, check=False)
                record(r, f"run {name}")
                # Even if run failed: a half-made container must be removable.
                undo(["rm", "-f", name], f"rm {name}")
            else:
                argv = ["network", "attach", network, "--name", name, "--netns", ns]
                record(inst.cli(*argv, check=False), f"attach {name}")
                undo(["network", "detach", network, "--name", name], f"detach {name}")

    threads = [
        threading.Thread(target=client, args=(i, ns), daemon=True)
        for i, ns in enumerate(namespaces)
    ]
    inst.cli("image", "pull", image, timeout=120)  # the runs below need no pull
    started = time.monotonic()
    for thread in threads:
        thread.start()
    try:
        for _ in range(kill_points):
            time.sleep(rng.uniform(*gap))
            daemon = rng.choices(DAEMONS, WEIGHTS)[0]
            pid = inst.pid(daemon)
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            report.kill_points += 1
            report.kills[daemon] += 1
            if daemon == "apiserver":
                time.sleep(rng.uniform(0.0, 0.3))
                inst.cli("system", "start", check=False, timeout=60)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
    report.elapsed = time.monotonic() - started
    inst.cli("system", "start", check=False, timeout=60)
    wait_ready(inst)
    report.counts_after_chaos = settled_consistency(inst, namespaces)
    # One more full restart, the hard way: SIGKILL the API server (helpers die with it).
    for daemon in DAEMONS:
        pid = inst.pid(daemon)
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    time.sleep(0.3)
    inst.start()
    wait_ready(inst)
    report.counts_after_restart = settled_consistency(inst, namespaces)
    return report


def settled_consistency(
    inst: Instance, namespaces: list[str], timeout: float = 10
) -> dict[str, int]:
    """The invariant counts once background work (deferred link deletion, reconciliation)
    has had a moment; the last reading if they never all reach zero."""
    deadline = time.monotonic() + timeout
    while True:
        counts = consistency(inst)
        counts["orphan_links"] += namespace_leftovers(inst, namespaces)
        if not any(counts.values()) or time.monotonic() > deadline:
            return counts
        time.sleep(0.5)
