"""Container life cycle as users type it: `run -i/-t/-it`, `-v`, `--init`, `stop -s`,
`ps`, exit statuses under load, logs errors, DNS files, failed starts, mounts."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import sqlite3
import struct
import subprocess
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.instance import VENV_BIN, Instance, Result, assert_refused, attachments, run

from .conftest import System
from .test_containers import inspect, snapshot, wait_for

CONTAINER = str(VENV_BIN / "container")


@pytest.fixture(scope="module", autouse=True)
def _pulled(system: System) -> None:
    system.inst.cli("image", "pull", system.image)


@pytest.fixture(autouse=True)
def _no_leftovers(system: System) -> Iterator[None]:
    yield
    left = system.inst.cli("ls", "-a", "-q").stdout.split()
    if left:
        system.inst.cli("rm", "-f", *left, check=False)


def cli_input(inst: Instance, data: str, *args: str, timeout: float = 60) -> Result:
    return run(
        inst.in_ns([CONTAINER, *args]), check=False, timeout=timeout, env=inst.env, input=data
    )


def mounts_under(*paths: Path) -> list[str]:
    with open("/proc/self/mountinfo") as fh:
        points = [line.split()[4] for line in fh]
    return [p for p in points if any(p == str(b) or p.startswith(f"{b}/") for b in paths)]


# -- -i, -t, -it ------------------------------------------------------------------------


def test_run_interactive_passes_piped_stdin(system: System) -> None:
    inst, ref = system.inst, system.image
    got = cli_input(inst, "hi\n", "run", "-i", "--rm", ref, "cat")
    assert (got.returncode, got.stdout) == (0, "hi\n"), got
    got = cli_input(
        inst, "a\nb\n", "run", "-i", "--rm", ref, "sh", "-c", "read x; read y; echo $y$x; exit 5"
    )
    assert (got.returncode, got.stdout) == (5, "ba\n"), got
    got = cli_input(inst, "via init\n", "run", "-i", "--init", "--rm", ref, "cat")
    assert (got.returncode, got.stdout) == (0, "via init\n"), got
    # without -i the container's stdin is empty, as in Docker
    got = cli_input(inst, "hi\n", "run", "--rm", ref, "cat")
    assert (got.returncode, got.stdout) == (0, ""), got
    assert inst.cli("ls", "-a", "-q").stdout.strip() == ""


class PtyReader:
    """Everything the CLI wrote to its terminal so far."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.out = b""

    def until(self, marker: bytes, start: int = 0, timeout: float = 20) -> bytes:
        deadline = time.monotonic() + timeout
        while marker not in self.out[start:]:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                raise AssertionError(f"no {marker!r} in {self.out!r}")
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:  # EIO: the other side closed
                chunk = b""
            if not chunk:
                raise AssertionError(f"closed before {marker!r}: {self.out!r}")
            self.out += chunk
        return self.out[start:]


def test_run_it_gives_a_tty_with_the_terminal_size(system: System) -> None:
    inst, ref = system.inst, system.image
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 77, 0, 0))
    proc = subprocess.Popen(
        inst.in_ns([CONTAINER, "run", "-it", "--rm", ref, "sh"]),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=inst.env,
        start_new_session=True,
    )
    os.close(slave)
    try:
        term = PtyReader(master)
        term.until(b"# ")
        mark = len(term.out)
        os.write(master, b"stty size; tty; echo $((6*7))\r")
        out = term.until(b"\n42", mark)
        assert b"33 77" in out and b"/dev/pts/" in out, out
        term.until(b"# ", mark + out.index(b"\n42"))
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 20, 90, 0, 0))
        os.killpg(proc.pid, signal.SIGWINCH)
        time.sleep(0.3)
        mark = len(term.out)
        os.write(master, b"stty size; exit 4\r")
        term.until(b"\n20 90", mark)
        assert proc.wait(timeout=20) == 4
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    assert inst.cli("ls", "-a", "-q").stdout.strip() == ""


