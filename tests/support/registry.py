"""Test support: a busybox OCI image built locally and a private registry on 127.0.0.1.

Use from any test package (add ``tests/`` to ``sys.path``, as ``tests/runtime/conftest.py``
does)::

    from support.registry import build_busybox_image, running_registry

    with running_registry(tmp_path) as reg:
        layout = build_busybox_image(tmp_path / "oci")
        ref = reg.push(layout, "latest", "test/busybox", "1")   # "127.0.0.1:PORT/test/busybox:1"

Tools: umoci (build the image), Debian's ``docker-registry`` (serve), skopeo (push).
Everything runs as argv lists, never through a shell, and is torn down on exit.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

BUSYBOX = "/bin/busybox"
REGISTRY_BIN = "/usr/bin/docker-registry"
APPLETS = (
    "sh",
    "ash",
    "httpd",
    "nc",
    "wget",
    "nslookup",
    "ip",
    "ifconfig",
    "route",
    "sleep",
    "cat",
    "echo",
    "hostname",
    "env",
    "ls",
    "ps",
    "mkdir",
    "rm",
    "touch",
    "true",
    "false",
    "test",
    "grep",
    "sed",
    "id",
    "kill",
    "ping",
    "mount",
    "pwd",
    "uname",
    "head",
    "tail",
    "date",
    "printf",
    "awk",
    "tr",
    "wc",
    "seq",
    "udhcpc",
    "arp",
    "netstat",
)
DEFAULT_CMD = ("httpd", "-f", "-v", "-p", "80", "-h", "/www")
DEFAULT_ENV = ("PATH=/bin:/usr/bin:/sbin:/usr/sbin", "GREETING=hello from the image")
DEFAULT_WORKDIR = "/www"
INDEX_HTML = "hello from busybox\n"


def _run(argv: list[str], timeout: float = 120.0) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def make_busybox_rootfs(dest: Path, index_html: str = INDEX_HTML) -> Path:
    """A ~2 MB root filesystem: /bin/busybox, applet symlinks, /www/index.html, /etc."""
    for d in ("bin", "sbin", "usr/bin", "etc", "www", "tmp", "root", "proc", "sys", "dev"):
        (dest / d).mkdir(parents=True, exist_ok=True)
    os.chmod(dest / "tmp", 0o1777)
    shutil.copy2(BUSYBOX, dest / "bin" / "busybox")
    for applet in APPLETS:
        (dest / "bin" / applet).symlink_to("busybox")
    (dest / "www" / "index.html").write_text(index_html)
    (dest / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (dest / "etc" / "group").write_text("root:x:0:\n")
    return dest


def build_busybox_image(
    layout: Path,
    tag: str = "latest",
    cmd: tuple[str, ...] | list[str] = DEFAULT_CMD,
    entrypoint: tuple[str, ...] | list[str] | None = None,
    env: tuple[str, ...] | list[str] = DEFAULT_ENV,
    workdir: str = DEFAULT_WORKDIR,
    index_html: str = INDEX_HTML,
) -> Path:
    """Build an OCI image layout at ``layout`` holding one image tagged ``tag``."""
    layout = Path(layout)
    with tempfile.TemporaryDirectory(prefix="bbroot-") as tmp:
        rootfs = make_busybox_rootfs(Path(tmp) / "rootfs", index_html)
        if not (layout / "index.json").exists():
            _run(["umoci", "init", "--layout", str(layout)])
        image = f"{layout}:{tag}"
        _run(["umoci", "new", "--image", image])
        _run(["umoci", "insert", "--image", image, str(rootfs), "/"])
    argv = ["umoci", "config", "--image", image, "--config.workingdir", workdir]
    argv += ["--os", "linux", "--architecture", "amd64", "--author", "tests"]
    for arg in cmd:
        argv += ["--config.cmd", arg]
    for arg in entrypoint or ():
        argv += ["--config.entrypoint", arg]
    for item in env:
        argv += ["--config.env", item]
    _run(argv)
    _run(["umoci", "gc", "--layout", str(layout)])
    return layout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def closed_port() -> int:
    """A loopback port with nothing listening (for 'registry unreachable' tests)."""
    return free_port()


@dataclass
class Registry:
    host: str  # "127.0.0.1:PORT"
    storage: Path
    process: subprocess.Popen[bytes]
    log: Path
    netns: str | None = None  # name under /run/netns: the registry's 127.0.0.1 is that one's

    def push(self, layout: Path, tag: str, name: str, dest_tag: str = "latest") -> str:
        """Push ``layout:tag`` as ``HOST/name:dest_tag``; returns that reference."""
        ref = f"{self.host}/{name}:{dest_tag}"
        _run(
            _in_netns(self.netns)
            + [
                "skopeo",
                "--insecure-policy",
                "copy",
                "--dest-tls-verify=false",
                f"oci:{layout}:{tag}",
                f"docker://{ref}",
            ]
        )
        return ref

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _in_netns(netns: str | None) -> list[str]:
    return ["nsenter", f"--net=/run/netns/{netns}"] if netns else []


def _answers(host: str, netns: str | None) -> bool:
    if netns is None:
        try:
            with urllib.request.urlopen(f"http://{host}/v2/", timeout=1) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, ConnectionError, OSError):
            return False
    probe = _in_netns(netns) + [BUSYBOX, "wget", "-q", "-O", "/dev/null", f"http://{host}/v2/"]
    return subprocess.run(probe, capture_output=True, timeout=10).returncode == 0


def start_registry(workdir: Path, port: int | None = None, netns: str | None = None) -> Registry:
    """A registry on 127.0.0.1:PORT of this namespace, or of the named one (``netns``)."""
    workdir = Path(workdir)
    storage = workdir / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    config = workdir / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    log = workdir / "registry.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            _in_netns(netns) + [REGISTRY_BIN, "serve", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    reg = Registry(host=f"127.0.0.1:{port}", storage=storage, process=proc, log=log, netns=netns)
    deadline = time.monotonic() + 10
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {log.read_text()[-2000:]}")
        if _answers(reg.host, netns):
            return reg
        if time.monotonic() > deadline:
            reg.stop()
            raise RuntimeError(f"docker-registry did not answer: {log.read_text()[-2000:]}")
        time.sleep(0.05)


@contextmanager
def running_registry(workdir: Path | None = None, netns: str | None = None) -> Iterator[Registry]:
    """A registry on 127.0.0.1:<free port> (of ``netns`` if given), stopped and its
    storage removed afterwards."""
    own = workdir is None
    base = Path(tempfile.mkdtemp(prefix="registry-")) if workdir is None else Path(workdir)
    reg = start_registry(base, netns=netns)
    try:
        yield reg
    finally:
        reg.stop()
        if own:
            shutil.rmtree(base, ignore_errors=True)


@contextmanager
def registry_with_busybox(
    name: str = "test/busybox", tag: str = "latest", netns: str | None = None
) -> Iterator[tuple[Registry, str]]:
    """A registry already holding the busybox image; yields (registry, reference)."""
    base = Path(tempfile.mkdtemp(prefix="registry-"))
    try:
        layout = build_busybox_image(base / "oci")
        with running_registry(base / "registry", netns=netns) as reg:
            yield reg, reg.push(layout, "latest", name, tag)
    finally:
        shutil.rmtree(base, ignore_errors=True)
