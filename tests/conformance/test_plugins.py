"""One conformance suite run against every network plugin (issue 11.6, begun): the
built-in bridge and the out-of-tree example (examples/plugin-example).  A new plugin
adds itself to PLUGINS.  Bare attachments only (the example builds no interface)."""

from __future__ import annotations

import json
import os
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from support.instance import Instance, NetnsPool, assert_refused, attachments

from container_runtime.client import UnixClient
from container_runtime.plugin import PROTOCOL_VERSION, StatusReply, schema

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "plugin-example"
PLUGINS = {"bridge": "10.76.0.0/24", "example": "10.77.0.0/24"}


def conforms(call: str, reply: Any, part: str = "response") -> None:
    full = schema()
    jsonschema.validate(reply, {"$defs": full["$defs"], **full["calls"][call][part]})


def dig(inst: Instance, name: str) -> tuple[str, list[str]]:
    out = inst.sh("dig", "@127.0.0.1", "-p", "2053", "+tries=1", "+time=4", name).stdout
    status = ""
    answers = []
    for line in out.splitlines():
        if "status:" in line:
            status = line.split("status:")[1].split(",")[0].strip()
        fields = line.split()
        if len(fields) == 5 and fields[3] == "A" and not line.startswith(";"):
            answers.append(fields[4])
    return status, sorted(answers)


def raw_error(sock_path: Path, path: str) -> tuple[int, Any]:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(os.fspath(sock_path))
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


@pytest.fixture(scope="module")
def both(netns_pool_module: NetnsPool) -> Iterator[Instance]:
    """One system with a network of each plugin side by side."""
    base = Path(tempfile.mkdtemp(prefix="ctr-test-"))
    base.chmod(0o755)
    inst = Instance(base, netns_pool_module)
    try:
        inst.env["CONTAINER_PLUGIN_PATH"] = str(EXAMPLE)
        inst.start()
        for plugin, subnet in PLUGINS.items():
            inst.cli("network", "create", f"n-{plugin}", "--plugin", plugin, "--subnet", subnet)
        yield inst
    finally:
        inst.cleanup()


@pytest.fixture(scope="module")
def netns_pool_module() -> Iterator[NetnsPool]:
    pool = NetnsPool()
    try:
        yield pool
    finally:
        pool.cleanup()


def helper(inst: Instance, plugin: str) -> UnixClient:
    return UnixClient(inst.run_dir / f"network-{plugin}.sock")


@pytest.mark.parametrize("plugin", sorted(PLUGINS))
def test_status_and_replies_conform_to_the_schema(both: Instance, plugin: str) -> None:
    net = f"n-{plugin}"
    client = helper(both, plugin)
    try:
        status = client.request("GET", "/status")
        conforms("GET /status", status)
        parsed = StatusReply.from_json(status)
        assert parsed.plugin == plugin and parsed.protocol == PROTOCOL_VERSION
        assert net in parsed.networks
        assert not any(n.startswith("n-") and n != net for n in parsed.networks)  # its own
        body = {"owner": "conf1", "hostname": "conf1", "interface": "eth0", "primary": True}
        conforms("POST /networks/{name}/attachments", body, "request")
        att = client.request("POST", f"/networks/{net}/attachments", body)
        conforms("POST /networks/{name}/attachments", att)
        conforms(
            "GET /networks/{name}/attachments",
            client.request("GET", f"/networks/{net}/attachments"),
        )
        conforms(
            "GET /networks/{name}/attachments/{owner}",
            client.request("GET", f"/networks/{net}/attachments/conf1"),
        )
        conforms(
            "DELETE /networks/{name}/attachments/{owner}",
            client.request("DELETE", f"/networks/{net}/attachments/conf1"),
        )
        conforms("DELETE /portforwards/{owner}", client.request("DELETE", "/portforwards/conf1"))
        conforms("POST /reload", client.request("POST", "/reload", {}))
    finally:
        client.close()
    code, error = raw_error(
        both.run_dir / f"network-{plugin}.sock", f"/networks/{net}/attachments/nobody"
    )
    assert code == 404
    jsonschema.validate(error, {"$defs": schema()["$defs"], "$ref": "#/$defs/Error"})


@pytest.mark.parametrize("plugin", sorted(PLUGINS))
def test_attach_is_idempotent_per_owner_and_released_on_detach(both: Instance, plugin: str) -> None:
    inst, net = both, f"n-{plugin}"
    one = inst.cli("network", "attach", net, "--name", f"idem-{plugin}").json()
    assert inst.cli("network", "attach", net, "--name", f"idem-{plugin}").json() == one
    two = inst.cli("network", "attach", net, "--name", f"other-{plugin}").json()
    assert two["address"] != one["address"] and two["macAddress"] != one["macAddress"]
    assert dig(inst, f"idem-{plugin}.test") == ("NOERROR", [one["address"].split("/")[0]])
    for name in (f"idem-{plugin}", f"other-{plugin}"):
        inst.cli("network", "detach", net, "--name", name)
    assert attachments(inst, net) == []
    assert dig(inst, f"idem-{plugin}.test")[0] == "NXDOMAIN"
    assert_refused(
        inst.cli("network", "detach", net, "--name", f"idem-{plugin}", check=False),
        f"idem-{plugin}",
    )


@pytest.mark.parametrize("plugin", sorted(PLUGINS))
def test_commit_before_reply_survives_sigkill_of_the_helper(both: Instance, plugin: str) -> None:
    inst, net = both, f"n-{plugin}"
    given = {
        f"k{i}-{plugin}": inst.cli("network", "attach", net, "--name", f"k{i}-{plugin}").json()
        for i in range(3)
    }
    pid = inst.pid(f"network-{plugin}")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    inst.wait_pid_change(f"network-{plugin}", pid)
    deadline = time.monotonic() + 20
    while True:  # the restarted helper answers (the API server waits for it too)
        try:
            listed = {a["owner"]: a for a in attachments(inst, net)}
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    assert set(listed) == set(given), "no attachment lost, none added"
    for owner, reply in given.items():
        assert listed[owner]["address"] == reply["address"]
        assert listed[owner]["macAddress"] == reply["macAddress"]
    other = next(p for p in PLUGINS if p != plugin)
    assert all(not a["owner"].endswith(plugin) for a in attachments(inst, f"n-{other}"))
    for owner in given:
        inst.cli("network", "detach", net, "--name", owner)