def test_run_t_without_i_and_create_with_tty(system: System) -> None:
    inst, ref = system.inst, system.image
    got = inst.cli("run", "-t", "--rm", ref, "sh", "-c", "tty; exit 3", check=False)
    assert got.returncode == 3 and "/dev/pts/" in got.stdout, got
    # a TTY container started detached: its output is in the log
    inst.cli("create", "-t", "--name", "ttylog", ref, "sh", "-c", "tty")
    inst.cli("start", "ttylog")
    wait_for(lambda: inspect(inst, "ttylog")["state"] == "stopped", 10, "exit")
    assert "/dev/pts/" in inst.cli("logs", "ttylog").stdout
    inst.cli("rm", "ttylog")


# -- -v, --init, stop -s, ps ---------------------------------------------------------------


def test_volumes_read_write_and_read_only(system: System, tmp_path: Path) -> None:
    inst, ref = system.inst, system.image
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "from-host.txt").write_text("written on the host\n")
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "file").write_text("read only\n")
    got = inst.cli(
        "run",
        "--rm",
        "-v",
        f"{shared}:/data",
        "--volume",
        f"{ro}:/ro:ro",
        ref,
        "sh",
        "-c",
        "cat /data/from-host.txt /ro/file; echo back > /data/from-ctr.txt;"
        " echo x > /ro/new 2>/dev/null && echo WROTE || echo REFUSED",
    )
    assert got.stdout == "written on the host\nread only\nREFUSED\n", got
    assert (shared / "from-ctr.txt").read_text() == "back\n"
    assert not (ro / "new").exists()
    before = snapshot(inst)
    for volume, why in (
        (f"{tmp_path}/nosuch:/x", "does not exist"),
        ("relative:/x", "absolute paths"),
        (f"{shared}:/x:rx", "is not ro or rw"),
        (f"{shared}:/", "cannot mount over /"),
    ):
        assert_refused(inst.cli("run", "-d", "-v", volume, ref, check=False), why)
    assert snapshot(inst) == before


def test_init_stops_a_shell_at_once_and_stop_signal(system: System) -> None:
    inst, ref = system.inst, system.image
    inst.cli("run", "-d", "--init", "--name", "withinit", ref, "sh", "-c", "sleep 1000")
    ps = inst.cli("exec", "withinit", "ps", "-o", "pid,args").stdout.splitlines()
    assert any(line.split()[:2] == ["1", "/run/container-init"] for line in ps), ps
    began = time.monotonic()
    inst.cli("stop", "withinit")
    assert time.monotonic() - began < 5  # not the 10 s timeout
    assert inspect(inst, "withinit")["exitCode"] == 143  # 128 + SIGTERM, from the child
    # stop -s: the signal sent first
    script = "trap 'exit 42' USR1; while true; do sleep 0.1; done"
    inst.cli("run", "-d", "--name", "trapper", ref, "sh", "-c", script)
    time.sleep(0.3)
    inst.cli("stop", "-s", "USR1", "-t", "20", "trapper")
    assert inspect(inst, "trapper")["exitCode"] == 42
    assert_refused(inst.cli("stop", "-s", "NOPE", "trapper", check=False), "unknown signal")
    # ps is ls
    assert inst.cli("ps", "-a", "-q").stdout == inst.cli("ls", "-a", "-q").stdout
    assert set(inst.cli("ps", "-a", "-q").stdout.split()) == {
        inspect(inst, n)["id"] for n in ("withinit", "trapper")
    }
    inst.cli("rm", "withinit", "trapper")


# -- exit status under load ------------------------------------------------------------------


def test_foreground_run_reports_the_exit_status_under_cpu_load(system: System) -> None:
    inst, ref = system.inst, system.image
    spinners = [
        subprocess.Popen(["sh", "-c", "while :; do :; done"]) for _ in range(os.cpu_count() or 2)
    ]
    try:
        for _ in range(4):
            got = inst.cli("run", "--rm", ref, "sh", "-c", "exit 7", check=False)
            assert got.returncode == 7, got
    finally:
        for p in spinners:
            p.kill()
            p.wait()


