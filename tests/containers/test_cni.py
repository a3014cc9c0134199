"""The cni plugin end to end: real CNI reference plugins (Debian's containernetworking-
plugins), real containers, real packets; `network check` and `network plugins`.

The CNI bridge, portmap and firewall plugins program iptables: they run from the cni
helper, which runs in the instance's throwaway network namespace (Instance: the daemons
under nsenter --net), so their rules land there, never in the host's firewall.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.instance import VENV_BIN, Instance, assert_refused, attachments

from container_runtime.dataplane import names

from .conftest import System
from .test_containers import address, inspect, wait_for, wait_http

CNI_DIR = Path("/usr/lib/cni")
HELLO = "hello from busybox"


@pytest.fixture(scope="module", autouse=True)
def _cni_plugins() -> None:
    missing = [
        p
        for p in ("bridge", "host-local", "portmap", "firewall", "ptp")
        if not (CNI_DIR / p).exists()
    ]
    if missing:
        raise RuntimeError(f"CNI plugins missing in {CNI_DIR}: {missing} (scripts/setup.sh)")


def write_conflist(path: Path, plugins: list[dict[str, object]], name: str = "cnitest") -> Path:
    path.write_text(json.dumps({"cniVersion": "1.0.0", "name": name, "plugins": plugins}))
    return path


def bridge_plugin(bridge: str, subnet: str, kind: str = "bridge") -> dict[str, object]:
    return {
        "type": kind,
        "bridge": bridge,
        "isGateway": True,
        "ipMasq": True,
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": subnet}]],
            "routes": [{"dst": "0.0.0.0/0"}],
        },
    }


def sandbox(inst: Instance, name: str) -> str:
    cid = inspect(inst, name)["id"]
    return str(inst.run_dir / "netns" / f"sb-{cid[:32]}")


@pytest.fixture
def counting_dir(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A CNI directory holding `countbridge`: the reference bridge, counting each ADD and
    DEL (one line `COMMAND CONTAINERID` in a log) before it runs."""
    cni_dir = tmp_path / "cni"
    cni_dir.mkdir()
    log = tmp_path / "calls.log"
    wrapper = cni_dir / "countbridge"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'case "$CNI_COMMAND" in ADD|DEL) echo "$CNI_COMMAND $CNI_CONTAINERID" >> {log} ;; esac\n'
        f"exec {CNI_DIR}/bridge\n"
    )
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    tmp_path.chmod(0o755)
    yield cni_dir, log


# A CNI 1.1 plugin in a few lines (the reference plugins of Debian speak at most 1.0.0): it
# logs every call with what it was given, and answers ADD with a result of its own (no
# kernel work), so STATUS and GC, which only CNI 1.1 has, are seen being called.
FAKE_PLUGIN = """#!{python}
import json, os, sys
conf = json.load(sys.stdin)
cmd = os.environ["CNI_COMMAND"]
entry = {{"cmd": cmd, "id": os.environ.get("CNI_CONTAINERID"),
          "valid": conf.get("cni.dev/valid-attachments"), "prev": "prevResult" in conf}}
if cmd != "VERSION":  # VERSION is given only {{"cniVersion"}}
    with open(conf["log"], "a") as f:
        f.write(json.dumps(entry) + "\\n")
if cmd == "VERSION":
    print(json.dumps({{"cniVersion": "1.1.0", "supportedVersions": ["1.0.0", "1.1.0"]}}))
elif cmd == "ADD":
    n = sum(1 for line in open(conf["log"]) if '"ADD"' in line) + 1
    print(json.dumps({{"cniVersion": "1.1.0",
        "interfaces": [{{"name": os.environ["CNI_IFNAME"], "mac": "02:00:00:00:00:%02x" % n,
                        "sandbox": os.environ["CNI_NETNS"]}}],
        "ips": [{{"address": "10.81.0.%d/24" % n, "gateway": "10.81.0.1", "interface": 0}}]}}))
"""


def calls(log: Path) -> list[tuple[str, str]]:
    if not log.exists():
        return []
    return [tuple(line.split()) for line in log.read_text().splitlines()]  # type: ignore[misc]


