"""Small probes the conformance tests share: the helper's own socket, raw replies, DNS."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import jsonschema
from support.instance import Instance, attachments

from container_runtime.client import UnixClient
from container_runtime.plugin import schema


def conforms(call: str, value: Any, part: str = "response") -> None:
    full = schema()
    jsonschema.validate(value, {"$defs": full["$defs"], **full["calls"][call][part]})


def conforms_to_error(value: Any) -> None:
    jsonschema.validate(value, {"$defs": schema()["$defs"], "$ref": "#/$defs/Error"})


def helper(inst: Instance, plugin: str) -> UnixClient:
    return UnixClient(inst.run_dir / f"network-{plugin}.sock")


def helper_attachments(inst: Instance, plugin: str, network: str) -> list[dict[str, Any]]:
    client = helper(inst, plugin)
    try:
        return list(client.request("GET", f"/networks/{network}/attachments"))
    finally:
        client.close()


def raw(sock_path: Path, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """One request on the helper's socket, the status and JSON body as they came."""
    payload = b"" if body is None else json.dumps(body).encode()
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(os.fspath(sock_path))
        sock.sendall(head.encode() + b"\r\n" + payload)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    top, _, rest = data.partition(b"\r\n\r\n")
    return int(top.split()[1]), json.loads(rest)


def dig(inst: Instance, name: str) -> tuple[str, list[str]]:
    """The host's view of the DNS server (127.0.0.1:2053): (status, A records)."""
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


def kill_helper(inst: Instance, plugin: str, network: str) -> None:
    """SIGKILL the plugin's helper and wait until its successor answers through the API."""
    pid = inst.pid(f"network-{plugin}")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    inst.wait_pid_change(f"network-{plugin}", pid)
    deadline = time.monotonic() + 20
    while True:
        try:
            attachments(inst, network)
            helper_attachments(inst, plugin, network)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def wait_for(predicate: Any, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
