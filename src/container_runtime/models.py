"""Resource models: plain, typed, validated data shared by CLI, API server and helpers.

Every constructor validates, so an instance can not exist in an invalid state;
the rest of the code trusts these types and never re-validates.  Only the
standard library is imported here: the CLI imports this module and must start fast.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from .errors import InvalidArgument

NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$")
CONTAINER_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
LABEL_KEY_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._/-]*[A-Za-z0-9])?$")
PLUGIN_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9_-]*[a-z0-9])?$")
DOMAIN_RE = re.compile(r"^([a-z0-9]([a-z0-9-]*[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")
MAC_RE = re.compile(r"^[0-9a-fA-F]{2}([:-])[0-9a-fA-F]{2}(\1[0-9a-fA-F]{2}){4}$")

RESERVED_NETWORK_NAMES = frozenset({"none", "host"})
DEFAULT_NETWORK = "default"
DEFAULT_PLUGIN = "bridge"
# The bridge plugin's networks also show their link as status `bridge`: what users and
# scripts read before the neutral `link` (cf. Docker's com.docker.network.bridge.name).
BRIDGE_PLUGIN = "bridge"
MIN_MTU = 1280
MAX_MTU = 65535
IPV4_PREFIX_RANGE = (8, 29)
IPV6_PREFIX_RANGE = (64, 120)
# Options the runtime itself reads, whatever the plugin (a plugin's own come from its
# manifest's [options] / its driver).
# In the manifest form (netoptions.py: a list of values, default first, or a type name).
RUNTIME_OPTIONS: dict[str, tuple[str, ...] | str] = {
    "dns-forward": ("on", "off"),  # internal networks: forward outside names (docs/DNS.md)
    "mtu": "int",  # default MTU of the network's attachments (1280-65535; mtu= wins)
    "dns": ("true", "false"),  # false: no embedded DNS listener, names not answered
    "dns-server": "ip[]",  # upstreams the embedded DNS forwards to for this network
}
ATTACHMENT_PROPERTIES = ("mac", "mtu", "ip", "ip6", "alias")
ALIAS_RE = re.compile(r"^[a-z0-9]([a-z0-9_-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9_-]*[a-z0-9])?)*$")
MAX_ALIASES = 32


def validate_network_name(name: str) -> str:
    if name in RESERVED_NETWORK_NAMES:
        raise InvalidArgument(f"network name {name!r} is reserved")
    if not 1 <= len(name) <= 63 or not NAME_RE.match(name):
        raise InvalidArgument(
            f"invalid network name {name!r}: use 1-63 characters from a-z, 0-9, '.', '_' "
            "and '-', starting and ending with a letter or digit"
        )
    return name


def validate_container_name(name: str) -> str:
    if not 1 <= len(name) <= 63 or not CONTAINER_NAME_RE.match(name):
        raise InvalidArgument(
            f"invalid container name {name!r}: use 1-63 characters from A-Z, a-z, 0-9, "
            "'.', '_' and '-', starting with a letter or digit"
        )
    return name


def validate_owner(owner: str) -> str:
    """An attachment's owner: a container name, or a container id (64 hex digits)."""
    if len(owner) == 64 and all(c in "0123456789abcdef" for c in owner):
        return owner
    return validate_container_name(owner)


def validate_plugin_name(name: str) -> str:
    if not 1 <= len(name) <= 32 or not PLUGIN_NAME_RE.match(name):
        raise InvalidArgument(f"invalid plugin name {name!r}")
    return name


def validate_domain(domain: str) -> str:
    domain = domain.strip(".").lower()
    if not 1 <= len(domain) <= 200 or not DOMAIN_RE.match(domain):
        raise InvalidArgument(f"invalid DNS domain {domain!r}")
    return domain


