"""Containers' DNS names and ownership, end to end: each name answers for exactly one live
container, queried with real DNS from inside a container; attachments that belong to a
container cannot be taken apart with the bare `network attach|detach` calls.

Its own container system (module fixture), because it also needs a host DNS domain
(`system dns create`, through the resolv.conf mechanism: a stand-in resolv.conf whose first
nameserver is the default gateway).
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.instance import Instance, NetnsPool, assert_refused, attachments
from support.registry import running_registry

from .conftest import System

NET, SUBNET = "names", "10.91.1.0/24"
HOST_DOMAIN = "corp"


@pytest.fixture(scope="module")
def named(busybox_layout: Path) -> Iterator[System]:
    pool = NetnsPool()
    base = Path(tempfile.mkdtemp(prefix="ctr-test-"))
    base.chmod(0o755)
    inst = Instance(base, pool)
    resolv = base / "resolv.conf"
    resolv.write_text("nameserver 192.168.64.1\n")
    inst.env["CONTAINER_DNS_RESOLV_CONF"] = str(resolv)
    try:
        inst.start()
        inst.cli("system", "dns", "create", HOST_DOMAIN)
        inst.cli("network", "create", NET, "--subnet", SUBNET)
        with running_registry(base / "registry", netns=inst.netns) as reg:
            ref = reg.push(busybox_layout, "latest", "test/busybox", "1")
            inst.cli("image", "pull", ref)
            inst.cli("run", "-d", "--name", "client", "--network", NET, ref)
            inst.cli("run", "-d", "--name", "a2", "--network", NET, ref)
            yield System(inst, reg, ref, busybox_layout)
    finally:
        inst.cleanup()
        pool.cleanup()
        shutil.rmtree(base, ignore_errors=True)


def inspect(inst: Instance, name: str) -> dict[str, Any]:
    return dict(json.loads(inst.cli("inspect", name, "--format", "json").stdout))


def address(inst: Instance, name: str) -> str:
    return str(inspect(inst, name)["networks"][0]["address"]).split("/")[0]


def resolve(inst: Instance, name: str) -> list[str]:
    """The A records `name` gets from inside a container (busybox nslookup through the
    gateway named in its /etc/resolv.conf); [] for NXDOMAIN."""
    out = inst.cli("exec", "client", "nslookup", "-type=a", name, check=False).stdout
    _, _, answer = out.partition("\n\n")  # after the "Server:/Address:" block
    return sorted(re.findall(r"^Address:?\s+([0-9.]+)$", answer, re.M))


def test_a_dotted_name_answers_as_given_and_never_as_its_first_label(named: System) -> None:
    """The impostor: `--name a2.evil` beside a running `a2` took over `a2` and `a2.test`."""
    inst, ref = named.inst, named.image
    real = address(inst, "a2")
    inst.cli("run", "-d", "--name", "a2.evil", "--network", NET, ref)
    try:
        evil = address(inst, "a2.evil")
        for name in ("a2", "a2.test", "A2.Test", f"a2.{HOST_DOMAIN}"):
            assert resolve(inst, name) == [real], name
        for name in ("a2.evil", "a2.evil.test", "A2.EVIL", f"a2.evil.{HOST_DOMAIN}"):
            assert resolve(inst, name) == [evil], name
        ptr = inst.cli("exec", "client", "nslookup", evil).stdout
        assert "a2.evil.test" in ptr, ptr
    finally:
        inst.cli("rm", "-f", "a2.evil")


def _refused_and_unchanged(named: System, argv: list[str], *fragments: str) -> None:
    inst = named.inst
    before = (inst.cli("ls", "-a", "--format", "json").stdout, attachments(inst, NET))
    assert_refused(inst.cli(*argv, check=False), *fragments)
    assert (inst.cli("ls", "-a", "--format", "json").stdout, attachments(inst, NET)) == before
    assert resolve(inst, "a2") == [address(inst, "a2")]


@pytest.mark.parametrize(
    ("name", "clash"),
    [
        ("A2", "a2"),  # differs only in case
        ("a2.test", "a2.test"),  # a2's hostname (NAME.DOMAIN)
        (f"A2.{HOST_DOMAIN.upper()}", f"a2.{HOST_DOMAIN}"),  # a2 under the host domain
    ],
)
def test_a_name_another_container_answers_to_is_refused(
    named: System, name: str, clash: str
) -> None:
    _refused_and_unchanged(
        named,
        ["run", "-d", "--name", name, "--network", NET, named.image],
        f"the DNS name {clash} of container {name} is already taken on network {NET}",
        "by container a2",
    )


def test_a_stopped_container_whose_name_is_taken_meanwhile_cannot_start(named: System) -> None:
    """Created while nobody held the name, started when someone does: refused at start."""
    inst, ref = named.inst, named.image
    inst.cli("create", "--name", "B7", "--network", NET, ref)
    inst.cli("run", "-d", "--name", "b7", "--network", NET, ref)
    try:
        _refused_and_unchanged(named, ["start", "B7"], "DNS name b7", "by container b7")
        assert inspect(inst, "B7")["state"] != "running"
        assert resolve(inst, "b7") == [address(inst, "b7")]
        inst.cli("rm", "-f", "b7")
        inst.cli("start", "B7")
        assert resolve(inst, "b7") == [address(inst, "B7")]
    finally:
        inst.cli("rm", "-f", "b7", "B7", check=False)


def test_a_container_may_be_named_like_a_network(named: System) -> None:
    """Network names are not DNS names: a container called after its network is just that
    container's name."""
    inst, ref = named.inst, named.image
    inst.cli("run", "-d", "--name", NET, "--network", NET, ref)
    try:
        mine = address(inst, NET)
        assert resolve(inst, NET) == [mine]
        assert resolve(inst, f"{NET}.test") == [mine]
    finally:
        inst.cli("rm", "-f", NET)


def test_bare_calls_cannot_detach_or_reattach_a_containers_attachment(named: System) -> None:
    inst, ref = named.inst, named.image
    cid = inspect(inst, "a2")["id"]
    real = address(inst, "a2")
    for argv, fragments in [
        (["network", "detach", NET, "--name", cid], ("belongs to container a2",)),
        (["network", "detach", NET, "--name", "a2"], ("belongs to container a2",)),
        (["network", "attach", NET, "--name", "a2"], ("a2 names container a2",)),
        (["network", "attach", NET, "--name", cid], (f"{cid} names container a2",)),
        (["network", "attach", NET, "--name", "A2"], ("A2 names container a2",)),
        (["network", "attach", "default", "--name", "a2"], ("names container a2",)),
    ]:
        _refused_and_unchanged(named, argv, *fragments)
    # the container still has its interface and address, and the next one gets another
    shown = inst.cli("exec", "a2", "ip", "-o", "-4", "addr", "show", "eth0").stdout
    assert f"{real}/24" in shown
    inst.cli("run", "-d", "--name", "next", "--network", NET, ref)
    try:
        assert address(inst, "next") != real
    finally:
        inst.cli("rm", "-f", "next")
    # a bare attachment is still detached by its name
    inst.cli("network", "attach", NET, "--name", "bare1")
    inst.cli("network", "detach", NET, "--name", "bare1")


def test_empty_name_and_protocol_are_refused(named: System) -> None:
    ref = named.image
    _refused_and_unchanged(named, ["run", "-d", "--name", "", ref], "invalid container name ''")
    _refused_and_unchanged(
        named, ["run", "-d", "-p", "8080:80/", ref], "'8080:80/'", "protocol must be tcp or udp"
    )
