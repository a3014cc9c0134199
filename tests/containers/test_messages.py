"""Errors from the helpers and runc name containers by id; users see their names."""

from __future__ import annotations

from container_runtime.apiserver.containers import name_containers

WEB = "77fd5a7ae96747321225398ab3ad258002afa98b962fa32f0140d706049d2125"
DB = "0123456789abcdef" * 4


def test_ids_become_names_once() -> None:
    names = {WEB: "web", DB: "db"}
    assert (
        name_containers(f"starting container {WEB} failed: runc create failed", names)
        == "starting container web failed: runc create failed"
    )
    assert (
        name_containers(f"port 8080/tcp is taken by container {DB[:12]}", names)
        == "port 8080/tcp is taken by container db"
    )
    assert name_containers(f"owner {WEB} has no address", names) == (
        "owner container web has no address"
    )


def test_unknown_ids_and_other_text_are_left_alone() -> None:
    other = "f" * 64
    message = f"container {other} not found; cannot parse 'deadbeef'"
    assert name_containers(message, {WEB: "web"}) == message
