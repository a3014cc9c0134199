"""A container's sandbox (network namespace) is the runtime's, not a plugin's: the API
server makes it and hands plugins its path; `--network none` needs no helper."""

from __future__ import annotations

import json
import os
import signal

import pytest

from container_runtime.client import UnixClient
from container_runtime.errors import NotFound

from .conftest import System


def test_sandbox_is_made_by_the_runtime_not_the_helper(system: System) -> None:
    inst, ref = system.inst, system.image
    helper = UnixClient(inst.run_dir / "network-bridge.sock")
    try:
        with pytest.raises(NotFound):  # the protocol has no sandbox call any more
            helper.request("POST", f"/sandboxes/{'ef' * 32}", {})
    finally:
        helper.close()
    pid = inst.pid("network-bridge")
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # a helper that cannot answer: none is asked
    try:
        inst.cli("run", "-d", "--name", "nohelper", "--network", "none", ref)
        links = inst.cli("exec", "nohelper", "ip", "-o", "link").stdout.splitlines()
        assert len(links) == 1 and ": lo:" in links[0] and "UP" in links[0], links
        cid = json.loads(inst.cli("inspect", "nohelper", "--format", "json").stdout)["id"]
        sandbox = inst.run_dir / "netns" / f"sb-{cid[:32]}"
        assert sandbox.exists()
    finally:
        os.kill(pid, signal.SIGCONT)
        inst.cli("rm", "-f", "nohelper", check=False)
    assert not sandbox.exists(), "rm removed the sandbox"