def test_conflist_bridge_portmap_firewall_reach_peer_and_published_port(
    system: System, tmp_path: Path
) -> None:
    inst, ref = system.inst, system.image
    conf = write_conflist(
        tmp_path / "net.conflist",
        [
            bridge_plugin("cnibr0", "10.77.0.0/24"),
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "firewall"},
        ],
    )
    inst.cli(
        "network", "create", "cnibr", "--plugin", "cni", "--subnet", "10.77.0.0/24",
        "--option", f"config={conf}",
    )  # fmt: skip
    try:
        inst.cli("run", "-d", "--name", "cweb", "--network", "cnibr", "-p", "8088:80", ref)
        inst.cli("run", "-d", "--name", "cweb2", "--network", "cnibr", ref)
        net0 = inspect(inst, "cweb")["networks"][0]
        assert net0["network"] == "cnibr" and net0["address"].startswith("10.77.0.")
        assert net0["gateway"] == "10.77.0.1"
        link = inst.sh(
            "nsenter", f"--net={sandbox(inst, 'cweb')}", "ip", "-j", "link", "show", "eth0"
        ).json()
        assert link[0]["address"] == net0["macAddress"]  # the MAC of the CNI result
        a1, a2 = address(inst, "cweb"), address(inst, "cweb2")
        assert wait_http(inst, f"http://{a1}/", via="cweb2").strip() == HELLO
        assert wait_http(inst, f"http://{a2}/", via="cweb").strip() == HELLO
        # names resolve as on bridge networks (the embedded DNS on the CNI bridge's gateway)
        looked = inst.cli("exec", "cweb2", "nslookup", "cweb.test").stdout
        assert f"Address: {a1}" in looked, looked
        # -p through the list's portmap: the gateway is a local address of the namespace
        assert wait_http(inst, "http://10.77.0.1:8088/").strip() == HELLO
        nat = inst.sh("iptables-save", "-t", "nat").stdout
        assert "CNI-HOSTPORT-DNAT" in nat and "--dport 8088" in nat
        assert "CNI-FORWARD" in inst.sh("iptables-save", "-t", "filter").stdout
        # (no `network check` here: portmap 1.1.1's CHECK looks for IPv4 mappings in
        # ip6tables too and always fails when ports are published; docs/PLUGINS.md)
    finally:
        inst.cli("rm", "-f", "cweb", "cweb2", check=False)
    assert attachments(inst, "cnibr") == []
    assert "--dport 8088" not in inst.sh("iptables-save", "-t", "nat").stdout
    leases = inst.root / "plugins" / "cni" / "ipam" / "cnitest"
    assert sorted(p.name for p in leases.iterdir() if p.name[0].isdigit()) == []
    inst.cli("network", "rm", "cnibr")
    assert not (inst.root / "plugins" / "cni" / "networks" / "cnibr.conflist").exists()


def test_type_ptp_network_container_reaches_peer_through_the_host(system: System) -> None:
    inst, ref = system.inst, system.image
    inst.cli(
        "network",
        "create",
        "cptp",
        "--plugin",
        "cni",
        "--option",
        "type=ptp",
        "--option",
        "mtu=1400",
    )
    try:
        inst.cli("run", "-d", "--name", "pa", "--network", "cptp", ref)
        inst.cli("run", "-d", "--name", "pb", "--network", "cptp", ref)
        net = inspect(inst, "pa")["networks"][0]
        assert net["mtu"] == 1400
        mtu = inst.sh(
            "nsenter", f"--net={sandbox(inst, 'pa')}", "ip", "-j", "link", "show", "eth0"
        ).json()[0]["mtu"]
        assert mtu == 1400  # the option mapped into the ptp plugin's config
        conflist = json.loads(
            (inst.root / "plugins" / "cni" / "networks" / "cptp.conflist").read_text()
        )
        assert conflist["plugins"][0]["type"] == "ptp" and conflist["plugins"][0]["mtu"] == 1400
        pa, pb = address(inst, "pa"), address(inst, "pb")
        assert wait_http(inst, f"http://{pb}/", via="pa").strip() == HELLO
        assert wait_http(inst, f"http://{pa}/", via="pb").strip() == HELLO
        refused = inst.cli(
            "run", "-d", "--name", "pp", "--network", "cptp", "-p", "8090:80", ref, check=False
        )
        assert_refused(refused, "cannot publish ports", "portmap")
        # Its IPAM picks the addresses: a static one is refused, at create and at connect.
        static = f"cptp,ip={pa.rsplit('.', 1)[0]}.77"
        refused = inst.cli("run", "-d", "--name", "ps", "--network", static, ref, check=False)
        assert_refused(refused, "picks its own addresses", "static addresses")
        inst.cli("create", "--name", "ps", ref)
        refused = inst.cli(
            "network", "connect", "cptp", "ps", "--ip", f"{pa.rsplit('.', 1)[0]}.77", check=False
        )
        assert_refused(refused, "picks its own addresses")
        assert {a["owner"] for a in attachments(inst, "cptp")} == {
            inspect(inst, "pa")["id"],
            inspect(inst, "pb")["id"],
        }
    finally:
        inst.cli("rm", "-f", "pa", "pb", "pp", "ps", check=False)
    assert attachments(inst, "cptp") == []
    inst.cli("network", "rm", "cptp")