def parse_mac(text: str) -> str:
    """Return the MAC in lower-case colon form, or refuse it."""
    if not MAC_RE.match(text):
        raise InvalidArgument(
            f"invalid MAC address {text!r}: expected six hex octets separated by ':' or '-'"
        )
    octets = [int(part, 16) for part in re.split(r"[:-]", text)]
    if octets[0] & 1:
        raise InvalidArgument(f"invalid MAC address {text!r}: multicast addresses are not allowed")
    if not any(octets):
        raise InvalidArgument(f"invalid MAC address {text!r}: the all-zero address is not allowed")
    return ":".join(f"{o:02x}" for o in octets)


def parse_mtu(value: str | int) -> int:
    try:
        mtu = int(value)
    except (TypeError, ValueError):
        raise InvalidArgument(f"invalid MTU {value!r}: expected an integer") from None
    if not MIN_MTU <= mtu <= MAX_MTU:
        raise InvalidArgument(f"invalid MTU {mtu}: must be between {MIN_MTU} and {MAX_MTU}")
    return mtu


def parse_ipv4_subnet(text: str) -> ipaddress.IPv4Network:
    """Parse a CIDR; a host address such as 192.168.100.1/24 is normalised to its network."""
    if "/" not in text:
        raise InvalidArgument(
            f"invalid subnet {text!r}: expected CIDR notation such as 10.1.0.0/24"
        )
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise InvalidArgument(f"invalid subnet {text!r}: not an IPv4 network") from None
    if not isinstance(net, ipaddress.IPv4Network):
        raise InvalidArgument(f"invalid subnet {text!r}: not an IPv4 network (use --subnet-v6)")
    low, high = IPV4_PREFIX_RANGE
    if not low <= net.prefixlen <= high:
        raise InvalidArgument(f"invalid subnet {text!r}: prefix must be between /{low} and /{high}")
    return net


# Ranges a network can never use: the kernel treats them specially, so a network there
# breaks routing (loopback, multicast) or collides with what every host already has.
_UNUSABLE_V4 = (
    (ipaddress.IPv4Network("0.0.0.0/8"), "unspecified ('this network')"),
    (ipaddress.IPv4Network("127.0.0.0/8"), "loopback"),
    (ipaddress.IPv4Network("169.254.0.0/16"), "link-local"),
    (ipaddress.IPv4Network("224.0.0.0/4"), "multicast"),
    (ipaddress.IPv4Network("240.0.0.0/4"), "reserved (with the broadcast address)"),
)
_UNUSABLE_V6 = (
    (ipaddress.IPv6Network("::/8"), "reserved (unspecified, loopback, IPv4-mapped)"),
    (ipaddress.IPv6Network("fe80::/10"), "link-local"),
    (ipaddress.IPv6Network("fec0::/10"), "deprecated site-local"),
    (ipaddress.IPv6Network("ff00::/8"), "multicast"),
)


def check_usable_subnet(
    net: ipaddress.IPv4Network | ipaddress.IPv6Network, what: str = "subnet"
) -> None:
    """Refuse loopback, multicast, link-local, reserved and unspecified ranges.

    Not part of the parsers: rows stored before this check existed must stay readable."""
    ranges = _UNUSABLE_V4 if isinstance(net, ipaddress.IPv4Network) else _UNUSABLE_V6
    for reserved, why in ranges:
        if net.overlaps(reserved):  # type: ignore[arg-type]
            raise InvalidArgument(f"invalid {what} {net}: overlaps {reserved}, the {why} range")
    if isinstance(net, ipaddress.IPv6Network) and net.is_reserved:
        raise InvalidArgument(f"invalid {what} {net}: an IANA-reserved range")


def parse_ipv6_subnet(text: str) -> ipaddress.IPv6Network:
    if "/" not in text:
        raise InvalidArgument(f"invalid IPv6 subnet {text!r}: expected CIDR such as fd00:1::/64")
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise InvalidArgument(f"invalid IPv6 subnet {text!r}: not an IPv6 network") from None
    if not isinstance(net, ipaddress.IPv6Network):
        raise InvalidArgument(f"invalid IPv6 subnet {text!r}: not an IPv6 network")
    low, high = IPV6_PREFIX_RANGE
    if not low <= net.prefixlen <= high:
        raise InvalidArgument(
            f"invalid IPv6 subnet {text!r}: prefix must be between /{low} and /{high}"
        )
    return net


