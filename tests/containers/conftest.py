"""Fixtures for the container tests: one container system (own netns) per module, with a
registry on that namespace's 127.0.0.1 holding a busybox image built by the tests."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parents[1]
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from support.instance import Instance, NetnsPool  # noqa: E402
from support.registry import Registry, build_busybox_image, running_registry  # noqa: E402

REQUIRED = ("runc", "conmon", "skopeo", "umoci", "docker-registry", "nsenter")


@pytest.fixture(scope="session")
def busybox_layout() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="bb-layout-"))
    try:
        yield build_busybox_image(base / "oci")
    finally:
        shutil.rmtree(base, ignore_errors=True)


@dataclass
class System:
    inst: Instance
    registry: Registry
    image: str  # reference in the registry, e.g. 127.0.0.1:PORT/test/busybox:1
    layout: Path  # the OCI layout it was pushed from


@pytest.fixture(scope="module")
def system(busybox_layout: Path) -> Iterator[System]:
    pool = NetnsPool()
    base = Path(tempfile.mkdtemp(prefix="ctr-test-"))
    base.chmod(0o755)
    inst = Instance(base, pool)
    try:
        inst.start()
        with running_registry(base / "registry", netns=inst.netns) as reg:
            ref = reg.push(busybox_layout, "latest", "test/busybox", "1")
            yield System(inst, reg, ref, busybox_layout)
    finally:
        inst.cleanup()
        pool.cleanup()
