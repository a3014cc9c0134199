"""Conformance, published ports: a plugin that publishes them (`ports=True`) makes a
member's port reachable on the host and takes the rules away with the member; one that
does not refuses a publish request in the error shape, holding nothing."""

from __future__ import annotations

import time

from support.instance import assert_refused

from .conftest import World
from .helpers import conforms_to_error, helper_attachments, raw
from .subjects import Subject

HOST_PORT = 18080
HELLO = "hello from busybox"  # the test image's default command serves it on port 80


def fetch(world: World) -> str:
    got = world.inst.sh(
        "timeout",
        "3",
        "busybox",
        "wget",
        "-q",
        "-O",
        "-",
        f"http://127.0.0.1:{HOST_PORT}/",
        check=False,
    )
    return got.stdout.strip() if got.returncode == 0 else ""


def test_published_ports_follow_the_member(world: World, subject: Subject) -> None:
    inst, net, p = world.inst, subject.network, subject.plugin
    assert world.image is not None
    forwards = {
        "forwards": [
            {
                "protocol": "tcp",
                "hostIP": None,
                "hostPort": HOST_PORT,
                "containerIP": "10.0.0.2",
                "containerPort": 80,
            }
        ]
    }
    if not subject.ports:
        code, reply = raw(inst.run_dir / f"network-{p}.sock", "PUT", "/portforwards/x", forwards)
        assert (code, reply["error"]) == (400, "invalid_argument"), reply
        conforms_to_error(reply)
        if subject.containers:  # a container asking for it is refused, holding nothing
            result = inst.cli(
                "run",
                "-d",
                "--name",
                f"p-{p}",
                "--network",
                net,
                "-p",
                f"{HOST_PORT}:80",
                world.image,
                check=False,
            )
            assert_refused(result)
            assert helper_attachments(inst, p, net) == []
        return
    before = subject.kernel_objects(inst)
    name = f"p-{p}"
    try:
        inst.cli(
            "run", "-d", "--name", name, "--network", net, "-p", f"{HOST_PORT}:80", world.image
        )
        deadline = time.monotonic() + 10
        while (page := fetch(world)) != HELLO and time.monotonic() < deadline:
            time.sleep(0.2)  # httpd needs a moment after start
        assert page == HELLO
        assert subject.kernel_objects(inst) != before  # its rules and link exist
    finally:
        inst.cli("rm", "-f", name, check=False)
    assert fetch(world) == ""
    assert subject.kernel_objects(inst) == before  # rules gone with the member
