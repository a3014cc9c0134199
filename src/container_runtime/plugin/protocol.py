"""The helper protocol's version and message types (docs/PLUGINS.md; schema: protocol.json).

Each type is a frozen dataclass that validates itself, with one serialiser (`to_json`)
and one deserialiser (`from_json`, which refuses a malformed message with a
ProtocolError naming what is wrong).  The attachment request and reply are the
models' AttachmentRequest and Attachment (the API server and helpers share them).
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from ..errors import InvalidArgument
from ..models import Attachment, AttachmentRequest

# The version of the helper protocol this runtime speaks: a plugin declares the one it
# speaks in its manifest (`protocol = 1`) and in GET /status (`protocol`); the API server
# refuses a plugin speaking another.  Bumped on any incompatible change of a call.
PROTOCOL_VERSION = 1

AttachRequest = AttachmentRequest
AttachmentReply = Attachment

ERROR_KINDS = (
    "invalid_argument",
    "permission_denied",
    "not_found",
    "conflict",
    "unavailable",
    "exhausted",
    "internal",
    "interrupted",
    "database_locked",
    "concurrent_change",
)


class ProtocolError(InvalidArgument):
    """A plugin that does not speak our protocol (refused: the user chose it), or a
    malformed message from one."""


def check_protocol(plugin: str, version: object, where: str) -> int:
    """The plugin's declared protocol version, or a ProtocolError saying why it is refused."""
    if isinstance(version, bool) or not isinstance(version, int):
        raise ProtocolError(
            f"network plugin {plugin}: {where} gives protocol version {version!r},"
            f" expected an integer (this runtime speaks version {PROTOCOL_VERSION})"
        )
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            f"network plugin {plugin} speaks helper protocol version {version} ({where});"
            f" this runtime speaks version {PROTOCOL_VERSION}"
        )
    return version


def check_status(manifest: Any, status: StatusReply) -> None:
    """A helper's GET /status must be the plugin its manifest describes (a manifest naming
    another plugin's executable, or one out of date with its helper, is refused)."""
    if status.plugin != manifest.name:
        raise ProtocolError(
            f"network plugin {manifest.name}: its helper says it is plugin {status.plugin!r}"
            f" (manifest {manifest.manifest})"
        )
    if sorted(status.strategies) != sorted(manifest.strategies):
        raise ProtocolError(
            f"network plugin {manifest.name}: its helper offers strategies"
            f" [{', '.join(status.strategies)}] but its manifest {manifest.manifest} says"
            f" [{', '.join(manifest.strategies)}]"
        )


def _field(data: Any, key: str, kind: type | tuple[type, ...], what: str) -> Any:
    if not isinstance(data, dict):
        raise ProtocolError(f"{what}: expected a JSON object")
    if key not in data:
        raise ProtocolError(f"{what}: missing {key!r}")
    value = data[key]
    if isinstance(value, bool) and kind is int or not isinstance(value, kind):
        raise ProtocolError(f"{what}: {key!r} has the wrong type")
    return value


@dataclass(frozen=True)
class StatusReply:
    """GET /status: who the helper is, and that it is ready."""

    plugin: str
    version: str
    protocol: int
    pid: int
    strategies: tuple[str, ...]
    networks: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "plugin": self.plugin,
            "version": self.version,
            "protocol": self.protocol,
            "pid": self.pid,
            "strategies": list(self.strategies),
            "networks": list(self.networks),
        }

    @classmethod
    def from_json(cls, data: Any) -> StatusReply:
        what = "GET /status reply"
        strategies = _field(data, "strategies", list, what)
        networks = _field(data, "networks", list, what)
        if not all(isinstance(s, str) for s in strategies + networks):
            raise ProtocolError(f"{what}: strategies and networks must be lists of strings")
        return cls(
            plugin=_field(data, "plugin", str, what),
            version=_field(data, "version", str, what),
            protocol=_field(data, "protocol", int, what),
            pid=_field(data, "pid", int, what),
            strategies=tuple(strategies),
            networks=tuple(networks),
        )


@dataclass(frozen=True)
class NetworkReply:
    """POST /networks: the network is built; `link` names its kernel link (whatever its
    kind: a bridge, a macvlan parent's shim, ...), if any; `dnsAddress` is where the
    embedded DNS serves the network's members (their nameserver): null for nowhere,
    absent (older plugins) for the network's gateway."""

    link: str | None = None
    dns_address: ipaddress.IPv4Address | None = None
    dns_given: bool = True  # False: the reply had no dnsAddress (the gateway, then)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"link": self.link}
        if self.dns_given:
            out["dnsAddress"] = None if self.dns_address is None else str(self.dns_address)
        return out

    def dns_for(self, gateway: ipaddress.IPv4Address) -> ipaddress.IPv4Address | None:
        return self.dns_address if self.dns_given else gateway

    @classmethod
    def from_json(cls, data: Any) -> NetworkReply:
        if not isinstance(data, dict):
            raise ProtocolError("POST /networks reply: expected a JSON object")
        # Helpers before protocol field `link` (out-of-tree plugins may still be) sent `bridge`.
        link = data["link"] if "link" in data else data.get("bridge")
        if link is not None and not isinstance(link, str):
            raise ProtocolError("POST /networks reply: 'link' must be a string or null")
        if "dnsAddress" not in data:
            return cls(link, None, dns_given=False)
        raw = data["dnsAddress"]
        if raw is None:
            return cls(link, None)
        try:
            return cls(link, ipaddress.IPv4Address(str(raw)))
        except ValueError:
            raise ProtocolError(
                "POST /networks reply: 'dnsAddress' must be an IPv4 address or null"
            ) from None


