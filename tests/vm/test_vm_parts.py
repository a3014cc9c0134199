"""The VM containers' parts that need no boot: the guest built by setup.sh (kernel,
initramfs contents and module order), the per-container config the guest's shell reads
(every value quoted), and the isolation options of the model and config.toml."""

from __future__ import annotations

import lzma
import shlex
import subprocess
from pathlib import Path

import pytest

from container_runtime.config import load_config
from container_runtime.container_config import ContainerConfig, parse_memory
from container_runtime.errors import ConfigError, ContainerError, InvalidArgument
from container_runtime.runtime.oci import ProcessSpec
from container_runtime.runtime.vm import guest
from container_runtime.runtime.vm.machine import Nic, attachment_nic, config_sh, guest_exec


def cpio_entries(data: bytes) -> dict[str, bytes]:
    """name -> content of a newc archive (the kernel's initramfs format)."""
    out: dict[str, bytes] = {}
    pos = 0
    while True:
        head = data[pos : pos + 110]
        assert head[:6] == b"070701", head[:6]
        fields = [int(head[6 + 8 * i : 14 + 8 * i], 16) for i in range(13)]
        size, namesize = fields[6], fields[11]
        name_start = pos + 110
        name = data[name_start : name_start + namesize - 1].decode()
        body = name_start + namesize
        body += -body % 4
        out[name] = data[body : body + size]
        pos = body + size
        pos += -pos % 4
        if name == "TRAILER!!!":
            return out


def test_the_built_guest_is_an_elf_kernel_and_our_initramfs() -> None:
    base = guest.guest_dir()
    with open(guest.kernel_path(base), "rb") as fh:
        assert fh.read(4) == b"\x7fELF"  # uncompressed
    entries = cpio_entries(guest.initramfs_path(base).read_bytes())
    assert entries["init"] == (Path(guest.__file__).parent / "init.sh").read_bytes()
    assert entries["bin/busybox"] == guest.BUSYBOX.read_bytes()
    order = entries["modules"].decode().split()
    for name in ("virtio_mmio.ko", "virtio_net.ko", "virtio_console.ko", "9p.ko"):
        assert name in order and f"lib/modules/{name}" in entries
    # dependencies first: virtio before its transports, 9pnet before 9pnet_virtio and 9p
    assert order.index("virtio.ko") < order.index("virtio_mmio.ko")
    assert order.index("9pnet.ko") < order.index("9pnet_virtio.ko")
    assert order.index("netfs.ko") < order.index("9p.ko")
    assert (base / "STAMP").read_text() == guest.stamp()  # up to date with the packages


def test_setup_rerun_leaves_an_up_to_date_guest_alone() -> None:
    base = guest.guest_dir()
    before = guest.initramfs_path(base).stat().st_mtime_ns
    assert guest.ensure_guest(base) is False
    assert guest.initramfs_path(base).stat().st_mtime_ns == before


def test_extract_vmlinux_finds_the_xz_elf_and_refuses_anything_else() -> None:
    elf = b"\x7fELF" + bytes(range(256)) * 64
    bzimage = b"MZ" + b"\0" * 1000 + lzma.compress(elf, format=lzma.FORMAT_XZ) + b"\0" * 64
    assert guest.extract_vmlinux(bzimage) == elf
    with pytest.raises(ContainerError, match="no XZ-compressed ELF kernel"):
        guest.extract_vmlinux(b"MZ" + lzma.compress(b"not an elf", format=lzma.FORMAT_XZ))


def test_config_sh_quotes_every_value_for_the_guest_shell(tmp_path: Path) -> None:
    hostile = "$(touch /tmp/pwned); `id` 'q' \"d\" \\ ;|&"
    process = ProcessSpec(args=("sh", "-c", hostile), env=(f"X={hostile}",), cwd="/a b")
    nic = Nic("cttap0", "02:00:00:00:00:01", "eth0", "10.0.0.2/24", "10.0.0.1", 1400)
    text = config_sh(hostile, [nic], process, domainname=hostile)
    marker = tmp_path / "pwned"
    script = text.replace("/tmp/pwned", str(marker))
    script += 'printf "%s\\n" "$CT_HOSTNAME" "$CT_NIC0_MTU" "$CT_EXEC" "$CT_DOMAINNAME"\n'
    out = subprocess.run(["busybox", "sh", "-c", script], capture_output=True, text=True)
    assert out.returncode == 0 and not marker.exists()
    lines = out.stdout.split("\n")
    assert lines[0] == hostile.replace("/tmp/pwned", str(marker)) and lines[1] == "1400"
    words = shlex.split(lines[2])
    assert words[:2] == ["env", "-i"] and words[-3:] == ["sh", "-c", hostile.replace(
        "/tmp/pwned", str(marker)
    )]  # fmt: skip
    assert "-w/newroot/a b" in words
    assert lines[3] == lines[0]  # the domain name, as hostile, as literal
    assert guest_exec(ProcessSpec(args=("id",), user="1000:50")).split()[-4:-2] == [
        "-S1000",
        "-G50",
    ]
    with pytest.raises(InvalidArgument, match="numeric user"):
        guest_exec(ProcessSpec(args=("id",), user="www-data"))


def test_a_tap_name_that_could_reach_qemus_argv_is_refused() -> None:
    reply = {
        "network": "n",
        "macAddress": "02:00:00:00:00:01",
        "interface": "eth0",
        "address": "10.0.0.2/24",
        "gateway": "10.0.0.1",
        "mtu": 1500,
    }
    with pytest.raises(ContainerError, match="made no TAP device"):
        attachment_nic(reply)
    with pytest.raises(ContainerError, match="invalid TAP device"):
        attachment_nic({**reply, "hostInterface": "ct0,script=/tmp/x"})
    nic = attachment_nic({**reply, "hostInterface": "ct0", "ipv6Address": "fd00::2/64"})
    assert (nic.tap, nic.gateway6) == ("ct0", "fd00::1")


def test_isolation_options_of_the_model() -> None:
    vm = ContainerConfig.parse({"isolation": "vm", "cpus": "2", "memory": "1G"}, "test")
    assert (vm.isolation, vm.cpus, vm.memory_mb) == ("vm", 2, 1024)
    assert vm.to_json()["isolation"] == "vm" and vm.to_json()["memoryMB"] == 1024
    assert ContainerConfig.parse({}, "test").isolation == "namespace"
    assert ContainerConfig.parse({}, "test", "vm").isolation == "vm"  # the config default
    assert parse_memory("512M") == 512 and parse_memory(str(256 << 20)) == 256
    for body, message in (
        ({"isolation": "kvm"}, "invalid isolation 'kvm'"),
        ({"cpus": 2}, "--cpus and --memory need --vm"),
        ({"isolation": "vm", "cpus": True}, "invalid --cpus"),
        ({"isolation": "vm", "cpus": "65"}, "invalid --cpus"),
        ({"isolation": "vm", "memory": "12Q"}, "invalid memory size"),
    ):
        with pytest.raises(InvalidArgument, match=message):
            ContainerConfig.parse(body, "test")


def test_config_toml_container_isolation(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[container]\nisolation = "vm"\n')
    assert load_config(path).isolation == "vm"
    path.write_text('[dns]\ndomain = "test"\n\n[container]\nisolation = "jail"\n')
    with pytest.raises(ConfigError, match=r"config.toml:5: key container.isolation: invalid"):
        load_config(path)
