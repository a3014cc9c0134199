"""Fixture `sandbox`: run a test body in its own throwaway network namespace (see helpers)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from .helpers import run_sandboxed


@pytest.fixture
def sandbox() -> Callable[[Callable[[Path], None]], None]:
    return run_sandboxed
