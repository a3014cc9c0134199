"""Fixtures for the runtime tests: a real registry, real skopeo/umoci/runc/conmon."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parents[1]
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from support.registry import Registry, registry_with_busybox  # noqa: E402

from container_runtime.runtime.images import ImageInfo, ImageStore  # noqa: E402
from container_runtime.runtime.oci import RUNC, OciRuntime  # noqa: E402

REQUIRED = ("runc", "conmon", "skopeo", "umoci", "docker-registry", "ip")


@pytest.fixture(scope="session")
def registry_image() -> Iterator[tuple[Registry, str]]:
    """(registry, reference) of the busybox image pushed to a registry on 127.0.0.1."""
    with registry_with_busybox("test/busybox", "1.0") as pair:
        yield pair


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("rt")


@pytest.fixture(scope="session")
def pulled(registry_image: tuple[Registry, str], session_dir: Path) -> tuple[ImageStore, ImageInfo]:
    """One image store, shared by the container tests, holding the pulled image."""
    store = ImageStore(session_dir / "root" / "images")
    return store, store.pull(registry_image[1])


def _unmount_under(base: Path) -> None:
    with open("/proc/self/mountinfo") as fh:
        points = [line.split()[4] for line in fh]
    for point in sorted(points, key=len, reverse=True):
        if point.startswith(str(base) + "/"):
            subprocess.run(["umount", "-l", point], capture_output=True)


@pytest.fixture
def runtime(pulled: tuple[ImageStore, ImageInfo], tmp_path: Path) -> Iterator[OciRuntime]:
    """A runtime with its own containers dir and run dir; everything is removed after."""
    store, _ = pulled
    rt = OciRuntime(tmp_path / "containers", tmp_path / "run", store)
    try:
        yield rt
    finally:
        for cid in rt.list_ids():
            try:
                rt.delete(cid, force=True)
            except Exception:
                pass
        listed = subprocess.run(
            [RUNC, "--root", str(rt.runc_root), "list", "-q"], capture_output=True, text=True
        )
        for cid in listed.stdout.split():
            subprocess.run(
                [RUNC, "--root", str(rt.runc_root), "delete", "--force", cid], capture_output=True
            )
        _unmount_under(tmp_path)


@pytest.fixture
def netns() -> Iterator[str]:
    """A fresh network namespace; yields its name (path /run/netns/NAME)."""
    name = f"rtest-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
