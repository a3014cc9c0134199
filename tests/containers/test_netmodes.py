"""Names and namespace modes of containers, end to end with real DNS queries and packets:
`--hostname`/`--domainname` (UTS names, /etc files, the DNS name on eth0, one owner per
name), host.container.internal / host.docker.internal (DNS and /etc/hosts, a service on
the gateway reached through them), `--add-host`, `--network host`, `--network
container:NAME` (shared namespace, owner stop/rm rules), each surviving an API server
SIGKILL; every refusal one Error: line that changes nothing.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.containers import address, inspect, resolve_in, tcp_from
from support.instance import Instance, assert_refused, attachments
from support.probes import Responder

from .conftest import System

NET, SUBNET, GW = "names14", "10.93.1.0/24", "10.93.1.1"
HELLO = "hello from busybox"


@pytest.fixture(scope="module")
def names(system: System) -> Iterator[System]:
    inst = system.inst
    inst.cli("image", "pull", system.image)
    inst.cli("network", "create", NET, "--subnet", SUBNET)
    inst.cli("run", "-d", "--name", "asker", "--network", NET, system.image)
    try:
        yield system
    finally:
        inst.cli("rm", "-f", "asker", check=False)


def _state(inst: Instance) -> tuple[str, list[dict[str, object]]]:
    return inst.cli("ls", "-a", "--format", "json").stdout, attachments(inst, NET)


def refused_and_unchanged(inst: Instance, argv: list[str], *fragments: str) -> None:
    before = _state(inst)
    assert_refused(inst.cli(*argv, check=False), *fragments)
    assert _state(inst) == before


def sh(inst: Instance, container: str, script: str) -> str:
    return inst.cli("exec", container, "sh", "-c", script).stdout


def http_get(inst: Instance, url: str) -> str:
    """The page at `url` from the daemons' namespace (retried while httpd starts)."""
    deadline = time.monotonic() + 5
    while True:
        # not `wget -T`: Debian's static busybox wget segfaults with it
        got = inst.sh("timeout", "3", "busybox", "wget", "-q", "-O", "-", url, check=False)
        if got.returncode == 0 or time.monotonic() > deadline:
            return got.stdout.strip()
        time.sleep(0.1)


def kill_apiserver(inst: Instance) -> None:
    pid = inst.pid("apiserver")
    assert pid
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    inst.start()


def test_hostname_and_domainname(names: System) -> None:
    inst, ref = names.inst, names.image
    inst.cli(
        "run", "-d", "--name", "hn", "--hostname", "www", "--domainname", "example.com",
        "--network", NET, ref,
    )  # fmt: skip
    try:
        ip = address(inst, "hn")
        assert sh(inst, "hn", "hostname").strip() == "www"
        assert sh(inst, "hn", "cat /etc/hostname").strip() == "www"
        assert sh(inst, "hn", "cat /proc/sys/kernel/domainname").strip() == "example.com"
        assert f"{ip}\twww.example.com www.test www hn\n" in sh(inst, "hn", "cat /etc/hosts")
        got = inspect(inst, "hn")
        assert got["hostname"] == "www" and got["domainname"] == "example.com"
        assert got["networks"][0]["hostname"] == "www.test."
        # The DNS name on eth0, and the container's name as ever; PTR gives the hostname.
        for name in ("www", "www.test", "WWW.TEST", "hn", "hn.test"):
            assert resolve_in(inst, "asker", name) == [ip], name
        ptr = inst.cli("exec", "asker", "nslookup", ip).stdout
        assert "www.test" in ptr, ptr
        # One owner per name: --hostname clashing with a name or a hostname is refused.
        refused_and_unchanged(
            inst,
            ["run", "-d", "--name", "other", "--hostname", "hn", "--network", NET, ref],
            "the DNS name hn of hostname hn is already taken on network names14 by container hn",
        )
        refused_and_unchanged(
            inst,
            ["run", "-d", "--name", "WWW", "--network", NET, ref],
            "the DNS name www of container WWW is already taken on network names14",
        )
        refused_and_unchanged(
            inst,
            ["create", "--name", "o2", "--hostname", "asker", "--network", NET, ref],
            "the DNS name asker of hostname asker is already taken",
        )
        # The same hostname on another network is fine (names are per network).
        inst.cli("run", "-d", "--name", "hn2", "--hostname", "www", ref)
        inst.cli("rm", "-f", "hn2")
        # After an API server SIGKILL and restart, nothing changed.
        kill_apiserver(inst)
        assert resolve_in(inst, "asker", "www") == [ip]
        assert inspect(inst, "hn")["networks"][0]["hostname"] == "www.test."
        # Stopped and started again: the same names.
        inst.cli("stop", "-t", "1", "hn")
        assert resolve_in(inst, "asker", "www") == []
        inst.cli("start", "hn")
        ip = address(inst, "hn")
        assert resolve_in(inst, "asker", "www") == [ip]
        assert sh(inst, "hn", "hostname").strip() == "www"
    finally:
        inst.cli("rm", "-f", "hn", "hn2", check=False)


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--hostname", "bad_name"], "invalid --hostname 'bad_name'"),
        (["--hostname=-x"], "RFC 1123"),
        (["--hostname", "a" * 64], "RFC 1123"),
        (["--domainname", "a..b"], "invalid --domainname"),
        (["--add-host", "db"], "invalid --add-host 'db'"),
        (["--add-host", "db:10.0.0.300"], "is not an IP address"),
        (["--add-host", "bad name:10.0.0.1"], "invalid --add-host name"),
        (["--network", "none", "--add-host", "g:host-gateway"], "needs a network"),
    ],
)
def test_bad_names_are_refused(names: System, flags: list[str], fragment: str) -> None:
    refused_and_unchanged(names.inst, ["run", "-d", "--name", "bad", *flags, names.image], fragment)


