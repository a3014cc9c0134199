"""Containers on the network, end to end: real CLI, real daemons, registry, runc.

One container system per module (own network namespace, see conftest.py); each test
uses its own networks and container names and removes what it made.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from support.instance import Instance, Result, assert_refused, attachments
from support.registry import closed_port

from .conftest import System

HELLO = "hello from busybox"
UDP_ECHO = (
    "import socket,sys\n"
    "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
    "s.bind(('0.0.0.0',int(sys.argv[1])))\n"
    "while True:\n"
    "    d,a=s.recvfrom(2048); s.sendto(b'echo:'+d,a)\n"
)
UDP_ASK = (
    "import socket,sys\n"
    "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(2)\n"
    "s.sendto(b'ping',(sys.argv[1],int(sys.argv[2])))\n"
    "print(s.recvfrom(2048)[0].decode())\n"
)


def inspect(inst: Instance, name: str) -> dict[str, Any]:
    out = inst.cli("inspect", name, "--format", "json").stdout.splitlines()
    assert len(out) == 1
    return dict(json.loads(out[0]))


def address(inst: Instance, name: str, index: int = 0) -> str:
    return str(inspect(inst, name)["networks"][index]["address"]).split("/")[0]


def wget(inst: Instance, container: str, url: str, timeout: int = 3) -> Result:
    """HTTP GET from inside a container.  busybox-static's wget segfaults without the
    image having NSS files, so speak HTTP/1.0 through nc; stdout = the body."""
    hostport = url.split("://", 1)[1].split("/", 1)[0]
    host, _, port = hostport.partition(":")
    script = f'printf "GET / HTTP/1.0\\r\\n\\r\\n" | nc -w {timeout} {host} {port or 80}'
    r = inst.cli("exec", container, "sh", "-c", script, check=False, timeout=30)
    head, sep, body = r.stdout.partition("\n\n")  # text mode turned CRLF into LF
    ok = r.returncode == 0 and bool(sep) and " 200 " in head.splitlines()[0]
    return Result(0 if ok else 1, body, r.stderr)


def host_wget(inst: Instance, url: str) -> Result:
    # not `wget -T`: Debian's static busybox wget segfaults with it
    return inst.sh("timeout", "3", "busybox", "wget", "-q", "-O", "-", url, check=False)


def wait_for(predicate: Any, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def wait_http(inst: Instance, url: str, via: str | None = None) -> str:
    """httpd needs a moment after start; returns the page."""
    out: list[str] = []

    def ok() -> bool:
        r = wget(inst, via, url, 1) if via else host_wget(inst, url)
        out.append(r.stdout)
        return r.returncode == 0

    wait_for(ok, 10, f"{url}")
    return out[-1]


def snapshot(inst: Instance) -> tuple[Any, ...]:
    containers = inst.cli("ls", "-a", "--format", "json").json()
    nets = inst.cli("network", "ls", "--format", "json").json()
    atts = {n["id"]: attachments(inst, n["id"]) for n in nets}
    links = sorted(link["ifname"] for link in inst.links())
    rules = inst.sh("nft", "list", "ruleset").stdout
    sandboxes = (
        sorted(os.listdir(inst.run_dir / "netns")) if (inst.run_dir / "netns").exists() else []
    )
    bundles = (
        sorted(os.listdir(inst.root / "containers")) if (inst.root / "containers").exists() else []
    )
    return json.dumps(containers, sort_keys=True), atts, links, rules, sandboxes, bundles


# ---------------------------------------------------------------------------------------


def test_image_pull_list_inspect_delete(system: System) -> None:
    inst, ref = system.inst, system.image
    pulled = inst.cli("image", "pull", ref)
    assert pulled.stdout.strip() == ref
    assert "Pulling" in pulled.stderr and "Pulled" in pulled.stderr
    assert ref in inst.cli("image", "ls", "-q").stdout.split()
    assert inst.cli("images").stdout == inst.cli("image", "ls").stdout  # Docker's spelling
    info = inst.cli("image", "inspect", ref).json()
    assert info["reference"] == ref and info["digest"].startswith("sha256:")
    assert info["config"]["Cmd"][0] == "httpd"
    # a second tag, then delete it
    other = system.registry.push(system.layout, "latest", "test/other", "2")
    inst.cli("i", "pull", other)
    assert inst.cli("image", "rm", other).stdout.strip() == other
    assert other not in inst.cli("image", "list", "-q").stdout.split()


def test_image_load_from_an_archive_and_run_it(system: System, tmp_path: Path) -> None:
    """`image load -i` (the README's demo path): an OCI archive named localhost/web:latest."""
    inst = system.inst
    archive = tmp_path / "web.tar"
    archive.parent.chmod(0o755)
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--quiet",
            f"oci:{system.layout}:latest",
            f"oci-archive:{archive}:localhost/web:latest",
        ],
        check=True,
    )
    assert inst.cli("image", "load", "-i", str(archive)).stdout.split() == ["localhost/web:latest"]
    assert "localhost/web:latest" in inst.cli("image", "ls", "-q").stdout.split()
    bad = inst.cli("image", "load", "-i", str(tmp_path / "missing.tar"), check=False)
    assert_refused(bad)
    inst.cli("network", "create", "loaded", "--subnet", "192.168.120.0/24")
    try:
        inst.cli("run", "-d", "--name", "fromtar", "--network", "loaded", "localhost/web:latest")
        assert wait_http(inst, "http://192.168.120.2/").strip() == HELLO
    finally:
        inst.cli("rm", "-f", "fromtar", check=False)
        inst.cli("network", "rm", "loaded", check=False)
        inst.cli("image", "rm", "localhost/web:latest", check=False)


