"""What the client says when a call cannot complete: the server went away mid-request
(and whether the operation may have happened), a locked database or a constraint race
(named errors, not `internal error`), and paths it refuses to send."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.instance import VENV_BIN, Result, assert_refused, run

from container_runtime.client import UnixClient
from container_runtime.errors import ConcurrentChange, DatabaseLocked, InvalidArgument
from container_runtime.http import Request, Router, SelectorHTTPServer

# A real server of ours whose handlers die the way a killed API server does: the
# process is gone after the request was read and before any reply.
DYING_SERVER = """
import os, sys
from pathlib import Path
from container_runtime.http import Router, SelectorHTTPServer
router = Router()
def die(_request):
    os._exit(9)
for method in ("GET", "POST", "DELETE"):
    router.add(method, "/v1/networks", die)
server = SelectorHTTPServer(Path(sys.argv[1]), router, workers=int(sys.argv[2]))
print("ready", flush=True)
server.serve_forever()
"""


@pytest.fixture
def run_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="ctr-client-") as tmp:
        yield Path(tmp)


def cli_against_dying_server(run_dir: Path, workers: int, *args: str) -> Result:
    server = subprocess.Popen(
        [sys.executable, "-c", DYING_SERVER, str(run_dir / "apiserver.sock"), str(workers)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stdout.readline() == "ready\n"
        env = {"CONTAINER_RUN_DIR": str(run_dir), "HOME": str(run_dir), "PATH": "/usr/bin:/bin"}
        return run([str(VENV_BIN / "container"), *args], check=False, env=env)
    finally:
        server.kill()
        server.wait()


@pytest.mark.parametrize("workers", [0, 4])
def test_server_gone_during_a_change_says_it_may_have_happened(run_dir: Path, workers: int) -> None:
    result = cli_against_dying_server(run_dir, workers, "network", "create", "foo")
    assert_refused(
        result, "API server went away during the request POST /v1/networks", "may or may not"
    )
    assert "Errno" not in result.stderr


def test_server_gone_during_a_read_says_retry(run_dir: Path) -> None:
    result = cli_against_dying_server(run_dir, 0, "network", "list")
    assert_refused(result, "went away during the request GET /v1/networks", "retry it once")


@pytest.fixture
def served(run_dir: Path) -> Iterator[tuple[Path, Router]]:
    router = Router()
    server = SelectorHTTPServer(run_dir / "s.sock", router, workers=2)
    server.serve_in_thread()
    try:
        yield run_dir / "s.sock", router
    finally:
        server.shutdown()


def test_locked_database_and_constraint_race_are_named_errors(
    served: tuple[Path, Router], run_dir: Path
) -> None:
    path, router = served
    db = run_dir / "state.db"
    setup = sqlite3.connect(db, isolation_level=None)
    setup.execute("CREATE TABLE t (name TEXT PRIMARY KEY)")
    setup.execute("INSERT INTO t VALUES ('taken')")

    def write(req: Request) -> tuple[int, None]:
        conn = sqlite3.connect(db, timeout=0, isolation_level=None)
        try:
            conn.execute("INSERT INTO t VALUES (?)", (req.params["name"],))
        finally:
            conn.close()
        return 200, None

    router.add("POST", "/t/{name}", write)
    client = UnixClient(path)
    with pytest.raises(ConcurrentChange, match="conflicted with a concurrent change"):
        client.request("POST", "/t/taken", {})
    setup.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(DatabaseLocked, match="state database stayed locked"):
            client.request("POST", "/t/new", {})
    finally:
        setup.execute("ROLLBACK")
    assert client.request("POST", "/t/new", {}) is None


def test_client_refuses_control_characters_and_sends_nothing(run_dir: Path) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(run_dir / "l.sock"))
    listener.listen(8)
    listener.setblocking(False)
    client = UnixClient(run_dir / "l.sock", timeout=2)
    for path in ("/v1/networks/a\r\nHost: x", "/v1/a\tb", "/v1/\x00", "/v1/\x7f", "v1/relative"):
        with pytest.raises(InvalidArgument, match="refusing to send"):
            client.request("GET", path)
    with pytest.raises(InvalidArgument, match="invalid method"):
        client.request("GET /x HTTP/1.1\r\n", "/v1/ping")
    with pytest.raises(BlockingIOError):
        listener.accept()  # no connection was even made
    listener.close()


def test_spaces_and_non_ascii_left_in_a_path_are_percent_encoded(
    served: tuple[Path, Router],
) -> None:
    path, router = served
    router.add("GET", "/n/{name}", lambda req: (200, {"name": req.params["name"]}))
    client = UnixClient(path)
    for name in ("a b", "é", "名前 x"):
        assert client.request("GET", f"/n/{name}") == {"name": name}


def test_reply_framing_is_checked(run_dir: Path) -> None:
    """A server that answers garbage: a clean Unavailable, not a traceback or a hang."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(run_dir / "g.sock"))
    listener.listen(8)

    def answer() -> None:
        for reply in (b"HTTP/1.1 abc\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n"):
            conn, _ = listener.accept()
            conn.recv(65536)
            conn.sendall(reply)
            conn.close()

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    from container_runtime.errors import Unavailable

    for _ in range(2):
        client = UnixClient(run_dir / "g.sock", timeout=5)
        with pytest.raises(Unavailable, match="malformed reply"):
            client.request("GET", "/v1/ping")
    thread.join()
    listener.close()


def test_server_closing_at_once_is_a_clean_error(run_dir: Path) -> None:
    """A server that accepts and closes without reading (as one being killed does):
    never `[Errno 32] Broken pipe` or `[Errno 104] Connection reset by peer`."""
    from container_runtime.errors import Unavailable

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(run_dir / "c.sock"))
    listener.listen(8)

    def slam() -> None:
        for _ in range(2):
            conn, _ = listener.accept()
            conn.close()

    thread = threading.Thread(target=slam, daemon=True)
    thread.start()
    for body in ({"big": "x" * 4_000_000}, {"small": 1}):
        client = UnixClient(run_dir / "c.sock", timeout=5)
        with pytest.raises(Unavailable) as caught:
            client.request("POST", "/v1/networks", body)
        message = caught.value.message
        assert "Errno" not in message and "\n" not in message, message
        assert "nothing was done" in message or "may or may not" in message, message
    thread.join()
    listener.close()
