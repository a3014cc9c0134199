"""Issue 14's networking features on a VM container (docs/VM.md "Networking features"):
static addresses and DNS aliases, --hostname/--domainname, --add-host and
host.container.internal inside the guest, and the refusals (host and container: modes, a
running VM's connect/disconnect, plugins without the tap strategy) that change nothing.

One VM `vmx` boots (on xa with ip=, ip6=, two aliases, --hostname, --domainname,
--add-host) and boots once more after a stopped connect to xb, to show the next start
gets that network's NIC. Beside it: namespace containers `xns` on xa and `xnb` on xb.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.instance import Instance, assert_refused, attachments

from ..containers.test_containers import wait_for
from .conftest import System
from .test_vm import HELLO, http_get, inspect, qemu_pids, taps

NETS = {"xa": "10.72.1.0/24", "xb": "10.72.2.0/24"}
V6 = "fd72:1::/64"  # xa's IPv6 subnet
IP, IP6 = "10.72.1.50", "fd72:1::50"
HOSTNAME, DOMAIN = "web", "example.org"
ALIASES = ("api", "www")
EXTRA = ("db.local", "10.72.9.9")  # --add-host
LAN = "xlan"  # a macvlan network on a parent veth the fixture makes
CNI = "xcni"  # a cni network (type=ptp)


@dataclass
class World:
    inst: Instance
    ref: str


def guest(inst: Instance, script: str) -> str:
    return inst.cli("exec", "vmx", "sh", "-c", script, timeout=60).stdout


@pytest.fixture(scope="module")
def world(system: System) -> Iterator[World]:
    inst, ref = system.inst, system.image
    inst.sh("ip", "link", "add", "xlan0", "type", "veth", "peer", "name", "xlan1")
    inst.sh("ip", "link", "set", "xlan0", "up")
    try:
        for name, subnet in NETS.items():
            extra = ["--subnet-v6", V6] if name == "xa" else []
            inst.cli("network", "create", name, "--subnet", subnet, *extra)
        inst.cli(
            "network", "create", LAN, "--plugin", "macvlan", "--option", "parent=xlan0",
            "--subnet", "10.72.5.0/24",
        )  # fmt: skip
        inst.cli("network", "create", CNI, "--plugin", "cni", "--option", "type=ptp")
        inst.cli("run", "-d", "--name", "xns", "--network", "xa", ref)
        inst.cli("run", "-d", "--name", "xnb", "--network", "xb", ref)
        spec = f"xa,ip={IP},ip6={IP6}," + ",".join(f"alias={a}" for a in ALIASES)
        inst.cli(
            "run", "-d", "--vm", "--name", "vmx", "--network", spec, "--hostname", HOSTNAME,
            "--domainname", DOMAIN, "--add-host", ":".join(EXTRA), ref,
        )  # fmt: skip
        yield World(inst, ref)
    finally:
        inst.cli("rm", "-f", "vmx", "xns", "xnb", "xtaken", check=False)
        for name in (*NETS, LAN, CNI):
            inst.cli("network", "rm", name, check=False)
        inst.sh("ip", "link", "del", "xlan0", check=False)


def snapshot(inst: Instance) -> tuple[Any, ...]:
    """What a refusal must leave as it was: containers, every network's attachments
    (with vmx's configuration), the TAPs."""
    nets = {n: attachments(inst, n) for n in (*NETS, LAN, CNI)}
    return inst.cli("ls", "-a", "-q").stdout, nets, inspect(inst, "vmx")["networks"], taps(inst)


# -- the running VM ---------------------------------------------------------------------


def test_static_addresses_reach_the_guest(world: World) -> None:
    inst = world.inst
    (att,) = inspect(inst, "vmx")["networks"]
    assert att["address"] == f"{IP}/24" and att["ipv6Address"].split("/")[0] == IP6
    out = guest(inst, "ip -4 addr show dev eth0; ip -6 addr show dev eth0 scope global")
    assert f"inet {IP}/24" in out and f"inet6 {IP6}/64" in out
    assert http_get(inst, "xns", IP).stdout.strip() == HELLO  # and it serves there
    assert http_get(inst, "xns", IP6).stdout.strip() == HELLO


def test_hostname_domainname_and_etc_hosts_in_the_guest(world: World) -> None:
    out = guest(world.inst, "hostname; cat /proc/sys/kernel/domainname /etc/hostname /etc/hosts")
    lines = out.splitlines()
    assert lines[:3] == [HOSTNAME, DOMAIN, HOSTNAME]
    assert f"{IP}\t{HOSTNAME}.{DOMAIN} {HOSTNAME}.test {HOSTNAME} vmx" in lines
    assert f"{EXTRA[1]}\t{EXTRA[0]}" in lines
    assert "10.72.1.1\thost.container.internal host.docker.internal" in lines


def test_hostname_and_aliases_resolve_on_its_network_by_real_dns_queries(world: World) -> None:
    inst = world.inst
    for name in (HOSTNAME, f"{HOSTNAME}.test", *ALIASES):
        out = inst.cli("exec", "xns", "nslookup", name).stdout
        assert IP in out, (name, out)
        assert IP6 in inst.cli("exec", "xns", "nslookup", "-type=AAAA", name).stdout
    assert http_get(inst, "xns", "api.test").stdout.strip() == HELLO
    # only on that network: not from xb
    for name in (HOSTNAME, ALIASES[0]):
        assert inst.cli("exec", "xnb", "nslookup", name, check=False).returncode != 0


def test_the_host_by_name_through_the_embedded_dns_from_the_guest(world: World) -> None:
    inst = world.inst
    for name in ("host.container.internal", "host.docker.internal"):
        out = guest(inst, f"nslookup {name}")  # busybox nslookup: a DNS query, not /etc/hosts
        assert "10.72.1.1" in out.split("Name:", 1)[1], out
    # and names of the network through it: the namespace container
    xns = inspect(inst, "xns")["networks"][0]["address"].split("/")[0]
    assert xns in guest(inst, "nslookup xns").split("Name:", 1)[1]


# -- refusals that change nothing -------------------------------------------------------


def test_vm_refusals_name_the_reason_and_change_nothing(world: World) -> None:
    inst, ref = world.inst, world.ref
    before = snapshot(inst)
    cases = [
        (["--network", "host"], "--network host is not supported for VM containers"),
        (["--network", "container:xns"], "--network container:xns is not supported for VM"),
        (["--network", LAN], f"network {LAN} (plugin macvlan) cannot attach VM containers"),
        (["--network", f"{LAN},ip=10.72.5.9"], "lacks the tap interface strategy"),
        (["--network", CNI], f"network {CNI} (plugin cni) cannot attach VM containers"),
        (["--network", "xb,ip=10.72.2.9", "--network", LAN], "(it has: macvlan)"),
    ]
    for flags, message in cases:
        r = inst.cli("run", "-d", "--vm", "--name", "vmbad", *flags, ref, check=False)
        assert_refused(r, message)
    # a running VM's networks: no hot-plugged NICs (yet)
    busy = "container vmx runs in a VM: stop it to change its networks"
    assert_refused(inst.cli("network", "connect", "xb", "vmx", check=False), busy)
    assert_refused(inst.cli("network", "disconnect", "xa", "vmx", check=False), busy)
    assert snapshot(inst) == before
    # the refused static addresses were not held: a namespace container takes 10.72.2.9
    inst.cli("run", "-d", "--name", "xtaken", "--network", "xb,ip=10.72.2.9", world.ref)
    inst.cli("rm", "-f", "xtaken")


# -- stopped: the reservation holds, connect/disconnect change the next start -----------


def test_a_stopped_vms_static_address_stays_reserved_across_restarts(world: World) -> None:
    inst, ref = world.inst, world.ref
    inst.cli("stop", "vmx")
    assert inspect(inst, "vmx")["state"] == "stopped" and not taps(inst)
    old = inst.pid("network-bridge")  # the plugin's helper, then the API server: SIGKILL
    assert old is not None
    os.kill(old, signal.SIGKILL)
    inst.wait_pid_change("network-bridge", old)
    api = inst.pid("apiserver")
    assert api is not None
    os.kill(api, signal.SIGKILL)
    wait_for(lambda: not Path(f"/proc/{api}").exists(), 10, "the API server to die")
    inst.start()
    r = inst.cli("run", "-d", "--name", "xtaken", "--network", f"xa,ip={IP}", ref, check=False)
    assert_refused(r, IP)
    r = inst.cli(
        "run",
        "-d",
        "--name",
        "xtaken",
        "--network",
        f"xa,ip=10.72.1.51,ip6={IP6}",
        ref,
        check=False,
    )
    assert_refused(r, IP6)
    assert inst.cli("ls", "-a", "-q").stdout.split().count("xtaken") == 0


def test_stopped_connect_and_disconnect_change_the_next_start(world: World) -> None:
    inst = world.inst
    refused = inst.cli("network", "connect", LAN, "vmx", check=False)  # stopped: still no tap
    assert_refused(refused, "lacks the tap interface strategy")
    inst.cli("network", "connect", "xb", "vmx", "--alias", "vmxb")
    nets = [n["network"] for n in inspect(inst, "vmx")["networks"]]
    assert nets == ["xa", "xb"]
    inst.cli("start", "vmx")
    info = inspect(inst, "vmx")
    eth1 = next(n for n in info["networks"] if n["network"] == "xb")
    assert eth1["interface"] == "eth1" and eth1["address"].startswith("10.72.2.")
    addr = eth1["address"].split("/")[0]
    assert f"inet {addr}/24" in guest(inst, "ip -4 addr show dev eth1")
    assert addr in inst.cli("exec", "xnb", "nslookup", "vmxb").stdout
    assert http_get(inst, "xnb", addr).stdout.strip() == HELLO
    assert info["networks"][0]["address"] == f"{IP}/24"  # the static address came back
    inst.cli("stop", "vmx")
    inst.cli("network", "disconnect", "xb", "vmx")
    (only,) = inspect(inst, "vmx")["networks"]
    assert only["network"] == "xa" and only["address"] == f"{IP}/24"  # reserved, stopped
    assert not [a for a in attachments(inst, "xb") if a["owner"] == info["id"]]


def test_rm_frees_the_static_address(world: World) -> None:
    inst = world.inst
    cid = inspect(inst, "vmx")["id"]
    inst.cli("rm", "vmx")
    assert not qemu_pids(inst) and not (inst.root / "vms" / cid).exists()
    inst.cli("run", "-d", "--name", "xtaken", "--network", f"xa,ip={IP}", world.ref)
    assert inspect(inst, "xtaken")["networks"][0]["address"] == f"{IP}/24"
    assert not Path(inst.run_dir / "vm" / cid[:12]).exists()
