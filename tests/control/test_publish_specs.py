"""`-p/--publish` specs: IPv6 host addresses in brackets, protocol names in any case,
ranges of any size, at most 64 specs, and [::1] refused with the reason."""

from __future__ import annotations

import ipaddress

import pytest

from container_runtime.container_config import ContainerConfig, PortMapping
from container_runtime.errors import InvalidArgument


def test_ipv6_hosts_protocol_case_and_big_ranges() -> None:
    [any6] = PortMapping.parse("[::]:8080:80")
    assert any6.host_ip == ipaddress.IPv6Address("::") and any6.host_port == 8080
    [one6] = PortMapping.parse("[fd00::1]:8080:80/UDP")
    assert (one6.host_ip, one6.protocol) == (ipaddress.IPv6Address("fd00::1"), "udp")
    assert PortMapping.parse("8080:80/Tcp")[0].protocol == "tcp"
    assert PortMapping.from_json(one6.to_json()) == one6
    full = PortMapping.parse("1-65535:1-65535")
    assert len(full) == 65535 and (full[-1].host_port, full[-1].container_port) == (65535, 65535)
    assert len(PortMapping.parse("[fd00::1]:20000-29999:20000-29999")) == 10000
    for bad in ("[::1", "[nothing]:80:80", "[::]80:80", "[10.0.0.1]:80:80", "[::]:80"):
        with pytest.raises(InvalidArgument, match="invalid publish spec"):
            PortMapping.parse(bad)
    with pytest.raises(InvalidArgument, match=r"cannot publish on \[::1\].*loopback"):
        PortMapping.parse("[::1]:8080:80")


def test_at_most_64_publish_specs() -> None:
    ok = ContainerConfig.parse({"publish": [f"{8000 + i}:80" for i in range(64)]}, "test")
    assert len(ok.ports) == 64
    with pytest.raises(InvalidArgument, match="too many --publish options \\(65\\): at most 64"):
        ContainerConfig.parse({"publish": [f"{8000 + i}:80" for i in range(65)]}, "test")


def test_the_same_host_port_twice_is_refused_per_ip_version() -> None:
    ok = ContainerConfig.parse(
        {"publish": ["0.0.0.0:80:80", "[::]:80:81", "127.0.0.1:81:80", "10.0.0.1:81:81"]}, "t"
    )
    assert len(ok.ports) == 4
    for twice in (
        ["8080:80", "[::]:8080:81"],
        ["8080:80", "127.0.0.1:8080:81"],
        ["[fd00::1]:8080:80", "[fd00::1]:8080:81"],
        ["[::]:8080:80", "[fd00::1]:8080:81"],
    ):
        with pytest.raises(InvalidArgument, match="published twice"):
            ContainerConfig.parse({"publish": twice}, "t")
