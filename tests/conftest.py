"""Shared fixtures: throwaway namespaces and container systems that always clean up."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support.instance import Instance, NetnsPool  # noqa: E402


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() != 0:
        raise pytest.UsageError("these tests need root (network namespaces, nftables)")


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
