"""The helper protocol: its version handshake (manifest and GET /status) and its schema
(container_runtime/plugin/protocol.json), checked against the real bridge helper."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from support.instance import Instance, assert_refused

from container_runtime.client import UnixClient
from container_runtime.errors import ContainerError, NotFound
from container_runtime.plugin import PROTOCOL_VERSION, StatusReply, schema

# A helper that answers GET /status with the protocol version it was given (argv[1]).
FAKE_HELPER = """#!{python}
import os, signal, sys, threading
from container_runtime.daemon import write_pidfile
from container_runtime.http import Router, SelectorHTTPServer
from container_runtime.paths import Paths

paths = Paths.from_env()
router = Router()

@router.route("GET", "/status")
def status(_):
    return 200, {{"plugin": "future", "version": "9.0", "protocol": {reported}, "pid": os.getpid(),
                 "strategies": [], "networks": []}}

server = SelectorHTTPServer(paths.helper_socket("future"), router, mode=0o600)
write_pidfile(paths.helper_pidfile("future"))
signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
server.serve_forever()
"""


def install_plugin(
    directory: Path, declared: int, reported: int, manifest: str = "strategies = []\n"
) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    exe = directory / "container-network-future"
    exe.write_text(FAKE_HELPER.format(python=sys.executable, reported=reported))
    exe.chmod(0o755)
    (directory / "future.toml").write_text(
        f'name = "future"\nversion = "9.0"\nprotocol = {declared}\nexecutable = "{exe}"\n{manifest}'
    )


def assert_nothing_made(inst: Instance, before: list[str]) -> None:
    assert network_names(inst) == before  # nothing was made
    assert not (inst.run_dir / "network-future.sock").exists()  # a refused helper is stopped
    assert not any(
        b"container-network-future" in Path(f"/proc/{pid}/cmdline").read_bytes()
        for pid in inst.our_processes()
        if Path(f"/proc/{pid}").exists()
    )


def network_names(inst: Instance) -> list[str]:
    return [n["id"] for n in inst.cli("network", "ls", "--format", "json").json()]


@pytest.mark.parametrize(
    ("declared", "reported", "where"),
    [(PROTOCOL_VERSION + 1, PROTOCOL_VERSION + 1, "manifest"), (1, 7, "its GET /status")],
)
def test_a_plugin_of_another_protocol_version_is_refused(
    stopped_instance: Instance, declared: int, reported: int, where: str
) -> None:
    inst = stopped_instance
    plugins = inst.base / "plugins"
    install_plugin(plugins, declared, reported)
    inst.env["CONTAINER_PLUGIN_PATH"] = str(plugins)
    inst.start()
    before = network_names(inst)
    refused = inst.cli("network", "create", "later", "--plugin", "future", check=False)
    assert_refused(
        refused,
        f"network plugin future speaks helper protocol version {reported}",
        where,
        f"this runtime speaks version {PROTOCOL_VERSION}",
    )
    assert_nothing_made(inst, before)


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        (
            'strategies = ["veth"]\n',
            "its helper offers strategies [] but its manifest",
        ),
        (
            'strategies = []\nservices = ["dns"]\n',
            "plugin future does not offer the network service (services: dns;",
        ),
    ],
)
def test_a_plugin_whose_manifest_and_helper_disagree_is_refused(
    stopped_instance: Instance, manifest: str, message: str
) -> None:
    inst = stopped_instance
    plugins = inst.base / "plugins"
    install_plugin(plugins, PROTOCOL_VERSION, PROTOCOL_VERSION, manifest)
    inst.env["CONTAINER_PLUGIN_PATH"] = str(plugins)
    inst.start()
    before = network_names(inst)
    refused = inst.cli("network", "create", "later", "--plugin", "future", check=False)
    assert_refused(refused, message)
    assert_nothing_made(inst, before)


def validator(call: str, part: str = "response") -> jsonschema.Draft202012Validator:
    full = schema()
    return jsonschema.Draft202012Validator({"$defs": full["$defs"], **full["calls"][call][part]})


def check(call: str, reply: Any) -> None:
    validator(call).validate(reply)


def test_real_helper_replies_match_the_schema(instance: Instance) -> None:
    inst = instance
    assert schema()["protocolVersion"] == PROTOCOL_VERSION
    inst.cli("network", "create", "foo", "--subnet", "10.73.0.0/24", "--subnet-v6", "fd73::/64")
    config = inst.cli("network", "inspect", "foo").json()["configuration"]
    helper = UnixClient(inst.run_dir / "network-bridge.sock")
    try:
        status = helper.request("GET", "/status")
        check("GET /status", status)
        assert StatusReply.from_json(status).protocol == PROTOCOL_VERSION
        validator("POST /networks", "request").validate(config)
        check("POST /networks", helper.request("POST", "/networks", config))
        request = {"owner": "schema", "hostname": "schema", "interface": "eth0", "primary": True}
        validator("POST /networks/{name}/attachments", "request").validate(request)
        attached = helper.request("POST", "/networks/foo/attachments", request)
        check("POST /networks/{name}/attachments", attached)
        assert "ipv6Address" in attached
        check(
            "GET /networks/{name}/attachments", helper.request("GET", "/networks/foo/attachments")
        )
        check(
            "GET /networks/{name}/attachments/{owner}",
            helper.request("GET", "/networks/foo/attachments/schema"),
        )
        validator("POST /networks/{name}/check", "request").validate({})
        checked = helper.request("POST", "/networks/foo/check", {})
        check("POST /networks/{name}/check", checked)
        assert checked == {"network": "foo", "problems": []}  # allocation only: healthy
        forwards = {
            "forwards": [
                {
                    "protocol": "tcp",
                    "hostIP": None,
                    "hostPort": 18473,
                    "containerIP": attached["address"].split("/")[0],
                    "containerPort": 80,
                    "count": 2,
                }
            ]
        }
        validator("PUT /portforwards/{owner}", "request").validate(forwards)
        check("PUT /portforwards/{owner}", helper.request("PUT", "/portforwards/schema", forwards))
        check("DELETE /portforwards/{owner}", helper.request("DELETE", "/portforwards/schema"))
        check(
            "DELETE /networks/{name}/attachments/{owner}",
            helper.request("DELETE", "/networks/foo/attachments/schema"),
        )
        check("POST /reload", helper.request("POST", "/reload", {}))
        wanted = {"address": "10.73.0.77", "ipv6Address": None}
        validator("PUT /networks/{name}/reservations/{owner}", "request").validate(wanted)
        path = "/networks/foo/reservations/schema"
        check("PUT /networks/{name}/reservations/{owner}", helper.request("PUT", path, wanted))
        listed = helper.request("GET", "/networks/foo/reservations")
        check("GET /networks/{name}/reservations", listed)
        assert [(r["address"], r["ipv6Address"]) for r in listed] == [("10.73.0.77", "fd73::4d")]
        static = {**request, "ip": "10.73.0.77", "ip6": None}
        validator("POST /networks/{name}/attachments", "request").validate(static)
        got = helper.request("POST", "/networks/foo/attachments", static)
        assert got["address"] == "10.73.0.77/24"
        helper.request("DELETE", "/networks/foo/attachments/schema")
        check("DELETE /networks/{name}/reservations/{owner}", helper.request("DELETE", path))
        assert helper.request("GET", "/networks/foo/reservations") == []
        # Errors: the shape every non-2xx reply has.
        raw = helper_error(inst, "GET", "/networks/foo/attachments/nobody")
        jsonschema.validate(raw, {"$defs": schema()["$defs"], "$ref": "#/$defs/Error"})
        with pytest.raises(NotFound):
            helper.request("GET", "/networks/foo/attachments/nobody")
    finally:
        helper.close()
    inst.cli("network", "delete", "foo")


def helper_error(inst: Instance, method: str, path: str) -> Any:
    """The raw JSON body of a helper's error reply."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(os.fspath(inst.run_dir / "network-bridge.sock"))
        sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.split()[1] == b"404", head
    return json.loads(body)