# -- logs ------------------------------------------------------------------------------------


def test_logs_of_a_missing_container_and_bad_offsets(system: System) -> None:
    inst, ref = system.inst, system.image
    assert_refused(inst.cli("logs", "nosuch", check=False), "container nosuch not found")
    assert_refused(inst.cli("logs", "-f", "nosuch", check=False), "container nosuch not found")
    inst.cli("run", "--name", "talker", ref, "echo", "hello")
    from container_runtime.client import UnixClient
    from container_runtime.errors import InvalidArgument

    client = UnixClient(inst.run_dir / "apiserver.sock")
    try:
        size = client.request("GET", "/v1/containers/talker/logs")["offset"]
        assert size > 0
        for query in ("abc", "-1", "1e3", "99999999999999999999", str(size + 1), "9" * 18):
            with pytest.raises(InvalidArgument):
                client.request("GET", f"/v1/containers/talker/logs?offset={query}")
        assert client.request("GET", f"/v1/containers/talker/logs?offset={size}")["entries"] == []
    finally:
        client.close()
    assert inst.cli("logs", "talker").stdout == "hello\n"
    inst.cli("rm", "talker")


# -- DNS files --------------------------------------------------------------------------------


def _etc(inst: Instance, ref: str, *flags: str) -> tuple[str, str]:
    out = inst.cli(
        "run",
        "--rm",
        "--name",
        "dnsfiles",
        *flags,
        ref,
        "sh",
        "-c",
        "cat /etc/resolv.conf; echo ---; cat /etc/hosts",
    ).stdout
    resolv, _, hosts = out.partition("---\n")
    return resolv, hosts


def test_resolv_conf_and_hosts_follow_the_dns_flags(system: System) -> None:
    inst, ref = system.inst, system.image
    resolv, hosts = _etc(inst, ref)
    assert resolv == "nameserver 192.168.64.1\nsearch test\n"
    lines = hosts.splitlines()
    assert lines[0] == "127.0.0.1\tlocalhost"
    assert lines[1].split("\t")[1] == "dnsfiles.test dnsfiles", lines
    assert lines[1].startswith("192.168.64.")
    assert lines[2] == "192.168.64.1\thost.container.internal host.docker.internal"
    assert lines[3].startswith("::1\t")
    assert _etc(inst, ref, "--no-dns")[0] == ""
    assert _etc(inst, ref, "--dns-domain", "corp.example")[0] == (
        "nameserver 192.168.64.1\ndomain corp.example\n"
    )
    assert _etc(inst, ref, "--dns-search", "a.example", "--dns-search", "b.example")[0] == (
        "nameserver 192.168.64.1\nsearch a.example b.example\n"
    )
    assert _etc(
        inst, ref, "--dns", "10.0.0.53", "--dns-option", "ndots:2", "--dns-option", "edns0"
    )[0] == ("nameserver 10.0.0.53\nsearch test\noptions ndots:2 edns0\n")
    before = snapshot(inst)
    for flags in (
        ["--dns", "1.1.1.1"],
        ["--dns-domain", "x.example"],
        ["--dns-search", "x.example"],
        ["--dns-option", "ndots:1"],
    ):
        refused = inst.cli("run", "-d", "--no-dns", *flags, ref, check=False)
        assert_refused(refused, "--no-dns and", flags[0], "can not be combined")
    assert_refused(
        inst.cli("run", "-d", "--dns-option", "bad option", ref, check=False),
        "invalid --dns-option",
    )
    assert snapshot(inst) == before


# -- failed starts and refused creates change nothing ---------------------------------------


