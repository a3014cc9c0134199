"""The out-of-tree example plugin (examples/plugin-example, installed through
CONTAINER_PLUGIN_PATH): a plugin whose state is its own file gets inspect counts, DNS
names, release and crash repair from the API server's endpoints record alone."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from pathlib import Path

from support.instance import Instance, assert_refused, attachments

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "plugin-example"


def dig(inst: Instance, name: str) -> tuple[str, list[str]]:
    """The host's view (127.0.0.1:2053): (status, A records)."""
    out = inst.sh("dig", "@127.0.0.1", "-p", "2053", "+tries=1", "+time=4", name).stdout
    status = next(
        (
            ln.split("status:")[1].split(",")[0].strip()
            for ln in out.splitlines()
            if "status:" in ln
        ),
        "",
    )
    answers = [ln.split()[-1] for ln in out.splitlines() if "\tA\t" in ln or " A " in ln]
    return status, sorted(a for a in answers if a[0].isdigit())


def users(inst: Instance, network: str) -> int:
    nets = inst.cli("network", "ls", "--format", "json").json()
    return int(next(n["containers"] for n in nets if n["id"] == network))


def test_example_plugin_end_to_end(stopped_instance: Instance) -> None:
    inst = stopped_instance
    inst.env["CONTAINER_PLUGIN_PATH"] = str(EXAMPLE)
    inst.start()
    inst.cli("network", "create", "ex", "--plugin", "example", "--subnet", "10.74.0.0/24")
    status = inst.cli("network", "inspect", "ex").json()["status"]
    assert status["state"] == "running" and status["link"] is None  # it makes no link ...
    assert "bridge" not in status  # ... and the bridge plugin's key is not invented for it
    first = inst.cli("network", "attach", "ex", "--name", "alpha").json()
    assert first["address"] == "10.74.0.2/24" and first["gateway"] == "10.74.0.1"
    again = inst.cli("network", "attach", "ex", "--name", "alpha").json()
    assert again == first  # idempotent per owner
    assert users(inst, "ex") == 1
    assert dig(inst, "alpha.test") == ("NOERROR", ["10.74.0.2"])
    state = inst.root / "plugins" / "example" / "state.json"
    assert "alpha" in state.read_text()  # its own state ...
    db = sqlite3.connect(inst.root / "state.db")
    try:  # ... and the API server's database holds no plugin's tables
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert not tables & {"attachments", "alloc_cursor", "port_forwards"}, tables
    finally:
        db.close()

    # SIGKILL of the API server: the record survives, the plugin is asked again.
    api = inst.pid("apiserver")
    assert api is not None
    os.kill(api, signal.SIGKILL)
    time.sleep(0.3)
    inst.start()
    assert users(inst, "ex") == 1
    assert dig(inst, "alpha.test") == ("NOERROR", ["10.74.0.2"])
    assert [a["owner"] for a in attachments(inst, "ex")] == ["alpha"]

    inst.cli("network", "detach", "ex", "--name", "alpha")
    assert dig(inst, "alpha.test")[0] == "NXDOMAIN"
    assert users(inst, "ex") == 0 and attachments(inst, "ex") == []
    assert_refused(
        inst.cli("network", "attach", "ex", "--name", "b", "--netns", "nowhere", check=False),
        "only allocates addresses",
    )
    assert users(inst, "ex") == 0  # a refused attach records nothing
    # a plugin without the check call (written by hand, not on the SDK): a clear refusal
    assert_refused(
        inst.cli("network", "check", "ex", check=False),
        "plugin example cannot check its attachments",
    )
    inst.cli("network", "delete", "ex")
    assert "ex" not in [n["id"] for n in inst.cli("network", "ls", "--format", "json").json()]
