"""Per-network DNS settings, end to end with real queries from containers:
`network create --dns-server IP` (the network's own upstreams) and `--option dns=false`
(no embedded DNS for the network), across SIGKILLs of the API server and the DNS server;
refusals change nothing.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest
from support.containers import FakeUpstream, address, resolve_in
from support.instance import Instance, assert_refused

from .conftest import System

UPSTREAM, OUTSIDE = "127.0.0.53", "192.0.2.7"  # a stand-in upstream in the daemons' netns
FWD, PLAIN, OFF = "fwd", "plain", "off"
NETS = {FWD: "10.94.1.0/24", PLAIN: "10.94.2.0/24", OFF: "10.94.3.0/24"}
OFF_SERVER = "10.94.9.9"


@pytest.fixture(scope="module")
def dnsnets(system: System) -> Iterator[tuple[System, FakeUpstream]]:
    inst, ref = system.inst, system.image
    upstream = FakeUpstream(inst.netns, UPSTREAM, 53, OUTSIDE)
    try:
        inst.cli("image", "pull", ref)
        inst.cli("network", "create", FWD, "--subnet", NETS[FWD], "--dns-server", UPSTREAM)
        inst.cli("network", "create", PLAIN, "--subnet", NETS[PLAIN])
        inst.cli("network", "create", OFF, "--subnet", NETS[OFF], "--option", "dns=false",
                 "--dns-server", OFF_SERVER)  # fmt: skip
        inst.cli("run", "-d", "--name", "cfwd", "--network", FWD, ref)
        inst.cli("run", "-d", "--name", "cplain", "--network", PLAIN, ref)
        inst.cli("run", "-d", "--name", "coff", "--network", OFF, ref)
        inst.cli("run", "-d", "--name", "multi", "--network", PLAIN, "--network", OFF, ref)
        yield system, upstream
    finally:
        inst.cli("rm", "-f", "cfwd", "cplain", "coff", "multi", check=False)
        for net in NETS:
            inst.cli("network", "rm", net, check=False)
        upstream.close()


def listeners(inst: Instance) -> str:
    return inst.sh("ss", "-ulnH").stdout


def check_world(inst: Instance, upstream: FakeUpstream) -> None:
    # fwd forwards to its own server; plain to the system's (unreachable here: nothing).
    before = len(upstream.asked)
    assert resolve_in(inst, "cfwd", "outside.example") == [OUTSIDE]
    assert upstream.asked[before:] == ["outside.example"]
    assert resolve_in(inst, "cplain", "elsewhere.example") == []
    assert "elsewhere.example" not in upstream.asked
    # Container names still answer on fwd and plain; off has no listener, no names.
    assert resolve_in(inst, "cfwd", "cfwd") == [address(inst, "cfwd")]
    assert resolve_in(inst, "multi", "cplain") == [address(inst, "cplain")]
    assert resolve_in(inst, "multi", "coff") == []  # asked through plain's listener
    assert resolve_in(inst, "multi", "multi") == [address(inst, "multi")]  # its plain address
    gw_off = NETS[OFF].replace("0/24", "1")
    assert f"{gw_off}:53 " not in listeners(inst)
    assert f"{NETS[FWD].replace('0/24', '1')}:53 " in listeners(inst)


def test_per_network_dns_settings(dnsnets: tuple[System, FakeUpstream]) -> None:
    system, upstream = dnsnets
    inst = system.inst
    # The resolv.conf each gets: the embedded DNS, or (dns=false) the network's servers.
    resolv = inst.cli("exec", "coff", "cat", "/etc/resolv.conf").stdout
    assert resolv.splitlines()[0] == f"nameserver {OFF_SERVER}", resolv
    fwd_resolv = inst.cli("exec", "cfwd", "cat", "/etc/resolv.conf").stdout
    assert fwd_resolv.splitlines()[0] == "nameserver 10.94.1.1"
    options = inst.cli("network", "inspect", OFF).json()["configuration"]["options"]
    assert options == {"dns": "false", "dns-server": OFF_SERVER}
    check_world(inst, upstream)
    # A question sent to off's gateway anyway gets no answer.
    out = inst.cli("exec", "coff", "nslookup", "cfwd", "10.94.3.1", check=False)
    assert out.returncode != 0 and "10.94.1." not in out.stdout
    for daemon in ("apiserver", "dns"):
        pid = inst.pid(daemon)
        assert pid
        os.kill(pid, signal.SIGKILL)
        if daemon == "apiserver":
            inst.start()
        else:
            inst.wait_pid_change("dns", pid)
            inst.cli("network", "ls")  # the API server answers: the new DNS server acked
        check_world(inst, upstream)


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--dns-server", "not-an-ip"], "invalid value 'not-an-ip' for option 'dns-server'"),
        (["--dns-server", ""], "option 'dns-server' needs a value"),
        (["--option", "dns=maybe"], "invalid value 'maybe' for option 'dns'"),
        (["--option", "dns=false", "--option", "dns=true"], "option 'dns' given twice"),
    ],
)
def test_bad_dns_settings_are_refused(
    dnsnets: tuple[System, FakeUpstream], argv: list[str], fragment: str
) -> None:
    inst = dnsnets[0].inst
    before = inst.cli("network", "ls", "--format", "json").stdout
    result = inst.cli("network", "create", "bad", "--subnet", "10.94.8.0/24", *argv, check=False)
    assert_refused(result, fragment)
    assert inst.cli("network", "ls", "--format", "json").stdout == before