def test_the_host_by_name_reaches_a_service_on_the_gateway(names: System) -> None:
    inst = names.inst
    mine = address(inst, "asker")
    hosts = sh(inst, "asker", "cat /etc/hosts")
    assert f"{GW}\thost.container.internal host.docker.internal\n" in hosts
    for name in ("host.container.internal", "host.docker.internal", "HOST.Container.Internal"):
        assert resolve_in(inst, "asker", name) == [GW], name
    assert resolve_in(inst, "asker", "host.container.internal", "aaaa") == []  # no IPv6
    # Real packets: a service in the daemons' namespace bound to the gateway address only.
    responder = Responder(inst.netns, 18090, GW)
    try:
        (resolved,) = resolve_in(inst, "asker", "host.docker.internal")
        assert tcp_from(inst, "asker", resolved, 18090).strip() == f"ok {mine}"
    finally:
        responder.close()
    # A container on the default network gets its own gateway.
    inst.cli("run", "-d", "--name", "dflt", names.image)
    try:
        gw = inspect(inst, "dflt")["networks"][0]["gateway"]
        assert gw != GW
        assert resolve_in(inst, "dflt", "host.container.internal") == [gw]
    finally:
        inst.cli("rm", "-f", "dflt")


def test_the_host_by_name_on_a_dual_stack_network(names: System) -> None:
    inst = names.inst
    inst.cli("network", "create", "dual14", "--subnet", "10.93.2.0/24", "--subnet-v6",
             "fd00:93:2::/64")  # fmt: skip
    try:
        inst.cli("run", "-d", "--name", "v6", "--network", "dual14", names.image)
        hosts = sh(inst, "v6", "cat /etc/hosts")
        assert "fd00:93:2::1\thost.container.internal host.docker.internal\n" in hosts
        assert resolve_in(inst, "v6", "host.container.internal", "aaaa") == ["fd00:93:2::1"]
        assert resolve_in(inst, "v6", "host.docker.internal") == ["10.93.2.1"]
    finally:
        inst.cli("rm", "-f", "v6", check=False)
        inst.cli("network", "rm", "dual14", check=False)


def test_add_host_entries(names: System) -> None:
    inst = names.inst
    inst.cli(
        "run", "-d", "--name", "ah", "--network", NET, "--add-host", "db:10.0.0.9",
        "--add-host", "db6:fd00::0009", "--add-host", "gw:host-gateway",
        "--add-host", "host.docker.internal:10.0.0.7", names.image,
    )  # fmt: skip
    try:
        lines = sh(inst, "ah", "cat /etc/hosts").splitlines()
        assert "10.0.0.9\tdb" in lines and "fd00::9\tdb6" in lines and f"{GW}\tgw" in lines
        # The user's own entry comes before the built-in one (the first match wins).
        assert lines.index("10.0.0.7\thost.docker.internal") < lines.index(
            f"{GW}\thost.container.internal host.docker.internal"
        )
        assert inspect(inst, "ah")["extraHosts"] == [
            "db:10.0.0.9",
            "db6:fd00::9",
            "gw:host-gateway",
            "host.docker.internal:10.0.0.7",
        ]
    finally:
        inst.cli("rm", "-f", "ah")