def test_seed_flow_two_webs_fetch_each_other_third_network_cannot(system: System) -> None:
    inst, ref = system.inst, system.image
    inst.cli("network", "create", "foo", "--subnet", "192.168.100.0/24")
    inst.cli("network", "create", "bar", "--subnet", "192.168.101.0/24")
    try:
        inst.cli(
            "run", "-d", "--name", "web", "--network", "foo,mac=02:42:ac:11:00:02,mtu=1400", ref
        )
        inst.cli("run", "-d", "--name", "web2", "--network", "foo", ref)
        inst.cli("run", "-d", "--name", "other", "--network", "bar", ref)
        web = inspect(inst, "web")
        net0 = web["networks"][0]
        assert net0["network"] == "foo"
        assert net0["address"] == "192.168.100.2/24" and net0["gateway"] == "192.168.100.1"
        assert net0["macAddress"] == "02:42:ac:11:00:02" and net0["mtu"] == 1400
        assert net0["hostname"] == "web.test." and net0["interface"] == "eth0"
        assert web["state"] == "running" and web["pid"] > 0 and len(web["id"]) == 64
        link = inst.cli("exec", "web", "ip", "link", "show", "eth0").stdout
        assert "02:42:ac:11:00:02" in link and "mtu 1400" in link
        assert inst.cli("exec", "web", "hostname").stdout.strip() == "web"
        resolv = inst.cli("exec", "web", "cat", "/etc/resolv.conf").stdout
        assert resolv == "nameserver 192.168.100.1\nsearch test\n"
        hosts = inst.cli("exec", "web", "cat", "/etc/hosts").stdout
        assert "127.0.0.1\tlocalhost" in hosts and "192.168.100.2\tweb.test web" in hosts
        a1, a2 = address(inst, "web"), address(inst, "web2")
        assert wait_http(inst, f"http://{a1}/", via="web2").strip() == HELLO
        assert wait_http(inst, f"http://{a2}/", via="web").strip() == HELLO
        assert wget(inst, "other", f"http://{a1}/", 2).returncode != 0
        table = inst.cli("ls").stdout.splitlines()
        assert table[0].split() == ["ID", "NAME", "IMAGE", "STATE", "ADDRESSES"]
        row = next(r.split() for r in table[1:] if r.split()[1] == "web")
        assert row[2:] == [ref, "running", "192.168.100.2/24"]
        refused = inst.cli("network", "rm", "foo", check=False)
        assert_refused(refused, "network foo is in use by", "web", "web2")
        assert "foo" not in inst.cli("network", "prune").stdout.split()
    finally:
        inst.cli("rm", "-f", "web", "web2", "other", check=False)
    assert attachments(inst, "foo") == [] and attachments(inst, "bar") == []
    inst.cli("network", "rm", "foo", "bar")