def test_type_macvlan_network_on_a_parent_made_by_the_test(system: System) -> None:
    inst, ref = system.inst, system.image
    # the "LAN": a veth pair in inst.netns (no dummy module on this kernel)
    inst.sh("ip", "link", "add", "cnilan0", "type", "veth", "peer", "name", "cnilan1")
    inst.sh("ip", "link", "set", "cnilan0", "up")
    inst.sh("ip", "link", "set", "cnilan1", "up")
    try:
        inst.cli(
            "network", "create", "cmac", "--plugin", "cni", "--subnet", "10.84.0.0/24",
            "--option", "type=macvlan", "--option", "master=cnilan0", "--option", "mode=bridge",
        )  # fmt: skip
        inst.cli("run", "-d", "--name", "ma", "--network", "cmac", ref)
        inst.cli("run", "-d", "--name", "mb", "--network", "cmac", ref)
        link = inst.sh(
            "nsenter", f"--net={sandbox(inst, 'ma')}", "ip", "-j", "-d", "link", "show", "eth0"
        ).json()[0]
        assert link["linkinfo"]["info_kind"] == "macvlan"
        assert link["address"] == inspect(inst, "ma")["networks"][0]["macAddress"]
        ma, mb = address(inst, "ma"), address(inst, "mb")
        assert ma.startswith("10.84.0.") and mb.startswith("10.84.0.")
        assert wait_http(inst, f"http://{mb}/", via="ma").strip() == HELLO
        assert inst.cli("network", "check", "cmac").stdout.strip() == "cmac: ok"
    finally:
        inst.cli("rm", "-f", "ma", "mb", check=False)
        inst.cli("network", "rm", "cmac", check=False)
        inst.sh("ip", "link", "del", "cnilan0", check=False)
    assert "cmac" not in inst.cli("network", "ls", "-q").stdout.split()


def test_del_exactly_once_per_add_across_stop_rm_and_helper_sigkill(
    system: System, counting_dir: tuple[Path, Path]
) -> None:
    inst, ref = system.inst, system.image
    cni_dir, log = counting_dir
    inst.cli(
        "network", "create", "ccount", "--plugin", "cni", "--option", "type=countbridge",
        "--option", f"cni-path={cni_dir}:{CNI_DIR}", "--option", "bridge=cnicount0",
    )  # fmt: skip
    try:
        inst.cli("run", "-d", "--name", "c1", "--network", "ccount", ref)
        cid1 = inspect(inst, "c1")["id"]
        inst.cli("stop", "c1")
        assert calls(log) == [("ADD", cid1), ("DEL", cid1)]
        inst.cli("start", "c1")  # a new ADD, and its DEL at rm
        inst.cli("rm", "-f", "c1")
        assert calls(log) == [("ADD", cid1), ("DEL", cid1)] * 2

        inst.cli("run", "-d", "--name", "c2", "--network", "ccount", ref)
        cid2 = inspect(inst, "c2")["id"]
        old = inst.pid("network-cni")
        assert old is not None
        os.kill(old, signal.SIGKILL)
        inst.wait_pid_change("network-cni", old)
        assert inst.cli("network", "check", "ccount").stdout.strip() == "ccount: ok"
        assert calls(log)[-1] == ("ADD", cid2)  # the restarted helper kept it: no DEL
        a2 = address(inst, "c2")
        inst.cli("run", "-d", "--name", "c3", "--network", "ccount", ref)
        assert wait_http(inst, f"http://{a2}/", via="c3").strip() == HELLO
        cid3 = inspect(inst, "c3")["id"]
        inst.cli("rm", "-f", "c2", "c3")
        done = calls(log)[4:]
        assert sorted(done) == sorted([("ADD", cid2), ("ADD", cid3), ("DEL", cid2), ("DEL", cid3)])
    finally:
        inst.cli("rm", "-f", "c1", "c2", "c3", check=False)
    assert attachments(inst, "ccount") == []
    inst.cli("network", "rm", "ccount")


