"""Published ports through the network helper and the kernel, with real connections:
IPv6 host addresses (one address and every address), both families for a spec without a
host IP, a 10,000-port range, and the refusal of IPv6 for a container without IPv6."""

from __future__ import annotations

import pytest
from support.instance import Instance, NetnsPool, run
from support.ports import fwd, peer_server, publish, seen_by_server

from container_runtime.errors import ContainerError

OUT_HOST6, OUT_PEER6 = "fd00:2::1", "fd00:2::2"
OUT_HOST4, OUT_PEER4 = "203.0.113.1", "203.0.113.2"


def outside(inst: Instance, pool: NetnsPool) -> str:
    """A namespace behind a veth of the instance's namespace (the outside world)."""
    ns = pool.create("out")
    host_if = f"o{ns[-8:]}"
    run(
        [
            "ip",
            "-n",
            inst.netns,
            "link",
            "add",
            host_if,
            "type",
            "veth",
            "peer",
            "eth0",
            "netns",
            ns,
        ]
    )
    for target, ifname, a4, a6 in (
        (inst.netns, host_if, OUT_HOST4, OUT_HOST6),
        (ns, "eth0", OUT_PEER4, OUT_PEER6),
    ):
        run(["ip", "-n", target, "addr", "add", f"{a4}/24", "dev", ifname])
        run(["ip", "-n", target, "addr", "add", f"{a6}/64", "dev", ifname, "nodad"])
        run(["ip", "-n", target, "link", "set", ifname, "up"])
    return ns


def test_ipv6_published_ports(instance: Instance, netns_pool: NetnsPool) -> None:
    inst, pool = instance, netns_pool
    inst.cli("network", "create", "six", "--subnet", "10.95.6.0/24", "--subnet-v6", "fd00:95::/64")
    out = outside(inst, pool)
    web = pool.create("web")
    att = inst.cli("network", "attach", "six", "--name", "web", "--netns", web).json()
    ip4 = att["address"].split("/")[0]
    server = peer_server(web)
    try:
        publish(
            inst,
            "web",
            [fwd(OUT_HOST6, 8080, ip4), fwd("::", 8081, ip4), fwd(None, 8082, ip4)],
        )
        # From outside: the client's own address reaches the container (no masquerade).
        assert seen_by_server(out, OUT_HOST6, 8080) == OUT_PEER6
        assert seen_by_server(out, OUT_HOST6, 8081) == OUT_PEER6
        assert seen_by_server(out, OUT_HOST6, 8082) == OUT_PEER6  # no host IP: IPv6 too
        assert seen_by_server(out, OUT_HOST4, 8082) == OUT_PEER4  # ... and IPv4
        assert seen_by_server(out, OUT_HOST4, 8081) is None  # [::] is IPv6 only
        # From the host itself, through a host address.
        assert seen_by_server(inst.netns, OUT_HOST6, 8080) == OUT_HOST6
        # [::1] is never DNATed (IPv6 loopback cannot leave lo): refused, not hanging.
        assert seen_by_server(inst.netns, "::1", 8081) is None
        # A member reaching its own published port through the host (hairpin).
        assert seen_by_server(web, OUT_HOST6, 8081) == "fd00:95::1"
        rules = inst.sh("nft", "list", "table", "inet", "container-bridge").stdout
        assert "fd00:2::1 . tcp . 8080 : fd00:95::" in rules
    finally:
        server.close()
    inst.cli("network", "create", "four", "--subnet", "10.95.4.0/24")
    only4 = pool.create("m")
    v4 = inst.cli("network", "attach", "four", "--name", "only4", "--netns", only4).json()
    before = inst.sh("nft", "list", "table", "inet", "container-bridge").stdout
    with pytest.raises(ContainerError, match="has no IPv6 address on its primary network"):
        publish(inst, "only4", [fwd("::", 9000, v4["address"].split("/")[0])])
    assert inst.sh("nft", "list", "table", "inet", "container-bridge").stdout == before


def test_a_10000_port_range(instance: Instance, netns_pool: NetnsPool) -> None:
    inst, pool = instance, netns_pool
    inst.cli("network", "create", "many", "--subnet", "10.95.7.0/24")
    web = pool.create("web")
    att = inst.cli("network", "attach", "many", "--name", "web", "--netns", web).json()
    ip4 = att["address"].split("/")[0]
    servers = [peer_server(web, port) for port in (30000, 34567, 39999)]
    try:
        publish(inst, "web", [{**fwd(None, 20000, ip4, 30000), "count": 10000}])
        assert seen_by_server(inst.netns, "127.0.0.1", 24567) == "10.95.7.1"
        assert seen_by_server(inst.netns, "127.0.0.1", 29999) == "10.95.7.1"
        assert seen_by_server(inst.netns, "127.0.0.1", 20000) == "10.95.7.1"
    finally:
        for server in servers:
            server.close()
