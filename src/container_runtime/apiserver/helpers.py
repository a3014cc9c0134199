"""The API server's client of one network helper: a keep-alive connection per thread.

While the helper is being restarted its socket refuses connections; idempotent
calls wait for it (bounded, RESTART_WAIT) instead of failing the user's command.
A helper that stops answering is killed by the supervisor's watchdog within a few
seconds (supervisor.HANG_AFTER), which closes its connections: a call in flight
then fails at once and, if idempotent, is retried on the restarted helper.  So no
call waits on a hung helper for long; the socket timeout (CALL_TIMEOUT) is only a
backstop for a helper that is not supervised.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from ..client import UnixClient
from ..errors import Unavailable
from ..state import is_state_message
from .supervisor import SupervisedProcess

RESTART_WAIT = 15.0
CALL_TIMEOUT = 60.0


class HelperClient:
    def __init__(self, plugin: str, socket: Path, process: SupervisedProcess | None = None) -> None:
        self.plugin = plugin
        self.socket = socket
        self.process = process  # its supervision record: ready, or being restarted
        self.local = threading.local()

    def _client(self) -> UnixClient:
        client = getattr(self.local, "client", None)
        if client is None:
            client = UnixClient(
                self.socket, timeout=CALL_TIMEOUT, what=f"container-network-{self.plugin}"
            )
            self.local.client = client
        return client

    def _wait_ready(self, deadline: float) -> None:
        """Wait (bounded) for a supervised helper that is (re)starting."""
        proc = self.process
        if proc is None or proc.ready.is_set():
            return
        if not proc.ready.wait(max(0.0, deadline - time.monotonic())):
            raise proc.unavailable(RESTART_WAIT)

    def request(
        self, method: str, path: str, body: Any = None, *, idempotent: bool | None = None
    ) -> Any:
        if idempotent is None:
            idempotent = method in ("GET", "PUT", "DELETE")
        deadline = time.monotonic() + RESTART_WAIT
        while True:
            self._wait_ready(deadline)
            try:
                return self._client().request(method, path, body, idempotent=idempotent)
            except Unavailable as exc:
                self._client().close()
                if is_state_message(exc.message):
                    raise  # the helper answered: the state database is locked; waited already
                if not idempotent:
                    raise self._explain(exc) from None
                if time.monotonic() > deadline:
                    raise self._explain(exc) from None
                time.sleep(0.02)

    def _explain(self, exc: Unavailable) -> Unavailable:
        """Say that the helper is being restarted when that is why the call failed."""
        proc = self.process
        if proc is not None and proc.hung_reason:
            error = proc.unavailable(RESTART_WAIT)
            assert isinstance(error, Unavailable)
            return error
        return exc
