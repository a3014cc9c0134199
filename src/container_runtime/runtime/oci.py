"""OCI bundles run by runc under conmon.

Layout of one container (``containers_dir/<id>/``, persistent)::

    config.json        the OCI runtime spec (built by spec.py)
    rootfs/            overlayfs mount while the process runs (unmounted when it stops):
                       lower = cached image rootfs, upper/ + work/ here
    upper/ work/       overlay layers (the container's writable layer)
    etc/hosts etc/resolv.conf etc/hostname   bind-mounted into the container
    ctr.log            stdout+stderr, CRI "k8s-file" format (see parse_log_line)
    exits/<id>         written by conmon when the process exits: the exit status
    pidfile conmon.pid container init pid, conmon pid
    ctl winsz          conmon's control FIFOs (``1 ROWS COLS`` resizes a TTY)

conmon's attach socket is ``run_dir/conmon/<id>/attach`` (stdin in, stdout/stderr out).

runc keeps its own state under ``run_dir/runc`` (``--root``), so instances with
different run dirs never see each other's containers.

There is no Python process per container: ``start()`` spawns conmon, which
daemonises (its own session, reparented to init), runs ``runc create``, reports
the pid on a sync pipe and stays as the container's parent: it copies stdio to the
log and writes the exit status to ``exits/<id>``.  The caller may die at any time
after ``start()`` returns; the container keeps running and its exit status remains
readable by ``state()`` from any later process.  If the caller dies before it has
read the pid, conmon dies of SIGPIPE and leaves a ``runc init`` behind: ``abort()``
removes it (the API server's reconciliation calls it).
"""

from __future__ import annotations

import errno
import json
import os
import re
import select
import shutil
import signal as signal_mod
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import Conflict, ContainerError, InvalidArgument, NotFound
from ..syscalls import mount, umount_detach
from .images import ImageInfo, ImageStore
from .spec import BindMount, UtsNames, runtime_spec

RUNC = shutil.which("runc") or "/usr/sbin/runc"
CONMON = shutil.which("conmon") or "/usr/bin/conmon"

CONTAINER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
HOSTNAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
ENV_KEY_RE = re.compile(r"^[^=\x00]+$")
START_TIMEOUT = 60.0
# conmon writes exits/<id> just after it reaps the process; on a loaded machine that can
# take seconds, so state() waits for it as long as conmon lives (bounded by this).
EXIT_FILE_TIMEOUT = 60.0


def _mount_overlay(lower: Path, upper: Path, work: Path, target: Path) -> None:
    opts = f"lowerdir={lower},upperdir={upper},workdir={work}"
    try:
        mount("overlay", str(target), "overlay", 0, opts)
    except OSError as exc:
        raise ContainerError(
            f"mounting the rootfs overlay on {target} failed: {os.strerror(exc.errno or 0)}"
        ) from None


def _umount(target: Path) -> None:
    for _ in range(10):
        if not os.path.ismount(target):
            return
        try:
            umount_detach(str(target))
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.ENOENT):
                return
            raise ContainerError(
                f"unmounting {target} failed: {os.strerror(exc.errno or 0)}"
            ) from None


def validate_container_id(container_id: str) -> str:
    if not isinstance(container_id, str) or not CONTAINER_ID_RE.match(container_id):
        raise InvalidArgument(f"invalid container id {container_id!r}")
    return container_id


def _check_strings(what: str, values: Sequence[str]) -> None:
    for v in values:
        if not isinstance(v, str) or "\x00" in v:
            raise InvalidArgument(f"invalid {what} {v!r}")


