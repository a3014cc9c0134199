"""Conformance, attachments: idempotent per owner, released on detach, on container stop
and on rm, and the names of members visible in DNS (real queries) while they hold an
address.  Plugins with a container strategy are run with real containers; allocation-only
ones through bare attach/detach, and must refuse a container cleanly."""

from __future__ import annotations

import json
from typing import Any

from support.instance import Instance, assert_refused, attachments

from .conftest import World
from .helpers import dig, helper, helper_attachments
from .subjects import Subject


def owners(inst: Instance, subject: Subject) -> tuple[set[str], set[str]]:
    """Owners in the API server's record and in the plugin's own list."""
    api = {a["owner"] for a in attachments(inst, subject.network)}
    plugin = {a["owner"] for a in helper_attachments(inst, subject.plugin, subject.network)}
    return api, plugin


def test_attach_is_idempotent_per_owner_and_released_on_detach(
    world: World, subject: Subject
) -> None:
    inst, net, p = world.inst, subject.network, subject.plugin
    before = subject.kernel_objects(inst)
    one = inst.cli("network", "attach", net, "--name", f"idem-{p}").json()
    assert inst.cli("network", "attach", net, "--name", f"idem-{p}").json() == one
    client = helper(inst, p)
    try:  # the helper itself answers a repeated request with the same attachment
        body = {"owner": f"idem-{p}", "hostname": f"idem-{p}", "interface": "eth0"}
        again = client.request("POST", f"/networks/{net}/attachments", body)
    finally:
        client.close()
    assert (again["address"], again["macAddress"]) == (one["address"], one["macAddress"])
    two = inst.cli("network", "attach", net, "--name", f"other-{p}").json()
    assert two["address"] != one["address"] and two["macAddress"] != one["macAddress"]
    assert owners(inst, subject) == ({f"idem-{p}", f"other-{p}"},) * 2
    assert dig(inst, f"idem-{p}.test") == ("NOERROR", [one["address"].split("/")[0]])
    for name in (f"idem-{p}", f"other-{p}"):
        inst.cli("network", "detach", net, "--name", name)
    assert owners(inst, subject) == (set(), set())
    assert dig(inst, f"idem-{p}.test")[0] == "NXDOMAIN"
    assert subject.kernel_objects(inst) == before
    assert_refused(
        inst.cli("network", "detach", net, "--name", f"idem-{p}", check=False), f"idem-{p}"
    )


def inspect(inst: Instance, name: str) -> dict[str, Any]:
    return dict(json.loads(inst.cli("inspect", name, "--format", "json").stdout))


def nslookup(inst: Instance, container: str, name: str, server: str) -> str:
    return inst.cli("exec", container, "nslookup", name, server, check=False).stdout


def test_containers_hold_an_address_until_stop_and_rm(world: World, subject: Subject) -> None:
    inst, net, p = world.inst, subject.network, subject.plugin
    image = world.image
    assert image is not None
    if not subject.containers:  # an allocation-only plugin refuses a container, holding nothing
        result = inst.cli(
            "run", "-d", "--name", f"c1-{p}", "--network", net, image, "true", check=False
        )
        assert_refused(result)
        assert owners(inst, subject) == (set(), set())
        assert inst.cli("ls", "-a", "-q").stdout.split() == []
        return
    before = subject.kernel_objects(inst)
    try:
        for name in (f"c1-{p}", f"c2-{p}"):
            inst.cli("run", "-d", "--name", name, "--network", net, image, "sleep", "600")
        c1, c2 = inspect(inst, f"c1-{p}"), inspect(inst, f"c2-{p}")
        assert owners(inst, subject) == ({c1["id"], c2["id"]},) * 2
        att1 = next(a for a in attachments(inst, net) if a["owner"] == c1["id"])
        a1, a2 = (c["networks"][0]["address"].split("/")[0] for c in (c1, c2))
        assert a1 != a2
        # The start's request again (a retry after a lost reply): the same attachment,
        # nothing built twice.
        held = {a["owner"]: a for a in helper_attachments(inst, p, net)}[c1["id"]]
        kernel = subject.kernel_objects(inst)
        client = helper(inst, p)
        try:
            again = client.request(
                "POST",
                f"/networks/{net}/attachments",
                {
                    "owner": c1["id"],
                    "hostname": f"c1-{p}",
                    "interface": "eth0",
                    "netns": held["netns"],
                    "strategy": subject.container_strategy,
                    "primary": True,
                },
            )
        finally:
            client.close()
        assert (again["address"], again["macAddress"]) == (held["address"], held["macAddress"])
        assert subject.kernel_objects(inst) == kernel
        # Names resolve from inside a member (its DNS server) and from the host.
        assert a1 in nslookup(inst, f"c2-{p}", f"c1-{p}", subject.dns_server(att1))
        assert dig(inst, f"c2-{p}.test") == ("NOERROR", [a2])

        inst.cli("stop", "-t", "1", f"c1-{p}")
        assert owners(inst, subject) == ({c2["id"]},) * 2
        assert dig(inst, f"c1-{p}.test")[0] == "NXDOMAIN"
        assert c1["id"] not in json.dumps(subject.kernel_objects(inst))  # its link is gone
        inst.cli("start", f"c1-{p}")
        assert owners(inst, subject) == ({c1["id"], c2["id"]},) * 2

        inst.cli("rm", "-f", f"c1-{p}", f"c2-{p}")
        assert owners(inst, subject) == (set(), set())
        assert dig(inst, f"c2-{p}.test")[0] == "NXDOMAIN"
        assert subject.kernel_objects(inst) == before
    finally:
        inst.cli("rm", "-f", f"c1-{p}", f"c2-{p}", check=False)
