"""A real systemd-resolved for one test, isolated from the host.

The Debian package is not installed (its postinst would replace the host's
/etc/resolv.conf); scripts/setup.sh extracts it into build/systemd-resolved. Here it runs
inside a test's network namespace, on a private system bus (its own dbus-daemon on a
socket in the test directory, reached through DBUS_SYSTEM_BUS_ADDRESS), as uid/gid 65534
with ambient capabilities instead of the `systemd-resolve` user, and in a private mount
namespace with a tmpfs on /run (its state files never reach the host's /run) and an empty
/etc/resolv.conf bound over the host's (no global DNS server imported from the host).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from pathlib import Path

from .instance import Result, run

RESOLVED_DIR = Path(__file__).resolve().parents[2] / "build" / "systemd-resolved"
RESOLVED_BINARY = RESOLVED_DIR / "lib" / "systemd" / "systemd-resolved"
RESOLVECTL = RESOLVED_DIR / "usr" / "bin" / "resolvectl"

_BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/><allow own="*"/><allow send_destination="*"/><allow receive_sender="*"/>
  </policy>
</busconfig>
"""

# Runs in the new mount namespace, already in the test's network namespace.
_CAPS = "+net_raw,+net_bind_service,+setpcap"
_START = (
    "set -e; mount -t tmpfs -o mode=0755 tmpfs /run; "
    "mkdir -p /run/systemd/resolve; chown 65534:65534 /run/systemd/resolve; "
    ": > /run/resolv.conf; mount --bind /run/resolv.conf /etc/resolv.conf; "
    "exec setpriv --reuid=65534 --regid=65534 --clear-groups "
    f"--inh-caps={_CAPS} --ambient-caps={_CAPS} {shlex.quote(str(RESOLVED_BINARY))}"
)


def missing_files() -> list[str]:
    """What scripts/setup.sh would fix: the extracted files, absent or for another systemd
    (the binary links the installed systemd's private library)."""
    missing = [str(p) for p in (RESOLVED_BINARY, RESOLVECTL) if not os.access(p, os.X_OK)]
    if not missing:
        installed = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", "systemd"], capture_output=True, text=True
        ).stdout
        try:
            extracted = (RESOLVED_DIR / "VERSION").read_text().strip()
        except OSError:
            extracted = "unknown"
        if extracted != installed:
            missing.append(
                f"systemd-resolved for systemd {installed or '(not installed)'}"
                f" (extracted: {extracted})"
            )
    return missing


class Resolved:
    """systemd-resolved and its bus in network namespace `netns`; state in `directory`."""

    def __init__(self, netns: str, directory: Path) -> None:
        self.netns = netns
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.socket = directory / "bus"
        self.address = f"unix:path={self.socket}"
        self.log = directory / "resolved.log"
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "LANG": "C.UTF-8",
            "DBUS_SYSTEM_BUS_ADDRESS": self.address,
        }
        self.bus: subprocess.Popen[str] | None = None
        self.daemon: subprocess.Popen[bytes] | None = None

    def _in_ns(self, argv: list[str]) -> list[str]:
        return ["nsenter", f"--net=/run/netns/{self.netns}", *argv]

    def start(self, timeout: float = 15.0) -> None:
        config = self.directory / "bus.conf"
        config.write_text(_BUS_CONFIG.format(socket=self.socket))
        # In the namespace too, so the namespace's cleanup kills it if we cannot.
        self.bus = subprocess.Popen(
            self._in_ns(["dbus-daemon", f"--config-file={config}", "--nofork", "--print-address"]),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=self.env,
        )
        assert self.bus.stdout is not None
        printed = self.bus.stdout.readline().strip()
        assert printed.startswith(self.address), f"dbus-daemon did not start: {printed!r}"
        with self.log.open("wb") as log:
            self.daemon = subprocess.Popen(
                [
                    "unshare",
                    "--mount",
                    "--propagation",
                    "private",
                    *self._in_ns(["sh", "-c", _START]),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
            )
        deadline = time.monotonic() + timeout
        while self.resolvectl("status", check=False).returncode != 0:
            if self.daemon.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"systemd-resolved did not start:\n{self.log.read_text()}")
            time.sleep(0.05)

    def resolvectl(self, *args: str, check: bool = True) -> Result:
        """The real resolvectl in the namespace, on the private bus."""
        return run(self._in_ns([str(RESOLVECTL), *args]), check=check, timeout=30, env=self.env)

    def stop(self) -> None:
        for proc in (self.daemon, self.bus):
            if proc is not None and proc.poll() is None:
                proc.kill()
            if proc is not None:
                proc.wait(timeout=10)
        if self.bus is not None and self.bus.stdout is not None:
            self.bus.stdout.close()