@dataclass(frozen=True)
class ProcessSpec:
    args: tuple[str, ...]
    env: tuple[str, ...] = ()
    cwd: str = "/"
    terminal: bool = False
    user: str = ""  # "uid[:gid]" or a name from the image's /etc/passwd; "" = root

    def __post_init__(self) -> None:
        object.__setattr__(self, "args", tuple(self.args))
        object.__setattr__(self, "env", tuple(self.env))
        if not self.args:
            raise InvalidArgument("no command given and the image has no Entrypoint or Cmd")
        _check_strings("argument", self.args)
        _check_strings("environment entry", self.env)
        for item in self.env:
            key, sep, _ = item.partition("=")
            if not sep or not ENV_KEY_RE.match(key):
                raise InvalidArgument(f"invalid environment entry {item!r}: expected KEY=VALUE")
        if not self.cwd.startswith("/") or "\x00" in self.cwd:
            raise InvalidArgument(f"invalid working directory {self.cwd!r}: must be absolute")

    @classmethod
    def from_image(
        cls,
        image: ImageInfo,
        command: Sequence[str] | None = None,
        entrypoint: Sequence[str] | None = None,
        env: Sequence[str] | dict[str, str] | None = None,
        cwd: str | None = None,
        terminal: bool = False,
        user: str | None = None,
    ) -> ProcessSpec:
        """Docker semantics: args = (entrypoint or image Entrypoint) + (command or image Cmd);
        an explicit entrypoint drops the image's Cmd; env = image Env overridden by key."""
        ep = list(entrypoint) if entrypoint is not None else list(image.entrypoint)
        if command:
            cmd = list(command)
        elif entrypoint is not None:
            cmd = []
        else:
            cmd = list(image.cmd)
        merged: dict[str, str] = {}
        for item in image.env:
            k, _, v = item.partition("=")
            merged[k] = v
        extra = (
            env.items()
            if isinstance(env, dict)
            else (tuple(e.partition("=")[::2]) for e in (env or ()))
        )
        for k, v in extra:
            merged[k] = v
        return cls(
            args=tuple(ep + cmd),
            env=tuple(f"{k}={v}" for k, v in merged.items()),
            cwd=cwd or image.working_dir or "/",
            terminal=terminal,
            user=user if user is not None else image.user,
        )


@dataclass(frozen=True)
class ContainerRuntimeState:
    id: str
    status: str  # "created" | "running" | "stopped"
    pid: int | None = None
    exit_code: int | None = None  # None while running or when unknown
    finished_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "pid": self.pid,
            "exitCode": self.exit_code,
            "finishedAt": self.finished_at,
        }


@dataclass(frozen=True)
class LogLine:
    time: str
    stream: str  # "stdout" | "stderr"
    text: str  # without the trailing newline
    partial: bool = False


def parse_log_line(line: str) -> LogLine | None:
    """One line of conmon's k8s-file log: ``TIME STREAM F|P TEXT``."""
    parts = line.rstrip("\n").split(" ", 3)
    if len(parts) < 3 or parts[1] not in ("stdout", "stderr"):
        return None
    text = parts[3] if len(parts) == 4 else ""
    return LogLine(time=parts[0], stream=parts[1], text=text, partial=parts[2] == "P")


@dataclass
class _Files:
    bundle: Path
    config: Path = field(init=False)
    rootfs: Path = field(init=False)
    upper: Path = field(init=False)
    work: Path = field(init=False)
    etc: Path = field(init=False)
    log: Path = field(init=False)
    exits: Path = field(init=False)
    pidfile: Path = field(init=False)
    conmon_pidfile: Path = field(init=False)
    lower: Path = field(init=False)

    def __post_init__(self) -> None:
        b = self.bundle
        self.config = b / "config.json"
        self.rootfs = b / "rootfs"
        self.upper = b / "upper"
        self.work = b / "work"
        self.etc = b / "etc"
        self.log = b / "ctr.log"
        self.exits = b / "exits"
        self.pidfile = b / "pidfile"
        self.conmon_pidfile = b / "conmon.pid"
        self.conmon_log = b / "conmon.log"
        self.lower = b / "lowerdir"  # text file: the image rootfs this bundle overlays


def _pid_alive(pid: int, start_time: str | None = None) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return False
    return start_time is None or fields[19] == start_time


_LOGRUS_RE = re.compile(r'time="[^"]*" level=\w+ msg="((?:[^"\\]|\\.)*)"')


def _clean(text: str) -> str:
    """runc/conmon errors come as logrus lines: keep the messages only."""
    msgs = [m.replace('\\"', '"') for m in _LOGRUS_RE.findall(text)]
    return "; ".join(msgs) if msgs else text.strip()


