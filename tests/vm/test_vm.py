"""VM containers (`run --vm`) on the same networks as namespace containers, end to end:
real CLI, daemons, QEMU (TCG here) and the guest built by scripts/setup.sh.

Few guests boot (each takes seconds under TCG): one module-scoped VM `vm1` on network
vma (with mac= and mtu=, a published port) serves most tests; `vmi` on an internal
network serves the egress and `stop` tests; vm1 is killed (kill -9 of QEMU) and started
again once for the cleanup and `system stop` tests. Beside them: namespace containers
`ns1` on vma and `nsb` on vmb.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support import probes
from support.instance import Instance, Result, assert_refused, attachments
from support.registry import free_port

from ..containers.test_containers import wait_for
from .conftest import System

HELLO = "hello from busybox"
MAC = "02:42:0a:47:01:99"
MTU = 1400
NETS = {"vma": "10.71.1.0/24", "vmb": "10.71.2.0/24", "vmi": "10.71.3.0/24"}
V6 = "fd71:1::/64"  # vma's IPv6 subnet
OUTSIDE = "10.99.71.1"  # a host address outside every network (an uplink-like interface)


@dataclass
class World:
    inst: Instance
    ref: str
    port: int  # vm1's published host port (-> 80)


def inspect(inst: Instance, name: str) -> dict[str, Any]:
    return dict(json.loads(inst.cli("inspect", name, "--format", "json").stdout))


def address(inst: Instance, name: str) -> str:
    return str(inspect(inst, name)["networks"][0]["address"]).split("/")[0]


def global_v6(inst: Instance, name: str) -> str:
    out = inst.cli("exec", name, "ip", "-6", "addr", "show", "dev", "eth0", "scope", "global")
    return out.stdout.split("inet6 ", 1)[1].split("/", 1)[0]


def http_get(inst: Instance, via: str, host: str, port: int = 80, timeout: int = 3) -> Result:
    """GET / from inside a container (VM or namespace) through busybox nc; stdout = body."""
    script = f'printf "GET / HTTP/1.0\\r\\n\\r\\n" | nc -w {timeout} {host} {port}'
    r = inst.cli("exec", via, "sh", "-c", script, check=False, timeout=60)
    head, sep, body = r.stdout.replace("\r\n", "\n").partition("\n\n")
    ok = r.returncode == 0 and bool(sep) and " 200 " in head.splitlines()[0]
    return Result(0 if ok else 1, body, r.stderr)


def host_get(inst: Instance, url: str) -> Result:
    return inst.sh("timeout", "3", "busybox", "wget", "-q", "-O", "-", url, check=False)


def qemu_pids(inst: Instance) -> list[int]:
    """QEMU processes of this instance (their -initrd lies under its state root)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if (
                cmd
                and cmd[0].endswith(b"qemu-system-x86_64")
                and any(str(inst.root).encode() in a for a in cmd)
            ):
                found.append(int(entry.name))
    return found


def taps(inst: Instance) -> list[str]:
    names = [link["ifname"] for link in inst.links()]
    return [n for n in names if n.startswith("ct") and not n.startswith("ctr-")]


@pytest.fixture(scope="module")
def world(system: System) -> Iterator[World]:
    inst, ref = system.inst, system.image
    port = free_port()
    inst.sh("ip", "link", "add", "vmup", "type", "veth", "peer", "name", "vmuppeer")
    inst.sh("ip", "addr", "add", f"{OUTSIDE}/24", "dev", "vmup")
    inst.sh("ip", "link", "set", "vmup", "up")
    inst.sh("ip", "link", "set", "vmuppeer", "up")
    try:
        for name, subnet in NETS.items():
            extra = {"vmi": ["--internal"], "vma": ["--subnet-v6", V6]}.get(name, [])
            inst.cli("network", "create", name, "--subnet", subnet, *extra)
        inst.cli("run", "-d", "--name", "ns1", "--network", "vma", ref)
        inst.cli("run", "-d", "--name", "nsb", "--network", "vmb", ref)
        started = time.monotonic()
        inst.cli(
            "run", "-d", "--vm", "--name", "vm1", "--network", f"vma,mac={MAC},mtu={MTU}",
            "-p", f"{port}:80", ref,
        )  # fmt: skip
        assert time.monotonic() - started < 60
        yield World(inst, ref, port)
    finally:
        inst.cli("rm", "-f", "vm1", "vmi", "ns1", "nsb", check=False)
        for name in NETS:
            inst.cli("network", "rm", name, check=False)
        inst.sh("ip", "link", "del", "vmup", check=False)


