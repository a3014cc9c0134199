"""The network model's refusals through the real CLI and daemons: unusable subnets and empty
values (refused, nothing changed), and the default network against the host's routes."""

from __future__ import annotations

import json
import re
from typing import Any

from support.instance import Instance, assert_refused


def snapshot(inst: Instance) -> tuple[Any, ...]:
    """What a refused command must leave exactly as it was."""
    nets = inst.cli("network", "list", "--format", "json").json()
    attachments = {
        n["id"]: inst.cli("network", "inspect", n["id"]).json()["containers"] for n in nets
    }
    links = sorted(link["ifname"] for link in inst.links())
    rules = inst.sh("nft", "-j", "list", "ruleset").stdout
    containers = inst.cli("ls", "-a", "--format", "json").stdout
    return json.dumps(nets, sort_keys=True), attachments, links, rules, containers


UNUSABLE: list[tuple[list[str], tuple[str, ...]]] = [
    (["--subnet", ""], ("invalid subnet ''",)),
    (["--subnet", "127.0.0.0/8"], ("127.0.0.0/8", "loopback")),
    (["--subnet", "127.1.2.0/24"], ("loopback",)),
    (["--subnet", "0.0.0.0/8"], ("0.0.0.0/8", "unspecified")),
    (["--subnet", "169.254.0.0/24"], ("169.254.0.0/16", "link-local")),
    (["--subnet", "169.0.0.0/8"], ("link-local",)),
    (["--subnet", "224.0.0.0/24"], ("224.0.0.0/4", "multicast")),
    (["--subnet", "240.0.0.0/24"], ("240.0.0.0/4", "reserved")),
    (["--subnet", "255.255.255.0/24"], ("reserved", "broadcast")),
    (["--subnet", "10.60.0.0/24", "--gateway", ""], ("invalid gateway ''",)),
    (["--gateway", ""], ("--gateway needs --subnet",)),
    (["--subnet-v6", ""], ("invalid IPv6 subnet ''",)),
    (["--subnet-v6", "fe80::/64"], ("fe80::/10", "link-local")),
    (["--subnet-v6", "::1/120"], ("::/8", "loopback")),
    (["--subnet-v6", "::/64"], ("::/8", "unspecified")),
    (["--subnet-v6", "::ffff:0:0/96"], ("IPv4-mapped",)),
    (["--subnet-v6", "ff00::/64"], ("ff00::/8", "multicast")),
    (["--subnet-v6", "fec0::/64"], ("site-local",)),
    (["--plugin", ""], ("invalid plugin name ''",)),
]


def test_unusable_subnets_and_empty_values_are_refused(instance: Instance) -> None:
    inst = instance
    before = snapshot(inst)
    for flags, fragments in UNUSABLE:
        assert_refused(inst.cli("network", "create", "n1", *flags, check=False), *fragments)
    assert snapshot(inst) == before
    # usable neighbours of those ranges still work
    inst.cli("network", "create", "ok4", "--subnet", "10.61.0.0/24", "--subnet-v6", "fd00:61::/64")
    inst.cli("network", "create", "ok6", "--subnet", "10.62.0.0/24", "--subnet-v6", "2001:db8::/64")
    inst.cli("network", "rm", "ok4", "ok6")


def test_unusable_config_subnet_refuses_to_start(stopped_instance: Instance) -> None:
    inst = stopped_instance
    inst.write_config('[network]\nsubnet = "127.0.0.1/24"\n')
    result = inst.cli("system", "start", check=False)
    assert_refused(result, f"{inst.config_file}:2: key network.subnet:", "loopback")
    assert inst.our_processes() == []


def _lan(inst: Instance) -> None:
    """The host's LAN on 192.168.64.0/24, inside the instance's namespace (a veth pair:
    this kernel has no dummy links)."""
    inst.sh("ip", "link", "add", "lan0", "type", "veth", "peer", "name", "lan0p")
    inst.sh("ip", "addr", "add", "192.168.64.5/24", "dev", "lan0")
    inst.sh("ip", "link", "set", "lan0", "up")
    inst.sh("ip", "link", "set", "lan0p", "up")


def _routes_to(inst: Instance, prefix: str) -> list[str]:
    routes = inst.sh("ip", "-j", "route", "show", "table", "main").json()
    return [r["dev"] for r in routes if r["dst"] == prefix]


def test_default_network_moves_off_a_host_route(stopped_instance: Instance) -> None:
    """No subnet configured: the default takes the next free /24 of the pool, and says so."""
    inst = stopped_instance
    _lan(inst)
    inst.start()
    default = inst.cli("network", "inspect", "default").json()["configuration"]
    assert default["ipv4Subnet"] == "192.168.65.0/24", default
    assert default["ipv4Gateway"] == "192.168.65.1"
    log = (inst.run_dir / "apiserver.log").read_text()
    assert "default subnet 192.168.64.0/24 overlaps host route 192.168.64.0/24 (dev lan0)" in log
    assert "uses 192.168.65.0/24 instead" in log
    assert _routes_to(inst, "192.168.64.0/24") == ["lan0"]  # no second route
    att = inst.cli("network", "attach", "default", "--name", "web").json()
    assert att["address"] == "192.168.65.2/24"
    # the next user network skips both
    inst.cli("network", "create", "auto")
    auto = inst.cli("network", "inspect", "auto").json()["configuration"]
    assert auto["ipv4Subnet"] == "192.168.66.0/24"
    # a restart keeps the default where it is (its own bridge's route is not a clash)
    inst.cli("system", "stop")
    inst.start()
    again = inst.cli("network", "inspect", "default").json()["configuration"]
    assert again["ipv4Subnet"] == "192.168.65.0/24"


def test_configured_default_subnet_on_a_host_route_is_refused(stopped_instance: Instance) -> None:
    """A subnet the user chose is never moved: start is refused, naming the route and what
    to change in config.toml, and nothing starts or is built."""
    inst = stopped_instance
    _lan(inst)
    inst.write_config('[network]\nsubnet = "192.168.64.1/24"\n')
    links_before = sorted(link["ifname"] for link in inst.links())
    result = inst.cli("system", "start", check=False)
    assert_refused(
        result,
        "subnet 192.168.64.0/24 overlaps host route 192.168.64.0/24 (dev lan0)",
        f"[network] subnet in {inst.config_file}",
    )
    assert inst.our_processes() == []
    assert sorted(link["ifname"] for link in inst.links()) == links_before
    assert _routes_to(inst, "192.168.64.0/24") == ["lan0"]
    assert "container" not in inst.nft_tables()
    # the suggestion in the message works as written
    suggested = re.search(r'subnet = "([0-9./]+)"', result.stderr)
    assert suggested is not None, result.stderr
    inst.write_config(f'[network]\nsubnet = "{suggested.group(1)}"\n')
    inst.start()
    default = inst.cli("network", "inspect", "default").json()["configuration"]
    assert default["ipv4Subnet"] == "192.168.65.0/24"