@dataclass(frozen=True)
class CheckReply:
    """POST /networks/{name}/check: one line per way the kernel differs from the
    network's attachments (empty: healthy)."""

    network: str
    problems: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"network": self.network, "problems": list(self.problems)}

    @classmethod
    def from_json(cls, data: Any) -> CheckReply:
        what = "POST /networks/{name}/check reply"
        problems = _field(data, "problems", list, what)
        if not all(isinstance(p, str) and "\n" not in p for p in problems):
            raise ProtocolError(f"{what}: problems must be one-line strings")
        return cls(_field(data, "network", str, what), tuple(problems))


@dataclass(frozen=True)
class PortForward:
    """One published port range: `count` consecutive ports from host_port/container_port
    (container_ip is the owner's IPv4 address; host_ip None = every host address)."""

    protocol: str
    host_ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    host_port: int
    container_ip: ipaddress.IPv4Address
    container_port: int
    count: int = 1

    def __post_init__(self) -> None:
        if self.protocol not in ("tcp", "udp"):
            raise InvalidArgument(f"invalid port protocol {self.protocol!r}")
        if self.count < 1:
            raise InvalidArgument(f"invalid port count {self.count}")
        for port in (self.host_port, self.container_port):
            if not 1 <= port or port + self.count - 1 > 65535:
                raise InvalidArgument(f"invalid port {port}")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "protocol": self.protocol,
            "hostIP": str(self.host_ip) if self.host_ip else None,
            "hostPort": self.host_port,
            "containerIP": str(self.container_ip),
            "containerPort": self.container_port,
        }
        if self.count != 1:
            out["count"] = self.count
        return out

    @classmethod
    def from_json(cls, data: Any) -> PortForward:
        if not isinstance(data, dict):
            raise InvalidArgument("a port forward must be a JSON object")
        try:
            host = data.get("hostIP")
            return cls(
                protocol=str(data["protocol"]),
                host_ip=ipaddress.ip_address(str(host).strip("[]")) if host else None,
                host_port=int(data["hostPort"]),
                container_ip=ipaddress.IPv4Address(data["containerIP"]),
                container_port=int(data["containerPort"]),
                count=int(data.get("count", 1)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, InvalidArgument):
                raise
            raise InvalidArgument(f"invalid port forward: {exc}") from None


@dataclass(frozen=True)
class PortForwardsRequest:
    """PUT /portforwards/{owner}: every port the owner publishes (replaces the previous)."""

    forwards: tuple[PortForward, ...]

    def to_json(self) -> dict[str, Any]:
        return {"forwards": [f.to_json() for f in self.forwards]}

    @classmethod
    def from_json(cls, data: Any) -> PortForwardsRequest:
        forwards = data.get("forwards") if isinstance(data, dict) else None
        if not isinstance(forwards, list):
            raise InvalidArgument("forwards must be a list")
        return cls(tuple(PortForward.from_json(f) for f in forwards))


@dataclass(frozen=True)
class ErrorReply:
    """Every non-2xx reply: the error's kind and a one-line message (shown after Error:)."""

    error: str
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"error": self.error, "message": self.message}

    @classmethod
    def from_json(cls, data: Any) -> ErrorReply:
        what = "error reply"
        error = _field(data, "error", str, what)
        message = _field(data, "message", str, what)
        if error not in ERROR_KINDS:
            raise ProtocolError(f"{what}: unknown error kind {error!r}")
        if "\n" in message:
            raise ProtocolError(f"{what}: the message must be one line")
        return cls(error, message)


def parse_attachment(plugin: str, data: Any) -> Attachment:
    """A helper's attachment reply, validated (a ProtocolError naming the plugin if not)."""
    if not isinstance(data, dict):
        raise ProtocolError(f"network plugin {plugin}: attachment reply is not a JSON object")
    try:
        return Attachment.from_json(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(
            f"network plugin {plugin} returned an invalid attachment: {exc!r}"
        ) from None


@cache
def schema() -> dict[str, Any]:
    """The machine-readable schema of the helper API (protocol.json)."""
    text = resources.files(__package__).joinpath("protocol.json").read_text()
    return dict(json.loads(text))
