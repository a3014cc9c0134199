"""The DNS server's answer tables for the names of issue 14, on a snapshot built in memory
(the same code the server's hot path reads): host.container.internal per listener
network (A and AAAA), a container's --hostname beside its name, dns=false networks left
out, and a network's own upstreams parsed from its options."""

from __future__ import annotations

import ipaddress
import json

from container_runtime.dns import wire
from container_runtime.dns.forward import Upstream
from container_runtime.dns.records import Snapshot, _network_info, build_snapshot, record_names

CID = "c" * 64
V4, V6 = ipaddress.IPv4Address, ipaddress.IPv6Address


def _net(name: str, subnet: str, v6: str | None = None, **options: str) -> str:
    return json.dumps(
        {"name": name, "ipv4Subnet": subnet, "ipv6Subnet": v6, "options": options, "mode": "nat"}
    )


def _snapshot() -> Snapshot:
    networks = {
        "a": _network_info("a", _net("a", "10.1.0.0/24", "fd00:1::/64")),
        "b": _network_info("b", _net("b", "10.2.0.0/24")),
        "off": _network_info("off", _net("off", "10.3.0.0/24", dns="false")),
    }
    rows = [
        ("a", CID, "www.test.", int(V4("10.1.0.5")), None, "web"),
        ("b", CID, "web.test.", int(V4("10.2.0.5")), None, "web"),
        ("off", "d" * 64, "hidden.test.", int(V4("10.3.0.5")), None, "hidden"),
    ]
    return build_snapshot(networks, rows, "test", 5)


def test_host_names_answer_the_listener_networks_gateway() -> None:
    snap = _snapshot()
    a = snap.table("a", frozenset({"a", "b"}))
    b = snap.table("b", frozenset({"a", "b"}))
    for name in ("host.container.internal", "host.docker.internal"):
        entry = a._make(name, wire.QTYPE_A)
        assert entry is not None and entry.answers == wire.rr_a(5, V4("10.1.0.1"))
        entry = a._make(name, wire.QTYPE_AAAA)
        assert entry is not None and entry.answers == wire.rr_aaaa(5, V6("fd00:1::1"))
        entry = b._make(name, wire.QTYPE_A)
        assert entry is not None and entry.answers == wire.rr_a(5, V4("10.2.0.1"))
        empty = b._make(name, wire.QTYPE_AAAA)  # no IPv6 on b: NOERROR, no record
        assert empty is not None and (empty.rcode, empty.ancount) == (wire.RCODE_NOERROR, 0)
        assert snap.is_local(name)
    host = snap.table(None, snap.all_networks)
    assert host._make("host.container.internal", wire.QTYPE_A) is None  # NXDOMAIN there


def test_hostname_and_container_name_and_dns_off() -> None:
    snap = _snapshot()
    table = snap.table("a", frozenset({"a", "b", "off"}))

    def a_records(name: str) -> int:
        entry = table._make(name, wire.QTYPE_A)
        return 0 if entry is None else entry.ancount

    assert a_records("www") == 1 and a_records("www.test") == 1  # only on a (eth0)
    assert a_records("web") == 2 and a_records("web.test") == 2  # its name on both
    assert a_records("hidden") == 0  # a dns=false network's names are never answered
    assert "off" not in snap.listen_addresses()
    names, fqdn, qnames = record_names(CID, "www.test.", "web", "test", ("test",))
    assert names == ("www", "web") and fqdn == "www.test"
    assert set(qnames) == {"www", "www.test", "web", "web.test"}


def test_network_upstreams_from_options() -> None:
    info = _network_info("f", _net("f", "10.4.0.0/24", **{"dns-server": "10.0.0.53,fd00::53"}))
    assert info.upstreams == (Upstream("10.0.0.53"), Upstream("fd00::53"))
    assert info.dns
    bad = _network_info("g", _net("g", "10.5.0.0/24", **{"dns-server": "nonsense"}))
    assert bad.upstreams == ()
