"""The plugin SDK host (container_runtime.plugin.host) around a small driver with no
kernel work: over its real socket and routes, against a real state database."""

from __future__ import annotations

import ipaddress
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from container_runtime.client import UnixClient
from container_runtime.errors import ContainerError, InvalidArgument
from container_runtime.http import SelectorHTTPServer
from container_runtime.models import Attachment, AttachmentRequest, NetworkConfiguration
from container_runtime.paths import Paths
from container_runtime.plugin import StatusReply
from container_runtime.plugin.driver import Driver
from container_runtime.plugin.host import PluginHost, build_router
from container_runtime.plugin.store import open_store


class Recorder(Driver):
    """Records what the host asks for; fails realise() for owners named `fail*`."""

    name: ClassVar[str] = "rec"
    strategies: ClassVar[tuple[str, ...]] = ("veth",)
    options: ClassVar[dict[str, tuple[str, ...]]] = {"colour": ("red", "blue")}

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def create_network(self, config: NetworkConfiguration) -> str:
        self.calls.append(("create", config.name))
        return f"br-{config.name}"

    def delete_network(self, name: str) -> None:
        self.calls.append(("delete", name))

    def realise(
        self, attachment: Attachment, request: AttachmentRequest, config: NetworkConfiguration
    ) -> str:
        self.calls.append(("realise", attachment.owner))
        # the allocation is committed before the driver is asked to build anything
        assert self.host.allocator.get(attachment.network, attachment.owner) == attachment
        if attachment.owner.startswith("fail"):
            raise ContainerError("cannot build it")
        return f"if-{attachment.owner}"

    def unrealise(self, attachment: Attachment, host_ifname: str | None) -> None:
        self.calls.append(("unrealise", f"{attachment.owner}:{host_ifname}"))


Served = tuple[PluginHost, Recorder, UnixClient]


def network(name: str, **kw: Any) -> NetworkConfiguration:
    subnet = ipaddress.IPv4Network("10.99.0.0/24")
    return NetworkConfiguration(
        name=name,
        plugin="rec",
        ipv4_subnet=subnet,
        ipv4_gateway=subnet.network_address + 1,
        **kw,
    )


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    paths = Paths(tmp_path / "root", tmp_path / "run", tmp_path / "config.toml")
    paths.run_dir.mkdir(parents=True)
    db = open_store(tmp_path / "state.db")
    driver = Recorder()
    host = PluginHost(driver, paths, db, "test", 1500)
    config = network("n1")
    with db.write() as conn:
        conn.execute(
            "INSERT INTO networks(name, config, created_at) VALUES (?, ?, '')",
            ("n1", json.dumps(config.to_json())),
        )
    sock = tmp_path / "run" / "network-rec.sock"
    server = SelectorHTTPServer(sock, build_router(host), mode=0o600)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    client = UnixClient(sock)
    client.request("GET", "/status")  # serving: a shutdown now cannot race its start
    try:
        yield host, driver, client
    finally:
        client.close()
        server.shutdown()
        server.server_close()
        thread.join()


def test_status_says_what_the_driver_offers(
    served: Served,
) -> None:
    _, _, client = served
    status = StatusReply.from_json(client.request("GET", "/status"))
    assert (status.plugin, status.strategies, status.networks) == ("rec", ("veth",), ("n1",))


def test_attach_commits_first_is_idempotent_and_released_when_realise_fails(
    served: Served,
) -> None:
    host, driver, client = served
    body = {"owner": "a", "hostname": "a", "strategy": "veth", "netns": "/run/netns/x"}
    one = client.request("POST", "/networks/n1/attachments", body)
    assert client.request("POST", "/networks/n1/attachments", body) == one
    assert driver.calls.count(("realise", "a")) == 1  # the retry built nothing again
    assert host.allocator.host_ifname("n1", "a") == "if-a"

    with pytest.raises(ContainerError, match="cannot build it"):
        client.request("POST", "/networks/n1/attachments", {**body, "owner": "fail1"})
    assert host.allocator.get("n1", "fail1") is None  # released: nothing held
    listed = client.request("GET", "/networks/n1/attachments")
    assert [a["owner"] for a in listed] == ["a"]

    client.request("DELETE", "/networks/n1/attachments/a")
    assert driver.calls[-1] == ("unrealise", "a:if-a")
    assert host.allocator.get("n1", "a") is None


def test_unknown_strategy_and_options_are_refused_with_nothing_held(
    served: Served,
) -> None:
    host, driver, _ = served
    with pytest.raises(InvalidArgument, match="unknown interface strategy 'tap'"):
        host.attach(AttachmentRequest(network="n1", owner="t", hostname="t", strategy="tap"))
    assert host.allocator.get("n1", "t") is None and ("realise", "t") not in driver.calls
    with pytest.raises(InvalidArgument, match="invalid value 'green' for option 'colour'"):
        host.create_network(network("n2", options={"colour": "green"}))
    with pytest.raises(InvalidArgument, match="plugin rec: unknown network option 'size'"):
        host.create_network(network("n2", options={"size": "big"}))
    assert host.create_network(network("n2", options={"colour": "blue"})).link == "br-n2"
    assert [c for c in driver.calls if c[0] == "create"] == [("create", "n2")]
