"""What the HTTP server stands on: a listening Unix socket published atomically with
its access mode, the descriptor limit its connections need, and its worker pool."""

from __future__ import annotations

import os
import queue
import resource
import socket
import threading
from collections.abc import Callable
from pathlib import Path


class WorkerPool:
    """Daemon worker threads, started on demand up to `size` (they must not hold up
    the process's exit while a long handler runs)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.threads = 0
        self.idle = 0
        self.pending = 0

    def submit(self, job: Callable[[], None]) -> None:
        with self.lock:
            self.pending += 1
            spawn = self.pending > self.idle and self.threads < self.size
            if spawn:
                self.threads += 1
        self.jobs.put(job)
        if spawn:
            threading.Thread(target=self._run, name="http-worker", daemon=True).start()

    def _run(self) -> None:
        while True:
            with self.lock:
                self.idle += 1
            job = self.jobs.get()
            with self.lock:
                self.idle -= 1
                self.pending -= 1
            try:
                job()
            except BaseException:  # a worker must outlive any job (_work reports its own)
                pass


def raise_fd_limit(wanted: int) -> int:
    """Lift the soft RLIMIT_NOFILE towards the hard one; the connections we can hold."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def temporary_path(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    return tmp


def publish(tmp: Path, path: Path, mode: int, gid: int | None) -> None:
    """Set the listening socket's access, then rename it into place: a client never sees
    a socket that is not listening yet, or one with the wrong permissions."""
    os.chmod(tmp, mode)
    if gid is not None:
        os.chown(tmp, 0, gid)
    os.replace(tmp, path)


def listen(path: Path, mode: int, gid: int | None) -> socket.socket:
    """A non-blocking socket listening at `path`, with its mode and group set before
    it appears there."""
    tmp = temporary_path(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(tmp))
    sock.listen(1024)
    publish(tmp, path, mode, gid)
    sock.setblocking(False)
    return sock