def parse_gateway(text: str | None, subnet: ipaddress.IPv4Network) -> ipaddress.IPv4Address:
    if text is None:
        return subnet.network_address + 1
    try:
        gw = ipaddress.IPv4Address(text)
    except ValueError:
        raise InvalidArgument(f"invalid gateway {text!r}: not an IPv4 address") from None
    if gw not in subnet or gw in (subnet.network_address, subnet.broadcast_address):
        raise InvalidArgument(f"gateway {gw} is not a usable host address of subnet {subnet}")
    return gw


def parse_key_values(pairs: list[str] | tuple[str, ...], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"invalid {what} {pair!r}: expected KEY=VALUE")
        if not LABEL_KEY_RE.match(key) or len(key) > 128:
            raise InvalidArgument(f"invalid {what} key {key!r}")
        if len(value) > 512 or any(ord(c) < 32 for c in value):
            raise InvalidArgument(f"invalid {what} value for {key!r}")
        out[key] = value
    return out


class NetworkMode(StrEnum):
    NAT = "nat"
    INTERNAL = "internal"


@dataclass(frozen=True)
class NetworkConfiguration:
    """What the user asked for; immutable once created."""

    name: str
    ipv4_subnet: ipaddress.IPv4Network
    ipv4_gateway: ipaddress.IPv4Address
    mode: NetworkMode = NetworkMode.NAT
    plugin: str = DEFAULT_PLUGIN
    ipv6_subnet: ipaddress.IPv6Network | None = None
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    creation_date: str = ""

    def __post_init__(self) -> None:
        if self.name != DEFAULT_NETWORK:
            validate_network_name(self.name)
        validate_plugin_name(self.plugin)
        if self.ipv4_gateway not in self.ipv4_subnet or self.ipv4_gateway in (
            self.ipv4_subnet.network_address,
            self.ipv4_subnet.broadcast_address,
        ):
            raise InvalidArgument(
                f"gateway {self.ipv4_gateway} is not a usable host address of {self.ipv4_subnet}"
            )

    @property
    def ipv6_gateway(self) -> ipaddress.IPv6Address | None:
        return None if self.ipv6_subnet is None else self.ipv6_subnet.network_address + 1

    @property
    def builtin(self) -> bool:
        return self.labels.get("builtin") == "true"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "mode": self.mode.value,
            "plugin": self.plugin,
            "ipv4Subnet": str(self.ipv4_subnet),
            "ipv4Gateway": str(self.ipv4_gateway),
            "ipv6Subnet": str(self.ipv6_subnet) if self.ipv6_subnet else None,
            "labels": dict(self.labels),
            "options": dict(self.options),
            "creationDate": self.creation_date,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NetworkConfiguration:
        try:
            subnet = parse_ipv4_subnet(str(data["ipv4Subnet"]))
            v6 = data.get("ipv6Subnet")
            return cls(
                name=str(data["name"]),
                ipv4_subnet=subnet,
                ipv4_gateway=parse_gateway(data.get("ipv4Gateway"), subnet),
                mode=NetworkMode(data.get("mode", "nat")),
                plugin=str(data.get("plugin") or DEFAULT_PLUGIN),
                ipv6_subnet=parse_ipv6_subnet(str(v6)) if v6 else None,
                labels={str(k): str(v) for k, v in (data.get("labels") or {}).items()},
                options={str(k): str(v) for k, v in (data.get("options") or {}).items()},
                creation_date=str(data.get("creationDate") or ""),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, InvalidArgument):
                raise
            raise InvalidArgument(f"invalid network configuration: {exc}") from None


