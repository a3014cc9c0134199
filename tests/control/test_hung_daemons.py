"""Hung daemons are noticed and replaced, not waited on; a locked state database is a clear,
bounded error.  Daemons are frozen with SIGSTOP (as a stuck system call or a bug would
leave them: alive, holding their sockets, answering nothing)."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest
from support.instance import Instance, assert_refused, attachments

from container_runtime import state


def _gone(pid: int) -> bool:
    """True once `pid` is no process (or a zombie): the frozen original can never act."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state == "Z"


def _resume(pid: int) -> None:
    """SIGCONT the frozen original (a no-op once it was killed, as it must have been)."""
    try:
        os.kill(pid, signal.SIGCONT)
    except ProcessLookupError:
        pass


def _helper(inst: Instance, name: str) -> dict[str, object]:
    status = inst.cli("system", "status", "--format", "json").json()
    return next(h for h in status["helpers"] if h["name"] == name)


def test_frozen_helper_is_killed_and_a_waiting_attach_succeeds(instance: Instance) -> None:
    inst = instance
    inst.cli("network", "create", "foo", "--subnet", "10.61.0.0/24")
    first = inst.cli("network", "attach", "foo", "--name", "a").json()
    frozen = inst.pid("network-bridge")
    assert frozen is not None
    os.kill(frozen, signal.SIGSTOP)
    try:
        began = time.monotonic()
        second = inst.cli("network", "attach", "foo", "--name", "b", timeout=30).json()
        took = time.monotonic() - began
    finally:
        _resume(frozen)
    assert took < 6, f"attach waited {took:.1f} s on a frozen helper"
    assert second["address"] == "10.61.0.3/24" and first["address"] == "10.61.0.2/24"
    assert _gone(frozen)
    assert inst.pid("network-bridge") not in (None, frozen)
    bridge = _helper(inst, "network-bridge")
    assert bridge["restarts"] == 1 and bridge["state"] == "running"
    assert "killed: did not answer" in str(bridge["lastRestartReason"])
    assert bridge["lastRestartAt"]
    table = inst.cli("system", "status").stdout
    row = next(line for line in table.splitlines() if line.startswith("container-network-bridge"))
    assert " 1 " in row and "killed: did not answer" in row, table
    log = (inst.run_dir / "apiserver.log").read_text()
    assert f"network-bridge (pid {frozen}) did not answer" in log
    # Nothing duplicated or lost: a retried attach of `a` is the same attachment.
    assert inst.cli("network", "attach", "foo", "--name", "a").json() == first
    owners = sorted(a["owner"] for a in attachments(inst, "foo"))
    assert owners == ["a", "b"]


def test_frozen_dns_server_is_replaced(instance: Instance) -> None:
    inst = instance
    frozen = inst.pid("dns")
    assert frozen is not None
    os.kill(frozen, signal.SIGSTOP)
    try:
        new = inst.wait_pid_change("dns", frozen, timeout=6)
    finally:
        _resume(frozen)
    assert _gone(frozen) and new != frozen
    deadline = time.monotonic() + 5
    while _helper(inst, "dns")["state"] != "running":
        assert time.monotonic() < deadline, "the new DNS server did not become ready"
        time.sleep(0.1)
    dns = _helper(inst, "dns")
    assert dns["restarts"] == 1 and "killed: did not answer" in str(dns["lastRestartReason"])


def test_locked_state_database_is_a_clear_bounded_error(instance: Instance) -> None:
    inst = instance
    db = inst.root / "state.db"
    holder = sqlite3.connect(db, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        began = time.monotonic()
        result = inst.cli("network", "create", "locked", check=False, timeout=30)
        took = time.monotonic() - began
        assert_refused(
            result, f"state database {db} is locked by another process (pid {os.getpid()})"
        )
        assert took < 10, f"waited {took:.1f} s on the lock"
        # Reading still works while the lock is held (WAL).
        assert inst.cli("network", "ls", "-q").stdout.split() == ["default"]
    finally:
        holder.rollback()
        holder.close()
    # The helper's own database (the SDK host's file): it waits on that lock, silent
    # meanwhile, and is not killed for that (that would not free the lock); its refusal
    # is not retried on and on.
    own = inst.root / "plugins" / "bridge" / "state.db"
    holder = sqlite3.connect(own, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        helper = inst.pid("network-bridge")
        began = time.monotonic()
        result = inst.cli("network", "attach", "default", "--name", "a", check=False)
        took = time.monotonic() - began
        assert_refused(result, f"state database {own} is locked by another process")
        assert took < 10, f"attach waited {took:.1f} s on the lock"
    finally:
        holder.rollback()
        holder.close()
    inst.cli("network", "create", "locked")
    inst.cli("network", "attach", "default", "--name", "a")
    assert inst.pid("network-bridge") == helper
    assert _helper(inst, "network-bridge")["restarts"] == 0


def test_unwritable_state_database_is_a_clear_error(tmp_path: Path) -> None:
    """A database that cannot be written (here: opened read-only, as a read-only mount or
    a full disk would leave it) names the file and SQLite's cause."""
    path = tmp_path / "state.db"
    state.initialise(path)
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    try:
        with pytest.raises(state.StateUnavailable) as caught, state.transaction(conn):
            conn.execute("INSERT INTO meta(key, value) VALUES ('x', 'y')")
    finally:
        conn.close()
    assert caught.value.message == (
        f"state database {path} cannot be written: attempt to write a readonly database"
    )
    assert caught.value.status == 503