def test_helper_sigkilled_during_add_the_pending_attachment_gets_its_del(
    system: System, counting_dir: tuple[Path, Path]
) -> None:
    """SIGKILL of the helper while a CNI ADD runs: the restarted helper DELs the pending
    record (the plugin died with the helper), the API server's retry ADDs afresh, and the
    container ends up with one working attachment; every ADD has exactly one DEL."""
    inst, ref = system.inst, system.image
    cni_dir, log = counting_dir
    slow = cni_dir / "slowbridge"
    marker = cni_dir.parent / "slow-once"
    marker.write_text("")
    slow.write_text(
        "#!/bin/sh\n"
        f'case "$CNI_COMMAND" in ADD|DEL) echo "$CNI_COMMAND $CNI_CONTAINERID" >> {log} ;; esac\n'
        f'[ "$CNI_COMMAND" = ADD ] && [ -e {marker} ] && rm -f {marker} && sleep 10\n'
        f"exec {CNI_DIR}/bridge\n"
    )
    slow.chmod(0o755)
    inst.cli(
        "network", "create", "cslow", "--plugin", "cni", "--option", "type=slowbridge",
        "--option", f"cni-path={cni_dir}:{CNI_DIR}", "--option", "bridge=cnislow0",
    )  # fmt: skip
    inst.cli("image", "pull", ref)
    old = inst.pid("network-cni")
    assert old is not None
    run = subprocess.Popen(
        inst.in_ns(
            [str(VENV_BIN / "container"), "run", "-d", "--name", "s1", "--network", "cslow", ref]
        ),
        env=inst.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: not marker.exists(), 20, "the slow ADD to begin")
        os.kill(old, signal.SIGKILL)
        out, err = run.communicate(timeout=60)
        assert run.returncode == 0, err
        cid = inspect(inst, "s1")["id"]
        # the killed ADD, the DEL of its pending record at restart, the retry's ADD
        assert calls(log) == [("ADD", cid), ("DEL", cid), ("ADD", cid)]
        assert inst.cli("network", "check", "cslow").stdout.strip() == "cslow: ok"
        inst.cli("run", "-d", "--name", "s2", "--network", "cslow", ref)
        assert wait_http(inst, f"http://{address(inst, 's1')}/", via="s2").strip() == HELLO
        inst.cli("rm", "-f", "s1", "s2")
        adds = sorted(c[1] for c in calls(log) if c[0] == "ADD")
        dels = sorted(c[1] for c in calls(log) if c[0] == "DEL")
        assert adds == dels and len(adds) == 3
        leases = inst.root / "plugins" / "cni" / "ipam" / "cslow"
        assert [p.name for p in leases.iterdir() if p.name[0].isdigit()] == []
    finally:
        run.kill()
        inst.cli("rm", "-f", "s1", "s2", check=False)
    assert attachments(inst, "cslow") == []
    inst.cli("network", "rm", "cslow")


