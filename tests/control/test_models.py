"""Validators of the resource models: every refusal is an InvalidArgument with a clear message."""

from __future__ import annotations

import ipaddress

import pytest

from container_runtime.container_config import PortMapping
from container_runtime.errors import InvalidArgument
from container_runtime.models import (
    RUNTIME_OPTIONS,
    AttachmentRequest,
    AttachmentSpec,
    NetworkConfiguration,
    parse_gateway,
    parse_ipv4_subnet,
    parse_ipv6_subnet,
    parse_key_values,
    parse_mac,
    parse_mtu,
    validate_network_name,
)
from container_runtime.netoptions import option_list, specs_from_table, validate_options


@pytest.mark.parametrize("name", ["a", "foo", "my-net.1", "a_b", "x" * 63, "0net9"])
def test_valid_network_names(name: str) -> None:
    assert validate_network_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "-a", "a-", "Foo", "a b", "a/b", "x" * 64, "é", "a;rm", ".a", "a."]
)
def test_invalid_network_names(name: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid network name"):
        validate_network_name(name)


@pytest.mark.parametrize("name", ["none", "host"])
def test_reserved_network_names(name: str) -> None:
    with pytest.raises(InvalidArgument, match="reserved"):
        validate_network_name(name)


def test_subnet_normalised_from_host_address() -> None:
    assert parse_ipv4_subnet("192.168.100.1/24") == ipaddress.IPv4Network("192.168.100.0/24")


@pytest.mark.parametrize(
    "text,why",
    [
        ("foo", "CIDR"),
        ("10.0.0.0", "CIDR"),
        ("300.1.1.0/24", "not an IPv4 network"),
        ("10.0.0.0/7", "prefix must be between /8 and /29"),
        ("10.0.0.0/30", "prefix must be between /8 and /29"),
        ("fd00::/64", "not an IPv4 network"),
    ],
)
def test_bad_subnets(text: str, why: str) -> None:
    with pytest.raises(InvalidArgument, match=why):
        parse_ipv4_subnet(text)


def test_ipv6_subnet_bounds() -> None:
    assert parse_ipv6_subnet("fd00:1::5/64") == ipaddress.IPv6Network("fd00:1::/64")
    with pytest.raises(InvalidArgument, match="/64 and /120"):
        parse_ipv6_subnet("fd00::/48")
    with pytest.raises(InvalidArgument, match="/64 and /120"):
        parse_ipv6_subnet("fd00::/121")


def test_gateway_default_and_bounds() -> None:
    net = ipaddress.IPv4Network("10.5.0.0/24")
    assert parse_gateway(None, net) == ipaddress.IPv4Address("10.5.0.1")
    assert parse_gateway("10.5.0.254", net) == ipaddress.IPv4Address("10.5.0.254")
    for bad in ("10.6.0.1", "10.5.0.0", "10.5.0.255"):
        with pytest.raises(InvalidArgument, match="not a usable host address"):
            parse_gateway(bad, net)
    with pytest.raises(InvalidArgument, match="not an IPv4 address"):
        parse_gateway("gw", net)


@pytest.mark.parametrize(
    "text,expected",
    [("02:42:AC:11:00:02", "02:42:ac:11:00:02"), ("02-42-ac-11-00-03", "02:42:ac:11:00:03")],
)
def test_mac_normalised(text: str, expected: str) -> None:
    assert parse_mac(text) == expected


@pytest.mark.parametrize(
    "text,why",
    [
        ("02:42:ac:11:00", "six hex octets"),
        ("02:42:ac:11:00:0g", "six hex octets"),
        ("02:42-ac:11:00:02", "six hex octets"),
        ("01:00:5e:00:00:01", "multicast"),
        ("ff:ff:ff:ff:ff:ff", "multicast"),
        ("00:00:00:00:00:00", "all-zero"),
    ],
)
def test_bad_macs(text: str, why: str) -> None:
    with pytest.raises(InvalidArgument, match=why):
        parse_mac(text)


def test_mtu_bounds() -> None:
    assert parse_mtu("1280") == 1280 and parse_mtu(65535) == 65535
    for bad in (1279, 65536, "x", 0):
        with pytest.raises(InvalidArgument, match="MTU"):
            parse_mtu(bad)


def test_attachment_spec_parse() -> None:
    spec = AttachmentSpec.parse("foo,mac=02:42:ac:11:00:02,mtu=1400")
    assert spec == AttachmentSpec("foo", "02:42:ac:11:00:02", 1400)
    assert AttachmentSpec.parse("none") == AttachmentSpec("none")


@pytest.mark.parametrize("text", ["foo,ipv4=1.2.3.4", "foo,mac", "foo,mtu=1,mtu=2"])
def test_attachment_spec_refusals_quote_the_bad_part(text: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        AttachmentSpec.parse(text)
    assert repr(text) in info.value.message
    if "ipv4=" in text or text.endswith("mac"):
        assert "valid properties: mac=, mtu=, ip=, ip6=, alias=" in info.value.message


def test_key_values_and_options() -> None:
    assert parse_key_values(["a=b", "c.d/e=x=y"], "label") == {"a": "b", "c.d/e": "x=y"}
    with pytest.raises(InvalidArgument, match="KEY=VALUE"):
        parse_key_values(["novalue"], "label")
    bridge = specs_from_table({"variant": ["shared", "isolated"]})  # as a manifest gives them
    runtime = specs_from_table(RUNTIME_OPTIONS)
    assert validate_options(["variant=isolated"], bridge) == {"variant": "isolated"}
    assert validate_options(["dns-forward=on"], runtime) == {"dns-forward": "on"}
    with pytest.raises(InvalidArgument, match="unknown network option 'colour'"):
        validate_options(["colour=blue"], bridge)
    with pytest.raises(InvalidArgument, match="valid: shared, isolated"):
        validate_options(["variant=open"], bridge)
    with pytest.raises(InvalidArgument, match="option 'variant' given twice"):
        validate_options(["variant=shared", "variant=isolated"], bridge)


def test_typed_repeatable_and_wildcard_options() -> None:
    specs = specs_from_table(
        {"parent": "interface", "range": "cidr", "aux": "ip[]", "n": "int", "on": "bool"}
    )
    assert validate_options(
        ["parent=eth0", "range=10.0.0.7/24", "aux=10.0.0.2", "aux=10.0.0.3,10.0.0.4", "on=TRUE"],
        specs,
    ) == {
        "parent": "eth0",
        "range": "10.0.0.0/24",
        "aux": "10.0.0.2,10.0.0.3,10.0.0.4",
        "on": "true",
    }
    assert option_list({"aux": "10.0.0.2,10.0.0.3"}, "aux") == ["10.0.0.2", "10.0.0.3"]
    for bad, why in [
        ("parent=a b", "interface name"),
        ("parent=averyveryverylongname", "interface name"),
        ("range=10.0.0.300/24", "invalid value"),
        ("aux=10.0.0.2,nope", "'nope'"),
        ("n=1.5", "integer"),
        ("on=yes", "true or false"),
        ("parent=", "needs a value"),
    ]:
        with pytest.raises(InvalidArgument, match=why):
            validate_options([bad], specs)
    anything = specs_from_table({"*": "string", "type": ["bridge", "ptp"]})
    assert validate_options(["type=ptp", "isGateway=true"], anything) == {
        "type": "ptp",
        "isGateway": "true",
    }
    with pytest.raises(InvalidArgument, match="valid: bridge, ptp"):
        validate_options(["type=nope"], anything)
    assert [s.describe() for s in specs[:3]] == [
        "parent=<interface>",
        "range=<cidr>",
        "aux=<ip>...",
    ]
    with pytest.raises(ValueError, match="unknown type"):
        specs_from_table({"x": "colour"})


def test_network_configuration_round_trip() -> None:
    config = NetworkConfiguration(
        name="foo",
        ipv4_subnet=ipaddress.IPv4Network("10.1.0.0/16"),
        ipv4_gateway=ipaddress.IPv4Address("10.1.0.1"),
        ipv6_subnet=ipaddress.IPv6Network("fd00:1::/64"),
        labels={"a": "b"},
        options={"variant": "isolated"},
    )
    assert NetworkConfiguration.from_json(config.to_json()) == config
    assert config.options["variant"] == "isolated" and config.ipv6_gateway == ipaddress.IPv6Address(
        "fd00:1::1"
    )


def test_network_configuration_refuses_foreign_gateway() -> None:
    with pytest.raises(InvalidArgument):
        NetworkConfiguration(
            name="foo",
            ipv4_subnet=ipaddress.IPv4Network("10.1.0.0/24"),
            ipv4_gateway=ipaddress.IPv4Address("10.2.0.1"),
        )


def test_attachment_request_validation() -> None:
    with pytest.raises(InvalidArgument, match="needs a network namespace"):
        AttachmentRequest(network="foo", owner="a", hostname="a", strategy="veth")
    with pytest.raises(InvalidArgument, match="invalid interface strategy"):
        AttachmentRequest(network="foo", owner="a", hostname="a", strategy="Mac Vtap")
    with pytest.raises(InvalidArgument, match="invalid container name"):
        AttachmentRequest(network="foo", owner="a b", hostname="a")
    req = AttachmentRequest(network="foo", owner="a", hostname="a", netns="/run/netns/x")
    assert req.strategy == "veth"


def test_port_mapping_parse() -> None:
    [one] = PortMapping.parse("8080:80")
    assert (one.host_port, one.container_port, one.protocol, one.host_ip) == (8080, 80, "tcp", None)
    pair = PortMapping.parse("127.0.0.1:5000-5001:6000-6001/udp")
    assert [(p.host_port, p.container_port) for p in pair] == [(5000, 6000), (5001, 6001)]
    for bad in ("80", "a:80", "1:2:3:4", "8080:80/sctp", "0:80", "70000:80", "1-3:1-2", "x.y:1:2"):
        with pytest.raises(InvalidArgument):
            PortMapping.parse(bad)


def test_container_config_parse_and_refusals() -> None:
    from container_runtime.container_config import ContainerConfig

    default = ContainerConfig.parse({}, "test")
    assert [s.network for s in default.networks] == ["default"] and default.dns.search == ("test",)
    none = ContainerConfig.parse({"networks": ["none"]}, "test")
    assert none.networks == ()
    full = ContainerConfig.parse(
        {
            "networks": ["foo,mac=02:42:ac:11:00:02", "bar,mtu=1400"],
            "publish": ["8080:80", "127.0.0.1:53:53/udp"],
            "env": ["A=1"],
            "dns": ["10.0.0.53"],
            "dnsSearch": ["corp"],
        },
        "test",
    )
    assert full.to_json()["networks"] == [
        {"network": "foo", "mac": "02:42:ac:11:00:02", "mtu": None},
        {"network": "bar", "mac": None, "mtu": 1400},
    ]
    assert [p.host_port for p in full.ports] == [8080, 53]
    for body, why in (
        ({"networks": ["none", "foo"]}, "can not be combined"),
        ({"networks": ["foo", "foo"]}, "given twice"),
        ({"networks": ["host", "foo"]}, "can not be combined"),
        ({"publish": ["80:80", "80:81"]}, "published twice"),
        ({"networks": ["none"], "publish": ["80:80"]}, "needs a network"),
        ({"env": ["NOEQUALS"]}, "expected KEY=VALUE"),
        ({"dns": ["nameserver"]}, "not an IP address"),
        ({"dns": ["1.1.1.1"], "noDns": True}, "can not be combined"),
        ({"networks": "foo"}, "must be a list"),
    ):
        with pytest.raises(InvalidArgument, match=why):
            ContainerConfig.parse(body, "test")