def _tail(path: Path, limit: int = 500) -> str:
    try:
        return path.read_text(errors="replace").strip()[-limit:]
    except FileNotFoundError:
        return ""


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class OciRuntime:
    def __init__(
        self, containers_dir: Path, run_dir: Path, images: ImageStore | None = None
    ) -> None:
        self.containers_dir = Path(containers_dir).absolute()
        self.run_dir = Path(run_dir).absolute()
        for p in (self.containers_dir, self.run_dir):
            if any(c in str(p) for c in ",:\n"):
                raise InvalidArgument(f"runtime path {p} must not contain ',' or ':'")
        self.runc_root = self.run_dir / "runc"
        self.socket_dir = self.run_dir / "conmon"
        self.images = images or ImageStore(self.containers_dir.parent / "images")

    # --- helpers -----------------------------------------------------------------------

    def _files(self, container_id: str) -> _Files:
        return _Files(self.containers_dir / validate_container_id(container_id))

    def _runc(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [RUNC, "--root", str(self.runc_root), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def _runc_state_file(self, container_id: str) -> dict[str, Any] | None:
        try:
            data = json.loads((self.runc_root / container_id / "state.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return data if isinstance(data, dict) else None

    def _exit_code(self, f: _Files, container_id: str) -> tuple[int | None, str | None]:
        path = f.exits / container_id
        try:
            text = path.read_text().strip()
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            return None, None
        try:
            code = int(text)
        except ValueError:
            return None, None
        when = datetime.fromtimestamp(mtime, UTC).isoformat().replace("+00:00", "Z")
        return code, when

    def _ensure_rootfs(self, f: _Files) -> None:
        if os.path.ismount(f.rootfs):
            return
        lower = Path(f.lower.read_text().strip())
        if not lower.is_dir():
            raise NotFound(f"image root filesystem {lower} is gone (image deleted?)")
        _mount_overlay(lower, f.upper, f.work, f.rootfs)

    # --- public API --------------------------------------------------------------------

    def bundle_path(self, container_id: str) -> Path:
        return self._files(container_id).bundle

    def logs_path(self, container_id: str) -> Path:
        return self._files(container_id).log

    def list_ids(self) -> list[str]:
        if not self.containers_dir.is_dir():
            return []
        return sorted(
            p.name
            for p in self.containers_dir.iterdir()
            if CONTAINER_ID_RE.match(p.name) and (p / "config.json").exists()
        )

    def create_bundle(
        self,
        container_id: str,
        image: ImageInfo,
        process: ProcessSpec,
        hostname: str,
        netns_path: str | None,
        hosts: str,
        resolv_conf: str,
        volumes: Sequence[BindMount] = (),
        init: bool = False,
        uts: UtsNames | None = None,
    ) -> Path:
        """Write the bundle and mount its rootfs (overlay on the cached image rootfs).

        The UTS hostname is the first label of `hostname`, unless `uts` gives it whole
        (`--hostname`), with a domain name and no network namespace (`--network host`)."""
        f = self._files(container_id)
        short = uts.hostname if uts and uts.hostname else hostname.rstrip(".").split(".")[0]
        names = short + "." + (uts.domainname or "") if uts else short
        for label in names.strip(".").split("."):
            if not HOSTNAME_RE.match(label):
                raise InvalidArgument(f"invalid hostname {hostname!r}")
        if netns_path is not None and (not netns_path.startswith("/") or "\x00" in netns_path):
            raise InvalidArgument(f"invalid network namespace path {netns_path!r}")
        if f.bundle.exists():
            raise Conflict(f"container {container_id} already exists")
        lower = self.images.rootfs(image)
        f.bundle.mkdir(parents=True, mode=0o700)
        try:
            for d in (f.rootfs, f.upper, f.work, f.etc, f.exits):
                d.mkdir()
            f.lower.write_text(str(lower))
            (f.etc / "hosts").write_text(hosts)
            (f.etc / "resolv.conf").write_text(resolv_conf)
            (f.etc / "hostname").write_text(short + "\n")
            _mount_overlay(lower, f.upper, f.work, f.rootfs)
            spec = runtime_spec(
                container_id, f.rootfs, f.etc, process, short, netns_path, volumes, init, uts
            )
            tmp = f.bundle / ".config.json.tmp"
            tmp.write_text(json.dumps(spec, indent=1))
            tmp.rename(f.config)
        except BaseException:
            _umount(f.rootfs)
            shutil.rmtree(f.bundle, ignore_errors=True)
            raise
        return f.bundle

    def etc_text(self, container_id: str, name: str) -> str:
        """The text of a container's /etc/hosts, resolv.conf or hostname ("" if none)."""
        if name not in ("hosts", "resolv.conf", "hostname"):
            raise InvalidArgument(f"not a container /etc file: {name!r}")
        try:
            return (self._files(container_id).etc / name).read_text()
        except FileNotFoundError:
            return ""

    def update_etc(
        self, container_id: str, hosts: str | None = None, resolv_conf: str | None = None
    ) -> None:
        """Rewrite /etc/hosts or /etc/resolv.conf in place (the bind mounts keep the inode)."""
        f = self._files(container_id)
        for name, text in (("hosts", hosts), ("resolv.conf", resolv_conf)):
            if text is not None:
                with open(f.etc / name, "r+") as fh:
                    fh.truncate(0)
                    fh.write(text)

    def start(self, container_id: str, stdin: bool = False, begin: bool = True) -> int:
        """Start the container detached under conmon; returns the container's pid.

        ``stdin``: conmon keeps a pipe (or the TTY) for stdin, fed through the attach
        socket.  ``begin=False`` stops after `runc create` (the process exists but has
        not run a single instruction): a client attaches first, then ``resume()``."""
        f = self._files(container_id)
        if not f.config.exists():
            raise NotFound(f"container {container_id} not found")
        current = self.state(container_id)
        if current.status == "running":
            raise Conflict(f"container {container_id} is already running")
        if self._runc_state_file(container_id) is not None:
            self._runc("delete", "--force", container_id)
        self._ensure_rootfs(f)
        for stale in (f.exits / container_id, f.pidfile, f.conmon_pidfile):
            stale.unlink(missing_ok=True)
        self.runc_root.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            CONMON,
            "--api-version",
            "1",
            "-c",
            container_id,
            "-u",
            container_id,
            "-n",
            container_id,
            "-r",
            RUNC,
            "-b",
            str(f.bundle),
            "-p",
            str(f.pidfile),
            "-P",
            str(f.conmon_pidfile),
            "-l",
            f"k8s-file:{f.log}",
            "--exit-dir",
            str(f.exits),
            "--persist-dir",
            str(f.bundle),
            "--socket-dir-path",
            str(self.socket_dir),
            "--runtime-arg",
            "--root",
            "--runtime-arg",
            str(self.runc_root),
            "--log-level",
            "error",
            "--no-sync-log",
        ]
        if json.loads(f.config.read_text())["process"].get("terminal"):
            argv.append("-t")
        if stdin:
            argv.append("-i")
        read_fd, write_fd = os.pipe()
        line = b""
        try:
            env = {
                "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
                "_OCI_SYNCPIPE": str(write_fd),
            }
            with open(f.conmon_log, "ab") as errlog:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=errlog,
                    pass_fds=(write_fd,),
                    env=env,
                    start_new_session=True,
                    cwd="/",
                )
            os.close(write_fd)
            write_fd = -1
            # conmon daemonises at once; its child writes {"data": PID} (or an error
            # message) on the sync pipe once `runc create` has finished.
            deadline = time.monotonic() + START_TIMEOUT
            while not line.endswith(b"\n"):
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([read_fd], [], [], left)[0]:
                    break
                chunk = os.read(read_fd, 4096)
                if not chunk:
                    break
                line += chunk
            proc.wait(timeout=5)
        finally:
            for fd in (read_fd, write_fd):
                if fd >= 0:
                    os.close(fd)
        try:
            msg = json.loads(line) if line.strip() else {}
        except json.JSONDecodeError:
            msg = {}
        pid = int(msg.get("data", msg.get("pid", -1)))
        if pid <= 0:
            detail = str(msg.get("message") or "") or _tail(f.conmon_log) or "conmon gave no pid"
            detail = _clean(detail)
            self._cleanup_failed_start(container_id, f)
            raise ContainerError(f"starting container {container_id} failed: {detail}")
        if begin:
            self.resume(container_id)
        return pid

    def resume(self, container_id: str) -> None:
        """`runc start`: let a container made by ``start(begin=False)`` run."""
        f = self._files(container_id)
        res = self._runc("start", container_id)
        if res.returncode != 0:
            self._cleanup_failed_start(container_id, f)
            raise ContainerError(f"starting container {container_id} failed: {_clean(res.stderr)}")

    def attach_socket(self, container_id: str) -> Path:
        """conmon's attach socket (SOCK_SEQPACKET): what a client writes goes to the
        container's stdin; it reads packets of one byte (2 stdout, 3 stderr) + data."""
        return self.socket_dir / validate_container_id(container_id) / "attach"

    def control_fifo(self, container_id: str) -> Path:
        """conmon's control FIFO: ``1 ROWS COLS`` resizes the container's TTY."""
        return self._files(container_id).bundle / "ctl"

    def conmon_alive(self, container_id: str) -> bool:
        try:
            pid = int(self._files(container_id).conmon_pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return False
        return _pid_alive(pid)

    def runc_ids(self) -> list[str]:
        """Containers runc has state for (under our --root)."""
        if not self.runc_root.is_dir():
            return []
        return sorted(p.name for p in self.runc_root.iterdir() if (p / "state.json").exists())

    def settle(self, container_id: str, timeout: float = 10.0) -> None:
        """Wait until a `runc create` that conmon is still running has finished (conmon
        then writes the container's pidfile), so what follows sees its outcome."""
        f = self._files(container_id)
        deadline = time.monotonic() + timeout
        while (
            not f.pidfile.exists()
            and self.conmon_alive(container_id)
            and time.monotonic() < deadline
        ):
            time.sleep(0.02)

    def has_started(self, container_id: str) -> bool:
        """Whether a start got as far as conmon (it writes its pidfile first)."""
        f = self._files(container_id)
        return f.conmon_pidfile.exists() or f.pidfile.exists()

    def has_runc_state(self, container_id: str) -> bool:
        return self._runc_state_file(container_id) is not None

    def abort(self, container_id: str) -> None:
        """Kill and forget a container's process (whatever runc made of it), keep the
        bundle: what is left of a start nobody finished."""
        f = self._files(container_id)
        if self._runc_state_file(container_id) is not None:
            self._runc("delete", "--force", container_id)
        self._wait_conmon(f, 2.0)
        if f.bundle.exists():
            _umount(f.rootfs)

    def release_rootfs(self, container_id: str) -> None:
        """Unmount the rootfs of a container whose process is gone (``start`` mounts it
        again), so a stopped container holds no mount."""
        f = self._files(container_id)
        if self._runc_state_file(container_id) is not None:
            self._runc("delete", "--force", container_id)
        _umount(f.rootfs)

    def _cleanup_failed_start(self, container_id: str, f: _Files) -> None:
        self._runc("delete", "--force", container_id)
        self._wait_conmon(f, 2.0)

    def _wait_conmon(self, f: _Files, timeout: float) -> None:
        try:
            pid = int(f.conmon_pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return
        deadline = time.monotonic() + timeout
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        if _pid_alive(pid):
            try:
                os.kill(pid, signal_mod.SIGKILL)
            except ProcessLookupError:
                pass

    def state(self, container_id: str) -> ContainerRuntimeState:
        """Status from files only (no subprocess): fast enough to call for every container.

        ``exits/<id>`` (conmon) is authoritative for stopped containers; otherwise runc's
        ``state.json`` gives the init pid and its start time, checked against /proc.
        """
        f = self._files(container_id)
        if not f.bundle.exists():
            raise NotFound(f"container {container_id} not found")
        code, when = self._exit_code(f, container_id)
        if code is not None:
            return ContainerRuntimeState(container_id, "stopped", None, code, when)
        rs = self._runc_state_file(container_id)
        if rs is None:
            if f.pidfile.exists():  # started once, runc state gone, exit status lost
                return ContainerRuntimeState(container_id, "stopped")
            return ContainerRuntimeState(container_id, "created")
        pid = int(rs.get("init_process_pid") or 0)
        start = rs.get("init_process_start")
        if pid > 0 and _pid_alive(pid, str(start) if start is not None else None):
            created = (self.runc_root / container_id / "exec.fifo").exists()
            return ContainerRuntimeState(container_id, "created" if created else "running", pid)
        # The process is gone; conmon writes the exit file once it has reaped it, which
        # takes a while on a loaded machine: wait as long as conmon lives.
        deadline = time.monotonic() + EXIT_FILE_TIMEOUT
        while True:
            alive = self.conmon_alive(container_id)
            code, when = self._exit_code(f, container_id)
            if code is not None:
                return ContainerRuntimeState(container_id, "stopped", None, code, when)
            if not alive or time.monotonic() >= deadline:
                return ContainerRuntimeState(container_id, "stopped")
            time.sleep(0.01)

    def kill(self, container_id: str, signal: int) -> None:
        sig = signal_mod.Signals(signal)  # raises ValueError for unknown numbers
        st = self.state(container_id)
        if st.pid is None:
            raise Conflict(f"container {container_id} is not running")
        res = self._runc("kill", container_id, str(int(sig)))
        if res.returncode != 0 and self.state(container_id).status != "stopped":
            raise ContainerError(f"killing container {container_id} failed: {_clean(res.stderr)}")

    def wait(self, container_id: str, timeout: float | None = None) -> ContainerRuntimeState:
        """Block until the container is stopped (or the timeout passes); returns its state."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            st = self.state(container_id)
            if st.status == "stopped" or st.pid is None:  # stopped, or never started
                return st
            if deadline is not None and time.monotonic() >= deadline:
                return st
            time.sleep(0.01)

    def stop(self, container_id: str, timeout: float = 10, sig: int = signal_mod.SIGTERM) -> int:
        """``sig`` (SIGTERM), then SIGKILL after ``timeout`` seconds; returns the exit code
        (128+signal when killed by a signal, -1 if unknown)."""
        st = self.state(container_id)
        if st.pid is not None:  # a live process (running, or created by runc)
            self._signal_quiet(container_id, sig)
            st = self.wait(container_id, timeout)
            if st.status != "stopped":
                self._signal_quiet(container_id, signal_mod.SIGKILL)
                st = self.wait(container_id, 10)
            if st.status != "stopped":
                raise ContainerError(f"container {container_id} did not stop")
            if st.exit_code is None:  # give conmon a moment to record the status
                self._wait_conmon(self._files(container_id), 2.0)
                st = self.state(container_id)
        return st.exit_code if st.exit_code is not None else -1

    def _signal_quiet(self, container_id: str, sig: int) -> None:
        self._runc("kill", container_id, str(int(sig)))

    def delete(self, container_id: str, force: bool = False) -> None:
        """Remove runc state, the rootfs mount and the bundle (kills first with force)."""
        f = self._files(container_id)
        if not f.bundle.exists() and self._runc_state_file(container_id) is None:
            raise NotFound(f"container {container_id} not found")
        if f.bundle.exists():
            st = self.state(container_id)
            if st.status == "running" and not force:
                raise Conflict(
                    f"container {container_id} is running: stop it first or delete with force"
                )
            if st.pid is not None:  # a live process (running, or created by runc)
                self._signal_quiet(container_id, signal_mod.SIGKILL)
                self.wait(container_id, 10)
        if self._runc_state_file(container_id) is not None:
            res = self._runc("delete", "--force", container_id)
            if res.returncode != 0 and self._runc_state_file(container_id) is not None:
                raise ContainerError(
                    f"deleting container {container_id} failed: {_clean(res.stderr)}"
                )
        self._wait_conmon(f, 2.0)
        _umount(f.rootfs)
        shutil.rmtree(f.bundle, ignore_errors=True)
        shutil.rmtree(self.socket_dir / container_id, ignore_errors=True)

    def exec_argv(
        self,
        container_id: str,
        args: Sequence[str],
        tty: bool = False,
        env: Sequence[str] = (),
        cwd: str | None = None,
    ) -> list[str]:
        """The argv that runs ``args`` in the container with the caller's stdio
        (run it with subprocess, stdio inherited or piped; exit status = the command's)."""
        validate_container_id(container_id)
        if not args:
            raise InvalidArgument("exec needs a command")
        _check_strings("argument", args)
        _check_strings("environment entry", env)
        argv = [RUNC, "--root", str(self.runc_root), "exec"]
        if tty:
            argv.append("--tty")
        for item in env:
            if "=" not in item:
                raise InvalidArgument(f"invalid environment entry {item!r}: expected KEY=VALUE")
            argv += ["--env", item]
        if cwd:
            argv += ["--cwd", cwd]
        return [*argv, "--", container_id, *args]

    def exec(
        self,
        container_id: str,
        args: Sequence[str],
        tty: bool = False,
        env: Sequence[str] = (),
        cwd: str | None = None,
        timeout: float | None = 60,
        input: bytes | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run a command to completion; returns stdout, stderr and exit status."""
        if self.state(container_id).status != "running":
            raise Conflict(f"container {container_id} is not running")
        return subprocess.run(
            self.exec_argv(container_id, args, tty, env, cwd),
            input=input,
            capture_output=True,
            timeout=timeout,
            stdin=None if input is not None else subprocess.DEVNULL,
        )

    def read_logs(self, container_id: str) -> Iterator[LogLine]:
        """The container's output so far, partial lines joined."""
        path = self.logs_path(container_id)
        if not path.exists():
            return
        pending: dict[str, str] = {}
        with open(path, encoding="utf-8", errors="replace") as fh:
            for raw in fh:
                item = parse_log_line(raw)
                if item is None:
                    continue
                if item.partial:
                    pending[item.stream] = pending.get(item.stream, "") + item.text
                    continue
                text = pending.pop(item.stream, "") + item.text
                yield LogLine(item.time, item.stream, text)
        for stream, text in pending.items():
            yield LogLine(_now(), stream, text, partial=True)