def test_start_with_a_taken_host_port_leaves_it_stopped_with_no_address(system: System) -> None:
    inst, ref = system.inst, system.image
    inst.cli("network", "create", "porttaken", "--subnet", "10.57.0.0/24")
    inst.cli("create", "--name", "pt", "--network", "porttaken", "-p", "9292:80", ref)
    listener = subprocess.Popen(
        inst.in_ns(["busybox", "nc", "-l", "-p", "9292"]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.3)
        assert_refused(inst.cli("start", "pt", check=False), "host port 9292/tcp is already in use")
        info = inspect(inst, "pt")
        assert info["state"] == "stopped", info
        assert "address" not in info["networks"][0]
        assert attachments(inst, "porttaken") == []
        assert mounts_under(inst.root / "containers" / info["id"]) == []
    finally:
        listener.kill()
        listener.wait()
    inst.cli("start", "pt")  # the port is free again
    assert inspect(inst, "pt")["state"] == "running"
    inst.cli("rm", "-f", "pt")
    inst.cli("network", "rm", "porttaken")


def test_refused_publish_address_changes_nothing(system: System) -> None:
    inst, ref = system.inst, system.image
    before = snapshot(inst), mounts_under(inst.root, inst.run_dir)
    spec = "10.99.99.99:8080:80"
    for command in ("run", "create"):
        refused = inst.cli(command, "--name", "nohost", "-p", spec, ref, check=False)
        assert_refused(refused, "host IP 10.99.99.99 is not an address of this host")
    assert (snapshot(inst), mounts_under(inst.root, inst.run_dir)) == before


# -- mounts ---------------------------------------------------------------------------------


def test_stopped_containers_and_system_stop_leave_no_mount(system: System) -> None:
    inst, ref = system.inst, system.image
    inst.cli("run", "-d", "--name", "m1", ref)
    inst.cli("run", "--name", "m2", ref, "true")
    info = inspect(inst, "m1")
    rootfs = inst.root / "containers" / info["id"] / "rootfs"
    assert mounts_under(rootfs) == [str(rootfs)]
    m2 = inst.root / "containers" / inspect(inst, "m2")["id"]
    assert mounts_under(m2) == []  # exited: unmounted
    inst.cli("stop", "-t", "1", "m1")
    assert mounts_under(rootfs) == []
    inst.cli("start", "m1")  # mounted again
    assert mounts_under(rootfs) == [str(rootfs)]
    assert inst.cli("exec", "m1", "cat", "/www/index.html").returncode == 0
    inst.cli("system", "stop", timeout=120)
    try:
        assert mounts_under(inst.root, inst.run_dir) == []
    finally:
        inst.start()
    assert {c["name"]: c["state"] for c in inst.cli("ls", "-a", "--format", "json").json()} == {
        "m1": "stopped",
        "m2": "stopped",
    }
    inst.cli("start", "m1")
    assert inspect(inst, "m1")["state"] == "running"
    inst.cli("rm", "-f", "m1", "m2")


# -- an API server killed while it starts a container ----------------------------------------


def _cgroup_pids(cid: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if f"/container-runtime/{cid}\n" in (entry / "cgroup").read_text():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _conmon_started(inst: Instance) -> bool:
    marker = str(inst.run_dir / "conmon").encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if cmdline.startswith(b"/usr/bin/conmon\0") and marker in cmdline:
                return True
    return False


def _assert_consistent(inst: Instance) -> None:
    """Every container the state knows is listed; running ones have their process and
    rootfs, the others no process, no rootfs mount, no address; runc knows only running
    ones."""
    with sqlite3.connect(f"file:{inst.root / 'state.db'}?mode=ro", uri=True) as conn:
        rows = dict(conn.execute("SELECT id, state FROM containers").fetchall())
    listed = {c["id"] for c in inst.cli("ls", "-a", "--format", "json").json()}
    assert listed == set(rows)
    owners = {a["owner"] for n in ("default",) for a in attachments(inst, n)}
    runc_root = inst.run_dir / "runc"
    runc_ids = {p.name for p in runc_root.iterdir()} if runc_root.exists() else set()
    for cid, state in rows.items():
        rootfs = inst.root / "containers" / cid / "rootfs"
        if state == "running":
            assert _cgroup_pids(cid) and cid in owners and mounts_under(rootfs), cid
        else:
            assert state in ("created", "stopped"), state
            assert _cgroup_pids(cid) == [], (cid, state)
            assert cid not in owners and mounts_under(rootfs) == [], (cid, state)
            assert cid not in runc_ids, (cid, state)


def test_apiserver_killed_while_starting_leaves_no_hidden_orphan(system: System) -> None:
    inst, ref = system.inst, system.image
    moments: list[float | None] = [None, None, None, 0.1, 0.25, 0.4]  # None: once conmon runs
    names = [f"kc{i}" for i in range(len(moments))]
    try:
        for name, moment in zip(names, moments, strict=True):
            pid = inst.pid("apiserver")
            assert pid
            cli = subprocess.Popen(
                inst.in_ns([CONTAINER, "run", "-d", "--name", name, ref]),
                env=inst.env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if moment is None:  # poll tightly: runc create takes tens of milliseconds
                deadline = time.monotonic() + 20
                while not _conmon_started(inst) and cli.poll() is None:
                    assert time.monotonic() < deadline, "conmon never started"
                    time.sleep(0.002)
            else:
                time.sleep(moment)
            os.kill(pid, signal.SIGKILL)
            cli.wait(timeout=30)
            wait_for(lambda p=pid: not Path(f"/proc/{p}").exists(), 5, "apiserver death")
            inst.start()
            _assert_consistent(inst)
        # and all of them can be removed (or started) afterwards
        inst.cli("rm", "-f", *[n for n in names if inst.cli("inspect", n, check=False).stdout])
        assert inst.cli("ls", "-a", "-q").stdout.strip() == ""
        assert attachments(inst, "default") == []
    finally:
        inst.cli("rm", "-f", *names, check=False)


def test_an_attached_start_waits_for_its_client_then_runs(system: System) -> None:
    """The API side of `run -i/-t`: runc create only, until the client says start."""
    inst, ref = system.inst, system.image
    from container_runtime.client import UnixClient

    client = UnixClient(inst.run_dir / "apiserver.sock")
    try:
        body = {"name": "waiter", "image": ref, "cmd": ["echo", "ran"], "start": True}
        made = client.request("POST", "/v1/containers", {**body, "attach": True})
        assert made["state"] == "running" and made["attach"]["socket"].endswith("/attach")
        time.sleep(0.5)
        assert inst.cli("logs", "waiter").stdout == ""  # created, not yet running
        client.request("POST", "/v1/containers/waiter/start", {})
        wait_for(lambda: inspect(inst, "waiter")["state"] == "stopped", 10, "exit")
        assert inspect(inst, "waiter")["exitCode"] == 0
        assert inst.cli("logs", "waiter").stdout == "ran\n"
    finally:
        client.close()
    inst.cli("rm", "waiter")


def test_a_signal_to_a_foreground_run_reaches_the_container(system: System) -> None:
    """Docker's sig-proxy: ^C on `container run --rm ...` stops the process (which can
    trap it) and the container is removed, instead of the CLI leaving it running."""
    inst, ref = system.inst, system.image
    script = "trap 'echo trapped; exit 9' INT; echo ready; while :; do sleep 0.1; done"
    proc = subprocess.Popen(
        inst.in_ns([CONTAINER, "run", "--rm", "--name", "sigproxy", ref, "sh", "-c", script]),
        env=inst.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert (proc.returncode, out) == (9, "trapped\n"), err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert inst.cli("ls", "-a", "-q").stdout.strip() == ""


def test_a_foreground_run_whose_api_server_dies_says_the_container_runs_on(
    system: System,
) -> None:
    """17.5: the CLI says the container was started and how to find it, not only that the
    server is not running."""
    inst, ref = system.inst, system.image
    proc = subprocess.Popen(
        inst.in_ns([CONTAINER, "run", "--name", "orphaned", ref, "sh", "-c", "echo up; sleep 60"]),
        env=inst.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "up\n"
        server = inst.pid("apiserver")
        assert server is not None
        os.kill(server, signal.SIGKILL)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        inst.start()
    assert proc.returncode != 0
    assert_refused(Result(proc.returncode, "", err), "went away while container orphaned ran")
    assert "container logs orphaned" in err
    assert inspect(inst, "orphaned")["state"] == "running"