def test_network_none_and_two_networks(system: System) -> None:
    inst, ref = system.inst, system.image
    inst.cli("network", "create", "n1", "--subnet", "10.51.0.0/24")
    inst.cli("network", "create", "n2", "--subnet", "10.52.0.0/24")
    try:
        inst.cli("run", "-d", "--name", "lonely", "--network", "none", ref)
        links = inst.cli("exec", "lonely", "ip", "-o", "link").stdout.splitlines()
        assert len(links) == 1 and ": lo:" in links[0]
        assert inspect(inst, "lonely")["networks"] == []
        assert "nameserver" not in inst.cli("exec", "lonely", "cat", "/etc/resolv.conf").stdout

        inst.cli("run", "-d", "--name", "twonets", "--network", "n1", "--network", "n2", ref)
        nets = inspect(inst, "twonets")["networks"]
        assert [(n["network"], n["interface"]) for n in nets] == [("n1", "eth0"), ("n2", "eth1")]
        addrs = inst.cli("exec", "twonets", "ip", "-o", "-4", "addr").stdout
        assert "eth0" in addrs and "10.51.0.2/24" in addrs
        assert "eth1" in addrs and "10.52.0.2/24" in addrs
        routes = inst.cli("exec", "twonets", "ip", "route").stdout.splitlines()
        defaults = [r for r in routes if r.startswith("default")]
        assert defaults == [defaults[0]] and "via 10.51.0.1 dev eth0" in defaults[0]
    finally:
        inst.cli("rm", "-f", "lonely", "twonets", check=False)
    inst.cli("network", "rm", "n1", "n2")


