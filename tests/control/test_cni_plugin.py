"""The cni plugin's parts without a system: running CNI binaries (invoke.py: environment,
errors as one line, the time limit) and making a network's list (conflist.py: the option
mapping of type=, .conf files, validation). Plugins here are small scripts the tests
write; the reference plugins run in tests/containers/test_cni.py."""

from __future__ import annotations

import ipaddress
import json
import sys
import time
from pathlib import Path

import pytest

from container_runtime.errors import InvalidArgument
from container_runtime.models import NetworkConfiguration, NetworkMode
from container_runtime.plugins.cni import conflist, invoke
from container_runtime.plugins.cni.invoke import Attachment, CniError, Invoker


def plugin(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text(f"#!{sys.executable}\nimport json, os, sys, time\n{body}\n")
    path.chmod(0o755)


def test_the_spec_environment_and_stdin_reach_the_plugin(tmp_path: Path) -> None:
    plugin(
        tmp_path,
        "echo",
        "conf = json.load(sys.stdin)\n"
        "env = {k: v for k, v in os.environ.items() if k.startswith('CNI_')}\n"
        "print(json.dumps({'conf': conf, 'env': env}))",
    )
    got = Invoker([str(tmp_path)]).run(
        "ADD", "echo", {"cniVersion": "1.0.0", "x": 1}, Attachment("cid", "/run/netns/n", "eth1")
    )
    assert got["conf"] == {"cniVersion": "1.0.0", "x": 1}
    assert got["env"] == {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "cid",
        "CNI_NETNS": "/run/netns/n",
        "CNI_IFNAME": "eth1",
        "CNI_ARGS": "",
        "CNI_PATH": str(tmp_path),
    }


def test_a_list_chains_prev_results_and_runtime_config_by_capability(tmp_path: Path) -> None:
    plugin(
        tmp_path,
        "step",
        "conf = json.load(sys.stdin)\n"
        "print(json.dumps({'seen': (conf.get('prevResult') or {}).get('seen', []) +"
        " [[conf['type'], conf.get('runtimeConfig'), os.environ['CNI_COMMAND']]]}))",
    )
    (tmp_path / "step2").symlink_to(tmp_path / "step")
    listed = {
        "cniVersion": "1.0.0",
        "name": "n",
        "plugins": [
            {"type": "step"},
            {"type": "step2", "capabilities": {"portMappings": True, "mac": False}},
        ],
    }
    runtime = {"portMappings": [{"hostPort": 1}], "mac": "02:00:00:00:00:01"}
    result = Invoker([str(tmp_path)]).add(listed, Attachment("c", "/n", "eth0"), runtime)
    assert result["seen"] == [
        ["step", None, "ADD"],
        ["step2", {"portMappings": [{"hostPort": 1}]}, "ADD"],
    ]


def test_a_plugin_error_is_one_line_with_msg_and_details(tmp_path: Path) -> None:
    plugin(
        tmp_path,
        "bad",
        "print(json.dumps({'cniVersion': '1.0.0', 'code': 11, 'msg': 'no\\nway',"
        " 'details': 'really  not'}))\nsys.exit(1)",
    )
    plugin(tmp_path, "crash", "sys.stderr.write('line one\\nline two\\n'); sys.exit(2)")
    invoker = Invoker([str(tmp_path)])
    with pytest.raises(CniError) as info:
        invoker.run("ADD", "bad", {}, None)
    assert info.value.message == "CNI plugin bad ADD failed: no way (really not)"
    with pytest.raises(CniError) as info:
        invoker.run("DEL", "crash", {}, None)
    assert info.value.message == "CNI plugin crash DEL failed: line one line two"
    with pytest.raises(InvalidArgument, match="CNI plugin 'nosuch' not found in"):
        invoker.run("ADD", "nosuch", {}, None)
    with pytest.raises(InvalidArgument, match="invalid CNI plugin type"):
        invoker.run("ADD", "../bin/sh", {}, None)


def test_a_hung_plugin_is_killed_at_the_time_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugin(tmp_path, "hang", "time.sleep(30)")
    monkeypatch.setattr(invoke, "PLUGIN_TIMEOUT", 0.3)
    began = time.monotonic()
    with pytest.raises(CniError, match="CNI plugin hang ADD timed out"):
        Invoker([str(tmp_path)]).run("ADD", "hang", {}, None)
    assert time.monotonic() - began < 5


def network(**options: str) -> NetworkConfiguration:
    return NetworkConfiguration(
        "n1",
        ipaddress.IPv4Network("10.60.0.0/24"),
        ipaddress.IPv4Address("10.60.0.1"),
        plugin="cni",
        options=options,
    )


def test_type_maps_options_into_the_plugin(tmp_path: Path) -> None:
    made = conflist.build(
        network(type="bridge", mtu="1400", hairpinMode="false", **{"ipam.routes": "[]"}, vlan="7x"),
        tmp_path,
    )
    assert made["cniVersion"] == "1.0.0" and made["name"] == "n1"
    (main,) = made["plugins"]
    assert main["bridge"] == conflist.link_name("n1") and len(main["bridge"]) <= 15
    assert main["mtu"] == 1400 and main["hairpinMode"] is False and main["vlan"] == "7x"
    assert main["isGateway"] is True and main["ipMasq"] is True
    assert main["ipam"]["routes"] == [] and main["ipam"]["dataDir"] == str(tmp_path)
    assert main["ipam"]["ranges"] == [[{"subnet": "10.60.0.0/24", "gateway": "10.60.0.1"}]]
    internal = NetworkConfiguration(
        "n2",
        ipaddress.IPv4Network("10.61.0.0/24"),
        ipaddress.IPv4Address("10.61.0.1"),
        mode=NetworkMode.INTERNAL,
        plugin="cni",
        options={"type": "ptp", "portmap": "on", "ipam.type": "dhcp"},
    )
    made = conflist.build(internal, tmp_path)
    assert made["plugins"][0] == {"type": "ptp", "ipMasq": False, "ipam": {"type": "dhcp"}}
    assert made["plugins"][1] == {"type": "portmap", "capabilities": {"portMappings": True}}


def test_config_files_conf_and_refusals(tmp_path: Path) -> None:
    conf = tmp_path / "one.conf"
    conf.write_text(
        json.dumps(
            {
                "cniVersion": "1.0.0",
                "name": "lan",
                "type": "macvlan",
                "master": "eth0",
                "ipam": {"type": "host-local", "subnet": "10.60.0.0/24"},
            }
        )
    )
    made = conflist.build(network(config=str(conf)), tmp_path / "ipam")
    assert made["name"] == "lan" and made["plugins"][0]["type"] == "macvlan"
    assert made["plugins"][0]["ipam"]["dataDir"] == str(tmp_path / "ipam")  # ours, not /var
    assert conflist.ipam_subnets(made) == [ipaddress.IPv4Network("10.60.0.0/24")]
    for options, fragment in [
        ({}, "exactly one of"),
        ({"type": "bridge", "config": str(conf)}, "exactly one of"),
        ({"config": str(conf), "mtu": "1400"}, "only for type= networks"),
        ({"config": str(tmp_path / "absent")}, "cannot read CNI configuration"),
        ({"type": "bridge", "x": "{nope"}, "invalid JSON"),
        ({"type": "bridge", "no-such-option": "1"}, "unknown network option 'no-such-option'"),
        ({"type": "bridge", "a..b": "1"}, "camelCase"),
    ]:
        with pytest.raises(InvalidArgument, match=fragment):
            conflist.build(network(**options), tmp_path)


def test_check_refuses_old_versions_missing_plugins_and_another_subnet(tmp_path: Path) -> None:
    plugin(
        tmp_path,
        "v10",
        "print(json.dumps({'cniVersion': '1.0.0', 'supportedVersions': ['0.4.0', '1.0.0']}))",
    )
    invoker = Invoker([str(tmp_path)])
    good = {"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "v10"}]}
    conflist.check(good, network(), invoker)
    cases = [
        ({**good, "cniVersion": "0.4.0"}, "too old"),
        ({**good, "cniVersion": "1.1.0"}, "does not support cniVersion 1.1.0"),
        ({**good, "plugins": []}, "no plugins"),
        ({**good, "plugins": [{"type": "absent"}]}, "not found"),
        ({**good, "name": "bad name"}, "invalid network name"),
        (
            {
                **good,
                "plugins": [
                    {"type": "v10", "ipam": {"type": "host-local", "subnet": "10.9.0.0/16"}}
                ],
            },
            "create it with --subnet 10.9.0.0/16",
        ),
    ]
    for listed, fragment in cases:
        with pytest.raises(InvalidArgument, match=fragment):
            conflist.check(listed, network(), invoker)
