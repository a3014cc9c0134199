"""Unit tests of the container network modes and names (netmode.py, models, etcfiles):
`--network host|container:NAME`, `--hostname`, `--domainname`, `--add-host`, the VM
refusal, and the /etc files each mode gets."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from container_runtime.apiserver.etcfiles import (
    host_nameservers,
    host_network_hosts_file,
    hosts_file,
    resolv_conf,
)
from container_runtime.container_config import ContainerConfig
from container_runtime.errors import InvalidArgument
from container_runtime.netmode import (
    NamespaceMode,
    check_isolation_supports,
    parse_add_host,
    parse_namespace_mode,
    validate_hostname,
)

ATT = {"address": "10.1.0.5/24", "gateway": "10.1.0.1", "hostname": "web.test."}


def test_namespace_modes_parse_and_must_be_alone() -> None:
    assert parse_namespace_mode(["foo", "bar"]) == (NamespaceMode(), ["foo", "bar"])
    assert parse_namespace_mode(["host"]) == (NamespaceMode("host"), [])
    assert parse_namespace_mode(["container:web"]) == (NamespaceMode("container", "web"), [])
    for specs, why in (
        (["host", "foo"], "--network host can not be combined"),
        (["foo", "container:web"], "--network container:web can not be combined"),
        (["container:"], "expected container:NAME"),
        (["container:a b"], "is not a container name"),
        (["container:x;rm -rf /"], "is not a container name"),
    ):
        with pytest.raises(InvalidArgument, match=why):
            parse_namespace_mode(specs)
    mode = NamespaceMode("container", "0" * 64)
    assert NamespaceMode.from_json(mode.to_json()) == mode
    assert NamespaceMode.from_json(None) == NamespaceMode()
    with pytest.raises(InvalidArgument):
        NamespaceMode.from_json({"kind": "bogus"})


@pytest.mark.parametrize("good", ["web", "Web-1", "a.b.c", "x" * 63, ".".join(["a" * 63] * 3)])
def test_rfc1123_hostnames_are_accepted(good: str) -> None:
    assert validate_hostname(good) == good


@pytest.mark.parametrize(
    "bad", ["", "-web", "web-", "a..b", "a_b", "x" * 64, "a b", "web.", "é", ".".join(["a"] * 128)]
)
def test_bad_hostnames_are_refused(bad: str) -> None:
    with pytest.raises(InvalidArgument, match="RFC 1123"):
        validate_hostname(bad)


def test_add_host_values() -> None:
    assert parse_add_host("db:10.0.0.9") == ("db", "10.0.0.9")
    assert parse_add_host("db6:fd00::0009") == ("db6", "fd00::9")
    assert parse_add_host("db6:[fd00::9]") == ("db6", "fd00::9")
    assert parse_add_host("db=10.0.0.9") == ("db", "10.0.0.9")
    assert parse_add_host("gw:host-gateway") == ("gw", "host-gateway")
    for bad in ("db", "db:", ":10.0.0.1", "db:10.0.0.300", "bad_name:10.0.0.1", "db:nothost"):
        with pytest.raises(InvalidArgument, match="--add-host"):
            parse_add_host(bad)


def test_vm_containers_refuse_host_and_container_modes() -> None:
    check_isolation_supports(NamespaceMode("host"), "namespace")
    check_isolation_supports(NamespaceMode("container", "web"), "namespace")
    check_isolation_supports(NamespaceMode(), "vm")
    with pytest.raises(InvalidArgument, match="--network host is not supported for VM"):
        check_isolation_supports(NamespaceMode("host"), "vm")
    with pytest.raises(InvalidArgument, match="--network container:web is not supported for VM"):
        check_isolation_supports(NamespaceMode("container", "web"), "vm")
    with pytest.raises(InvalidArgument, match="invalid isolation"):
        check_isolation_supports(NamespaceMode(), "chroot")


def test_container_config_modes_and_names() -> None:
    cfg = ContainerConfig.parse(
        {"hostname": "www", "domainname": "example.com", "addHosts": ["db:10.0.0.9"]}, "test"
    )
    assert (cfg.hostname, cfg.domainname, cfg.extra_hosts) == (
        "www",
        "example.com",
        (("db", "10.0.0.9"),),
    )
    data = cfg.to_json()
    assert data["namespace"] == {"kind": "private", "owner": None}
    host = ContainerConfig.parse({"networks": ["host"]}, "test")
    assert host.networks == () and host.namespace.kind == "host"
    joined = ContainerConfig.parse({"networks": ["container:web"]}, "test")
    assert joined.networks == () and joined.namespace == NamespaceMode("container", "web")
    for body, why in (
        ({"networks": ["host"], "publish": ["80:80"]}, "--publish can not be combined"),
        ({"networks": ["container:web"], "publish": ["80:80"]}, "--publish can not be combined"),
        ({"networks": ["container:web"], "hostname": "x"}, "--hostname can not be combined"),
        ({"networks": ["container:web"], "addHosts": ["a:1.2.3.4"]}, "--add-host can not be"),
        ({"networks": ["container:web"], "dns": ["1.1.1.1"]}, "--dns can not be combined"),
        ({"networks": ["none"], "addHosts": ["gw:host-gateway"]}, "needs a network"),
        ({"hostname": "bad_name"}, "invalid --hostname"),
        ({"domainname": "-x"}, "invalid --domainname"),
        ({"hostname": 5}, "must be a string"),
        ({"addHosts": ["a:1.1.1.1"] * 65}, "at most 64"),
    ):
        with pytest.raises(InvalidArgument, match=why):
            ContainerConfig.parse(body, "test")


def test_hosts_file_with_hostname_add_hosts_and_the_host_names() -> None:
    text = hosts_file(
        "web",
        [{**ATT, "hostname": "www.test."}],
        "www",
        "example.com",
        [("db", "10.0.0.9"), ("db6", "fd00::9"), ("gw", "host-gateway")],
    )
    assert text.splitlines() == [
        "127.0.0.1\tlocalhost",
        "10.1.0.5\twww.example.com www.test www web",
        "10.0.0.9\tdb",
        "fd00::9\tdb6",
        "10.1.0.1\tgw",
        "10.1.0.1\thost.container.internal host.docker.internal",
        "::1\tlocalhost ip6-localhost ip6-loopback",
    ]
    plain = hosts_file("web", [ATT])
    assert "10.1.0.5\tweb.test web\n" in plain
    assert "10.1.0.1\thost.container.internal host.docker.internal\n" in plain
    assert "host.container.internal" not in hosts_file("solo", [])  # --network none
    dual = hosts_file("web", [ATT], gateway6="fd00:1::1").splitlines()
    assert dual[-3:-1] == [
        "10.1.0.1\thost.container.internal host.docker.internal",
        "fd00:1::1\thost.container.internal host.docker.internal",
    ]


def test_host_mode_files(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n10.9.9.9 myhost\n")
    text = host_network_hosts_file([("db", "10.0.0.9"), ("gw", "host-gateway")], hosts)
    assert text.splitlines() == [
        "127.0.0.1 localhost",
        "10.9.9.9 myhost",
        "10.0.0.9\tdb",
        "127.0.0.1\tgw",
        "127.0.0.1\thost.container.internal host.docker.internal",
    ]


def test_resolvers_where_the_embedded_dns_is_off(tmp_path: Path) -> None:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.53\nnameserver 10.0.0.2\nnameserver fd00::53\n")
    assert host_nameservers((), resolv) == ["10.0.0.2", "fd00::53"]
    assert host_nameservers(("9.9.9.9", "1.1.1.1:5353"), resolv) == ["9.9.9.9", "1.1.1.1"]
    dns = {"search": ["test"]}
    assert resolv_conf(dns, [ATT]) == "nameserver 10.1.0.1\nsearch test\n"
    assert resolv_conf(dns, [ATT], ["10.0.0.2"]) == "nameserver 10.0.0.2\nsearch test\n"
    assert resolv_conf({**dns, "nameservers": ["8.8.8.8"]}, [ATT], ["10.0.0.2"]).startswith(
        "nameserver 8.8.8.8\n"
    )


LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(max_size=80),
        st.lists(st.text("ab-_.9Z", max_size=8), max_size=5).map(".".join),
        st.builds(lambda a, b: f"{a}:{b}", st.text("abc-.", max_size=10), st.text(max_size=20)),
    )
)
def test_name_parsers_accept_only_valid_input(text: str) -> None:
    """Any string: a valid result or InvalidArgument, never another exception."""
    try:
        host = validate_hostname(text)
    except InvalidArgument:
        pass
    else:
        assert len(host) <= 253 and all(LABEL.match(p) for p in host.split("."))
    try:
        name, ip = parse_add_host(text)
    except InvalidArgument:
        pass
    else:
        assert all(LABEL.match(p) for p in name.split("."))
        assert ip == "host-gateway" or ipaddress.ip_address(ip)
    try:
        mode, rest = parse_namespace_mode([text])
    except InvalidArgument:
        pass
    else:
        assert (mode.kind == "private" and rest == [text]) or rest == []
        if mode.kind == "container":
            assert mode.owner and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", mode.owner)


def test_create_requests_of_vm_containers_refuse_shared_namespaces() -> None:
    """Wired on the create request's `isolation` (absent: a namespace container)."""
    from container_runtime.apiserver.containers import parse_create
    from container_runtime.config import Config

    assert parse_create({"networks": ["host"]}, Config())["namespace"]["kind"] == "host"
    with pytest.raises(InvalidArgument, match="--network host is not supported for VM"):
        parse_create({"networks": ["host"], "isolation": "vm"}, Config())
    with pytest.raises(InvalidArgument, match="container:web is not supported for VM"):
        parse_create({"networks": ["container:web"], "isolation": "vm"}, Config())
    assert parse_create({"networks": ["none"], "isolation": "vm"}, Config())["networks"] == []
