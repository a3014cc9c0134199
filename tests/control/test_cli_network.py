"""`container network ...` through the real CLI against real daemons in a throwaway namespace."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from support.instance import Instance, assert_refused


def networks(inst: Instance) -> list[dict[str, Any]]:
    return inst.cli("network", "list", "--format", "json").json()


def snapshot(inst: Instance) -> tuple[Any, ...]:
    """What a refused command must leave exactly as it was."""
    nets = networks(inst)
    attachments = {
        n["id"]: inst.cli("network", "inspect", n["id"]).json()["containers"] for n in nets
    }
    links = sorted(link["ifname"] for link in inst.links())
    rules = inst.sh("nft", "-j", "list", "ruleset").stdout
    return json.dumps(nets, sort_keys=True), attachments, links, rules


def test_seed_flow_and_listing(instance: Instance) -> None:
    inst = instance
    assert inst.cli("network", "list", "-q").stdout.split() == ["default"]
    default = inst.cli("network", "inspect", "default").json()
    assert default["configuration"]["ipv4Subnet"] == "192.168.64.0/24"
    assert default["configuration"]["ipv4Gateway"] == "192.168.64.1"
    assert default["configuration"]["labels"] == {"builtin": "true"}

    assert inst.cli("network", "create", "foo", "--subnet", "192.168.100.1/24").stdout == "foo\n"
    foo = inst.cli("n", "inspect", "foo").json()
    assert foo["id"] == "foo"
    assert foo["configuration"]["ipv4Subnet"] == "192.168.100.0/24"  # normalised
    assert foo["configuration"]["ipv4Gateway"] == "192.168.100.1"
    assert foo["configuration"]["mode"] == "nat" and foo["configuration"]["plugin"] == "bridge"
    assert foo["status"]["state"] == "running" and foo["status"]["link"]
    # the bridge plugin's networks keep showing their link as `bridge` too (scripts read it)
    assert foo["status"]["bridge"] == foo["status"]["link"]

    att = inst.cli("network", "attach", "foo", "--name", "web", "--mac", "02:42:ac:11:00:02").json()
    assert att["address"] == "192.168.100.2/24" and att["gateway"] == "192.168.100.1"
    assert att["macAddress"] == "02:42:ac:11:00:02" and att["hostname"] == "web.test."
    log = (inst.run_dir / "network-bridge.log").read_text()
    assert (
        "container-network-bridge: allocated attachment [hostname=web.test.] "
        "[address=192.168.100.2/24] [gateway=192.168.100.1] [mac=02:42:ac:11:00:02] [id=foo]"
    ) in log

    table = inst.cli("network", "ls").stdout.splitlines()
    assert table[0].split() == ["NETWORK", "MODE", "SUBNET", "GATEWAY", "PLUGIN", "CONTAINERS"]
    assert [row.split() for row in table[1:]] == [
        ["default", "nat", "192.168.64.0/24", "192.168.64.1", "bridge", "0"],
        ["foo", "nat", "192.168.100.0/24", "192.168.100.1", "bridge", "1"],
    ]
    inst.cli("network", "detach", "foo", "--name", "web")
    assert (
        "released attachment [hostname=web.test.]"
        in (inst.run_dir / "network-bridge.log").read_text()
    )
    assert inst.cli("network", "rm", "foo").stdout == "foo\n"
    assert inst.cli("network", "list", "-q").stdout.split() == ["default"]


def test_create_flags_auto_subnet_prune_and_delete_all(instance: Instance) -> None:
    inst = instance
    inst.cli(
        "network",
        "create",
        "zeta",
        "--subnet",
        "10.30.0.0/16",
        "--gateway",
        "10.30.255.254",
        "--subnet-v6",
        "fd00:30::/64",
        "--internal",
        "--label",
        "team=net",
        "--option",
        "variant=isolated",
    )
    zeta = inst.cli("network", "inspect", "zeta").json()["configuration"]
    assert zeta["ipv4Gateway"] == "10.30.255.254" and zeta["ipv6Subnet"] == "fd00:30::/64"
    assert zeta["mode"] == "internal" and zeta["labels"] == {"team": "net"}
    assert zeta["options"] == {"variant": "isolated"}
    att = inst.cli("network", "attach", "zeta", "--name", "a").json()
    # .1 is not the gateway here, but its IPv6 twin fd00:30::1 is: both are skipped.
    assert att["address"] == "10.30.0.2/16" and att["ipv6Address"] == "fd00:30::2/64"

    inst.cli("network", "create", "alpha")
    inst.cli("network", "create", "beta")
    subnets = {n["id"]: n["configuration"]["ipv4Subnet"] for n in networks(inst)}
    assert subnets["alpha"] == "192.168.65.0/24" and subnets["beta"] == "192.168.66.0/24"
    assert [n["id"] for n in networks(inst)] == ["alpha", "beta", "default", "zeta"]

    assert inst.cli("network", "prune").stdout.split() == ["alpha", "beta"]  # zeta in use
    refused = inst.cli("network", "delete", "--all", check=False)
    assert_refused(refused, "network zeta is in use by a")
    inst.cli("network", "detach", "zeta", "--name", "a")
    inst.cli("network", "create", "gamma")
    assert sorted(inst.cli("network", "delete", "-a").stdout.split()) == ["gamma", "zeta"]
    assert inst.cli("network", "ls", "-q").stdout.split() == ["default"]


BAD_INPUTS: list[tuple[list[str], tuple[str, ...]]] = [
    (["network", "create", "Bad_Name"], ("invalid network name",)),
    (["network", "create", "-x"], ("arguments are required: NAME",)),
    (["network", "create", "none"], ("reserved",)),
    (["network", "create", "host"], ("reserved",)),
    (["network", "create", "default"], ("network default already exists",)),
    (["network", "create", "foo"], ("network foo already exists",)),
    (["network", "create", "n1", "--subnet", "banana"], ("invalid subnet 'banana'",)),
    (["network", "create", "n1", "--subnet", "10.0.0.0/30"], ("/8 and /29",)),
    (["network", "create", "n1", "--subnet", "10.0.0.0/7"], ("/8 and /29",)),
    (
        ["network", "create", "n1", "--subnet", "10.40.1.0/24"],
        ("subnet 10.40.1.0/24 overlaps network foo (10.40.0.0/16)",),
    ),
    (
        ["network", "create", "n1", "--subnet", "192.168.64.128/25"],
        ("overlaps network default (192.168.64.0/24)",),
    ),
    (
        ["network", "create", "n1", "--subnet", "10.77.0.0/16"],
        ("subnet 10.77.0.0/16 overlaps host route 10.77.3.0/24 (dev hostside)",),
    ),
    (
        ["network", "create", "n1", "--subnet", "10.41.0.0/24", "--gateway", "10.42.0.1"],
        ("gateway 10.42.0.1 is not a usable host address",),
    ),
    (["network", "create", "n1", "--subnet-v6", "fd00::/32"], ("/64 and /120",)),
    (["network", "create", "n1", "--plugin", "nosuch"], ("unknown network plugin 'nosuch'",)),
    (["network", "create", "n1", "--option", "colour=red"], ("unknown network option",)),
    (["network", "create", "n1", "--label", "oops"], ("expected KEY=VALUE",)),
    (["network", "attach", "foo", "--name", "b", "--mac", "02:42:zz:11:00:02"], ("invalid MAC",)),
    (["network", "attach", "foo", "--name", "b", "--mac", "01:00:5e:00:00:01"], ("multicast",)),
    (
        ["network", "attach", "foo", "--name", "b", "--mac", "02:42:ac:11:00:02"],
        ("MAC address 02:42:ac:11:00:02 is already used on network foo by a",),
    ),
    (["network", "attach", "foo", "--name", "b", "--mtu", "1279"], ("between 1280 and 65535",)),
    (["network", "attach", "foo", "--name", "b", "--mtu", "65536"], ("between 1280 and 65535",)),
    (["network", "attach", "nosuch", "--name", "b"], ("network nosuch not found",)),
    (["network", "delete", "default"], ("network default is built in",)),
    (["network", "delete", "foo"], ("network foo is in use by a",)),
    (["network", "inspect", "nosuch"], ("network nosuch not found",)),
    (["network", "detach", "foo", "--name", "ghost"], ("ghost is not attached to network foo",)),
]


def test_bad_input_is_one_error_line_and_changes_nothing(instance: Instance) -> None:
    inst = instance
    inst.sh("ip", "link", "add", "hostside", "type", "veth", "peer", "name", "hostpeer")
    inst.sh("ip", "addr", "add", "10.77.3.1/24", "dev", "hostside")
    inst.sh("ip", "link", "set", "hostside", "up")
    inst.sh("ip", "link", "set", "hostpeer", "up")
    inst.cli("network", "create", "foo", "--subnet", "10.40.0.0/16")
    inst.cli("network", "attach", "foo", "--name", "a", "--mac", "02:42:ac:11:00:02")
    before = snapshot(inst)
    for argv, fragments in BAD_INPUTS:
        assert_refused(inst.cli(*argv, check=False), *fragments)
    assert snapshot(inst) == before


def test_inspect_prints_one_object_per_line_like_container_inspect(instance: Instance) -> None:
    inst = instance
    inst.cli("network", "create", "foo", "--subnet", "10.70.0.0/24")
    result = inst.cli("network", "inspect", "default", "nosuch", "foo", check=False)
    assert result.returncode == 1
    assert result.stderr == "Error: network nosuch not found\n"
    lines = result.stdout.splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["default", "foo"]
    jq = inst.sh("sh", "-c", "container network inspect foo | jq -r .configuration.ipv4Subnet")
    assert jq.stdout == "10.70.0.0/24\n"


def test_bad_config_refuses_to_start(stopped_instance: Instance) -> None:
    inst = stopped_instance
    inst.write_config('[network]\n# the default network\nsubnet = "192.168.64.0/33"\n')
    result = inst.cli("system", "start", check=False)
    assert_refused(result, f"{inst.config_file}:3: key network.subnet:")
    assert not (inst.run_dir / "apiserver.sock").exists()
    assert inst.our_processes() == []
    inst.write_config('[network]\nsubnet = "10.64.0.1/24"\n[dns]\ndomain = "corp"\n')
    inst.start()
    default = inst.cli("network", "inspect", "default").json()["configuration"]
    assert default["ipv4Subnet"] == "10.64.0.0/24" and default["ipv4Gateway"] == "10.64.0.1"
    att = inst.cli("network", "attach", "default", "--name", "web").json()
    assert att["address"] == "10.64.0.2/24" and att["hostname"] == "web.corp."


@pytest.mark.parametrize("command", [["network", "list"], ["network", "create", "sneaky"]])
def test_api_socket_refuses_non_root(instance: Instance, command: list[str]) -> None:
    before = networks(instance)
    result = instance.cli(*command, check=False, user="65534")
    assert_refused(result, "permission denied")
    assert networks(instance) == before


def test_attach_to_namespace_builds_interface(instance: Instance, netns_pool: Any) -> None:
    """A bare namespace joins a network before containers exist (`attach --netns`)."""
    inst = instance
    member: Callable[[], str] = lambda: netns_pool.create("m")  # noqa: E731
    one, two = member(), member()
    inst.cli("network", "create", "foo", "--subnet", "10.50.0.0/24")
    a = inst.cli("network", "attach", "foo", "--name", "one", "--netns", f"/run/netns/{one}").json()
    b = inst.cli(
        "network", "attach", "foo", "--name", "two", "--netns", two, "--mtu", "1400"
    ).json()
    assert a["address"] == "10.50.0.2/24" and b["address"] == "10.50.0.3/24"
    shown = netns_pool.exec(two, ["ip", "-j", "addr", "show", "eth0"]).json()[0]
    assert shown["mtu"] == 1400 and shown["address"] == b["macAddress"]
    netns_pool.exec(one, ["ping", "-c", "1", "-W", "2", "10.50.0.3"])
    inst.cli("network", "detach", "foo", "--name", "two")
    assert netns_pool.exec(two, ["ip", "link", "show", "eth0"], check=False).returncode != 0
