"""Conformance, the wire: every reply of a plugin's helper matches the schema
(container_runtime/plugin/protocol.json), errors have one shape on the socket and become
one `Error:` line in the CLI, and a refused request holds nothing."""

from __future__ import annotations

from support.instance import assert_refused, attachments

from container_runtime.plugin import PROTOCOL_VERSION, StatusReply

from .conftest import SUBJECTS, World
from .helpers import conforms, conforms_to_error, helper, raw
from .subjects import Subject


def test_status_and_replies_conform_to_the_schema(world: World, subject: Subject) -> None:
    inst, net = world.inst, subject.network
    client = helper(inst, subject.plugin)
    try:
        status = client.request("GET", "/status")
        conforms("GET /status", status)
        parsed = StatusReply.from_json(status)
        assert parsed.plugin == subject.plugin and parsed.protocol == PROTOCOL_VERSION
        assert sorted(parsed.strategies) == sorted(subject.strategies)
        others = {s.network for s in SUBJECTS} - {net}
        assert net in parsed.networks and not others & set(parsed.networks)  # its own only
        # POST /networks again (idempotent): its kernel link under the neutral name `link`,
        # what inspect shows; `bridge` there is the bridge plugin's alone
        shown = inst.cli("network", "inspect", net).json()
        built = client.request("POST", "/networks", shown["configuration"])
        conforms("POST /networks", built)
        assert "link" in built and "bridge" not in built
        assert shown["status"]["link"] == built["link"]
        assert ("bridge" in shown["status"]) == (subject.plugin == "bridge")
        body = {"owner": "conf1", "hostname": "conf1", "interface": "eth0", "primary": True}
        conforms("POST /networks/{name}/attachments", body, "request")
        att = client.request("POST", f"/networks/{net}/attachments", body)
        conforms("POST /networks/{name}/attachments", att)
        conforms(
            "GET /networks/{name}/attachments",
            client.request("GET", f"/networks/{net}/attachments"),
        )
        conforms(
            "GET /networks/{name}/attachments/{owner}",
            client.request("GET", f"/networks/{net}/attachments/conf1"),
        )
        conforms(
            "DELETE /networks/{name}/attachments/{owner}",
            client.request("DELETE", f"/networks/{net}/attachments/conf1"),
        )
        conforms("DELETE /portforwards/{owner}", client.request("DELETE", "/portforwards/conf1"))
        conforms("POST /reload", client.request("POST", "/reload", {}))
    finally:
        client.close()


def test_errors_have_one_shape_and_hold_nothing(world: World, subject: Subject) -> None:
    inst, net = world.inst, subject.network
    sock = inst.run_dir / f"network-{subject.plugin}.sock"
    cases = [
        ("GET", f"/networks/{net}/attachments/nobody", None, 404, "not_found"),
        ("DELETE", f"/networks/{net}/attachments/nobody", None, 404, "not_found"),
        ("GET", "/networks/no-such-net/attachments/x", None, 404, "not_found"),
        ("POST", f"/networks/{net}/attachments", [1, 2], 400, "invalid_argument"),
        ("POST", f"/networks/{net}/attachments", {"hostname": "x"}, 400, "invalid_argument"),
        (
            "POST",
            f"/networks/{net}/attachments",
            {"owner": "e1", "hostname": "e1", "interface": "eth0", "strategy": "bogus"},
            400,
            "invalid_argument",
        ),
        ("GET", "/no/such/route", None, 404, "not_found"),
    ]
    for method, path, body, code, kind in cases:
        got_code, reply = raw(sock, method, path, body)
        assert (got_code, reply.get("error")) == (code, kind), (method, path, reply)
        conforms_to_error(reply)
    assert attachments(inst, net) == []  # nothing held by a refused request

    # The CLI shows a helper's refusal as one `Error:` line, and nothing is made.
    assert_refused(inst.cli("network", "detach", net, "--name", "nobody", check=False), "nobody")
    assert_refused(
        inst.cli(
            "network",
            "attach",
            net,
            "--name",
            "e2",
            "--netns",
            "nowhere",
            "--strategy",
            "bogus",
            check=False,
        ),
        "bogus",
    )
    assert_refused(
        inst.cli(
            "network",
            "create",
            "n-refused",
            "--plugin",
            subject.plugin,
            "--subnet",
            "10.99.0.0/24",
            "--option",
            "no-such-option=1",
            *subject.create_args,
            check=False,
        ),
        "no-such-option",
    )
    assert attachments(inst, net) == []
    nets = [n["id"] for n in inst.cli("network", "ls", "--format", "json").json()]
    assert "n-refused" not in nets