def test_network_host(names: System) -> None:
    inst, ref = names.inst, names.image
    inst.cli("run", "-d", "--name", "hostnet", "--network", "host", ref, "httpd", "-f", "-p",
             "127.0.0.1:18091", "-h", "/www")  # fmt: skip
    try:
        got = inspect(inst, "hostnet")
        assert got["networkMode"] == "host" and got["networks"] == []
        # The daemons' namespace's interfaces (the network's bridge among them) are its own.
        bridges = {a["ifname"] for a in inst.links()}
        inside = sh(inst, "hostnet", "ip -o link | cut -d: -f2 | cut -d@ -f1").split()
        assert set(inside) == bridges
        # Real packets: its server, bound to loopback, is the daemons' namespace's own.
        assert http_get(inst, "http://127.0.0.1:18091/") == HELLO
        assert "127.0.0.1\thost.container.internal" in sh(inst, "hostnet", "cat /etc/hosts")
        assert got["id"] not in {a["owner"] for a in attachments(inst, "default")}
        kill_apiserver(inst)
        assert inspect(inst, "hostnet")["networkMode"] == "host"
    finally:
        inst.cli("rm", "-f", "hostnet", check=False)
    for argv, fragment in (
        (["--network", "host", "--network", NET], "--network host can not be combined"),
        (["--network", "host", "-p", "8080:80"], "--publish can not be combined"),
    ):
        refused_and_unchanged(inst, ["run", "-d", "--name", "bad", *argv, ref], fragment)


def test_network_container(names: System) -> None:
    inst, ref = names.inst, names.image
    inst.cli("run", "-d", "--name", "owner", "--hostname", "ownhost", "--network", NET, ref)
    inst.cli("run", "-d", "--name", "joiner", "--network", "container:owner", ref, "httpd",
             "-f", "-p", "18092", "-h", "/www")  # fmt: skip
    try:
        ip = address(inst, "owner")
        got = inspect(inst, "joiner")
        assert got["networks"] == [] and got["networkMode"] == "container:owner"
        assert got["networkNamespaceOf"]["name"] == "owner"
        assert [a["owner"] for a in attachments(inst, NET)].count(got["id"]) == 0
        # The same interfaces and address, the owner's names and files.
        assert f"inet {ip}/24" in sh(inst, "joiner", "ip -o -4 addr show eth0")
        assert sh(inst, "joiner", "hostname").strip() == "ownhost"
        assert sh(inst, "joiner", "cat /etc/hosts") == sh(inst, "owner", "cat /etc/hosts")
        assert sh(inst, "joiner", "cat /etc/resolv.conf") == sh(
            inst, "owner", "cat /etc/resolv.conf"
        )
        # Real packets: the joiner's server answers on the owner's address.
        assert http_get(inst, f"http://{ip}:18092/") == HELLO
        # Removing the owner while it has joiners is refused, even with -f.
        for argv in (["rm", "owner"], ["rm", "-f", "owner"]):
            refused_and_unchanged(
                inst, argv, "container owner is the network namespace of container joiner"
            )
        for argv, fragment in (
            (["--network", "container:owner", "-p", "80:80"], "--publish can not be combined"),
            (["--network", "container:owner", "--hostname", "x"], "--hostname can not be"),
            (["--network", "container:owner", "--dns", "1.1.1.1"], "--dns can not be combined"),
            (["--network", "container:nobody"], "container nobody not found"),
            (["--network", "container:joiner"], "it has none of its own"),
            (["--network", f"container:owner,{NET}"], "is not a container name"),
        ):
            refused_and_unchanged(inst, ["run", "-d", "--name", "bad", *argv, ref], fragment)
        kill_apiserver(inst)
        assert inspect(inst, "joiner")["networkMode"] == "container:owner"
        refused_and_unchanged(inst, ["rm", "-f", "owner"], "network namespace of container joiner")
        # Stopping the owner (as Docker): the joiner runs on with loopback only.
        inst.cli("stop", "-t", "1", "owner")
        assert inspect(inst, "joiner")["state"] == "running"
        assert "eth0" not in sh(inst, "joiner", "ip -o link")
        inst.cli("stop", "-t", "1", "joiner")
        refused_and_unchanged(
            inst, ["start", "joiner"], "cannot join the network namespace of container owner: it is"
        )
        inst.cli("start", "owner")
        inst.cli("start", "joiner")
        ip = address(inst, "owner")
        assert f"inet {ip}/24" in sh(inst, "joiner", "ip -o -4 addr show eth0")
        inst.cli("rm", "-f", "joiner")
        inst.cli("rm", "-f", "owner")
    finally:
        inst.cli("rm", "-f", "joiner", "owner", check=False)