# -- refusals (no guest boots) ----------------------------------------------------------


def test_vm_options_refused_cleanly(world: World) -> None:
    inst, ref = world.inst, world.ref
    before = inst.cli("ls", "-a", "-q").stdout
    cases = [
        (["--cpus", "2"], "--cpus and --memory need --vm"),
        (["--vm", "--cpus", "0"], "invalid --cpus"),
        (["--vm", "--memory", "lots"], "invalid memory size"),
        (["--vm", "--memory", "1M"], "must be between 64 MiB"),
        (["--vm", "-v", "/tmp:/data"], "-v/--volume is not supported with --vm"),
        (["--vm", "-t"], "-t/--tty is not supported with --vm"),
    ]
    for flags, message in cases:
        assert_refused(inst.cli("create", *flags, ref, check=False), message)
    assert inst.cli("ls", "-a", "-q").stdout == before


# -- the running VM ---------------------------------------------------------------------


def test_inspect_shows_isolation_accelerator_and_attachments(world: World) -> None:
    info = inspect(world.inst, "vm1")
    assert info["state"] == "running" and info["isolation"] == "vm"
    assert info["accelerator"] in ("kvm", "tcg")
    assert info["vm"]["cpus"] == 1 and info["vm"]["memoryMB"] == 256
    assert set(info["vm"]["bootMs"]) >= {"vm", "kernel", "network", "process", "total"}
    (att,) = info["networks"]
    assert att["network"] == "vma" and att["interface"] == "eth0"
    assert att["macAddress"] == MAC and att["mtu"] == MTU
    assert att["address"].startswith("10.71.1.") and att["gateway"] == "10.71.1.1"
    assert inspect(world.inst, "ns1")["isolation"] == "namespace"
    # The allocation log line of the seed, for the VM's attachment too.
    log = (world.inst.run_dir / "network-bridge.log").read_text()
    assert f"[address={att['address']}] [gateway=10.71.1.1] [mac={MAC}] [id=vma]" in log


def test_guest_sees_mac_mtu_route_and_etc_files(world: World) -> None:
    inst = world.inst
    addr = address(inst, "vm1")
    out = inst.cli(
        "exec", "vm1", "sh", "-c",
        "cat /sys/class/net/eth0/address /sys/class/net/eth0/mtu; ip route; ip -6 route;"
        " ip -6 addr show dev eth0; hostname;"
        " cat /etc/hosts /etc/resolv.conf; pwd; echo $GREETING",
    ).stdout  # fmt: skip
    assert f"{MAC}\n{MTU}\n" in out
    assert "default via 10.71.1.1 dev eth0" in out
    assert "inet6 fd71:1::" in out and "default via fd71:1::1 dev eth0" in out
    assert f"{addr}\tvm1.test vm1" in out and "nameserver 10.71.1.1" in out
    assert "\nvm1\n" in out and "/www\n" in out  # hostname, the image's workdir
    assert "hello from the image" in out  # the image's env
    # exec: exit status, stderr, -w and -e
    r = inst.cli(
        "exec", "-w", "/tmp", "-e", "X=y", "vm1", "sh", "-c", 'pwd; echo "$X" >&2; exit 3',
        check=False,
    )  # fmt: skip
    assert (r.returncode, r.stdout, r.stderr) == (3, "/tmp\n", "y\n")


