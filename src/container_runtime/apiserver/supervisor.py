"""Supervision of helper processes (network plugins, DNS): start, watch, restart.

A helper that dies is restarted with a growing back-off; it rebuilds its own view
from the database and the kernel, so a restart loses nothing.  Helpers get
PDEATHSIG, so they do not outlive a killed API server; the next API server
replaces any that did.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..client import UnixClient
from ..daemon import die_with_parent, pid_of, terminate
from ..errors import Unavailable

log = logging.getLogger("container-apiserver")


@dataclass
class SupervisedProcess:
    name: str  # e.g. "network-bridge"
    argv: list[str]
    socket: Path | None
    pidfile: Path
    logfile: Path
    marker: str  # a string in its cmdline, to recognise a stale instance
    env: dict[str, str] = field(default_factory=dict)
    # readiness of a helper without an HTTP socket (True = serving); None = at once
    probe: Callable[[], bool] | None = None
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    stopping: bool = False
    ready: threading.Event = field(default_factory=threading.Event)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process and self.process.poll() is None else None


class Supervisor:
    def __init__(self) -> None:
        self.processes: dict[str, SupervisedProcess] = {}
        self.lock = threading.Lock()

    def start(self, proc: SupervisedProcess, wait: float = 15.0) -> None:
        with self.lock:
            if proc.name in self.processes:
                return
            self.processes[proc.name] = proc
        thread = threading.Thread(target=self._run, args=(proc,), name=proc.name, daemon=True)
        thread.start()
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

    def _wait_ready(self, proc: SupervisedProcess, timeout: float = 15.0) -> bool:
        deadline = time.monotonic() + timeout
        if proc.socket is None:
            if proc.probe is None:
                return True
            while time.monotonic() < deadline:
                if proc.process is None or proc.process.poll() is not None:
                    return False
                if proc.probe():
                    return True
                time.sleep(0.01)
            return False
        client = UnixClient(proc.socket, timeout=2.0, what=proc.name)
        try:
            while time.monotonic() < deadline:
                if proc.process is None or proc.process.poll() is not None:
                    return False
                try:
                    client.request("GET", "/status")
                    return True
                except Unavailable:
                    time.sleep(0.01)
            return False
        finally:
            client.close()

    def _run(self, proc: SupervisedProcess) -> None:
        """Runs in a long-lived thread: PDEATHSIG is tied to the thread that spawned."""
        backoff = 0.1
        while not proc.stopping:
            self._spawn(proc)
            started = time.monotonic()
            if self._wait_ready(proc):
                proc.ready.set()
                log.info(f"container-apiserver: {proc.name} running (pid {proc.pid})")
            assert proc.process is not None
            code = proc.process.wait()
            proc.ready.clear()
            if proc.stopping:
                break
            proc.restarts += 1
            if time.monotonic() - started > 30:
                backoff = 0.1
            log.warning(
                f"container-apiserver: {proc.name} exited with status {code}; "
                f"restarting in {backoff:.1f} s"
            )
            time.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    def wait_ready(self, name: str, timeout: float) -> bool:
        proc = self.processes.get(name)
        return proc is not None and proc.ready.wait(timeout)

    def stop_all(self, timeout: float = 10.0) -> None:
        for proc in list(self.processes.values()):
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
                "state": "running" if p.ready.is_set() else "starting",
                "restarts": p.restarts,
            }
            for p in self.processes.values()
        ]
