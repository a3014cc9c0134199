"""The guest's output channel: serial console (ttyS0, an emulated 16550 UART) against a
virtio-serial port, the one VM containers use for stdout/stderr (docs/VM.md).

    python bench/bench_vm_console.py

Boots the built guest once (QEMU as VmRuntime runs it, a busybox rootfs over 9p, no
network) with a process that writes the same 1 MiB of text lines first to /dev/ttyS0
(QEMU writes it to a file), then to its stdout (the virtio-serial port, read here from
QEMU's socket), and reports the guest's uptime around each: MB/s of each channel.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from container_runtime.runtime.vm import guest
from container_runtime.runtime.vm.machine import KERNEL_CMDLINE, QEMU, tsc_args

SIZE = 1 << 20
SCRIPT = f"""
up() {{ busybox cut -d" " -f1 /proc/uptime; }}
gen() {{ busybox head -c {SIZE} /dev/zero | busybox tr "\\0" x | busybox fold -w 99; }}
a=$(up); gen > /dev/ttyS0; b=$(up); gen; c=$(up)
echo "$a $b $c" >&2
"""


def main() -> None:
    guest.check_guest()
    d = Path(tempfile.mkdtemp(prefix="bench-vm-console-"))
    try:
        root = d / "root" / "bin"
        root.mkdir(parents=True)
        shutil.copy2(guest.BUSYBOX, root / "busybox")
        (root / "sh").symlink_to("busybox")
        run = "env -i PATH=/bin nsenter -r/newroot -w/newroot -- /bin/sh -c " + shlex.quote(SCRIPT)
        cfg = f"CT_NICS=0\nCT_HOSTNAME=bench\nCT_EXEC={shlex.quote(run)}\n"
        files = {"config.sh": cfg.encode(), "hosts": b"", "resolv.conf": b"", "hostname": b"b\n"}
        initrd = d / "initrd"
        initrd.write_bytes(guest.initramfs_path().read_bytes() + guest.config_cpio(files))
        argv = [
            QEMU, "-M", "microvm", "-accel", "tcg", "-cpu", "max", "-m", "256M",
            "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
            "-kernel", str(guest.kernel_path()), "-initrd", str(initrd),
            "-append", KERNEL_CMDLINE + tsc_args(), "-serial", f"file:{d / 'console.log'}",
            "-fsdev", f"local,id=fs0,path={d / 'root'},security_model=passthrough",
            "-device", "virtio-9p-device,fsdev=fs0,mount_tag=rootfs",
            "-device", "virtio-serial-device",
        ]  # fmt: skip
        names = ("ctl", "stdout", "stderr")
        for n in names:
            argv += ["-chardev", f"socket,id={n},path={d / n}.sock,server=on,wait=off"]
            argv += ["-device", f"virtserialport,chardev={n},name={n}"]
        qemu = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        socks = {}
        for n in names:
            while n not in socks:
                s = socket.socket(socket.AF_UNIX)
                try:
                    s.connect(str(d / f"{n}.sock"))
                    socks[n] = s
                except OSError:
                    s.close()
                    time.sleep(0.005)
        got = {n: bytearray() for n in names}

        def drain(n: str) -> None:
            while data := socks[n].recv(1 << 16):
                got[n] += data

        threads = [threading.Thread(target=drain, args=(n,)) for n in names]
        for t in threads:
            t.start()
        qemu.wait(timeout=600)
        for t in threads:
            t.join(10)
        a, b, c = (float(x) for x in got["stderr"].decode().split())
        console = os.path.getsize(d / "console.log")
        print(f"load average {os.getloadavg()[0]:.1f}; 1 MiB of text lines from the guest:")
        print(f"  serial console ttyS0  {b - a:6.2f} s  {SIZE / (b - a) / 1e6:6.2f} MB/s")
        print(f"  virtio-serial port    {c - b:6.2f} s  {SIZE / (c - b) / 1e6:6.2f} MB/s")
        print(f"  (received: stdout {len(got['stdout'])} bytes, console file {console} bytes)")
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
