"""The VM containers' guest: a kernel and an initramfs built from Debian packages.

Owns the guest directory (`guest_dir()`, default `/var/lib/container/vm-guest`):

    vmlinux        the uncompressed ELF kernel from linux-image-amd64 (boots faster under
                   QEMU TCG than the compressed bzImage: no decompression in the guest)
    initramfs.cpio our init (init.sh) on busybox-static, the virtio modules it loads
    STAMP          the package versions and init/builder digest it was built from

`python -m container_runtime.runtime.vm.guest [DIR]` (run by scripts/setup.sh) builds it
when the STAMP differs: the packages are fetched with `apt-get download` and unpacked
with `dpkg-deb -x` into a temporary directory; nothing is installed on the host.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import re
import shutil
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path

from ...errors import ContainerError

DEFAULT_GUEST_DIR = Path("/var/lib/container/vm-guest")
KERNEL_PACKAGE = "linux-image-amd64"
BUSYBOX = Path("/bin/busybox")
# What the init loads, leaves first (dependencies are resolved from each .ko's modinfo).
MODULES = ("virtio_mmio", "virtio_net", "virtio_console", "9pnet_virtio", "9p")
XZ_MAGIC = b"\xfd7zXZ\x00"


def guest_dir() -> Path:
    return Path(os.environ.get("CONTAINER_VM_GUEST", str(DEFAULT_GUEST_DIR)))


def kernel_path(base: Path | None = None) -> Path:
    return (base or guest_dir()) / "vmlinux"


def initramfs_path(base: Path | None = None) -> Path:
    return (base or guest_dir()) / "initramfs.cpio"


def check_guest(base: Path | None = None) -> None:
    """Refuse a VM start, in one line, when the guest was never built."""
    d = base or guest_dir()
    if not (kernel_path(d).is_file() and initramfs_path(d).is_file()):
        raise ContainerError(
            f"the VM guest is not built in {d}: run scripts/setup.sh "
            "(or python -m container_runtime.runtime.vm.guest)"
        )


# -- cpio (newc) ------------------------------------------------------------------------


class Cpio:
    """A minimal writer of the kernel's initramfs format (cpio "newc", no compression)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)):
        fields = [self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name) + 1, 0]
        self.ino += 1
        head = b"070701" + b"".join(b"%08x" % f for f in fields)
        blob = head + name.encode() + b"\0"
        blob += b"\0" * (-len(blob) % 4) + data
        blob += b"\0" * (-len(blob) % 4)
        self.parts.append(blob)

    def dir(self, name: str) -> None:
        self._entry(name, 0o040755)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, 0o100000 | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, 0o120777, target.encode())

    def chardev(self, name: str, major: int, minor: int) -> None:
        self._entry(name, 0o020600, rdev=(major, minor))

    def bytes(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        out = b"".join(self.parts)
        return out + b"\0" * (-len(out) % 512)


# -- kernel and modules -----------------------------------------------------------------


def extract_vmlinux(bzimage: bytes) -> bytes:
    """The ELF inside Debian's XZ-compressed bzImage (what scripts/extract-vmlinux does)."""
    start = bzimage.find(XZ_MAGIC)
    while start >= 0:
        try:
            data = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(bzimage[start:])
        except lzma.LZMAError:
            data = b""
        if data.startswith(b"\x7fELF"):
            return data
        start = bzimage.find(XZ_MAGIC, start + 1)
    raise ContainerError("no XZ-compressed ELF kernel found in the bzImage")


def _depends(ko: Path) -> list[str]:
    m = re.search(rb"(?:^|\0)depends=([^\0]*)\0", ko.read_bytes())
    return [d for d in (m.group(1).decode().split(",") if m else []) if d]


def module_order(moddir: Path, wanted: tuple[str, ...] = MODULES) -> list[Path]:
    """The .ko files for `wanted` and their dependencies, each after what it depends on."""
    index = {p.name[: -len(".ko")].replace("-", "_"): p for p in moddir.rglob("*.ko")}
    order: list[Path] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        key = name.replace("-", "_")
        if key in seen:
            return
        seen.add(key)
        if key not in index:
            raise ContainerError(f"kernel module {name} not found in {moddir}")
        for dep in _depends(index[key]):
            visit(dep)
        order.append(index[key])

    for name in wanted:
        visit(name)
    return order


def build_initramfs(modules: list[Path], busybox: bytes, init: bytes) -> bytes:
    cpio = Cpio()
    for d in ("bin", "dev", "proc", "sys", "tmp", "newroot", "lib", "lib/modules", "ct"):
        cpio.dir(d)
    cpio.chardev("dev/console", 5, 1)
    cpio.chardev("dev/null", 1, 3)
    cpio.file("bin/busybox", busybox, 0o755)
    for applet in ("sh", "mount", "umount", "insmod", "ip", "cat", "cut", "ln", "mkdir", "rm"):
        cpio.symlink(f"bin/{applet}", "busybox")
    for applet in ("hostname", "env", "nsenter", "kill", "sync", "reboot", "base64", "sleep"):
        cpio.symlink(f"bin/{applet}", "busybox")
    cpio.file("init", init, 0o755)
    for ko in modules:
        cpio.file(f"lib/modules/{ko.name}", ko.read_bytes())
    cpio.file("modules", "".join(f"{ko.name}\n" for ko in modules).encode())
    return cpio.bytes()


def config_cpio(files: dict[str, bytes]) -> bytes:
    """A second archive appended to the base initramfs: one container's /ct files."""
    cpio = Cpio()
    for name, data in files.items():
        cpio.file(f"ct/{name}", data)
    return cpio.bytes()


# -- build ------------------------------------------------------------------------------


def _init_script() -> bytes:
    return resources.files(__package__).joinpath("init.sh").read_bytes()


def _candidate(package: str) -> str:
    out = subprocess.run(
        ["apt-cache", "policy", package], capture_output=True, text=True, check=True
    ).stdout
    m = re.search(r"Candidate:\s*(\S+)", out)
    if not m or m.group(1) == "(none)":
        raise ContainerError(f"package {package} has no candidate version (apt-get update?)")
    return m.group(1)


def _installed(package: str) -> str:
    return subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True, check=True
    ).stdout.strip()