@dataclass(frozen=True)
class NetworkStatus:
    state: str  # "created" | "running" | "failed"
    link: str | None = None  # the plugin's kernel link (its reply `link`), whatever its kind

    def to_json(self, config: NetworkConfiguration) -> dict[str, Any]:
        out: dict[str, Any] = {
            "state": self.state,
            "ipv4Subnet": str(config.ipv4_subnet),
            "ipv4Gateway": str(config.ipv4_gateway),
            "ipv6Subnet": str(config.ipv6_subnet) if config.ipv6_subnet else None,
            "link": self.link,
        }
        if config.plugin == BRIDGE_PLUGIN:
            out["bridge"] = self.link
        return out


@dataclass(frozen=True)
class Network:
    configuration: NetworkConfiguration
    status: NetworkStatus
    containers: int = 0

    @property
    def id(self) -> str:
        return self.configuration.name

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "configuration": self.configuration.to_json(),
            "status": self.status.to_json(self.configuration),
            "containers": self.containers,
        }

    def with_status(self, status: NetworkStatus) -> Network:
        return replace(self, status=status)


def validate_alias(text: str) -> str:
    """A DNS alias (`alias=NAME`): a DNS name of labels 1-63 long, kept lower-case."""
    alias = text.strip(".").lower()
    labels = alias.split(".")
    if (
        not 1 <= len(alias) <= 253
        or not ALIAS_RE.match(alias)
        or any(len(label) > 63 for label in labels)
    ):
        raise InvalidArgument(
            f"invalid alias {text!r}: expected a DNS name (letters, digits, '-', '_', labels"
            " of 1-63 characters separated by '.')"
        )
    return alias


