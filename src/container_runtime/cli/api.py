"""The CLI's connection to the API server, and helpers for commands over many names."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from ..client import UnixClient, quote
from ..errors import ContainerError
from .output import dumps

__all__ = ["api", "for_each", "inspect_each", "quote"]


def api(timeout: float = 120.0) -> UnixClient:
    # The same path as paths.Paths.api_socket, without importing pathlib (start-up time).
    run_dir = os.environ.get("CONTAINER_RUN_DIR", "/run/container")
    return UnixClient(os.path.join(run_dir, "apiserver.sock"), timeout=timeout)


def for_each(names: list[str], action: Callable[[str], Any]) -> int:
    """Run `action` for every name; an `Error:` line for each that fails; exit status."""
    failed = False
    for name in names:
        try:
            action(name)
        except ContainerError as exc:
            print(f"Error: {exc.message}", file=sys.stderr)
            failed = True
    return 1 if failed else 0


def inspect_each(names: list[str], collection: str) -> int:
    """`GET /v1/COLLECTION/NAME` for every name, each found one printed as one JSON object
    on its own line (as `container inspect` does, so `| jq .field` works), an `Error:`
    line for each that fails; exit status (1 if any failed)."""
    client = api()
    return for_each(
        names,
        lambda name: print(dumps(client.request("GET", f"/v1/{collection}/{quote(name)}"))),
    )
