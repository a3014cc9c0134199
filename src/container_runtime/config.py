"""The user's config.toml: parsing, defaults and errors that name file, line and key.

Known keys (everything else is refused, so a typo never goes unnoticed):

    [network]
    subnet = "192.168.64.1/24"     # the default network; gateway = first host
    subnetv6 = "fd00:c0a8:4000::/64"  # optional IPv6 for the default network
    mtu = 1500                     # default attachment MTU (else the host's)
    pool = "192.168.64.0/18"       # where automatic subnets come from
    pool_prefix = 24               # size of each automatic subnet

    [dns]
    domain = "test"
    upstreams = ["1.1.1.1"]        # default: nameservers of /etc/resolv.conf

    [plugins]
    path = ["/usr/local/libexec/container/plugins"]
    cni_path = ["/usr/lib/cni"]    # the cni plugin's CNI binaries (searched in order)

    [container]
    isolation = "namespace"        # or "vm": `run`/`create` as with --vm (docs/VM.md)
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .container_config import parse_isolation_name
from .errors import ConfigError, InvalidArgument
from .models import (
    check_usable_subnet,
    parse_ipv4_subnet,
    parse_ipv6_subnet,
    parse_mtu,
    validate_domain,
)

DEFAULT_SUBNET = "192.168.64.1/24"
DEFAULT_POOL = "192.168.64.0/18"


@dataclass(frozen=True)
class Config:
    subnet: ipaddress.IPv4Network = ipaddress.IPv4Network("192.168.64.0/24")
    gateway: ipaddress.IPv4Address = ipaddress.IPv4Address("192.168.64.1")
    subnet_v6: ipaddress.IPv6Network | None = None
    # Whether the user chose `subnet`: if not, a default that overlaps a host route moves
    # to the next free subnet of the pool; a chosen one is refused instead.
    subnet_configured: bool = False
    mtu: int | None = None
    pool: ipaddress.IPv4Network = ipaddress.IPv4Network(DEFAULT_POOL)
    pool_prefix: int = 24
    dns_domain: str | None = "test"
    dns_upstreams: tuple[str, ...] = ()
    plugin_path: tuple[str, ...] = field(default_factory=tuple)
    # where the cni plugin finds CNI plugin binaries (docs/PLUGINS.md)
    cni_path: tuple[str, ...] = ("/usr/lib/cni",)
    isolation: str = "namespace"
    source: str = "(defaults)"
    path: str = ""  # where the config file is (or would be), for messages


_SCHEMA: dict[str, set[str]] = {
    "network": {"subnet", "subnetv6", "mtu", "pool", "pool_prefix"},
    "dns": {"domain", "upstreams"},
    "plugins": {"path", "cni_path"},
    "container": {"isolation"},
}


def _line_of(text: str, section: str, key: str | None) -> int:
    """Best-effort line number of `key` inside `[section]` (1-based; 0 when unknown)."""
    current = ""
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        header = re.match(r"^\[\s*([^\]]+?)\s*\]", stripped)
        if header:
            current = header.group(1)
            if key is None and current == section:
                return number
            continue
        if key is not None and current == section and re.match(rf"^{re.escape(key)}\s*=", stripped):
            return number
    return 0


def load_config(path: Path) -> Config:
    """Read config.toml; a missing file means defaults; anything wrong is a ConfigError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Config(path=str(path))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None

    def fail(section: str, key: str | None, why: str) -> ConfigError:
        line = _line_of(text, section, key)
        where = f"{path}:{line}" if line else str(path)
        name = f"{section}.{key}" if key else section
        return ConfigError(f"{where}: key {name}: {why}")

    for section, value in data.items():
        if section not in _SCHEMA:
            raise fail(section, None, f"unknown section (valid: {', '.join(sorted(_SCHEMA))})")
        if not isinstance(value, dict):
            raise fail(section, None, "must be a table")
        for key in value:
            if key not in _SCHEMA[section]:
                valid = ", ".join(sorted(_SCHEMA[section]))
                raise fail(section, key, f"unknown key (valid: {valid})")

    net: dict[str, Any] = data.get("network", {})
    dns: dict[str, Any] = data.get("dns", {})
    plugins: dict[str, Any] = data.get("plugins", {})
    container: dict[str, Any] = data.get("container", {})
    kwargs: dict[str, Any] = {"source": str(path), "path": str(path)}

    def checked(section: str, key: str, parse: Any, raw: Any, kind: type) -> Any:
        if not isinstance(raw, kind) or isinstance(raw, bool):
            raise fail(section, key, f"expected a {kind.__name__}, got {raw!r}")
        try:
            return parse(raw)
        except InvalidArgument as exc:
            raise fail(section, key, exc.message) from None

    if "subnet" in net:
        subnet = checked("network", "subnet", _parse_usable_v4, net["subnet"], str)
        kwargs["subnet"] = subnet
        kwargs["subnet_configured"] = True
        kwargs["gateway"] = subnet.network_address + 1
    if "subnetv6" in net:
        kwargs["subnet_v6"] = checked("network", "subnetv6", _parse_usable_v6, net["subnetv6"], str)
    if "mtu" in net:
        kwargs["mtu"] = checked("network", "mtu", parse_mtu, net["mtu"], int)
    if "pool" in net:
        kwargs["pool"] = checked("network", "pool", _parse_pool, net["pool"], str)
    if "pool_prefix" in net:
        kwargs["pool_prefix"] = checked(
            "network", "pool_prefix", _parse_pool_prefix, net["pool_prefix"], int
        )
    if "domain" in dns:
        raw = dns["domain"]
        if raw == "":
            kwargs["dns_domain"] = None
        else:
            kwargs["dns_domain"] = checked("dns", "domain", validate_domain, raw, str)
    if "upstreams" in dns:
        kwargs["dns_upstreams"] = tuple(
            checked("dns", "upstreams", _parse_upstreams, dns["upstreams"], list)
        )
    if "path" in plugins:
        raw_path = plugins["path"]
        if not isinstance(raw_path, list) or not all(isinstance(p, str) for p in raw_path):
            raise fail("plugins", "path", "expected a list of directory paths")
        kwargs["plugin_path"] = tuple(raw_path)
    if "cni_path" in plugins:
        raw_cni = plugins["cni_path"]
        if (
            not isinstance(raw_cni, list)
            or not raw_cni
            or not all(isinstance(p, str) and p.startswith("/") for p in raw_cni)
        ):
            raise fail("plugins", "cni_path", "expected a list of absolute directory paths")
        kwargs["cni_path"] = tuple(raw_cni)
    if "isolation" in container:
        kwargs["isolation"] = checked(
            "container", "isolation", parse_isolation_name, container["isolation"], str
        )
    config = Config(**kwargs)
    if config.pool_prefix < config.pool.prefixlen:
        raise fail("network", "pool_prefix", f"larger than the pool {config.pool}")
    return config


def _parse_usable_v4(text: str) -> ipaddress.IPv4Network:
    net = parse_ipv4_subnet(text)
    check_usable_subnet(net)
    return net


def _parse_usable_v6(text: str) -> ipaddress.IPv6Network:
    net = parse_ipv6_subnet(text)
    check_usable_subnet(net, "IPv6 subnet")
    return net


def _parse_pool(text: str) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise InvalidArgument(f"invalid pool {text!r}: not an IPv4 network") from None
    if not isinstance(net, ipaddress.IPv4Network):
        raise InvalidArgument(f"invalid pool {text!r}: not an IPv4 network")
    check_usable_subnet(net, "pool")
    return net


def _parse_pool_prefix(value: int) -> int:
    if not 8 <= value <= 29:
        raise InvalidArgument(f"invalid pool_prefix {value}: must be between 8 and 29")
    return value


def _parse_upstreams(values: list[Any]) -> list[str]:
    out = []
    for value in values:
        try:
            out.append(str(ipaddress.ip_address(str(value))))
        except ValueError:
            raise InvalidArgument(f"invalid upstream server {value!r}") from None
    return out
