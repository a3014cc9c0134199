"""Conformance, crashes and neighbours: what a helper replied survives its SIGKILL
(commit before reply), its restart reconciles to a consistent world (no duplicate
address, no leaked one, no orphan link or rule), and two plugins side by side never touch
each other's links, nft tables or attachments."""

from __future__ import annotations

import json
import os
import signal

from support.instance import Instance, attachments

from .conftest import World
from .helpers import dig, helper, helper_attachments, kill_helper
from .subjects import Subject


def test_commit_before_reply_and_reconcile_after_sigkill(world: World, subject: Subject) -> None:
    inst, net, p = world.inst, subject.network, subject.plugin
    before = subject.kernel_objects(inst)
    given = {
        f"k{i}-{p}": inst.cli("network", "attach", net, "--name", f"k{i}-{p}").json()
        for i in range(3)
    }
    # One request straight to the helper, SIGKILLed the moment it has replied.
    client = helper(inst, p)
    try:
        body = {"owner": f"k3-{p}", "hostname": f"k3-{p}", "interface": "eth0"}
        given[f"k3-{p}"] = client.request("POST", f"/networks/{net}/attachments", body)
    finally:
        client.close()
    kill_helper(inst, p, net)
    listed = {a["owner"]: a for a in helper_attachments(inst, p, net)}
    assert set(listed) == set(given), "no attachment lost, none added"
    for owner, reply in given.items():
        assert (listed[owner]["address"], listed[owner]["macAddress"]) == (
            reply["address"],
            reply["macAddress"],
        )
    # No duplicate: a new owner gets an address nobody holds.
    fresh = inst.cli("network", "attach", net, "--name", f"k4-{p}").json()
    assert fresh["address"] not in {a["address"] for a in given.values()}
    # No leak: releasing everything leaves the plugin holding nothing, kernel as before.
    for owner in [*given, f"k4-{p}"]:
        if owner in {a["owner"] for a in attachments(inst, net)}:
            inst.cli("network", "detach", net, "--name", owner)
        else:  # k3 went straight to the helper: the API server may not record it
            helper(inst, p).request("DELETE", f"/networks/{net}/attachments/{owner}")
    assert helper_attachments(inst, p, net) == [] and attachments(inst, net) == []
    assert subject.kernel_objects(inst) == before


def test_plugins_side_by_side_leave_each_other_alone(world: World, subject: Subject) -> None:
    inst, p = world.inst, subject.plugin
    others = world.other(subject)
    assert others, "the suite needs at least two plugins"
    held = {
        o.plugin: inst.cli("network", "attach", o.network, "--name", f"side-{o.plugin}").json()
        for o in others
    }
    theirs = {o.plugin: o.kernel_objects(inst) for o in others}
    try:
        # The subject creates, reloads, crashes and deletes a network of its own ...
        inst.cli(
            "network",
            "create",
            f"x-{p}",
            "--plugin",
            p,
            "--subnet",
            "10.98.0.0/24",
            *subject.create_args,
        )
        inst.cli("network", "attach", f"x-{p}", "--name", f"side-{p}")
        inst.cli("network", "reload")
        kill_helper(inst, p, subject.network)
        inst.cli("network", "detach", f"x-{p}", "--name", f"side-{p}")
        inst.cli("network", "delete", f"x-{p}")
        # ... and the others' links, tables and attachments are as they were.
        for o in others:
            assert o.kernel_objects(inst) == theirs[o.plugin], o.plugin
            got = {a["owner"]: a for a in helper_attachments(inst, o.plugin, o.network)}
            assert got[f"side-{o.plugin}"]["address"] == held[o.plugin]["address"]
            assert set(got) == {f"side-{o.plugin}"}
            status = helper(inst, o.plugin).request("GET", "/status")
            assert f"x-{p}" not in status["networks"]
    finally:
        for o in others:
            inst.cli("network", "detach", o.network, "--name", f"side-{o.plugin}", check=False)
        inst.cli("network", "delete", f"x-{p}", check=False)


def test_members_across_a_helper_sigkill_and_a_release_while_it_restarts(
    world: World, subject: Subject
) -> None:
    """Members (real containers for a plugin with a container strategy, bare
    attachments otherwise) keep their
    address and kernel objects across a SIGKILL of the helper; one released while the
    helper restarts is released once it is back, leaving no orphan."""
    inst, net, p = world.inst, subject.network, subject.plugin
    before = subject.kernel_objects(inst)
    names = [f"r1-{p}", f"r2-{p}"]
    owners: dict[str, str] = {}
    try:
        for name in names:
            if subject.containers:
                assert world.image is not None
                inst.cli("run", "-d", "--name", name, "--network", net, world.image, "sleep", "600")
                owners[name] = inspect_id(inst, name)
            else:
                inst.cli("network", "attach", net, "--name", name)
                owners[name] = name
        held = {a["owner"]: a["address"] for a in attachments(inst, net)}
        assert set(held) == set(owners.values())
        pid = inst.pid(f"network-{p}")
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        if subject.containers:  # the API server waits for the restarted helper to release it
            inst.cli("stop", "-t", "1", names[0])
        else:
            inst.cli("network", "detach", net, "--name", names[0])
        after = helper_attachments(inst, p, net)  # answers again
        assert {a["owner"]: a["address"] for a in after} == {
            owners[names[1]]: held[owners[names[1]]]
        }
        assert {a["owner"] for a in attachments(inst, net)} == {owners[names[1]]}
        assert dig(inst, f"{names[0]}.test")[0] == "NXDOMAIN"
        assert dig(inst, f"{names[1]}.test") == ("NOERROR", [held[owners[names[1]]].split("/")[0]])
        kernel = json.dumps(subject.kernel_objects(inst))
        assert owners[names[0]] not in kernel  # no orphan of the released member
        if subject.containers:
            assert owners[names[1]] in kernel  # the live member's link was kept
    finally:
        if subject.containers:
            inst.cli("rm", "-f", *names, check=False)
        else:
            for name in names:
                inst.cli("network", "detach", net, "--name", name, check=False)
    assert helper_attachments(inst, p, net) == []
    assert subject.kernel_objects(inst) == before


def inspect_id(inst: Instance, name: str) -> str:
    return str(json.loads(inst.cli("inspect", name, "--format", "json").stdout)["id"])