def test_vm_and_namespace_container_reach_each_other_by_address_and_name(world: World) -> None:
    inst = world.inst
    vm, ns = address(inst, "vm1"), address(inst, "ns1")
    assert http_get(inst, "ns1", vm).stdout.strip() == HELLO
    assert http_get(inst, "vm1", ns).stdout.strip() == HELLO
    # by DNS name, through the embedded DNS server on the gateway
    assert vm in inst.cli("exec", "ns1", "nslookup", "vm1").stdout
    assert ns in inst.cli("exec", "vm1", "nslookup", "ns1").stdout
    assert http_get(inst, "vm1", "ns1.test").stdout.strip() == HELLO
    assert http_get(inst, "ns1", "vm1.test").stdout.strip() == HELLO
    # and over IPv6 (vma has a v6 subnet: the guest configured its address itself)
    vm6, ns6 = global_v6(inst, "vm1"), global_v6(inst, "ns1")
    assert vm6.startswith("fd71:1::") and ns6.startswith("fd71:1::")
    assert http_get(inst, "ns1", vm6).stdout.strip() == HELLO
    assert http_get(inst, "vm1", ns6).stdout.strip() == HELLO


def test_vm_does_not_reach_another_network(world: World) -> None:
    inst = world.inst
    other = address(inst, "nsb")
    assert http_get(inst, "nsb", other).stdout.strip() == HELLO  # it serves
    assert http_get(inst, "vm1", other, timeout=1).returncode != 0
    assert http_get(inst, "nsb", address(inst, "vm1"), timeout=1).returncode != 0
    assert inst.cli("exec", "vm1", "nslookup", "nsb", check=False).returncode != 0


def test_published_port_from_host_and_hairpin(world: World) -> None:
    inst, port = world.inst, world.port
    wait_for(lambda: host_get(inst, f"http://127.0.0.1:{port}/").returncode == 0, 10, "port")
    assert host_get(inst, f"http://{OUTSIDE}:{port}/").stdout.strip() == HELLO
    # hairpin: another container (a namespace one) through the host's address
    assert http_get(inst, "ns1", OUTSIDE, port).stdout.strip() == HELLO
    # the VM itself through the host's address (hairpin back to itself)
    assert http_get(inst, "vm1", OUTSIDE, port).stdout.strip() == HELLO


def test_internal_network_gives_a_vm_no_egress_logs_and_stop_cleans_up(world: World) -> None:
    inst, ref = world.inst, world.ref
    listener = probes.Responder(inst.netns, 7171)  # on every host address
    try:
        inst.cli(
            "run", "-d", "--vm", "--name", "vmi", "--network", "vmi", ref,
            "sh", "-c", "echo out-line; echo err-line >&2; exec httpd -f -p 80 -h /www",
        )  # fmt: skip
        logs = inst.cli("logs", "vmi")  # the guest's stdout and stderr, apart
        assert (logs.stdout, logs.stderr) == ("out-line\n", "err-line\n")
        gw = inspect(inst, "vmi")["networks"][0]["gateway"]

        def reaches(host: str) -> bool:
            script = f"echo x | nc -w 1 {host} 7171"
            return inst.cli("exec", "vmi", "sh", "-c", script, check=False).returncode == 0

        assert reaches(gw)  # its own gateway: yes
        assert not reaches(OUTSIDE)  # another host address: no
        assert not reaches("10.71.1.1")  # another network's gateway: no
        assert http_get(inst, "vmi", address(inst, "ns1"), timeout=1).returncode != 0
    finally:
        listener.close()
    # stop: SIGTERM reaches httpd in the guest, the VM powers off, nothing is left
    tap_before = set(taps(inst))
    cid = inspect(inst, "vmi")["id"]
    started = time.monotonic()
    stopped = inst.cli("stop", "vmi")
    assert stopped.returncode == 0 and time.monotonic() - started < 8
    info = inspect(inst, "vmi")
    assert info["state"] == "stopped" and info["exitCode"] == 143  # killed by SIGTERM
    assert not attachments(inst, "vmi")
    assert len(set(taps(inst))) == len(tap_before) - 1
    assert not (inst.run_dir / "vm" / cid[:12]).exists()
    assert len(qemu_pids(inst)) == 1  # vm1's only
    inst.cli("rm", "vmi")
    assert not (inst.root / "vms" / cid).exists()