def test_cni_1_1_status_at_create_and_gc_at_helper_start_with_the_valid_attachments(
    system: System, tmp_path: Path
) -> None:
    inst = system.inst
    plugin_dir = tmp_path / "cni11"
    plugin_dir.mkdir()
    fake = plugin_dir / "fake11"
    fake.write_text(FAKE_PLUGIN.format(python=sys.executable))
    fake.chmod(0o755)
    log = tmp_path / "fake11.log"
    conf = tmp_path / "v11.conflist"
    conf.write_text(
        json.dumps(
            {"cniVersion": "1.1.0", "name": "v11", "plugins": [{"type": "fake11", "log": str(log)}]}
        )
    )
    tmp_path.chmod(0o755)

    def seen(cmd: str) -> list[dict[str, object]]:
        return [e for e in map(json.loads, log.read_text().splitlines()) if e["cmd"] == cmd]

    inst.cli(
        "network", "create", "cv11", "--plugin", "cni", "--subnet", "10.81.0.0/24",
        "--option", f"config={conf}", "--option", f"cni-path={plugin_dir}",
    )  # fmt: skip
    assert len(seen("STATUS")) == 1  # asked once, at create, before the network is used
    keep, gone = inst.pool.create("cv"), inst.pool.create("cv")
    try:
        for owner, ns in (("keep", keep), ("gone", gone)):
            att = inst.cli(
                "network", "attach", "cv11", "--name", owner, "--netns", f"/run/netns/{ns}",
                "--strategy", "veth",
            ).json()  # fmt: skip
            assert att["address"].startswith("10.81.0.") and att["gateway"] == "10.81.0.1"
        assert inst.cli("network", "check", "cv11").stdout.strip() == "cv11: ok"
        assert [e["prev"] for e in seen("CHECK")] == [True, True]  # given the ADD result
        inst.sh("ip", "netns", "del", gone)  # its sandbox vanishes
        inst.pool.names.remove(gone)
        old = inst.pid("network-cni")
        assert old is not None
        os.kill(old, signal.SIGKILL)
        inst.wait_pid_change("network-cni", old)
        inst.cli("network", "check", "cv11")  # the restarted helper is serving
        assert [e["id"] for e in seen("DEL")] == ["gone"]  # released: its sandbox is gone
        assert seen("DEL")[0]["prev"] is True
        gc = seen("GC")
        assert gc and gc[-1]["valid"] == [{"containerID": "keep", "ifname": "eth0"}]
        assert [a["owner"] for a in attachments(inst, "cv11")] == ["keep"]
        inst.cli("network", "detach", "cv11", "--name", "keep")
        assert [e["id"] for e in seen("DEL")] == ["gone", "keep"]
    finally:
        inst.cli("network", "detach", "cv11", "--name", "keep", check=False)
    inst.cli("network", "rm", "cv11")


def test_network_check_finds_a_deleted_link_on_cni_and_bridge(system: System) -> None:
    inst, ref = system.inst, system.image
    inst.cli("network", "create", "ckc", "--plugin", "cni", "--option", "type=bridge")
    inst.cli("network", "create", "ckb", "--subnet", "192.168.140.0/24")
    try:
        inst.cli("run", "-d", "--name", "kc", "--network", "ckc", ref)
        inst.cli("run", "-d", "--name", "kb", "--network", "ckb", ref)
        # allocation only (no sandbox): the list's IPAM alone, a lease and no link
        links = {link["ifname"] for link in inst.links()}
        bare = inst.cli("network", "attach", "ckc", "--name", "bare").json()
        leases = inst.root / "plugins" / "cni" / "ipam" / "ckc"
        ip = bare["address"].split("/")[0]
        assert (leases / ip).read_text().startswith("bare")
        assert {link["ifname"] for link in inst.links()} == links
        assert inst.cli("network", "attach", "ckc", "--name", "bare").json() == bare
        assert inst.cli("network", "check", "ckc").stdout.strip() == "ckc: ok"  # IPAM CHECK
        inst.cli("network", "detach", "ckc", "--name", "bare")
        assert not (leases / ip).exists()
        for net in ("ckc", "ckb"):
            assert inst.cli("network", "check", net).stdout.strip() == f"{net}: ok"
        cid_c, cid_b = inspect(inst, "kc")["id"], inspect(inst, "kb")["id"]
        # bridge: a host port off its bridge, with another MTU
        port = names.host_ifname("veth", "ckb", cid_b, "eth0")
        inst.sh("ip", "link", "set", port, "nomaster", "mtu", "1400")
        bad = inst.cli("network", "check", "ckb", check=False)
        assert bad.returncode == 1 and sorted(bad.stdout.splitlines()) == [
            f"ckb: {cid_b[:12]} eth0: host interface {port} has MTU 1400, expected 1500",
            f"ckb: {cid_b[:12]} eth0: host interface {port} is not on bridge"
            f" {names.bridge_name('ckb')}",
        ]
        for name in ("kc", "kb"):
            inst.sh("nsenter", f"--net={sandbox(inst, name)}", "ip", "link", "del", "eth0")
        bad = inst.cli("network", "check", "ckc", check=False)
        assert bad.returncode == 1 and bad.stdout.startswith(
            f"ckc: {cid_c[:12]} eth0: CNI plugin bridge CHECK failed"
        )
        assert len(bad.stdout.splitlines()) == 1, bad.stdout
        bad = inst.cli("network", "check", "ckb", check=False)
        assert bad.returncode == 1, bad
        lines = bad.stdout.splitlines()
        assert lines and all(line.startswith(f"ckb: {cid_b[:12]} eth0: ") for line in lines)
        assert any("missing" in line for line in lines), lines
        assert_refused(
            inst.cli("network", "check", "nosuch", check=False), "network nosuch not found"
        )
    finally:
        inst.cli("rm", "-f", "kc", "kb", check=False)
    inst.cli("network", "rm", "ckc", "ckb")