def parse_static_ipv4(text: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        raise InvalidArgument(f"invalid ip= {text!r}: not an IPv4 address") from None


def parse_static_ipv6(text: str) -> ipaddress.IPv6Address:
    try:
        return ipaddress.IPv6Address(text)
    except ValueError:
        raise InvalidArgument(f"invalid ip6= {text!r}: not an IPv6 address") from None


@dataclass(frozen=True)
class AttachmentSpec:
    """One `--network NAME[,mac=..][,mtu=..][,ip=..][,ip6=..][,alias=..]...` as given."""

    network: str
    mac: str | None = None
    mtu: int | None = None
    ip: ipaddress.IPv4Address | None = None
    ip6: ipaddress.IPv6Address | None = None
    aliases: tuple[str, ...] = ()

    @property
    def static(self) -> bool:
        return self.ip is not None or self.ip6 is not None

    @classmethod
    def parse(cls, text: str) -> AttachmentSpec:
        parts = text.split(",")
        name = parts[0]
        if not name:
            raise InvalidArgument(f"invalid network spec {text!r}: missing network name")
        if name != DEFAULT_NETWORK and name not in RESERVED_NETWORK_NAMES:
            validate_network_name(name)
        props: dict[str, str] = {}
        aliases: list[str] = []
        valid = ", ".join(f"{p}=" for p in ATTACHMENT_PROPERTIES)
        for part in parts[1:]:
            key, sep, value = part.partition("=")
            if not sep or key not in ATTACHMENT_PROPERTIES:
                raise InvalidArgument(
                    f"invalid network spec {text!r}: unknown property {part!r} "
                    f"(valid properties: {valid})"
                )
            if key == "alias":  # repeatable
                aliases.append(value)
                continue
            if key in props:
                raise InvalidArgument(f"invalid network spec {text!r}: {key}= given twice")
            props[key] = value
        return cls.build(
            name,
            mac=props.get("mac"),
            mtu=props.get("mtu"),
            ip=props.get("ip"),
            ip6=props.get("ip6"),
            aliases=aliases,
        )

    @classmethod
    def build(
        cls,
        network: str,
        mac: str | None = None,
        mtu: str | int | None = None,
        ip: str | None = None,
        ip6: str | None = None,
        aliases: list[str] | tuple[str, ...] = (),
    ) -> AttachmentSpec:
        """From separate values (the `--network` properties, or `network connect`'s flags)."""
        if len(aliases) > MAX_ALIASES:
            raise InvalidArgument(f"at most {MAX_ALIASES} aliases per network")
        return cls(
            network=network,
            mac=parse_mac(mac) if mac is not None else None,
            mtu=parse_mtu(mtu) if mtu is not None else None,
            ip=parse_static_ipv4(ip) if ip is not None else None,
            ip6=parse_static_ipv6(ip6) if ip6 is not None else None,
            aliases=tuple(dict.fromkeys(validate_alias(a) for a in aliases)),
        )

    def to_json(self) -> dict[str, Any]:
        """`network`, `mac`, `mtu`; `ip`, `ip6` and `aliases` only when given."""
        out: dict[str, Any] = {"network": self.network, "mac": self.mac, "mtu": self.mtu}
        if self.ip is not None:
            out["ip"] = str(self.ip)
        if self.ip6 is not None:
            out["ip6"] = str(self.ip6)
        if self.aliases:
            out["aliases"] = list(self.aliases)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AttachmentSpec:
        """A stored spec (rows from before ip/ip6/aliases existed have only some keys)."""
        return cls.build(
            str(data["network"]),
            mac=data.get("mac"),
            mtu=data.get("mtu"),
            ip=data.get("ip"),
            ip6=data.get("ip6"),
            aliases=list(data.get("aliases") or ()),
        )


def check_static_address(
    config: NetworkConfiguration,
    ip: ipaddress.IPv4Address | None,
    ip6: ipaddress.IPv6Address | None,
) -> None:
    """Refuse a static address a network can never hand out: outside its subnet, its
    network, gateway or broadcast address; with IPv6, the host offset of the IPv6 gateway
    when no ip6= is given (IPv6 addresses take their IPv4 twin's host offset)."""
    net = config.name
    if ip6 is not None and ip is None:
        raise InvalidArgument(f"ip6= needs ip= as well (network {net})")
    if ip is not None:
        subnet = config.ipv4_subnet
        if ip not in subnet:
            raise InvalidArgument(f"ip={ip} is not in the subnet {subnet} of network {net}")
        what = {
            subnet.network_address: "network address",
            subnet.broadcast_address: "broadcast address",
            config.ipv4_gateway: "gateway",
        }.get(ip)
        if what:
            raise InvalidArgument(f"ip={ip} is the {what} of network {net}")
        v6 = config.ipv6_subnet
        if v6 is not None and ip6 is None and int(ip) - int(subnet.network_address) == 1:
            raise InvalidArgument(
                f"ip={ip} would give the IPv6 address {v6.network_address + 1}, the IPv6"
                f" gateway of network {net} (give ip6= as well)"
            )
    if ip6 is not None:
        v6 = config.ipv6_subnet
        if v6 is None:
            raise InvalidArgument(f"ip6={ip6}: network {net} has no IPv6 subnet")
        if ip6 not in v6:
            raise InvalidArgument(f"ip6={ip6} is not in the IPv6 subnet {v6} of network {net}")
        if ip6 == v6.network_address:
            raise InvalidArgument(f"ip6={ip6} is the network address of network {net}")
        if ip6 == v6.network_address + 1:
            raise InvalidArgument(f"ip6={ip6} is the IPv6 gateway of network {net}")


def network_mtu(config: NetworkConfiguration) -> int | None:
    """The network's default attachment MTU (`--option mtu=N`), if it has one."""
    text = config.options.get("mtu")
    return parse_mtu(text) if text else None


@dataclass(frozen=True)
class Attachment:
    """A container's (or a bare owner's) interface on one network."""

    network: str
    owner: str
    hostname: str
    address: ipaddress.IPv4Interface
    gateway: ipaddress.IPv4Address
    mac_address: str
    mtu: int
    interface: str = "eth0"
    ipv6_address: ipaddress.IPv6Interface | None = None
    netns: str | None = None
    strategy: str | None = None
    host_interface: str | None = None  # the host-side link the plugin made (a TAP for a VM)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "network": self.network,
            "hostname": self.hostname,
            "address": str(self.address),
            "gateway": str(self.gateway),
            "macAddress": self.mac_address,
            "mtu": self.mtu,
            "interface": self.interface,
            "owner": self.owner,
        }
        if self.ipv6_address is not None:
            out["ipv6Address"] = str(self.ipv6_address)
        if self.netns is not None:
            out["netns"] = self.netns
        if self.strategy is not None:
            out["strategy"] = self.strategy
        if self.host_interface is not None:
            out["hostInterface"] = self.host_interface
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Attachment:
        v6 = data.get("ipv6Address")
        return cls(
            network=str(data["network"]),
            owner=str(data["owner"]),
            hostname=str(data["hostname"]),
            address=ipaddress.IPv4Interface(data["address"]),
            gateway=ipaddress.IPv4Address(data["gateway"]),
            mac_address=str(data["macAddress"]),
            mtu=int(data["mtu"]),
            interface=str(data.get("interface") or "eth0"),
            ipv6_address=ipaddress.IPv6Interface(v6) if v6 else None,
            netns=data.get("netns"),
            strategy=data.get("strategy"),
            host_interface=data.get("hostInterface"),
        )


