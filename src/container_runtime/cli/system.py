"""`container system start|stop|status` (and `system dns`, in dns.py)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from ..errors import ContainerError, PermissionDenied, Unavailable
from ..paths import Paths
from .api import api
from .output import dumps, show_help, table

APISERVER_MARKER = "container-apiserver"
HELPER_MARKER = "container-"


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    system = commands.add_parser("system", aliases=["s"], help="manage the container system")
    system.set_defaults(handler=show_help(system))
    sub = system.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
    start = sub.add_parser("start", help="start the API server and its helpers")
    start.add_argument(
        "--timeout", type=float, default=60.0, metavar="SECONDS", help="wait this long (default 60)"
    )
    start.set_defaults(handler=start_system)
    stop = sub.add_parser("stop", help="stop every container, then the daemons")
    stop.set_defaults(handler=stop_system)
    status = sub.add_parser("status", help="show whether it runs: version, roots, daemons")
    status.add_argument(
        "--format", choices=["table", "json"], default="table", help="output format"
    )
    status.set_defaults(handler=system_status)
    from . import dns

    dns.register(sub)


def _apiserver_argv() -> list[str]:
    script = Path(sys.executable).parent / "container-apiserver"
    if script.is_file():
        return [sys.executable, str(script)]
    return [sys.executable, "-m", "container_runtime.apiserver.server", APISERVER_MARKER]


def _need_root(command: str, why: str) -> None:
    # Refused up front in one line: without root these fail deep inside (os.kill, the
    # start lock, /var/lib/container) with a PermissionError.
    if os.geteuid() != 0:
        raise PermissionDenied(
            f"`container system {command}` needs root ({why}); run it as root or with sudo"
        )


def _ping() -> int | None:
    client = api(timeout=5.0)
    try:
        return int(client.request("GET", "/v1/ping")["pid"])
    except Unavailable:
        return None
    finally:
        client.close()


def _last_error(log: Path, offset: int) -> str:
    try:
        with open(log, "rb") as handle:
            handle.seek(offset)
            text = handle.read().decode(errors="replace")
    except OSError:
        return ""
    for line in reversed(text.splitlines()):
        if "Error: " in line:
            return line.split("Error: ", 1)[1]
    return text.strip().splitlines()[-1] if text.strip() else ""


def start_system(args: argparse.Namespace) -> int:
    import subprocess

    from ..config import load_config
    from ..daemon import InstanceLock

    _need_root("start", "the daemons create namespaces, links and firewall rules")
    paths = Paths.from_env()
    load_config(paths.config_file)  # a broken config is refused before anything starts
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    lock = InstanceLock(paths.run_dir / "start.lock")
    if not lock.acquire(timeout=args.timeout):
        raise Unavailable("another `container system start` is still running")
    try:
        pid = _ping()
        if pid is not None:
            print(f"container system is already running (apiserver pid {pid})")
            return 0
        offset = paths.api_log.stat().st_size if paths.api_log.exists() else 0
        with open(paths.api_log, "ab") as log:
            process = subprocess.Popen(
                _apiserver_argv(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                close_fds=True,
            )
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            pid = _ping()
            if pid is not None:
                print(f"container system started (apiserver pid {pid})")
                return 0
            if process.poll() is not None:
                reason = _last_error(paths.api_log, offset) or f"exit status {process.returncode}"
                raise ContainerError(f"container-apiserver failed to start: {reason}")
            time.sleep(0.02)
        raise Unavailable(
            f"container-apiserver did not start in {args.timeout:.0f} s; see {paths.api_log}"
        )
    finally:
        lock.release()


def stop_system(_: argparse.Namespace) -> int:
    from ..daemon import pid_of, terminate

    _need_root("stop", "it signals root's daemons and containers")
    paths = Paths.from_env()
    pid = pid_of(paths.api_pidfile, APISERVER_MARKER)
    if pid is not None:
        terminate(pid, timeout=60.0)
    # Anything left from a crashed API server: helpers, DNS.
    for pidfile in paths.run_dir.glob("*.pid") if paths.run_dir.is_dir() else []:
        stale = pid_of(pidfile, HELPER_MARKER)
        if stale is not None and stale != os.getpid():
            terminate(stale, timeout=10.0)
        pidfile.unlink(missing_ok=True)
    print("container system stopped")
    return 0


def system_status(args: argparse.Namespace) -> int:
    """Whether the system runs, its version and roots, and each daemon. JSON: one object,
    also when not running (`{"status": "not running"}`, exit 1), for scripts."""
    client = api(timeout=10.0)
    try:
        status = client.request("GET", "/v1/system/status")
    except Unavailable:
        if args.format == "json":
            print(dumps({"status": "not running"}))
        else:
            paths = Paths.from_env()
            print("status:       not running")
            print(f"state root:   {paths.root}")
            print(f"run root:     {paths.run_dir}")
        return 1
    finally:
        client.close()
    api_server = status["apiserver"]
    if args.format == "json":
        summary = {
            "status": "running",
            "version": api_server.get("version"),
            "root": api_server.get("root"),
            "runDir": api_server.get("runDir"),
            **status,
        }
        print(dumps(summary))
        return 0
    print("status:       running")
    print(f"version:      {api_server.get('version', '-')}")
    print(f"state root:   {api_server.get('root', '-')}")
    print(f"run root:     {api_server.get('runDir', '-')}")
    print()
    rows = [["container-apiserver", api_server["pid"], api_server["socket"], "running", "-", "-"]]
    for helper in status["helpers"]:
        rows.append(
            [
                f"container-{helper['name']}",
                helper["pid"] or "-",
                helper["socket"] or "-",
                helper["state"],
                helper.get("restarts", 0),
                helper.get("lastRestartReason") or "-",
            ]
        )
    print(table(["DAEMON", "PID", "SOCKET", "STATE", "RESTARTS", "LAST RESTART"], rows))
    return 0