def stamp() -> str:
    digest = hashlib.sha256(_init_script() + Path(__file__).read_bytes()).hexdigest()[:16]
    return (
        f"{KERNEL_PACKAGE}={_candidate(KERNEL_PACKAGE)} "
        f"busybox-static={_installed('busybox-static')} init={digest}\n"
    )


def ensure_guest(base: Path) -> bool:
    """Build the guest in `base` unless its STAMP matches; True if it was (re)built."""
    want = stamp()
    if (base / "STAMP").is_file() and (base / "STAMP").read_text() == want:
        if kernel_path(base).is_file() and initramfs_path(base).is_file():
            return False
    base.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vm-guest-") as tmp:
        work = Path(tmp)
        shutil.chown(work, "_apt") if _has_user("_apt") else None  # apt downloads sandboxed
        subprocess.run(["apt-get", "download", "-q", KERNEL_PACKAGE], cwd=work, check=True)
        meta = next(work.glob(f"{KERNEL_PACKAGE}_*.deb"))
        deps = subprocess.run(
            ["dpkg-deb", "-f", str(meta), "Depends"], capture_output=True, text=True, check=True
        ).stdout
        image = re.search(r"linux-image-[0-9][^\s,(]*", deps)
        if not image:
            raise ContainerError(f"{meta.name} depends on no linux-image package")
        subprocess.run(["apt-get", "download", "-q", image.group(0)], cwd=work, check=True)
        deb = next(work.glob(f"{image.group(0)}_*.deb"))
        root = work / "x"
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        vmlinuz = next((root / "boot").glob("vmlinuz-*"))
        moddir = next((root / "lib" / "modules").iterdir())
        kernel = extract_vmlinux(vmlinuz.read_bytes())
        initramfs = build_initramfs(module_order(moddir), BUSYBOX.read_bytes(), _init_script())
        for path, data in ((kernel_path(base), kernel), (initramfs_path(base), initramfs)):
            tmp_path = path.with_suffix(".tmp")
            tmp_path.write_bytes(data)
            tmp_path.rename(path)
    (base / "STAMP").write_text(want)
    return True


def _has_user(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    base = Path(args[0]) if args else guest_dir()
    try:
        built = ensure_guest(base)
    except (ContainerError, subprocess.CalledProcessError, StopIteration) as exc:
        print(f"Error: building the VM guest in {base}: {exc}", file=sys.stderr)
        return 1
    print(f"vm-guest: {'built' if built else 'up to date'} in {base}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
