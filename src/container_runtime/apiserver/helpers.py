"""The API server's client of one network helper: a keep-alive connection per thread.

While the helper is being restarted its socket refuses connections; idempotent
calls wait for it (bounded) instead of failing the user's command.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from ..client import UnixClient
from ..errors import Unavailable

RESTART_WAIT = 15.0


class HelperClient:
    def __init__(self, plugin: str, socket: Path) -> None:
        self.plugin = plugin
        self.socket = socket
        self.local = threading.local()

    def _client(self) -> UnixClient:
        client = getattr(self.local, "client", None)
        if client is None:
            client = UnixClient(self.socket, timeout=60.0, what=f"container-network-{self.plugin}")
            self.local.client = client
        return client

    def request(
        self, method: str, path: str, body: Any = None, *, idempotent: bool | None = None
    ) -> Any:
        if idempotent is None:
            idempotent = method in ("GET", "PUT", "DELETE")
        deadline = time.monotonic() + RESTART_WAIT
        while True:
            try:
                return self._client().request(method, path, body, idempotent=idempotent)
            except Unavailable:
                self._client().close()
                if not idempotent or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
