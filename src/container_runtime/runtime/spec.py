"""The OCI runtime spec (config.json) of a container: process, mounts, namespaces,
capabilities and limits, as runc wants them; plus `-v` bind mounts and `--init`."""

from __future__ import annotations

import os
import resource
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ContainerError, InvalidArgument

if TYPE_CHECKING:
    from .oci import ProcessSpec

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CGROUP_PARENT = "/container-runtime"
DEFAULT_CAPS = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
]

# `--init`: Debian's static tini, bind-mounted read-only into the container as PID 1.
INIT_BINARY = shutil.which("tini-static") or "/usr/bin/tini-static"
INIT_PATH = "/run/container-init"


# runc 1.1 ignores the spec's `domainname`: a createRuntime hook sets it in the new UTS
# namespace (runc hands hooks the container's state, with its pid, on stdin).
_DOMAINNAME_HOOK = (
    "import ctypes,json,os,sys;pid=json.load(sys.stdin)['pid'];"
    "libc=ctypes.CDLL(None,use_errno=True);fd=os.open(f'/proc/{pid}/ns/uts',os.O_RDONLY);"
    "d=sys.argv[1].encode();"
    "sys.exit(0 if libc.setns(fd,0x04000000)==0 and libc.setdomainname(d,len(d))==0 else 1)"
)


def _domainname_hook(domainname: str) -> dict[str, Any]:
    python = os.path.realpath(sys.executable)
    return {"path": python, "args": [python, "-I", "-S", "-c", _DOMAINNAME_HOOK, domainname]}


@dataclass(frozen=True)
class UtsNames:
    """`--hostname` (whole, dots allowed), `--domainname`, and `--network host` (no
    network namespace: the container uses the host's, giving up network isolation)."""

    hostname: str | None = None
    domainname: str | None = None
    host_network: bool = False


@dataclass(frozen=True)
class BindMount:
    source: str  # absolute host path
    destination: str  # absolute path in the container
    readonly: bool = False

    def to_oci(self) -> dict[str, Any]:
        options = ["rbind", "rprivate"] + (["ro"] if self.readonly else [])
        return {
            "destination": self.destination,
            "type": "bind",
            "source": self.source,
            "options": options,
        }


def user_of(rootfs: Path, user: str) -> dict[str, Any]:
    if not user:
        return {"uid": 0, "gid": 0}
    name, _, group = user.partition(":")

    def lookup(file: str, key: str) -> int:
        if key.isdigit():
            return int(key)
        try:
            for line in (rootfs / "etc" / file).read_text().splitlines():
                parts = line.split(":")
                if len(parts) > 3 and parts[0] == key:
                    return int(parts[2])
        except (FileNotFoundError, ValueError):
            pass
        raise InvalidArgument(f"user or group {key!r} not found in the image's /etc/{file}")

    uid = lookup("passwd", name)
    gid = 0
    if group:
        gid = lookup("group", group)
    elif not name.isdigit():
        for line in (rootfs / "etc" / "passwd").read_text().splitlines():
            parts = line.split(":")
            if len(parts) > 3 and parts[0] == name and parts[3].isdigit():
                gid = int(parts[3])
    return {"uid": uid, "gid": gid}


def runtime_spec(
    container_id: str,
    rootfs: Path,
    etc: Path,
    process: ProcessSpec,
    hostname: str,
    netns_path: str | None,
    volumes: Sequence[BindMount] = (),
    init: bool = False,
    uts: UtsNames | None = None,
) -> dict[str, Any]:
    env = list(process.env)
    args = list(process.args)
    extra = [v.to_oci() for v in volumes]
    if init:
        if not os.path.exists(INIT_BINARY):
            raise ContainerError(f"--init needs {INIT_BINARY} (Debian package tini)")
        args = [INIT_PATH, "--", *args]
        extra.append(BindMount(INIT_BINARY, INIT_PATH, readonly=True).to_oci())
    keys = {e.partition("=")[0] for e in env}
    if "PATH" not in keys:
        env.insert(0, DEFAULT_PATH)
    if "HOSTNAME" not in keys:
        env.append(f"HOSTNAME={hostname}")
    if process.terminal and "TERM" not in keys:
        env.append("TERM=xterm")
    netns: dict[str, str] = {"type": "network"}
    if netns_path:
        netns["path"] = netns_path
    namespaces = [{"type": "pid"}, netns, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}]
    if uts is not None and uts.host_network:
        namespaces.remove(netns)
    names: dict[str, Any] = {"hostname": hostname}
    if uts is not None and uts.domainname:
        names["domainname"] = uts.domainname
        names["hooks"] = {"createRuntime": [_domainname_hook(uts.domainname)]}
    nosd = ["nosuid", "noexec", "nodev"]
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nofile = 1048576 if hard == resource.RLIM_INFINITY else min(hard, 1048576)
    return {
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": process.terminal,
            "user": user_of(rootfs, process.user),
            "args": args,
            "env": env,
            "cwd": process.cwd,
            "capabilities": {k: DEFAULT_CAPS for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile}],
            "noNewPrivileges": False,
        },
        "root": {"path": str(rootfs), "readonly": False},
        **names,
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
            },
            {
                "destination": "/dev/pts",
                "type": "devpts",
                "source": "devpts",
                "options": [
                    "nosuid",
                    "noexec",
                    "newinstance",
                    "ptmxmode=0666",
                    "mode=0620",
                    "gid=5",
                ],
            },
            {
                "destination": "/dev/shm",
                "type": "tmpfs",
                "source": "shm",
                "options": [*nosd, "mode=1777", "size=65536k"],
            },
            {
                "destination": "/dev/mqueue",
                "type": "mqueue",
                "source": "mqueue",
                "options": nosd,
            },
            {
                "destination": "/sys",
                "type": "sysfs",
                "source": "sysfs",
                "options": [*nosd, "ro"],
            },
            {
                "destination": "/sys/fs/cgroup",
                "type": "cgroup",
                "source": "cgroup",
                "options": [*nosd, "relatime", "ro"],
            },
            *(
                {
                    "destination": f"/etc/{name}",
                    "type": "bind",
                    "source": str(etc / name),
                    "options": ["rbind", "rprivate"],
                }
                for name in ("hosts", "resolv.conf", "hostname")
            ),
            *extra,
        ],
        "linux": {
            "cgroupsPath": f"{CGROUP_PARENT}/{container_id}",
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": namespaces,
            "maskedPaths": [
                "/proc/acpi",
                "/proc/asound",
                "/proc/kcore",
                "/proc/keys",
                "/proc/latency_stats",
                "/proc/timer_list",
                "/proc/timer_stats",
                "/proc/sched_debug",
                "/sys/firmware",
                "/proc/scsi",
            ],
            "readonlyPaths": [
                "/proc/bus",
                "/proc/fs",
                "/proc/irq",
                "/proc/sys",
                "/proc/sysrq-trigger",
            ],
        },
    }
