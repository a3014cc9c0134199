"""Crash safety: 200 allocations from 8 concurrent clients while the helper and then the
API server are killed with SIGKILL and restarted.  Afterwards: no duplicate address or MAC,
no committed allocation lost, and nothing held by a request that failed."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from typing import Any

from support.instance import Instance

from container_runtime.client import UnixClient
from container_runtime.errors import Conflict, Unavailable

CLIENTS = 8
PER_CLIENT = 25
TAKEN_MAC = "02:42:ac:11:00:99"


def test_allocations_survive_sigkill_of_helper_and_apiserver(instance: Instance) -> None:
    inst = instance
    inst.cli("network", "create", "foo", "--subnet", "10.70.0.0/22")
    inst.cli("network", "attach", "foo", "--name", "holder", "--mac", TAKEN_MAC)
    socket = inst.run_dir / "apiserver.sock"
    done = threading.Semaphore(0)
    results: dict[str, dict[str, Any]] = {}
    refused: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client(index: int) -> None:
        api = UnixClient(socket, timeout=30)
        for n in range(PER_CLIENT):
            name = f"c{index}-{n}"
            deadline = time.monotonic() + 90
            while True:
                try:
                    reply = api.request(
                        "POST", "/v1/networks/foo/attachments", {"name": name}, idempotent=True
                    )
                    break
                except Unavailable:
                    api.close()
                    if time.monotonic() > deadline:
                        errors.append(f"{name}: gave up")
                        return
                    time.sleep(0.05)
            with lock:
                results[name] = reply
            done.release()
            if n % 5 == 0:
                # A request that must fail: the MAC is taken. It must hold nothing.
                bad = f"bad{index}-{n}"
                try:
                    api.request(
                        "POST", "/v1/networks/foo/attachments", {"name": bad, "mac": TAKEN_MAC}
                    )
                    errors.append(f"{bad} was accepted")
                except Conflict:
                    with lock:
                        refused.append(bad)
                except Unavailable:
                    api.close()
                    with lock:
                        refused.append(bad)
        api.close()

    def wait_for(count: int) -> None:
        for _ in range(count):
            assert done.acquire(timeout=120), "clients stalled"

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    wait_for(40)
    helper = inst.pid("network-bridge")
    assert helper is not None
    os.kill(helper, signal.SIGKILL)
    wait_for(50)
    api_pid = inst.pid("apiserver")
    assert api_pid is not None
    os.kill(api_pid, signal.SIGKILL)
    time.sleep(0.3)
    inst.start()
    for thread in threads:
        thread.join(timeout=180)
    assert not errors, errors
    assert len(results) == CLIENTS * PER_CLIENT
    assert inst.pid("apiserver") != api_pid

    listed = {
        a["owner"]: a for a in UnixClient(socket).request("GET", "/v1/networks/foo/attachments")
    }
    listed.pop("holder")
    # Exactly the requested names, each with the attachment its client was given.
    assert set(listed) == set(results)
    for name, reply in results.items():
        assert listed[name]["address"] == reply["address"], name
        assert listed[name]["macAddress"] == reply["macAddress"], name
    addresses = [a["address"] for a in listed.values()]
    macs = [a["macAddress"] for a in listed.values()]
    assert len(set(addresses)) == len(addresses) and len(set(macs)) == len(macs)
    assert TAKEN_MAC not in macs
    assert not set(refused) & set(listed)

    db = sqlite3.connect(inst.root / "state.db")  # the API server's record matches
    rows = db.execute("SELECT owner, address FROM endpoints WHERE network = 'foo'").fetchall()
    db.close()
    assert {o for o, _ in rows} == set(results) | {"holder"}
    assert len({a for _, a in rows}) == len(rows)