def test_published_tcp_udp_ports_and_hairpin(system: System) -> None:
    inst, ref = system.inst, system.image
    # a "host address" of the instance's namespace, on an uplink-like interface
    inst.sh("ip", "link", "add", "hostif", "type", "veth", "peer", "name", "hostpeer")
    inst.sh("ip", "addr", "add", "10.99.0.1/24", "dev", "hostif")
    inst.sh("ip", "link", "set", "hostif", "up")
    inst.sh("ip", "link", "set", "hostpeer", "up")
    try:
        inst.cli(
            "run",
            "-d",
            "--name",
            "pub",
            "-p",
            "8080:80",
            "-p",
            "127.0.0.1:8081:80",
            "-p",
            "5353:5353/udp",
            ref,
        )
        info = inspect(inst, "pub")
        published = {
            (p["hostPort"], p["containerPort"], p["protocol"]) for p in info["publishedPorts"]
        }
        assert published == {(8080, 80, "tcp"), (8081, 80, "tcp"), (5353, 5353, "udp")}
        assert wait_http(inst, "http://127.0.0.1:8080/").strip() == HELLO
        assert host_wget(inst, "http://10.99.0.1:8080/").stdout.strip() == HELLO
        assert host_wget(inst, "http://127.0.0.1:8081/").stdout.strip() == HELLO
        # UDP: an echo server inside the container's network namespace
        cid = info["id"]
        sandbox = inst.run_dir / "netns" / f"sb-{cid[:32]}"
        echo = subprocess.Popen(
            ["nsenter", f"--net={sandbox}", sys.executable, "-c", UDP_ECHO, "5353"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(0.3)
            for host in ("127.0.0.1", "10.99.0.1"):
                got = inst.sh(sys.executable, "-c", UDP_ASK, host, "5353", check=False)
                assert got.stdout.strip() == "echo:ping", (host, got)
        finally:
            echo.kill()
            echo.wait()
        # hairpin: another container reaches the published port via the host address
        inst.cli("run", "-d", "--name", "client", ref)
        assert wait_http(inst, "http://10.99.0.1:8080/", via="client").strip() == HELLO
        # the same host port again: refused, nothing created
        before = snapshot(inst)
        refused = inst.cli("run", "-d", "--name", "pub2", "-p", "8080:80", ref, check=False)
        assert_refused(refused, "host port 8080/tcp is already published by container pub")
        assert snapshot(inst) == before
    finally:
        inst.cli("rm", "-f", "pub", "client", check=False)
        inst.sh("ip", "link", "del", "hostif", check=False)
    assert host_wget(inst, "http://127.0.0.1:8080/").returncode != 0


def test_host_port_in_use_refused(system: System) -> None:
    inst, ref = system.inst, system.image
    listener = subprocess.Popen(
        inst.in_ns(["busybox", "nc", "-l", "-p", "9090"]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.3)
        before = snapshot(inst)
        refused = inst.cli("run", "-d", "--name", "busy", "-p", "9090:80", ref, check=False)
        assert_refused(refused, "host port 9090/tcp is already in use")
        assert snapshot(inst) == before
    finally:
        listener.kill()
        listener.wait()


def test_lifecycle_logs_exec_stop_start_kill(system: System) -> None:
    inst, ref = system.inst, system.image
    fg = inst.cli(
        "run",
        "--rm",
        "-e",
        "WHO=world",
        ref,
        "sh",
        "-c",
        "echo hello $WHO; echo oops >&2; exit 3",
        check=False,
    )
    assert fg.returncode == 3 and fg.stdout == "hello world\n" and fg.stderr == "oops\n"
    assert inst.cli("ls", "-a", "-q").stdout.strip() == ""

    cid = inst.cli(
        "create", "--name", "lc", ref, "sh", "-c", "echo started; exec httpd -f -p 80 -h /www"
    ).stdout.strip()
    assert inspect(inst, "lc")["state"] == "created"
    assert inst.cli("ls", "-q").stdout.strip() == ""
    assert inst.cli("ls", "-a", "-q").stdout.strip() == cid
    inst.cli("start", "lc")
    assert_refused(inst.cli("start", "lc", check=False), "container lc is already running")
    assert_refused(inst.cli("rm", "lc", check=False), "container lc is running")
    wait_for(lambda: "started" in inst.cli("logs", "lc").stdout, 5, "log line")
    assert inst.cli("exec", "lc", "sh", "-c", "exit 7", check=False).returncode == 7
    assert inst.cli("exec", "-e", "X=1", "lc", "sh", "-c", "echo $X").stdout == "1\n"
    addr = address(inst, "lc")
    stopped = inst.cli("stop", "-t", "1", "lc")
    assert stopped.stdout.strip() == "lc"
    info = inspect(inst, "lc")
    assert info["state"] == "stopped" and info["exitCode"] == 137
    assert all(a["address"] != f"{addr}/24" for a in attachments(inst, "default"))
    inst.cli("start", "lc")
    assert inspect(inst, "lc")["state"] == "running"
    inst.cli("kill", "-s", "KILL", "lc")
    wait_for(lambda: inspect(inst, "lc")["state"] == "stopped", 5, "kill")
    assert inspect(inst, "lc")["exitCode"] == 137
    assert_refused(inst.cli("kill", "lc", check=False), "container lc is not running")
    assert inst.cli("rm", "lc").stdout.strip() == "lc"
    assert_refused(inst.cli("inspect", "lc", check=False), "container lc not found")


def test_exit_and_rm_free_the_address(system: System) -> None:
    inst, ref = system.inst, system.image
    inst.cli("network", "create", "tiny", "--subnet", "10.53.0.0/29")
    try:
        inst.cli("run", "-d", "--name", "short", "--network", "tiny", ref, "sleep", "1")
        assert address(inst, "short") == "10.53.0.2"
        wait_for(lambda: inspect(inst, "short")["state"] == "stopped", 10, "exit")
        assert inspect(inst, "short")["exitCode"] == 0
        assert attachments(inst, "tiny") == []
        inst.cli("run", "-d", "--rm", "--name", "gone", "--network", "tiny", ref, "sleep", "0.5")
        wait_for(lambda: inst.cli("inspect", "gone", check=False).returncode != 0, 10, "--rm")
        assert attachments(inst, "tiny") == []
        # rm -f of running containers, again and again, on a /29 (5 usable addresses)
        for i in range(8):
            inst.cli("run", "-d", "--name", f"churn{i}", "--network", "tiny", ref)
            assert len(attachments(inst, "tiny")) == 1
            inst.cli("rm", "-f", f"churn{i}")
            assert attachments(inst, "tiny") == []
        inst.cli("rm", "short")
    finally:
        inst.cli("rm", "-f", "short", check=False)
    inst.cli("network", "rm", "tiny")


def test_bad_input_refused_and_changes_nothing(system: System) -> None:
    inst, ref = system.inst, system.image
    inst.cli("network", "create", "badnet", "--subnet", "10.54.0.0/24")
    inst.cli("run", "-d", "--name", "holder", "--network", "badnet,mac=02:00:00:00:00:09", ref)
    registry = system.registry.host
    cases: list[tuple[list[str], tuple[str, ...]]] = [
        (["run", "-d", f"{registry}/test/nosuch:1"], ("not found",)),
        (["run", "-d", f"127.0.0.1:{closed_port()}/test/busybox:1"], ("unreachable",)),
        (["run", "-d", "Bad Ref"], ("invalid image reference",)),
        (["run", "-d", "UPPER/case"], ("invalid image reference",)),
        (["image", "pull", f"{registry}/test/nosuch:1"], ("not found",)),
        (["run", "-d", "--network", "nosuch", ref], ("network nosuch not found",)),
        (
            ["run", "-d", "--network", "badnet,color=red", ref],
            ("'color=red'", "valid properties: mac=, mtu="),
        ),
        (["run", "-d", "--network", "badnet,mac=zz", ref], ("invalid MAC",)),
        (["run", "-d", "--network", "badnet,mtu=100", ref], ("between 1280 and 65535",)),
        (["run", "-d", "--name", "holder", ref], ("container name holder is already in use",)),
        (["run", "-d", "--name", "bad name!", ref], ("invalid container name",)),
        (
            ["run", "-d", "--network", "badnet,mac=02:00:00:00:00:09", ref],
            ("MAC address 02:00:00:00:00:09 is already used on network badnet", "container holder"),
        ),
        (["run", "-d", "-p", "80", ref], ("invalid publish spec '80'",)),
        (["run", "-d", "-p", "70000:80", ref], ("out of range",)),
        (["run", "-d", "-p", "8000-8001:80", ref], ("ranges differ",)),
        (["run", "-d", "-p", "8000:80/sctp", ref], ("tcp or udp",)),
        (["run", "-d", "-p", "8000:80", "-p", "8000:81", ref], ("published twice",)),
        (
            ["run", "-d", "--network", "none", "--network", "badnet", ref],
            ("--network none can not be combined",),
        ),
        (["run", "-d", "--network", "none", "-p", "8000:80", ref], ("--publish needs a network",)),
        (["run", "-d", "--dns", "not-an-ip", ref], ("invalid --dns",)),
        (["start", "holder"], ("container holder is already running",)),
        (["rm", "holder"], ("container holder is running",)),
        (["kill", "-s", "NOPE", "holder"], ("unknown signal",)),
        (["start", "nosuch"], ("container nosuch not found",)),
        (["image", "rm", ref], ("is used by containers holder",)),
        (["exec", "nosuch", "true"], ("container nosuch not found",)),
    ]
    try:
        before = snapshot(inst)
        for argv, fragments in cases:
            assert_refused(inst.cli(*argv, check=False), *fragments)
        assert snapshot(inst) == before
    finally:
        inst.cli("rm", "-f", "holder")
    inst.cli("network", "rm", "badnet")


CRASH_N = 20  # the issue: 20 running containers while the API server is killed


def test_apiserver_sigkill_containers_keep_running(system: System) -> None:
    inst, ref = system.inst, system.image
    inst.cli("network", "create", "crash", "--subnet", "10.55.0.0/24")
    names = [f"k{i}" for i in range(CRASH_N)]
    try:
        for name in names:
            inst.cli("run", "-d", "--name", name, "--network", "crash", ref)
        inst.cli("run", "-d", "--name", "dies", "--network", "crash", ref, "sleep", "2")
        addrs = {n: address(inst, n) for n in names}
        wait_http(inst, f"http://{addrs['k0']}/")
        pid = inst.pid("apiserver")
        assert pid
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not Path(f"/proc/{pid}").exists(), 5, "apiserver death")
        for name in names:
            assert host_wget(inst, f"http://{addrs[name]}/").stdout.strip() == HELLO, name
        time.sleep(2.5)  # `dies` exits while nobody watches
        inst.start()
        listed = inst.cli("ls", "--format", "json").json()
        assert sorted(c["name"] for c in listed if c["name"] in names) == sorted(names)
        dies = inspect(inst, "dies")
        assert dies["state"] == "stopped" and dies["exitCode"] == 0
        held = {a["address"].split("/")[0] for a in attachments(inst, "crash")}
        assert held == set(addrs.values())
        assert inspect(inst, "k3")["networks"][0]["address"] == f"{addrs['k3']}/24"
        inst.cli("stop", "-t", "1", "k0")
        assert inspect(inst, "k0")["state"] == "stopped"
        inst.cli("rm", "-f", *names, "dies")
        assert attachments(inst, "crash") == []
        assert inst.cli("ls", "-a", "-q").stdout.strip() == ""
    finally:
        inst.cli("rm", "-f", *names, "dies", check=False)
    inst.cli("network", "rm", "crash")


def test_system_stop_stops_every_container(system: System) -> None:
    inst, ref = system.inst, system.image
    inst.cli("run", "-d", "--name", "s1", ref)
    inst.cli("run", "-d", "--name", "s2", "--network", "none", ref)
    inst.cli("system", "stop", timeout=120)
    assert inst.our_processes() == []
    inst.start()
    states = {c["name"]: c["state"] for c in inst.cli("ls", "-a", "--format", "json").json()}
    assert states == {"s1": "stopped", "s2": "stopped"}
    assert attachments(inst, "default") == []
    inst.cli("rm", "s1", "s2")


@pytest.fixture(autouse=True)
def _no_leftovers(system: System) -> Any:
    yield
    left = system.inst.cli("ls", "-a", "-q").stdout.split()
    if left:
        system.inst.cli("rm", "-f", *left, check=False)


def test_names_resolve_inside_containers_and_vanish_after_rm(system: System) -> None:
    """The embedded DNS seen from real containers: via /etc/resolv.conf (the gateway),
    isolated per network, gone the moment a container stops or is removed, back the
    moment it starts."""
    inst, ref = system.inst, system.image
    inst.cli("network", "create", "dnsa", "--subnet", "192.168.110.0/24")
    inst.cli("network", "create", "dnsb", "--subnet", "192.168.111.0/24")
    try:
        for name, net in (("alpha", "dnsa"), ("beta", "dnsa"), ("gamma", "dnsb")):
            inst.cli("run", "-d", "--name", name, "--network", net, ref)
        beta, gamma = address(inst, "beta"), address(inst, "gamma")
        for query in ("beta", "beta.test", "BETA.Test"):
            out = inst.cli("exec", "alpha", "nslookup", query).stdout
            assert beta in out, (query, out)
        ptr = inst.cli("exec", "alpha", "nslookup", beta).stdout
        assert "beta.test" in ptr
        isolated = inst.cli("exec", "alpha", "nslookup", "gamma", check=False)
        assert gamma not in isolated.stdout
        host = inst.sh("dig", "+short", "@127.0.0.1", "-p", "2053", "beta.test").stdout
        assert host.split() == [beta]
        # gone when it stops, back the moment it starts again
        inst.cli("stop", "beta")
        stopped = inst.cli("exec", "alpha", "nslookup", "beta", check=False)
        assert stopped.returncode != 0 and beta not in stopped.stdout, stopped.stdout
        assert inst.sh("dig", "+short", "@127.0.0.1", "-p", "2053", "beta.test").stdout == ""
        inst.cli("start", "beta")
        beta = address(inst, "beta")
        assert beta in inst.cli("exec", "alpha", "nslookup", "beta").stdout
        inst.cli("rm", "-f", "beta")
        gone = inst.cli("exec", "alpha", "nslookup", "beta", check=False)
        assert beta not in gone.stdout
        host = inst.sh("dig", "+short", "@127.0.0.1", "-p", "2053", "beta.test").stdout
        assert host.strip() == ""
    finally:
        inst.cli("rm", "-f", "alpha", "beta", "gamma", check=False)
        inst.cli("network", "rm", "dnsa", "dnsb", check=False)
