"""Supervision of helper processes (network plugins, DNS): start, watch, restart.

A helper that dies is restarted with a growing back-off; it rebuilds its own view
from the database and the kernel, so a restart loses nothing.  Helpers get
PDEATHSIG, so they do not outlive a killed API server; the next API server
replaces any that did.

A helper that is alive but does not answer (frozen, stuck in a system call, spinning)
is as bad as a dead one and worse to wait on: a watchdog thread pings every helper
every PROBE_INTERVAL (GET /status on its socket; the DNS server: a reload request on
dns.ctl) and SIGKILLs one that has not answered for HANG_AFTER seconds while using no
CPU, or for BUSY_LIMIT seconds whatever it does; the supervising thread then restarts
it as after any exit.  A helper that waits on the state database's lock held by
another process is not killed for that (killing it would not free the lock).  Each
restart is logged and counted, with its reason, in `system status`.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ..client import UnixClient
from ..daemon import die_with_parent, pid_of, process_cpu_ticks, terminate
from ..errors import ContainerError, Unavailable
from ..state import lock_holders

log = logging.getLogger("container-apiserver")

PROBE_INTERVAL = 1.0  # how often each running helper is pinged
PROBE_TIMEOUT = 0.5  # how long one ping may take
HANG_AFTER = 3.0  # no answer for this long, and no CPU used: hung
BUSY_LIMIT = 30.0  # no answer for this long, even while using CPU: hung
READY_TIMEOUT = 15.0  # a (re)started helper must answer within this


@dataclass
class SupervisedProcess:
    name: str  # e.g. "network-bridge"
    argv: list[str]
    socket: Path | None
    pidfile: Path
    logfile: Path
    marker: str  # a string in its cmdline, to recognise a stale instance
    env: dict[str, str] = field(default_factory=dict)
    # readiness and liveness of a helper without an HTTP socket (True = serving; called
    # with a timeout in seconds); None = ready at once, never pinged
    probe: Callable[[float], bool] | None = None
    # run after a restarted instance answers and before callers waiting for it go on
    # (the API server re-reads what a helper's reconciliation released)
    on_restart: Callable[[], None] | None = None
    # its own state files: a foreign lock holder on one excuses its silence, as on the
    # API server's database (a plugin's file may not exist: then nothing is excused)
    databases: tuple[Path, ...] = ()
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    last_restart_reason: str | None = None
    last_restart_at: str | None = None
    stopping: bool = False
    ready: threading.Event = field(default_factory=threading.Event)
    # set by the watchdog when it kills an unresponsive instance, cleared once the next
    # one is ready: callers stop waiting on the old one's socket
    hung_reason: str | None = None
    hung_pid: int | None = None  # the instance the watchdog killed
    last_answer: float = 0.0  # monotonic time of its last answer (0: never answered)

    def ready_once(self, since: float) -> bool:
        return self.last_answer >= since

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process and self.process.poll() is None else None

    @property
    def program(self) -> str:
        return f"container-{self.name}"

    def unavailable(self, wait: float) -> ContainerError:
        """The error for a caller that waited `wait` seconds for this helper."""
        if self.hung_reason:
            return Unavailable(
                f"{self.program} {self.hung_reason} and is being restarted; "
                "try again in a few seconds"
            )
        return Unavailable(
            f"{self.program} is restarting and was not ready within {wait:.0f} s; "
            f"try again in a few seconds (its log: {self.logfile})"
        )


class Supervisor:
    def __init__(self, database: Path | None = None) -> None:
        self.processes: dict[str, SupervisedProcess] = {}
        self.lock = threading.Lock()
        self.database = database  # whose lock holders excuse a silent helper
        self._stop = threading.Event()

    def start(self, proc: SupervisedProcess, wait: float = 15.0) -> None:
        with self.lock:
            if proc.name in self.processes:
                return
            self.processes[proc.name] = proc
        thread = threading.Thread(target=self._run, args=(proc,), name=proc.name, daemon=True)
        thread.start()
        if proc.socket is not None or proc.probe is not None:
            watchdog = threading.Thread(
                target=self._watch, args=(proc,), name=f"{proc.name}-watchdog", daemon=True
            )
            watchdog.start()
        if not proc.ready.wait(wait):
            raise Unavailable(f"{proc.name} did not become ready; see {proc.logfile}")

    def _spawn(self, proc: SupervisedProcess) -> None:
        stale = pid_of(proc.pidfile, proc.marker)
        if stale:
            log.info(f"container-apiserver: stopping stale {proc.name} (pid {stale})")
            terminate(stale, timeout=5)
        logfile = open(proc.logfile, "ab")  # noqa: SIM115 - handed to the child
        try:
            proc.process = subprocess.Popen(
                proc.argv,
                stdin=subprocess.DEVNULL,
                stdout=logfile,
                stderr=logfile,
                env={**os.environ, **proc.env},
                preexec_fn=die_with_parent,  # noqa: PLW1509 - only prctl, safe here
                close_fds=True,
            )
        finally:
            logfile.close()
        if proc.socket is None:  # helpers with a socket write their own pid file when ready
            proc.pidfile.write_text(f"{proc.process.pid}\n")

    def _ping(self, proc: SupervisedProcess, timeout: float) -> bool:
        """One liveness check: does the helper answer within `timeout`?"""
        if proc.socket is None:
            return proc.probe is None or proc.probe(timeout)
        client = UnixClient(proc.socket, timeout=timeout, what=proc.name)
        try:
            client.request("GET", "/status")
            return True
        except ContainerError:
            return False
        finally:
            client.close()

    def _wait_ready(self, proc: SupervisedProcess, timeout: float = READY_TIMEOUT) -> bool:
        deadline = time.monotonic() + timeout
        if proc.socket is None and proc.probe is None:
            return True
        while time.monotonic() < deadline:
            if proc.process is None or proc.process.poll() is not None:
                return False
            if self._ping(proc, min(0.5, max(0.05, deadline - time.monotonic()))):
                return True
            time.sleep(0.01)
        return False

    def _run(self, proc: SupervisedProcess) -> None:
        """Runs in a long-lived thread: PDEATHSIG is tied to the thread that spawned."""
        backoff = 0.1
        while not proc.stopping:
            self._spawn(proc)
            process = proc.process
            assert process is not None
            started = time.monotonic()
            if self._wait_ready(proc, READY_TIMEOUT):
                proc.last_answer = time.monotonic()
                if proc.restarts and proc.on_restart is not None:
                    try:
                        proc.on_restart()
                    except Exception as exc:
                        log.warning(f"container-apiserver: after restarting {proc.name}: {exc}")
                proc.hung_reason = proc.hung_pid = None
                proc.ready.set()
                log.info(f"container-apiserver: {proc.name} running (pid {proc.pid})")
            elif process.poll() is None and not proc.stopping:
                # Stuck while starting: the watchdog only watches ready helpers.
                self._kill_hung(proc, process, f"was not ready within {READY_TIMEOUT:.0f} s")
            code = process.wait()
            proc.ready.clear()
            if proc.stopping:
                break
            proc.restarts += 1
            proc.last_restart_at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
            if time.monotonic() - started > 30:
                backoff = 0.1
            if proc.hung_pid == process.pid:
                proc.last_restart_reason = f"killed: {proc.hung_reason}"
            else:
                proc.last_restart_reason = f"exited with status {code}"
            if proc.hung_pid == process.pid and proc.ready_once(started):
                # Killed by the watchdog after serving: start the next one at once (a hang
                # takes HANG_AFTER to detect, so this cannot spin).
                delay = 0.0
            else:
                delay = backoff
                backoff = min(backoff * 2, 5.0)
            log.warning(
                f"container-apiserver: {proc.name} {proc.last_restart_reason}; "
                f"restarting in {delay:.1f} s (restart {proc.restarts})"
            )
            time.sleep(delay)

    def _watch(self, proc: SupervisedProcess) -> None:
        """The watchdog of one helper: ping it; SIGKILL it when it stays silent.

        Pinged every PROBE_INTERVAL while it answers, back to back once it does not."""
        excused_by: int | None = None
        cpu: int | None = None
        cpu_used_at = 0.0
        pause = PROBE_INTERVAL
        while not proc.stopping and not self._stop.wait(pause):
            pause = PROBE_INTERVAL
            process = proc.process
            if not proc.ready.is_set() or process is None or process.poll() is not None:
                cpu = None
                continue  # starting or restarting: _run waits for it
            if proc.hung_pid == process.pid:
                continue  # killed already; _run has not reaped it yet
            began = time.monotonic()
            if self._ping(proc, PROBE_TIMEOUT):
                proc.last_answer = time.monotonic()
                excused_by, cpu = None, None
                continue
            pause = 0.0
            ticks = process_cpu_ticks(process.pid)
            if ticks is not None and cpu is not None and ticks > cpu + 1:
                cpu_used_at = began  # working on something, not frozen
            cpu = ticks
            silent = time.monotonic() - proc.last_answer
            busy = cpu_used_at > proc.last_answer
            if silent < HANG_AFTER or (busy and silent < BUSY_LIMIT):
                continue
            # Only helpers with a socket write the database (the DNS server only reads,
            # and WAL readers never wait on the write lock).
            holders = (
                [p for p in self._lock_holders(proc) if p != process.pid] if proc.socket else []
            )
            if holders:
                if excused_by != holders[0]:
                    log.warning(
                        f"container-apiserver: {proc.name} (pid {process.pid}) has not "
                        f"answered for {silent:.0f} s; the state database is locked by "
                        f"pid {holders[0]}, so it is left alone"
                    )
                excused_by = holders[0]
                pause = PROBE_INTERVAL
                continue
            self._kill_hung(proc, process, f"did not answer for {silent:.1f} s")

    def _lock_holders(self, proc: SupervisedProcess) -> list[int]:
        files = [self.database] if self.database is not None else []
        return [pid for path in [*files, *proc.databases] for pid in lock_holders(path)]

    def _kill_hung(
        self, proc: SupervisedProcess, process: subprocess.Popen[bytes], reason: str
    ) -> None:
        proc.hung_reason, proc.hung_pid = reason, process.pid
        log.warning(
            f"container-apiserver: {proc.name} (pid {process.pid}) {reason}; "
            "killing it (SIGKILL) to restart it"
        )
        # SIGKILL, not SIGTERM: a frozen (SIGSTOPped) or stuck process would never act on
        # SIGTERM, and must never come back to act on stale state after a SIGCONT.
        try:
            os.kill(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def wait_ready(self, name: str, timeout: float) -> bool:
        proc = self.processes.get(name)
        return proc is not None and proc.ready.wait(timeout)

    def stop(self, name: str, timeout: float = 10.0) -> None:
        """Stop one process for good (a plugin helper the API server refuses)."""
        with self.lock:
            proc = self.processes.pop(name, None)
        if proc is None:
            return
        self._halt(proc, timeout)

    def stop_all(self, timeout: float = 10.0) -> None:
        self._stop.set()
        for proc in list(self.processes.values()):
            self._halt(proc, timeout)

    @staticmethod
    def _halt(proc: SupervisedProcess, timeout: float) -> None:
        """Terminate one process (no restart follows) and remove its pid file and socket."""
        proc.stopping = True
        if proc.process is not None and proc.process.poll() is None:
            terminate(proc.process.pid, timeout)
            proc.process.wait()
        proc.pidfile.unlink(missing_ok=True)
        if proc.socket is not None:
            proc.socket.unlink(missing_ok=True)

    def status(self) -> list[dict[str, object]]:
        return [
            {
                "name": p.name,
                "pid": p.pid,
                "socket": str(p.socket) if p.socket else None,
                "state": (
                    "running"
                    if p.ready.is_set()
                    else ("restarting" if p.hung_reason or p.restarts else "starting")
                ),
                "restarts": p.restarts,
                "lastRestartReason": p.last_restart_reason,
                "lastRestartAt": p.last_restart_at,
            }
            for p in self.processes.values()
        ]
