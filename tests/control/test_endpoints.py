"""The API server's endpoints record (apiserver/endpoints.py): written from the helper's
reply, removed on release, and repaired at start from the helpers' own lists when the API
server died between a helper's reply and its commit."""

from __future__ import annotations

import os
import signal
import sqlite3
import time

from support.instance import Instance, attachments

from container_runtime.client import UnixClient

ORPHAN_ID = "ab" * 32  # a container id with no container: its start died before its row


def recorded(inst: Instance) -> set[tuple[str, str]]:
    db = sqlite3.connect(inst.root / "state.db")
    try:
        return {(r[0], r[1]) for r in db.execute("SELECT network, owner FROM endpoints")}
    finally:
        db.close()


def users(inst: Instance, network: str) -> int:
    nets = inst.cli("network", "ls", "--format", "json").json()
    return int(next(n["containers"] for n in nets if n["id"] == network))


def test_endpoints_follow_attach_and_detach(instance: Instance) -> None:
    inst = instance
    inst.cli("network", "create", "foo", "--subnet", "10.71.0.0/24")
    inst.cli("network", "attach", "foo", "--name", "one")
    assert recorded(inst) == {("foo", "one")}
    assert users(inst, "foo") == 1
    inst.cli("network", "detach", "foo", "--name", "one")
    assert recorded(inst) == set()
    assert users(inst, "foo") == 0


def test_start_repairs_endpoints_from_the_helpers(instance: Instance) -> None:
    inst = instance
    inst.cli("network", "create", "foo", "--subnet", "10.72.0.0/24")
    inst.cli("network", "attach", "foo", "--name", "stale")
    helper = UnixClient(inst.run_dir / "network-bridge.sock")
    try:
        # What a crash between the helper's reply and the API server's commit leaves: the
        # helper holds attachments the API server never recorded ...
        lost = helper.request(
            "POST", "/networks/foo/attachments", {"owner": "lostreply", "hostname": "lostreply"}
        )
        helper.request("POST", "/networks/foo/attachments", {"owner": ORPHAN_ID, "hostname": "x"})
        # ... or released one the API server still records.
        helper.request("DELETE", "/networks/foo/attachments/stale")
    finally:
        helper.close()
    assert recorded(inst) == {("foo", "stale")}

    api_pid = inst.pid("apiserver")
    assert api_pid is not None
    os.kill(api_pid, signal.SIGKILL)
    time.sleep(0.3)
    inst.start()

    # The bare attachment is recorded (its client's retry gets this same one), the id with
    # no container released, the stale endpoint forgotten.
    assert recorded(inst) == {("foo", "lostreply")}
    held = {a["owner"]: a for a in attachments(inst, "foo")}
    assert set(held) == {"lostreply"}
    assert held["lostreply"]["address"] == lost["address"]
    assert users(inst, "foo") == 1
    again = inst.cli("network", "attach", "foo", "--name", "lostreply")
    assert again.json()["address"] == lost["address"]
