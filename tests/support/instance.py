"""A throwaway container system for one test: own network namespace, state root,
run dir and HOME, so tests never touch the machine's interfaces or firewall.

Daemons run inside the namespace via `nsenter --net` (not `ip netns exec`, which
would give them a private mount namespace and hide the namespaces they mount).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VENV_BIN = Path(sys.executable).parent


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def run(argv: list[str], check: bool = True, timeout: float = 60, **kw: Any) -> Result:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    result = Result(proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        raise AssertionError(f"{argv} failed ({proc.returncode}): {proc.stderr}{proc.stdout}")
    return result


_READABLE_COPY: list[Path] = []


def readable_package_copy() -> Path:
    """A copy of the container_runtime package in a world-readable temporary directory
    (made once per test session, removed at exit), for running it as another user."""
    if not _READABLE_COPY:
        import atexit
        import tempfile

        import container_runtime

        base = Path(tempfile.mkdtemp(prefix="ctr-pkg-"))
        atexit.register(shutil.rmtree, base, ignore_errors=True)
        shutil.copytree(
            Path(container_runtime.__file__).parent,
            base / "container_runtime",
            ignore=shutil.ignore_patterns("__pycache__"),
        )
        for path in [base, *base.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        _READABLE_COPY.append(base)
    return _READABLE_COPY[0]


class NetnsPool:
    """Named network namespaces made by a test; all deleted at the end."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def create(self, prefix: str = "t") -> str:
        name = f"{prefix}-{secrets.token_hex(4)}"
        run(["ip", "netns", "add", name])
        self.names.append(name)
        run(["ip", "-n", name, "link", "set", "lo", "up"])
        return name

    def exec(self, name: str, argv: list[str], check: bool = True, timeout: float = 30) -> Result:
        return run(["ip", "netns", "exec", name, *argv], check=check, timeout=timeout)

    def cleanup(self) -> None:
        for name in self.names:
            subprocess.run(["ip", "netns", "pids", name], capture_output=True)
            pids = subprocess.run(
                ["ip", "netns", "pids", name], capture_output=True, text=True
            ).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        self.names.clear()


class Instance:
    def __init__(self, base: Path, pool: NetnsPool) -> None:
        self.base = base
        self.pool = pool
        self.netns = pool.create("ctr")
        self.root = base / "root"
        self.run_dir = base / "run"
        self.home = base / "home"
        for d in (self.root, self.run_dir, self.home):
            d.mkdir(parents=True, exist_ok=True)
        self.env = {
            "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}",
            "HOME": str(self.home),
            "CONTAINER_ROOT": str(self.root),
            "CONTAINER_RUN_DIR": str(self.run_dir),
            "LANG": "C.UTF-8",
        }
        for key in ("CONTAINER_DNS_HOST_PORT", "CONTAINER_VM_GUEST", "PYTHONPATH"):
            if key in os.environ:
                self.env[key] = os.environ[key]

    @property
    def config_file(self) -> Path:
        return self.home / ".config" / "container" / "config.toml"

    def write_config(self, text: str) -> None:
        self.config_file.parent.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(text)

    def in_ns(self, argv: list[str]) -> list[str]:
        return ["nsenter", f"--net=/run/netns/{self.netns}", *argv]

    def cli(
        self, *args: str, check: bool = True, timeout: float = 120, user: str | None = None
    ) -> Result:
        if user is not None:
            return self.as_user(
                ["-m", "container_runtime.cli.main", *args], uid=user, check=check, timeout=timeout
            )
        argv = [str(VENV_BIN / "container"), *args]
        return run(self.in_ns(argv), check=check, timeout=timeout, env=self.env)

    def as_user(
        self,
        python_args: list[str],
        uid: str = "65534",
        groups: int | None = None,
        check: bool = True,
        timeout: float = 120,
    ) -> Result:
        """`python PYTHON_ARGS...` as another user (gid 65534, supplementary `groups` or
        none) in the daemons' namespace. The clone (and its .venv) may live in a 0700 home
        such as /root: the project's code runs from a world-readable copy with the
        system's python."""
        copy = readable_package_copy()
        argv = ["setpriv", f"--reuid={uid}", "--regid=65534"]
        argv += [f"--groups={groups}"] if groups is not None else ["--clear-groups"]
        argv += [os.path.realpath(sys.executable), *python_args]
        env = {**self.env, "PYTHONPATH": str(copy)}
        return run(self.in_ns(argv), check=check, timeout=timeout, env=env, cwd=str(copy))

    def sh(self, *argv: str, check: bool = True, timeout: float = 30) -> Result:
        """Run a command in the daemons' network namespace."""
        return run(self.in_ns(list(argv)), check=check, timeout=timeout, env=self.env)

    def start(self) -> None:
        self.cli("system", "start")

    def pid(self, name: str) -> int | None:
        try:
            return int((self.run_dir / f"{name}.pid").read_text())
        except (OSError, ValueError):
            return None

    def wait_pid_change(self, name: str, old: int | None, timeout: float = 20) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid = self.pid(name)
            if pid and pid != old and Path(f"/proc/{pid}").exists():
                return pid
            time.sleep(0.05)
        raise AssertionError(f"{name} did not restart")

    def our_processes(self) -> list[int]:
        """Every process started with this instance's run dir in its environment."""
        marker = f"CONTAINER_RUN_DIR={self.run_dir}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
        return found

    def links(self) -> list[dict[str, Any]]:
        out = self.sh("ip", "-j", "link").json()
        return [{"ifname": link["ifname"], "kind": link.get("link_type")} for link in out]

    def nft_tables(self) -> str:
        return self.sh("nft", "list", "tables").stdout

    def cleanup(self) -> None:
        subprocess.run(
            self.in_ns([str(VENV_BIN / "container"), "system", "stop"]),
            env=self.env,
            capture_output=True,
            timeout=120,
        )
        for pid in self.our_processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        # Namespaces and overlay mounts the daemons mounted under our directories.
        mounts = [
            line.split()[1]
            for line in Path("/proc/self/mounts").read_text().splitlines()
            if line.split()[1].startswith(str(self.base))
        ]
        for mount in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", mount], capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)


def assert_refused(result: Result, *fragments: str) -> None:
    """A refusal: non-zero exit and exactly one `Error: ...` line naming the fragments."""
    assert result.returncode != 0, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: "), lines
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def attachments(inst: Instance, network: str) -> list[dict[str, Any]]:
    """A network's attachments, straight from the API."""
    from container_runtime.client import UnixClient

    client = UnixClient(inst.run_dir / "apiserver.sock")
    try:
        return list(client.request("GET", f"/v1/networks/{network}/attachments"))
    finally:
        client.close()


@contextlib.contextmanager
def started_system() -> Iterator[Instance]:
    """A started container system in its own namespace and state root (for a module-scoped
    fixture); stopped and removed afterwards, also when the module fails."""
    pool = NetnsPool()
    base = Path(tempfile.mkdtemp(prefix="ctr-test-"))
    base.chmod(0o755)  # not 0700: some tests run the CLI as another user
    inst = Instance(base, pool)
    try:
        inst.start()
        yield inst
    finally:
        inst.cleanup()
        pool.cleanup()