def test_cni_errors_are_one_error_line_and_leave_nothing(system: System, tmp_path: Path) -> None:
    inst, ref = system.inst, system.image
    # refused at create: nothing made
    old = write_conflist(tmp_path / "old.conflist", [bridge_plugin("cniold0", "10.78.0.0/24")])
    old.write_text(old.read_text().replace('"1.0.0"', '"0.4.0"'))
    cases = [
        (["--option", "config=/nonexistent.conflist"], "cannot read CNI configuration"),
        (["--option", f"config={old}", "--subnet", "10.78.0.0/24"], "cniVersion 0.4.0 is too old"),
        (["--option", "type=nosuchplugin"], "CNI plugin 'nosuchplugin' not found"),
        (["--option", f"config={old}", "--option", "type=bridge"], "exactly one of"),
        ([], "exactly one of"),
    ]
    (tmp_path / "notjson.conflist").write_text("{nope")
    cases.append((["--option", f"config={tmp_path / 'notjson.conflist'}"], "is not JSON"))
    wrong = write_conflist(tmp_path / "wrong.conflist", [bridge_plugin("cniwr0", "10.79.0.0/24")])
    cases.append((["--option", f"config={wrong}"], "--subnet 10.79.0.0/24"))
    for extra, fragment in cases:
        refused = inst.cli("network", "create", "cbad", "--plugin", "cni", *extra, check=False)
        assert_refused(refused, fragment)
    assert "cbad" not in inst.cli("network", "ls", "-q").stdout.split()

    # an ADD that fails after IPAM and the bridge did their part: one Error: line with the
    # plugin's message, and the DEL that follows leaves no lease, no link, no container
    failing = write_conflist(
        tmp_path / "fail.conflist",
        [
            bridge_plugin("cnifail0", "10.80.0.0/24"),
            {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.nosuch": "1"}},
        ],
        name="cnifail",
    )
    inst.cli(
        "network",
        "create",
        "cfail",
        "--plugin",
        "cni",
        "--subnet",
        "10.80.0.0/24",
        "--option",
        f"config={failing}",
    )
    inst.cli("image", "pull", ref)  # the refusal below is then the run's only stderr line
    links_before = {link["ifname"] for link in inst.links()} - {"cnifail0"}
    try:
        refused = inst.cli("run", "-d", "--name", "cf", "--network", "cfail", ref, check=False)
        assert_refused(refused, "CNI plugin tuning ADD failed", "nosuch")
        assert attachments(inst, "cfail") == []
        leases = inst.root / "plugins" / "cni" / "ipam" / "cnifail"
        assert [p.name for p in leases.iterdir() if p.name[0].isdigit()] == []
        assert {link["ifname"] for link in inst.links()} - {"cnifail0"} == links_before
        assert inst.cli("network", "check", "cfail").stdout.strip() == "cfail: ok"
    finally:
        inst.cli("rm", "-f", "cf", check=False)
    inst.cli("network", "rm", "cfail")


def test_network_plugins_lists_manifests_and_running_helpers(system: System) -> None:
    inst = system.inst
    rows = {p["name"]: p for p in inst.cli("network", "plugins", "--format", "json").json()}
    assert {"bridge", "cni"} <= set(rows)
    cni = rows["cni"]
    assert cni["strategies"] == ["veth"] and "config=<path>" in cni["options"]
    assert cni["manifest"].endswith("plugins/cni.toml") and os.access(cni["executable"], os.X_OK)
    assert rows["bridge"]["running"]["pid"] == inst.pid("network-bridge")
    table = inst.cli("network", "plugins").stdout.splitlines()
    assert table[0].split()[:3] == ["PLUGIN", "VERSION", "STRATEGIES"]
    assert any(line.split()[0] == "cni" for line in table[1:])
