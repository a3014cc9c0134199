"""VmRuntime: VM containers, each a QEMU microvm run by its shim (shim.py); docs/VM.md.

Layout of one VM container (``vms_dir/<id>/``, persistent)::

    rootfs/ upper/ work/ lowerdir   overlay on the image rootfs, as for namespace containers;
                                    rootfs/ is what QEMU exports over virtio-9p (tag rootfs)
    initrd          the guest's initramfs + this container's /ct files (config.sh, hosts,
                    resolv.conf, hostname) as a second cpio archive
    vm.json         QEMU's argv (written before the shim starts)
    ctr.log         stdout/stderr, conmon's k8s-file format
    marks           the guest init's timing marks (JSON), for `inspect` and the bench
    exit            the process's exit status (written by the shim)
    shim.pid qemu.pid qemu.log

Sockets live in ``run_dir/vm/<id[:12]>/`` (QEMU's chardevs ctl/stdout/stderr, shim.sock):
the id is cut so that the paths fit sun_path.

The interface matches the part of OciRuntime that the API server uses for a running
container (state, kill, wait, stop, delete, release_rootfs, logs_path, exec_argv), so
apiserver/containers.py picks a runtime per container and otherwise runs one life cycle.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import shutil
import signal as signal_mod
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import Conflict, ContainerError, InvalidArgument
from ..images import ImageInfo, ImageStore
from ..oci import (
    ContainerRuntimeState,
    ProcessSpec,
    _check_strings,
    _mount_overlay,
    _pid_alive,
    _umount,
    validate_container_id,
)
from . import guest
from .execclient import shim_call

QEMU = shutil.which("qemu-system-x86_64") or "/usr/bin/qemu-system-x86_64"
BOOT_TIMEOUT = 60.0  # under TCG a loaded host stretches the boot (14 s seen at load 10)
PROBE_TIMEOUT = 5.0
# What costs boot time under emulation and protects nothing here is off (docs/VM.md).
KERNEL_CMDLINE = (
    "console=ttyS0 quiet panic=-1 pci=off no_timer_check mitigations=off cryptomgr.notests"
    " random.trust_cpu=on i8042.noaux i8042.nomux i8042.nopnp rcupdate.rcu_expedited=1"
    " 8250.nr_uarts=1"
)
IFNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
DEFAULT_CPUS = 1
DEFAULT_MEMORY_MB = 256


@dataclass(frozen=True)
class Nic:
    """One attachment as the guest configures it (from the plugin's reply)."""

    tap: str
    mac: str
    interface: str
    address: str
    gateway: str
    mtu: int
    ipv6: str | None = None
    gateway6: str | None = None


def tsc_args() -> str:
    """The host's TSC rate for the guest kernel: under TCG the guest reads the host's TSC,
    and its own calibration against the emulated PIT fails when the host is loaded (the
    boot then hangs with "tsc: Unable to calibrate against PIT")."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                khz = int(float(line.split(":")[1]) * 1000)
                return f" tsc_early_khz={khz} tsc=reliable"
    except (OSError, ValueError, IndexError):
        pass
    return ""


def probe_accelerator(base: Path | None = None) -> str:
    """ "kvm" when QEMU boots the guest kernel to /init under KVM, else "tcg" (tried once
    per host boot, cached in the guest dir; CONTAINER_VM_ACCEL forces one)."""
    forced = os.environ.get("CONTAINER_VM_ACCEL")
    if forced in ("kvm", "tcg"):
        return forced
    d = base or guest.guest_dir()
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    cache = d / "ACCEL"
    try:
        cached_boot, accel = cache.read_text().split()
        if cached_boot == boot_id and accel in ("kvm", "tcg"):
            return accel
    except (OSError, ValueError):
        pass
    accel = "tcg"
    if os.access("/dev/kvm", os.R_OK | os.W_OK):
        console = d / "ACCEL.console"
        argv = [
            QEMU, "-M", "microvm", "-accel", "kvm", "-cpu", "host", "-m", "128",
            "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
            "-kernel", str(guest.kernel_path(d)), "-initrd", str(guest.initramfs_path(d)),
            "-append", "console=ttyS0 panic=-1", "-serial", f"file:{console}",
        ]  # fmt: skip
        try:
            subprocess.run(argv, capture_output=True, timeout=PROBE_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
        try:
            if "Run /init" in console.read_text(errors="replace"):
                accel = "kvm"
        except OSError:
            pass
        console.unlink(missing_ok=True)
    tmp = d / "ACCEL.tmp"
    try:
        tmp.write_text(f"{boot_id} {accel}\n")
        tmp.rename(cache)
    except OSError:
        pass
    return accel


def guest_exec(process: ProcessSpec) -> str:
    """The guest shell command that runs the process: env -i, nsenter -r/-w (chroot to
    the rootfs, cd to the workdir), each word quoted."""
    words = ["env", "-i", *process.env, "nsenter", "-r/newroot", f"-w/newroot{process.cwd}"]
    user = str(process.user or "")
    if user and user not in ("0", "0:0", "root"):
        uid, _, gid = user.partition(":")
        if not uid.isdigit() or (gid and not gid.isdigit()):
            raise InvalidArgument(f"VM containers take a numeric user (uid[:gid]), not {user!r}")
        words += [f"-S{uid}", f"-G{gid or uid}"]
    words += ["--", *process.args]
    return " ".join(shlex.quote(w) for w in words)


def config_sh(
    hostname: str, nics: Sequence[Nic], process: ProcessSpec, domainname: str | None = None
) -> str:
    lines = [
        f"CT_HOSTNAME={shlex.quote(hostname)}",
        f"CT_DOMAINNAME={shlex.quote(domainname or '')}",
        f"CT_NICS={len(nics)}",
        f"CT_EXEC={shlex.quote(guest_exec(process))}",
    ]
    for i, n in enumerate(nics):
        for key, value in (
            ("MAC", n.mac),
            ("NAME", n.interface),
            ("ADDR", n.address),
            ("GW", n.gateway),
            ("MTU", str(n.mtu)),
            ("ADDR6", n.ipv6 or ""),
            ("GW6", n.gateway6 or ""),
        ):
            lines.append(f"CT_NIC{i}_{key}={shlex.quote(value)}")
    return "\n".join(lines) + "\n"


class VmRuntime:
    def __init__(self, vms_dir: Path, run_dir: Path, images: ImageStore) -> None:
        self.vms_dir = Path(vms_dir).absolute()
        self.sock_root = Path(run_dir).absolute() / "vm"
        self.images = images

    def _dir(self, cid: str) -> Path:
        return self.vms_dir / validate_container_id(cid)

    def _sockdir(self, cid: str) -> Path:
        return self.sock_root / validate_container_id(cid)[:12]

    def bundle_path(self, cid: str) -> Path:
        return self._dir(cid)

    def logs_path(self, cid: str) -> Path:
        return self._dir(cid) / "ctr.log"

    def list_ids(self) -> list[str]:
        if not self.vms_dir.is_dir():
            return []
        return sorted(p.name for p in self.vms_dir.iterdir() if (p / "lowerdir").exists())

    def marks(self, cid: str) -> dict[str, float]:
        try:
            data = json.loads((self._dir(cid) / "marks").read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def accelerator(self, cid: str) -> str | None:
        try:
            return str(json.loads((self._dir(cid) / "vm.json").read_text())["accelerator"])
        except (OSError, ValueError, KeyError):
            return None

    def boot_times(self, cid: str) -> dict[str, float]:
        """The last boot's parts in ms: QEMU until the kernel runs (`vm`; of it `qemu`:
        until QEMU's sockets listen), the kernel and
        the modules until our init (`kernel`), the 9p mount of the rootfs (`rootfs`), the
        interfaces (`network`), the /etc files
        and mounts until the process runs (`process`); from the shim's and the init's marks
        (the guest's uptime for the parts inside it)."""
        m = self.marks(cid)
        if not all(k in m for k in ("shim", "init", "initUptime", "networkUptime")):
            return {}
        out = {
            "vm": (m["init"] - m["shim"] - m["initUptime"]) * 1000,
            "qemu": (m.get("qemu", m["shim"]) - m["shim"]) * 1000,
            "kernel": m["initUptime"] * 1000,
            "rootfs": (m.get("rootfsUptime", m["initUptime"]) - m["initUptime"]) * 1000,
            "network": (m["networkUptime"] - m.get("rootfsUptime", m["initUptime"])) * 1000,
        }
        if "startedUptime" in m:
            out["process"] = (m["startedUptime"] - m["networkUptime"]) * 1000
            out["total"] = (m["started"] - m["shim"]) * 1000
        return {k: round(v, 1) for k, v in out.items()}

    # -- start ------------------------------------------------------------------------

    def prepare(self, cid: str, image: ImageInfo) -> None:
        """Make the container's directory and mount its rootfs overlay (idempotent)."""
        d = self._dir(cid)
        rootfs = d / "rootfs"
        if not d.exists():
            lower = self.images.rootfs(image)
            d.mkdir(parents=True, mode=0o700)
            for sub in ("rootfs", "upper", "work"):
                (d / sub).mkdir()
            (d / "lowerdir").write_text(str(lower))
        if not os.path.ismount(rootfs):
            lower = Path((d / "lowerdir").read_text().strip())
            _mount_overlay(lower, d / "upper", d / "work", rootfs)

    def start(
        self,
        cid: str,
        process: ProcessSpec,
        hostname: str,
        nics: Sequence[Nic],
        etc: dict[str, str],
        cpus: int,
        memory_mb: int,
        accel: str,
        domainname: str | None = None,
    ) -> int:
        """Boot the VM under its shim; returns QEMU's pid once the guest init reported
        that the process started (or raises, leaving no QEMU and no socket)."""
        guest.check_guest()
        d = self._dir(cid)
        socks = self._sockdir(cid)
        for name in ("exit", "marks", "qemu.pid", "shim.pid"):
            (d / name).unlink(missing_ok=True)
        shutil.rmtree(socks, ignore_errors=True)
        socks.mkdir(parents=True, mode=0o700)
        files = {
            "config.sh": config_sh(hostname, nics, process, domainname).encode(),
            "hosts": etc["hosts"].encode(),
            "resolv.conf": etc["resolv.conf"].encode(),
            "hostname": (hostname + "\n").encode(),
        }
        initrd = d / "initrd"
        with open(initrd, "wb") as out, open(guest.initramfs_path(), "rb") as base:
            shutil.copyfileobj(base, out, 1 << 20)
            out.write(guest.config_cpio(files))
        argv = self._qemu_argv(cid, nics, cpus, memory_mb, accel)
        (d / "vm.json").write_text(json.dumps({"argv": argv, "accelerator": accel}))
        subprocess.run(
            [sys.executable, "-m", "container_runtime.runtime.vm.shim", str(d), str(socks)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(d / "shim.log", "ab"),
            check=True,
            timeout=10,
        )
        deadline = time.monotonic() + BOOT_TIMEOUT
        while "started" not in self.marks(cid):
            if (d / "exit").exists() or time.monotonic() > deadline:
                self.abort(cid)
                why = (d / "qemu.log").read_text(errors="replace").strip()[-300:]
                raise ContainerError(
                    f"the VM of container {cid} did not start"
                    + (f": {why}" if why else f" within {BOOT_TIMEOUT:.0f} s")
                )
            time.sleep(0.005)
        return self._pid(d / "qemu.pid") or 0

    def _qemu_argv(
        self, cid: str, nics: Sequence[Nic], cpus: int, memory_mb: int, accel: str
    ) -> list[str]:
        d = self._dir(cid)
        socks = self._sockdir(cid)
        argv = [
            QEMU, "-M", "microvm", "-accel", accel, "-cpu", "host" if accel == "kvm" else "max",
            "-smp", str(cpus), "-m", f"{memory_mb}M", "-nodefaults", "-no-user-config",
            "-nographic", "-no-reboot", "-name", f"container-{cid[:12]}",
            "-kernel", str(guest.kernel_path()), "-initrd", str(d / "initrd"),
            "-append", KERNEL_CMDLINE + ("" if accel == "kvm" else tsc_args()),
            "-serial", f"file:{d / 'console.log'}",
            "-fsdev", f"local,id=fs0,path={d / 'rootfs'},security_model=passthrough",
            "-device", "virtio-9p-device,fsdev=fs0,mount_tag=rootfs",
            "-device", "virtio-serial-device",
        ]  # fmt: skip
        for name in ("ctl", "stdout", "stderr"):
            argv += [
                "-chardev",
                f"socket,id={name},path={socks / (name + '.sock')},server=on,wait=off",
                "-device",
                f"virtserialport,chardev={name},name={name}",
            ]
        for i, n in enumerate(nics):
            argv += [
                "-netdev",
                f"tap,id=n{i},ifname={n.tap},script=no,downscript=no",
                "-device",
                f"virtio-net-device,netdev=n{i},mac={n.mac}",
            ]
        for word in argv:
            if "," in word and word.startswith("/"):  # a path QEMU would split
                raise InvalidArgument(f"VM path {word!r} must not contain ','")
        return argv

    # -- state and signals --------------------------------------------------------------

    @staticmethod
    def _pid(path: Path) -> int | None:
        try:
            return int(path.read_text().strip())
        except (OSError, ValueError):
            return None

    def state(self, cid: str) -> ContainerRuntimeState:
        d = self._dir(cid)
        try:
            code = int((d / "exit").read_text().strip())
            when = os.stat(d / "exit").st_mtime
        except (OSError, ValueError):
            shim = self._pid(d / "shim.pid")
            if shim is not None and _pid_alive(shim):
                return ContainerRuntimeState(cid, "running", self._pid(d / "qemu.pid"))
            return ContainerRuntimeState(cid, "stopped", None, None)
        from datetime import UTC, datetime

        stamp = datetime.fromtimestamp(when, UTC).isoformat().replace("+00:00", "Z")
        return ContainerRuntimeState(cid, "stopped", None, code, stamp)

    def _shim_request(self, cid: str, line: str, timeout: float = 5.0) -> str:
        try:
            return shim_call(str(self._sockdir(cid) / "shim.sock"), line, timeout).strip()
        except OSError as exc:
            raise Conflict(f"container {cid} is not running ({exc.strerror or exc})") from None

    def kill(self, cid: str, sig: int) -> None:
        signal_mod.Signals(sig)
        if self.state(cid).status != "running":
            raise Conflict(f"container {cid} is not running")
        self._shim_request(cid, f"signal {int(sig)}")

    def wait(self, cid: str, timeout: float | None = None) -> ContainerRuntimeState:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            st = self.state(cid)
            if st.status == "stopped":
                return st
            if deadline is not None and time.monotonic() >= deadline:
                return st
            time.sleep(0.01)

    def abort(self, cid: str) -> None:
        """QEMU killed (the shim sees it end, records the status and removes its sockets)."""
        d = self._dir(cid)
        shim = self._pid(d / "shim.pid")
        try:
            self._shim_request(cid, "kill", timeout=2)
        except Conflict:
            qemu = self._pid(d / "qemu.pid")
            for pid in (qemu, shim):
                if pid is not None and _pid_alive(pid):
                    os.kill(pid, signal_mod.SIGKILL)
        deadline = time.monotonic() + 10
        while shim is not None and _pid_alive(shim) and time.monotonic() < deadline:
            time.sleep(0.01)
        shutil.rmtree(self._sockdir(cid), ignore_errors=True)

    def stop(self, cid: str, timeout: float = 10, sig: int = signal_mod.SIGTERM) -> int:
        """`sig` to the process in the guest, SIGKILL after `timeout`, then the VM powers
        off (the init reboots with -no-reboot); QEMU is killed if it does not."""
        st = self.state(cid)
        if st.status == "running":
            for number, wait in ((sig, timeout), (signal_mod.SIGKILL, 5.0)):
                try:
                    self._shim_request(cid, f"signal {int(number)}")
                except Conflict:
                    break
                st = self.wait(cid, wait)
                if st.status == "stopped":
                    break
            if st.status != "stopped":
                self.abort(cid)
                st = self.wait(cid, 5)
        return st.exit_code if st.exit_code is not None else -1

    # -- teardown ---------------------------------------------------------------------

    def release_rootfs(self, cid: str) -> None:
        _umount(self._dir(cid) / "rootfs")

    def delete(self, cid: str, force: bool = False) -> None:
        if self.state(cid).status == "running":
            if not force:
                raise Conflict(f"container {cid} is running")
            self.abort(cid)
        d = self._dir(cid)
        _umount(d / "rootfs")
        shutil.rmtree(d, ignore_errors=True)
        shutil.rmtree(self._sockdir(cid), ignore_errors=True)

    # -- exec -------------------------------------------------------------------------

    def exec_argv(
        self,
        cid: str,
        args: Sequence[str],
        tty: bool = False,
        env: Sequence[str] = (),
        cwd: str | None = None,
        process: ProcessSpec | None = None,
    ) -> list[str]:
        """The argv that runs `args` in the guest (through the shim's exec request) with
        the caller's stdout/stderr; its exit status is the command's."""
        if not args:
            raise InvalidArgument("exec needs a command")
        if tty:
            raise InvalidArgument("exec -t is not supported in VM containers")
        _check_strings("argument", args)
        _check_strings("environment entry", env)
        for item in env:
            if "=" not in item:
                raise InvalidArgument(f"invalid environment entry {item!r}: expected KEY=VALUE")
        base_env = list(process.env) if process else []
        keys = {e.split("=", 1)[0] for e in env}
        full_env = [e for e in base_env if e.split("=", 1)[0] not in keys] + list(env)
        spec = ProcessSpec(
            args=tuple(args),
            env=tuple(full_env),
            cwd=cwd or (process.cwd if process else "/"),
            user=process.user if process else "",
        )
        script = base64.b64encode(guest_exec(spec).encode()).decode()
        sock = self._sockdir(cid) / "shim.sock"
        return [sys.executable, "-m", "container_runtime.runtime.vm.execclient", str(sock), script]


def attachment_nic(reply: dict[str, Any]) -> Nic:
    """A Nic from a plugin's attach reply (strategy tap: it names the TAP it made)."""
    tap = reply.get("hostInterface")
    if not tap:
        raise ContainerError(
            f"the network plugin made no TAP device for network {reply.get('network')}"
        )
    if not isinstance(tap, str) or not IFNAME_RE.match(tap):  # it reaches QEMU's argv
        raise ContainerError(f"the network plugin named an invalid TAP device {tap!r}")
    ipv6 = reply.get("ipv6Address")
    gw6 = None
    if ipv6:
        import ipaddress

        gw6 = str(ipaddress.IPv6Interface(ipv6).network.network_address + 1)
    return Nic(
        tap=str(tap),
        mac=str(reply["macAddress"]),
        interface=str(reply["interface"]),
        address=str(reply["address"]),
        gateway=str(reply["gateway"]),
        mtu=int(reply["mtu"]),
        ipv6=str(ipv6) if ipv6 else None,
        gateway6=gw6,
    )
