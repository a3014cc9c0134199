"""The optional reservation calls of the helper protocol (static addresses), against the
built-in bridge (which has them, through the SDK host) and the out-of-tree example (which
has not): a plugin that has them holds the address for its owner only; one that has not
answers 404 `no such endpoint`, and the API server then refuses `ip=` in one line."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from support.instance import Instance, NetnsPool, assert_refused

from container_runtime.apiserver import reservations
from container_runtime.apiserver.helpers import HelperClient
from container_runtime.client import UnixClient
from container_runtime.errors import Conflict, InvalidArgument, NotFound
from container_runtime.models import AttachmentSpec
from container_runtime.plugin import schema

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "plugin-example"
NETWORKS = {"bridge": "10.78.0.0/24", "example": "10.79.0.0/24"}


def conforms(call: str, reply: Any) -> None:
    full = schema()
    jsonschema.validate(reply, {"$defs": full["$defs"], **full["calls"][call]["response"]})


@pytest.fixture(scope="module")
def plugins_side_by_side() -> Iterator[Instance]:
    pool = NetnsPool()
    base = Path(tempfile.mkdtemp(prefix="ctr-test-"))
    base.chmod(0o755)
    inst = Instance(base, pool)
    try:
        inst.env["CONTAINER_PLUGIN_PATH"] = str(EXAMPLE)
        inst.start()
        for plugin, subnet in NETWORKS.items():
            inst.cli("network", "create", f"r-{plugin}", "--plugin", plugin, "--subnet", subnet)
        yield inst
    finally:
        inst.cleanup()
        pool.cleanup()


@pytest.mark.parametrize("plugin", sorted(NETWORKS))
def test_static_reservations_are_kept_or_refused_as_unsupported(
    plugins_side_by_side: Instance, plugin: str
) -> None:
    inst, net = plugins_side_by_side, f"r-{plugin}"
    base = NETWORKS[plugin].rsplit(".", 1)[0]
    client = UnixClient(inst.run_dir / f"network-{plugin}.sock")
    path = f"/networks/{net}/reservations/res-{plugin}"
    try:
        try:
            held = client.request("PUT", path, {"address": f"{base}.77"})
        except NotFound as exc:
            assert exc.message.startswith("no such endpoint"), exc.message
            # what the API server makes of it: one line naming the plugin, nothing held
            helper = HelperClient(plugin, inst.run_dir / f"network-{plugin}.sock")
            spec = AttachmentSpec.parse(f"{net},ip={base}.9")
            with pytest.raises(InvalidArgument) as info:
                reservations.reserve(helper, "a" * 64, spec)
            assert info.value.message == (
                f"network plugin {plugin} does not support static addresses (ip=, ip6=)"
            )
            return
        conforms("PUT /networks/{name}/reservations/{owner}", held)
        assert client.request("PUT", path, {"address": f"{base}.77"}) == held  # idempotent
        listing = client.request("GET", f"/networks/{net}/reservations")
        conforms("GET /networks/{name}/reservations", listing)
        with pytest.raises(Conflict, match="reserved"):
            client.request("PUT", f"/networks/{net}/reservations/thief", {"address": f"{base}.77"})
        body = {"owner": f"res-{plugin}", "hostname": f"res-{plugin}"}
        got = client.request("POST", f"/networks/{net}/attachments", body)
        assert got["address"] == f"{base}.77/24"  # the owner gets its reservation
        other = inst.cli("network", "attach", net, "--name", "dyn").json()
        assert other["address"] != f"{base}.77/24"  # skipped by the dynamic allocator
        inst.cli("network", "detach", net, "--name", "dyn")
        client.request("DELETE", f"/networks/{net}/attachments/res-{plugin}")
        conforms("DELETE /networks/{name}/reservations/{owner}", client.request("DELETE", path))
        assert client.request("GET", f"/networks/{net}/reservations") == []
        assert_refused(
            inst.cli("network", "delete", "no-such", check=False), "network no-such not found"
        )
    finally:
        client.close()
