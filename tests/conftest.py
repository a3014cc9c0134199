"""Shared fixtures: throwaway namespaces and container systems that always clean up."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import resolved  # noqa: E402
from support.instance import Instance, NetnsPool  # noqa: E402

REQUIRED_TOOLS = (
    "ip",
    "nft",
    "nsenter",
    "setpriv",
    "unshare",
    "busybox",
    "runc",
    "conmon",
    "skopeo",
    "umoci",
    "docker-registry",
    "dig",
    "dbus-daemon",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Refuse to run rather than skip: a skipped test proves nothing.
    if os.geteuid() != 0:
        raise pytest.UsageError("these tests need root (network namespaces, nftables)")
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    missing += resolved.missing_files()  # extracted, not installed: see scripts/setup.sh
    if missing:
        raise pytest.UsageError(f"missing tools: {', '.join(missing)}; run ./scripts/setup.sh")


@pytest.fixture
def netns_pool() -> Iterator[NetnsPool]:
    pool = NetnsPool()
    try:
        yield pool
    finally:
        pool.cleanup()


def _base() -> Path:
    # Not pytest's tmp_path: its parents are 0700, and some tests run the CLI as another
    # user to check that the API socket itself refuses them.
    base = Path(tempfile.mkdtemp(prefix="ctr-test-"))
    base.chmod(0o755)
    return base


@pytest.fixture
def instance(netns_pool: NetnsPool) -> Iterator[Instance]:
    """A started container system in its own namespace and state root."""
    inst = Instance(_base(), netns_pool)
    try:
        inst.start()
        yield inst
    finally:
        inst.cleanup()


@pytest.fixture
def stopped_instance(netns_pool: NetnsPool) -> Iterator[Instance]:
    """A container system not yet started (for config and start tests)."""
    inst = Instance(_base(), netns_pool)
    try:
        yield inst
    finally:
        inst.cleanup()
