"""A requests session over a Unix socket (for schemathesis, which speaks requests).

requests-unixsocket does this too, but it is a dependency for twenty lines; urllib3's
connection only needs a different `connect`.
"""

from __future__ import annotations

import socket
from typing import Any

import requests
import urllib3.connection
import urllib3.connectionpool
from requests.adapters import HTTPAdapter

BASE_URL = "http://localhost"


class _UnixConnection(urllib3.connection.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._unix_path = path
        self._unix_timeout = timeout

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self._unix_timeout)
        sock.connect(self._unix_path)
        self.sock = sock


class _UnixPool(urllib3.connectionpool.HTTPConnectionPool):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost")
        self._unix_path = path
        self._unix_timeout = timeout

    def _new_conn(self) -> _UnixConnection:
        return _UnixConnection(self._unix_path, self._unix_timeout)


class _UnixAdapter(HTTPAdapter):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__()
        self._pool = _UnixPool(path, timeout)

    def get_connection_with_tls_context(self, *args: Any, **kwargs: Any) -> _UnixPool:
        return self._pool

    def get_connection(self, *args: Any, **kwargs: Any) -> _UnixPool:  # older requests
        return self._pool

    def close(self) -> None:
        self._pool.close()


def unix_session(path: str, timeout: float = 30.0) -> requests.Session:
    """A session whose every http://localhost/... request goes to the socket at path."""
    session = requests.Session()
    session.mount(BASE_URL, _UnixAdapter(path, timeout))
    session.trust_env = False
    return session
