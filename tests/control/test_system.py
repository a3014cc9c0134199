"""`container system start|stop|status` and helper supervision, with the real daemons."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from support.instance import VENV_BIN, Instance, assert_refused

import container_runtime


def test_start_is_idempotent_and_status_shows_daemons(instance: Instance) -> None:
    inst = instance
    api_pid = inst.pid("apiserver")
    again = inst.cli("system", "start")
    assert f"already running (apiserver pid {api_pid})" in again.stdout
    status = inst.cli("system", "status", "--format", "json").json()
    assert status["apiserver"]["pid"] == api_pid
    assert status["apiserver"]["socket"] == str(inst.run_dir / "apiserver.sock")
    helpers = {h["name"]: h for h in status["helpers"]}
    assert set(helpers) == {"network-bridge", "dns"}
    bridge = helpers["network-bridge"]
    assert bridge["pid"] == inst.pid("network-bridge")
    assert bridge["socket"] == str(inst.run_dir / "network-bridge.sock")
    assert helpers["dns"]["pid"] == inst.pid("dns") and helpers["dns"]["state"] == "running"
    table = inst.cli("system", "status").stdout
    for daemon in ("container-apiserver", "container-network-bridge", "container-dns"):
        assert daemon in table
    assert str(api_pid) in table


def test_status_shows_status_version_and_roots(instance: Instance) -> None:
    inst = instance
    status = inst.cli("system", "status", "--format", "json")
    assert len(status.stdout.splitlines()) == 1  # one object
    info = status.json()
    assert info["status"] == "running" and info["version"] == container_runtime.__version__
    assert info["root"] == str(inst.root) and info["runDir"] == str(inst.run_dir)
    table = inst.cli("system", "status").stdout
    assert "status:       running\n" in table
    assert f"version:      {container_runtime.__version__}\n" in table
    assert f"state root:   {inst.root}\n" in table and f"run root:     {inst.run_dir}\n" in table
    inst.cli("system", "stop")
    stopped = inst.cli("system", "status", "--format", "json", check=False)
    assert stopped.returncode == 1 and stopped.json() == {"status": "not running"}
    stopped = inst.cli("system", "status", check=False)
    assert stopped.returncode == 1 and "status:       not running\n" in stopped.stdout


def test_system_commands_without_root_say_so_in_one_line(instance: Instance) -> None:
    inst = instance
    daemons = sorted(inst.our_processes())
    for command in ("start", "stop"):
        result = inst.cli("system", command, check=False, user="65534")
        assert_refused(result, f"`container system {command}` needs root", "sudo")
    result = inst.cli("system", "status", check=False, user="65534")
    assert_refused(result, "permission denied", "container group")
    assert sorted(inst.our_processes()) == daemons  # nothing stopped, nothing started
    assert inst.cli("system", "status", "--format", "json").json()["status"] == "running"


def test_stop_leaves_nothing_running(instance: Instance) -> None:
    inst = instance
    assert len(inst.our_processes()) >= 2
    inst.cli("system", "stop")
    assert inst.our_processes() == []
    assert not (inst.run_dir / "apiserver.sock").exists()
    status = inst.cli("system", "status", check=False)
    assert status.returncode != 0 and "not running" in status.stdout
    # Networks stay defined across stop/start.
    inst.start()
    assert inst.cli("network", "ls", "-q").stdout.split() == ["default"]


def test_helper_is_restarted_and_rebuilds_from_state(instance: Instance) -> None:
    inst = instance
    inst.cli("network", "create", "foo", "--subnet", "10.60.0.0/24")
    first = inst.cli("network", "attach", "foo", "--name", "a").json()
    old = inst.pid("network-bridge")
    assert old is not None
    os.kill(old, signal.SIGKILL)
    new = inst.wait_pid_change("network-bridge", old)
    assert new != old
    second = inst.cli("network", "attach", "foo", "--name", "b").json()
    assert second["address"] == "10.60.0.3/24" and first["address"] == "10.60.0.2/24"
    # The retried allocation of an existing owner is the same attachment.
    assert inst.cli("network", "attach", "foo", "--name", "a").json() == first


def test_racing_starts_give_one_apiserver(stopped_instance: Instance) -> None:
    inst = stopped_instance
    argv = inst.in_ns([str(VENV_BIN / "container"), "system", "start"])
    procs = [
        subprocess.Popen(argv, env=inst.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(3)
    ]
    results = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), results
    time.sleep(0.3)
    cmdlines = []
    for pid in inst.our_processes():
        try:
            cmdlines.append(open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace"))
        except OSError:
            continue
    assert sum("container-apiserver" in c for c in cmdlines) == 1, cmdlines
    assert sum("container-network-bridge" in c for c in cmdlines) == 1, cmdlines
    started = [out for out, _ in results if b"container system started" in out]
    assert len(started) == 1


def test_apiserver_killed_then_started_keeps_state(instance: Instance) -> None:
    inst = instance
    inst.cli("network", "create", "foo", "--subnet", "10.61.0.0/24")
    att = inst.cli("network", "attach", "foo", "--name", "a").json()
    api = inst.pid("apiserver")
    assert api is not None
    os.kill(api, signal.SIGKILL)
    time.sleep(0.2)
    inst.start()
    assert inst.pid("apiserver") != api
    assert inst.cli("network", "attach", "foo", "--name", "a").json() == att
    assert [n for n in inst.cli("network", "ls", "-q").stdout.split()] == ["default", "foo"]
