"""Fixtures for the VM container tests: the container tests' system (own netns, registry
with the busybox image); the tests refuse to run (error) without QEMU or a built guest."""

from __future__ import annotations

import shutil

import pytest

from container_runtime.runtime.vm import guest

from ..containers.conftest import System, busybox_layout, system  # noqa: F401

__all__ = ["System"]


@pytest.fixture(scope="session", autouse=True)
def vm_tools() -> None:
    if shutil.which("qemu-system-x86_64") is None:
        raise RuntimeError("qemu-system-x86_64 is missing: run scripts/setup.sh")
    guest.check_guest()  # raises (an error, not a skip) when setup.sh has not built it