def hostname_for(name: str, domain: str | None) -> str:
    base = name.lower()
    return f"{base}.{domain}." if domain else base


# A strategy's name only: which ones a network offers is its plugin's (manifest, GET /status).
STRATEGY_RE = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
INTERFACE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")


@dataclass(frozen=True)
class AttachmentRequest:
    """What a caller asks the helper for: allocate (and, with a strategy, realise)."""

    network: str
    owner: str
    hostname: str
    mac: str | None = None
    mtu: int | None = None
    netns: str | None = None  # path or name of a network namespace; None = allocate only
    strategy: str | None = None  # "veth" | "tap" | None
    interface: str = "eth0"
    primary: bool = True
    ip: ipaddress.IPv4Address | None = None  # a static address (reserved or free)
    ip6: ipaddress.IPv6Address | None = None

    def __post_init__(self) -> None:
        validate_owner(self.owner)
        if self.mac is not None:
            parse_mac(self.mac)
        if self.mtu is not None:
            parse_mtu(self.mtu)
        if self.strategy is not None and not STRATEGY_RE.match(str(self.strategy)):
            raise InvalidArgument(f"invalid interface strategy {self.strategy!r}")
        if self.netns is not None and self.strategy is None:
            object.__setattr__(self, "strategy", "veth")
        if self.strategy == "veth" and not self.netns:
            raise InvalidArgument("the veth strategy needs a network namespace (--netns)")
        if not INTERFACE_RE.match(self.interface):
            raise InvalidArgument(f"invalid interface name {self.interface!r}")

    def to_json(self) -> dict[str, Any]:
        return {
            "network": self.network,
            "owner": self.owner,
            "hostname": self.hostname,
            "mac": self.mac,
            "mtu": self.mtu,
            "netns": self.netns,
            "strategy": self.strategy,
            "interface": self.interface,
            "primary": self.primary,
            "ip": str(self.ip) if self.ip else None,
            "ip6": str(self.ip6) if self.ip6 else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AttachmentRequest:
        try:
            mac = data.get("mac")
            mtu = data.get("mtu")
            ip, ip6 = data.get("ip"), data.get("ip6")
            return cls(
                network=str(data["network"]),
                owner=str(data["owner"]),
                hostname=str(data.get("hostname") or data["owner"]),
                mac=parse_mac(str(mac)) if mac else None,
                mtu=parse_mtu(mtu) if mtu is not None else None,
                netns=str(data["netns"]) if data.get("netns") else None,
                strategy=str(data["strategy"]) if data.get("strategy") else None,
                interface=str(data.get("interface") or "eth0"),
                primary=bool(data.get("primary", True)),
                ip=parse_static_ipv4(str(ip)) if ip else None,
                ip6=parse_static_ipv6(str(ip6)) if ip6 else None,
            )
        except KeyError as exc:
            raise InvalidArgument(f"missing field {exc.args[0]!r}") from None
