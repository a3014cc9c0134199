"""Bad input to every command: one `Error:` line, a non-zero exit, and nothing changed.

The cases are generated from families of hostile values (shell metacharacters, unicode,
control characters, over-long names, malformed, reserved and overlapping subnets,
out-of-range MAC/MTU/ports, malformed image references, env without `=`) crossed with
the commands that take them. One container system serves them all (module scope); after
each case the networks, links, addresses, nft ruleset, state rows, mounts and namespace
files must be exactly what they were before it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from support import audit, probes
from support.instance import Instance, Result

from .conftest import System

HOLD_NET = "holdnet"
HOLD_SUBNET = "10.62.0.0/24"
HOLD_MAC = "02:00:00:00:62:09"
HOLDER = "holder"
IMAGE = "{image}"  # replaced by the registry reference at run time
HOLDER_ID = "{holder-id}"  # replaced by the holder container's id

SHELL = ["a;rm -rf /", "$(id)", "`id`", "a|b", "a&&b", "a>b", "a b", "'a'", '"a"', "a*", "~root"]
UNICODE = ["ñet", "网络", "😀", "a\u202eb", "a\u200bb", "ＡＢＣ", "é" * 10]
CONTROL = ["a\nb", "a\rb", "a\r\nX-Injected: 1", "a\tb", "a\x1bb", "a\x7fb"]
LONG = ["a" * 64, "a" * 300, "a" * 5000]
PATHLIKE = ["../etc", "a/b", "/abs", ".", "..", "a%2fb", "a?b=c", "a#b"]
BAD_NAMES = SHELL[::2] + UNICODE[::2] + CONTROL + LONG + PATHLIKE[::2] + ["", "-", "_a", "Upper"]

BAD_SUBNETS = [
    "",
    "10.0.0.0",
    "10.0.0.0/33",
    "10.0.0.0/7",
    "10.0.0.0/30",
    "300.1.1.0/24",
    "abc/24",
    "10.0.0.0/24/24",
    "10.0.0.0/-1",
    "127.0.0.0/8",
    "127.0.0.0/24",
    "0.0.0.0/8",
    "169.254.0.0/24",
    "224.0.0.0/24",
    "240.0.0.0/24",
    "255.255.255.0/24",
    "fd00::/64",
    HOLD_SUBNET,  # overlaps holdnet exactly
    "10.62.0.128/25",  # inside holdnet
    "10.0.0.0/8",  # contains holdnet
]
BAD_SUBNETS_V6 = [
    "",
    "fe80::/64",
    "ff00::/64",
    "::1/128",
    "::/64",
    "fd00::/48",
    "10.0.0.0/24",
    "zz::/64",
]
BAD_MACS = [
    "",
    "zz",
    "01:00:00:00:00:01",
    "00:00:00:00:00:00",
    "ff:ff:ff:ff:ff:ff",
    "02:00:00:00:00",
    "02:00:00:00:00:00:00",
    "02:00:00:00:00:0g",
    "02-00:00:00:00:01",
    "02:00:00:00:00:01;id",
]
BAD_MTUS = ["0", "-1", "1279", "65536", "abc", "1e3", "99999999999999999999", ""]
BAD_PORTS = [
    "0:80",
    "65536:80",
    "80:0",
    "80:65536",
    "-1:80",
    "a:b",
    "80:80/sctp",
    "8080:80/",
    "10.99.99.99:8080:80",  # not an address of this host
    "1.2.3:80:80",
    "8000-7990:80-70",
    "80",
    ":80",
    "80:",
    "80:80:80:80",
    "8000-8001:80",
]
BAD_IMAGES = [
    "Bad Ref",
    "UPPER/case",
    "a@sha256:zz",
    "a:",
    ":tag",
    "a//b",
    "a:b:c:d",
    "a\nb",
    "$(id)",
    "😀",
    "a" * 300,
]
BAD_ENV = ["FOO", "=x", "", "="]
BAD_DOMAINS = ["a..b", "-a", "a_b", "ü.test", "x" * 300, "a b", "$(id)", "", "."]


def _cases() -> list[tuple[str, list[str]]]:
    cases: list[tuple[str, list[str]]] = []

    def add(label: str, *argv: str) -> None:
        cases.append((label, list(argv)))

    for i, name in enumerate(BAD_NAMES):
        add(f"network-create-name-{i}", "network", "create", name)
    # Each command that takes a name gets a few of each family (a rotating pick).
    picks = [SHELL[0], SHELL[1], CONTROL[0], CONTROL[2], UNICODE[0], LONG[1], PATHLIKE[0]]
    for i, name in enumerate(picks):
        add(f"attach-name-{i}", "network", "attach", HOLD_NET, "--name", name)
        add(f"run-name-{i}", "run", "-d", "--name", name, IMAGE)
    for i, name in enumerate(picks[2:6]):
        add(f"network-inspect-{i}", "network", "inspect", name)
        add(f"network-rm-{i}", "network", "rm", name)
        add(f"attach-net-{i}", "network", "attach", name, "--name", "x1")
        add(f"detach-name-{i}", "network", "detach", HOLD_NET, "--name", name)
    verbs = ("start", "stop", "kill", "rm", "inspect", "logs", "exec")
    for i, name in enumerate(picks):
        verb = verbs[i % len(verbs)]
        add(f"{verb}-{i}", verb, name, *(["true"] if verb == "exec" else []))
    for i, subnet in enumerate(BAD_SUBNETS):
        add(f"subnet-{i}", "network", "create", f"badsub{i}", "--subnet", subnet)
    for i, subnet in enumerate(BAD_SUBNETS_V6):
        add(f"subnet6-{i}", "network", "create", f"badsix{i}", "--subnet-v6", subnet)
    add(
        "gateway-outside",
        "network",
        "create",
        "badgw",
        "--subnet",
        "10.63.0.0/24",
        "--gateway",
        "10.64.0.1",
    )
    add(
        "gateway-network",
        "network",
        "create",
        "badgw",
        "--subnet",
        "10.63.0.0/24",
        "--gateway",
        "10.63.0.0",
    )
    add("gateway-no-subnet", "network", "create", "badgw", "--gateway", "10.63.0.1")
    add("plugin-empty", "network", "create", "badplug", "--plugin", "")
    add("plugin-unknown", "network", "create", "badplug", "--plugin", "nosuch")
    add("plugin-shell", "network", "create", "badplug", "--plugin", "$(id)")
    add("option-unknown", "network", "create", "badopt", "--option", "color=red")
    add("option-noeq", "network", "create", "badopt", "--option", "variant")
    add("option-value", "network", "create", "badopt", "--option", "variant=open")
    add("label-noeq", "network", "create", "badlab", "--label", "nokey")
    add("label-key", "network", "create", "badlab", "--label", "=v")
    add("label-ctl", "network", "create", "badlab", "--label", "k=a\nb")
    add("create-existing", "network", "create", HOLD_NET)
    add("create-default", "network", "create", "default")
    add("create-reserved", "network", "create", "none")
    add("rm-default", "network", "rm", "default")
    add("rm-in-use", "network", "rm", HOLD_NET)
    for i, mac in enumerate(BAD_MACS):
        add(f"attach-mac-{i}", "network", "attach", HOLD_NET, "--name", f"m{i}", "--mac", mac)
        if i % 3 == 0:
            add(f"run-mac-{i}", "run", "-d", "--network", f"{HOLD_NET},mac={mac}", IMAGE)
    add("attach-mac-taken", "network", "attach", HOLD_NET, "--name", "mt", "--mac", HOLD_MAC)
    add("run-mac-taken", "run", "-d", "--network", f"{HOLD_NET},mac={HOLD_MAC}", IMAGE)
    add(
        "attach-netns-missing",
        "network",
        "attach",
        HOLD_NET,
        "--name",
        "nn",
        "--netns",
        "nosuch-ns",
    )
    add(
        "attach-netns-path", "network", "attach", HOLD_NET, "--name", "nn", "--netns", "/etc/passwd"
    )
    add("attach-iface", "network", "attach", HOLD_NET, "--name", "ni", "--interface", "a/b")
    add("attach-iface-long", "network", "attach", HOLD_NET, "--name", "ni", "--interface", "x" * 20)
    for i, mtu in enumerate(BAD_MTUS):
        add(f"attach-mtu-{i}", "network", "attach", HOLD_NET, "--name", f"u{i}", "--mtu", mtu)
        if i % 3 == 0:
            add(f"run-mtu-{i}", "run", "-d", "--network", f"{HOLD_NET},mtu={mtu}", IMAGE)
    for i, spec in enumerate(
        [
            "",
            ",",
            "holdnet,",
            "holdnet,color=red",
            "holdnet,mac",
            "none,mtu=1500",
            "holdnet,mtu=1500,mtu=1500",
            "nosuch",
            "$(id)",
            "a\nb",
        ]
    ):
        add(f"run-network-{i}", "run", "-d", "--network", spec, IMAGE)
    add("run-none-plus", "run", "-d", "--network", "none", "--network", HOLD_NET, IMAGE)
    add("run-net-twice", "run", "-d", "--network", HOLD_NET, "--network", HOLD_NET, IMAGE)
    for i, spec in enumerate(BAD_PORTS):
        add(f"run-port-{i}", "run", "-d", "--network", HOLD_NET, "-p", spec, IMAGE)
    add(
        "run-port-twice",
        "run",
        "-d",
        "--network",
        HOLD_NET,
        "-p",
        "8000:80",
        "-p",
        "8000:81",
        IMAGE,
    )
    for i, ref in enumerate(BAD_IMAGES):
        add(f"run-image-{i}", "run", "-d", ref)
        if i % 3 == 0:
            add(f"pull-image-{i}", "image", "pull", ref)
    for i, ref in enumerate(BAD_IMAGES[:2]):
        add(f"image-inspect-{i}", "image", "inspect", ref)
        add(f"image-rm-{i}", "image", "rm", ref)
    add("image-rm-in-use", "image", "rm", IMAGE)
    add("image-load-missing", "image", "load", "-i", "/nonexistent/archive.tar")
    add("image-load-notar", "image", "load", "-i", "/etc/hostname")
    for i, env in enumerate(BAD_ENV):
        add(f"run-env-{i}", "run", "-d", "--network", HOLD_NET, "-e", env, IMAGE)
    for i, env in enumerate(BAD_ENV[:2]):
        add(f"exec-env-{i}", "exec", "-e", env, HOLDER, "true")
    add("run-dns", "run", "-d", "--dns", "not-an-ip", IMAGE)
    add("run-dns-domain", "run", "-d", "--dns-domain", "a..b", IMAGE)
    add("run-name-taken", "run", "-d", "--name", HOLDER, IMAGE)
    add("kill-signal", "kill", "-s", "NOPE", HOLDER)
    add("kill-signal-num", "kill", "-s", "99999", HOLDER)
    add("start-running", "start", HOLDER)
    add("rm-running", "rm", HOLDER)
    add("stop-time", "stop", "-t", "abc", HOLDER)
    for i, domain in enumerate(BAD_DOMAINS):
        add(f"dns-create-{i}", "system", "dns", "create", domain)
    for i, domain in enumerate(BAD_DOMAINS[:3]):
        add(f"dns-delete-{i}", "system", "dns", "delete", domain)
    add("unknown-command", "frobnicate")
    add("unknown-flag", "network", "ls", "--frob")
    add("bad-format", "network", "ls", "--format", "xml")
    add("ls-bad-format", "ls", "--format", "yaml")
    add("missing-arg", "network", "attach", HOLD_NET)
    # Last, one at a time: if wrongly accepted these damage the holder (defect: the bare
    # calls detach a container's interface), which nothing can undo for later cases.
    add("attach-container-owner", "network", "attach", HOLD_NET, "--name", HOLDER)
    add("detach-container-owner", "network", "detach", HOLD_NET, "--name", HOLDER)
    add("attach-container-id", "network", "attach", HOLD_NET, "--name", HOLDER_ID)
    add("detach-container-id", "network", "detach", HOLD_NET, "--name", HOLDER_ID)
    return cases


SERIAL_TAIL = 4  # the last cases above run one at a time


CASES = _cases()


@dataclass
class Baseline:
    system: System
    picture: dict[str, Any]
    holder_id: str


@pytest.fixture(scope="module")
def baseline(system: System) -> Iterator[Baseline]:
    inst = system.inst
    inst.cli("network", "create", HOLD_NET, "--subnet", HOLD_SUBNET)
    holder = inst.cli(
        "run", "-d", "--name", HOLDER, "--network", f"{HOLD_NET},mac={HOLD_MAC}", system.image
    ).stdout.strip()
    try:
        yield Baseline(system, audit.snapshot(inst), holder)
    finally:
        inst.cli("rm", "-f", HOLDER, check=False)
        inst.cli("network", "rm", HOLD_NET, check=False)


def _restore(inst: Instance, before: dict[str, Any]) -> None:
    """Undo whatever a wrongly accepted input made, so later cases start from the baseline."""
    rows = audit.state_rows(inst)
    old_containers = {r[0] for r in before["rows"]["containers"]}
    for row in rows["containers"]:
        if row[0] not in old_containers:
            inst.cli("rm", "-f", row[0], check=False)
    old_atts = {(r[0], r[1]) for r in before["rows"]["attachments"]}
    for row in rows["attachments"]:
        if (row[0], row[1]) not in old_atts:
            inst.cli("network", "detach", row[0], "--name", row[1], check=False)
    old_nets = {r[0] for r in before["rows"]["networks"]}
    for row in rows["networks"]:
        if row[0] not in old_nets:
            inst.cli("network", "rm", row[0], check=False)
    for row in rows["dns_domains"]:
        if row[0] not in {r[0] for r in before["rows"]["dns_domains"]}:
            inst.cli("system", "dns", "delete", row[0], check=False)


@dataclass
class Outcome:
    result: Result
    changed: list[str]


BATCH = 8


@pytest.fixture(scope="module")
def outcomes(baseline: Baseline) -> dict[str, Outcome]:
    """Every case's result and what it changed. Cases run in parallel batches (the CLI
    is a process each, and 2 cores are shared); a batch that changed anything is undone
    and run again one case at a time, so each change is blamed on the case that made it."""
    system = baseline.system
    inst = system.inst

    def call(argv: list[str]) -> Result:
        values = {IMAGE: system.image, HOLDER_ID: baseline.holder_id}
        argv = [values.get(a, a) for a in argv]
        return inst.cli(*argv, check=False, timeout=60)

    reference = baseline.picture
    found: dict[str, Outcome] = {}
    head = len(CASES) - SERIAL_TAIL
    batches = [CASES[i : min(i + BATCH, head)] for i in range(0, head, BATCH)]
    batches += [[case] for case in CASES[head:]]
    for batch in batches:
        results = probes.parallel([lambda a=argv: call(a) for _, argv in batch], workers=4)
        # Serially again if anything changed, or was accepted (an accepted case can undo
        # another's change in the same batch, or make it fail for the wrong reason).
        accepted = any(r.returncode == 0 for r in results)
        if not accepted and not audit.diff(reference, audit.snapshot(inst)):
            found.update(
                (label, Outcome(r, [])) for (label, _), r in zip(batch, results, strict=True)
            )
            continue
        _restore(inst, reference)
        reference = audit.snapshot(inst)
        for label, argv in batch:
            result = call(argv)
            changed = audit.diff(reference, audit.snapshot(inst))
            if changed:
                _restore(inst, reference)
                reference = audit.snapshot(inst)
            found[label] = Outcome(result, changed)
    return found


def test_at_least_100_cases() -> None:
    assert len(CASES) >= 100, len(CASES)
    assert len({label for label, _ in CASES}) == len(CASES)


@pytest.mark.parametrize("label", [label for label, _ in CASES])
def test_bad_input_is_refused_in_one_line_and_changes_nothing(
    outcomes: dict[str, Outcome], label: str
) -> None:
    result, changed = outcomes[label].result, outcomes[label].changed
    assert result.returncode != 0, f"accepted: {result.stdout!r}"
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert not changed, f"changed: {changed}"