def test_status_reply_type_refuses_malformed_replies() -> None:
    good = {
        "plugin": "x",
        "version": "1",
        "protocol": 1,
        "pid": 1,
        "strategies": ["veth"],
        "networks": [],
    }
    assert StatusReply.from_json(good).to_json() == good
    for bad in ({**good, "protocol": "1"}, {k: v for k, v in good.items() if k != "pid"}, []):
        with pytest.raises(ContainerError):
            StatusReply.from_json(bad)


def test_network_reply_dns_address() -> None:
    """dnsAddress: an address (macvlan's shim), null (no embedded DNS), absent (an older
    plugin: the gateway); anything else is a protocol error."""
    import ipaddress

    from container_runtime.plugin.protocol import NetworkReply

    gateway = ipaddress.IPv4Address("10.1.0.1")
    shim = NetworkReply.from_json({"link": "cm1", "dnsAddress": "10.1.0.254"})
    assert shim.dns_for(gateway) == ipaddress.IPv4Address("10.1.0.254")
    assert shim.to_json() == {"link": "cm1", "dnsAddress": "10.1.0.254"}
    assert NetworkReply.from_json({"link": None, "dnsAddress": None}).dns_for(gateway) is None
    old = NetworkReply.from_json({"link": "ctr-x"})
    assert old.dns_for(gateway) == gateway and "dnsAddress" not in old.to_json()
    for bad in ({"dnsAddress": "nope"}, {"dnsAddress": 5}, {"link": 3}, {"bridge": 3}, []):
        with pytest.raises(ContainerError):
            NetworkReply.from_json(bad)
    jsonschema.validate(shim.to_json(), schema()["$defs"]["NetworkReply"])


def test_network_reply_from_an_older_helper() -> None:
    """A helper from before the neutral `link` field (an out-of-tree plugin) replies
    `bridge`: read as the link; `link` wins when both are sent; nothing else is read."""
    from container_runtime.plugin.protocol import NetworkReply

    older = {"bridge": "br-x", "dnsAddress": None}
    jsonschema.validate(older, schema()["$defs"]["NetworkReply"])
    assert NetworkReply.from_json(older).link == "br-x"
    assert NetworkReply.from_json(older).to_json() == {"link": "br-x", "dnsAddress": None}
    assert NetworkReply.from_json({"link": "ln0", "bridge": "br-x"}).link == "ln0"
    assert NetworkReply.from_json({"link": None, "bridge": "br-x"}).link is None
    assert NetworkReply.from_json({}).link is None