def test_api_server_restart_keeps_the_vm(world: World) -> None:
    inst = world.inst
    qemu = qemu_pids(inst)
    pid = inst.pid("apiserver")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), 10, "the API server to die")
    inst.start()
    assert qemu_pids(inst) == qemu
    assert inspect(inst, "vm1")["state"] == "running"
    assert host_get(inst, f"http://127.0.0.1:{world.port}/").stdout.strip() == HELLO
    assert inst.cli("exec", "vm1", "true").returncode == 0


def test_kill_9_of_qemu_releases_the_attachments(world: World) -> None:
    inst = world.inst
    cid = inspect(inst, "vm1")["id"]
    (qemu,) = qemu_pids(inst)
    os.kill(qemu, signal.SIGKILL)
    wait_for(lambda: inspect(inst, "vm1")["state"] == "stopped", 15, "vm1 recorded stopped")
    assert inspect(inst, "vm1")["exitCode"] == 137
    assert not [a for a in attachments(inst, "vma") if a["owner"] == cid]
    assert not taps(inst)
    assert not (inst.run_dir / "vm" / cid[:12]).exists()
    assert not qemu_pids(inst)
    assert host_get(inst, f"http://127.0.0.1:{world.port}/").returncode != 0


def test_foreground_run_prints_output_and_returns_the_exit_status(world: World) -> None:
    inst, ref = world.inst, world.ref
    before = set(taps(inst)), inst.cli("ls", "-a", "-q").stdout
    script = "echo hi; echo oops >&2; exit 7"
    r = inst.cli("run", "--rm", "--vm", "--network", "vma", ref, "sh", "-c", script, check=False)
    assert (r.returncode, r.stdout, r.stderr) == (7, "hi\n", "oops\n")
    assert (set(taps(inst)), inst.cli("ls", "-a", "-q").stdout) == before  # --rm: all gone


def test_qemu_killed_while_the_api_server_is_down_is_reconciled(world: World) -> None:
    inst = world.inst
    inst.cli("start", "vm1")
    cid = inspect(inst, "vm1")["id"]
    pid = inst.pid("apiserver")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), 10, "the API server to die")
    (qemu,) = qemu_pids(inst)
    os.kill(qemu, signal.SIGKILL)
    wait_for(lambda: not (inst.run_dir / "vm" / cid[:12]).exists(), 10, "the shim to end")
    inst.start()  # reconciliation: stopped, attachments and TAP released
    info = inspect(inst, "vm1")
    assert info["state"] == "stopped" and info["exitCode"] == 137
    assert not [a for a in attachments(inst, "vma") if a["owner"] == cid]
    assert not taps(inst)


def test_start_again_then_system_stop_leaves_nothing(world: World) -> None:
    inst = world.inst
    inst.cli("start", "vm1")
    assert inspect(inst, "vm1")["networks"][0]["macAddress"] == MAC
    wait_for(lambda: host_get(inst, f"http://127.0.0.1:{world.port}/").returncode == 0, 10, "vm1")
    cid = inspect(inst, "vm1")["id"]
    inst.cli("system", "stop")
    try:
        assert not qemu_pids(inst)
        assert not taps(inst)
        assert not (inst.run_dir / "vm" / cid[:12]).exists()
        mounts = Path("/proc/self/mounts").read_text()
        assert str(inst.root / "vms") not in mounts
        leftover = subprocess.run(
            ["pgrep", "-f", f"runtime.vm.shim {inst.root}"], capture_output=True, text=True
        )
        assert leftover.stdout == ""
    finally:
        inst.start()
    assert inspect(inst, "vm1")["state"] == "stopped"
