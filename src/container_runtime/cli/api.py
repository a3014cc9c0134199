"""The CLI's connection to the API server."""

from __future__ import annotations

from ..client import UnixClient
from ..paths import Paths


def api(timeout: float = 120.0) -> UnixClient:
    return UnixClient(Paths.from_env().api_socket, timeout=timeout)
