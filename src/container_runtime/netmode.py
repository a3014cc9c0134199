"""A container's network namespace mode and its names: `--network host`, `--network
container:NAME`, `--hostname`, `--domainname` and `--add-host NAME:IP`, validated.

Stdlib only (the CLI imports models, which import this).  The API server stores the
result in the container's config (container_config.ContainerConfig) and acts on it in
apiserver/netjoin.py (whose namespace, refusals at start/rm) and etcfiles.py.

Modes (`NamespaceMode.kind`):
- `private` (default): a sandbox of its own with an attachment per `--network`;
- `host`: no network namespace at all (the host's interfaces, routes and ports: gives up
  network isolation, as Docker's and Podman's `--network host`);
- `container`: the network namespace of another (running) container, no attachment of
  its own (`owner` is the other container's id once resolved by the API server).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from .errors import InvalidArgument

HOST_MODE = "host"
CONTAINER_PREFIX = "container:"
# Names every container resolves to its primary network's gateway (/etc/hosts and the
# embedded DNS): ours, and Docker's, so images made for Docker Desktop work unchanged.
HOST_GATEWAY_NAMES = ("host.container.internal", "host.docker.internal")
HOST_GATEWAY = "host-gateway"  # `--add-host NAME:host-gateway`, as Docker
MAX_ADD_HOSTS = 64
ISOLATIONS = ("namespace", "vm")

_LABEL_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


@dataclass(frozen=True)
class NamespaceMode:
    kind: str = "private"  # "private" | "host" | "container"
    owner: str | None = None  # container mode: the name/id given, then the owner's id

    def to_json(self) -> dict[str, str | None]:
        return {"kind": self.kind, "owner": self.owner}

    @classmethod
    def from_json(cls, data: object) -> NamespaceMode:
        if not isinstance(data, dict):
            return cls()
        kind = str(data.get("kind") or "private")
        if kind not in ("private", "host", "container"):
            raise InvalidArgument(f"invalid network mode {kind!r}")
        owner = data.get("owner")
        return cls(kind, str(owner) if owner else None)


def parse_namespace_mode(specs: list[str]) -> tuple[NamespaceMode, list[str]]:
    """Split `--network` values: the namespace mode and the remaining attachment specs.
    `host` and `container:NAME` must be given alone."""
    special = [s for s in specs if s == HOST_MODE or s.startswith(CONTAINER_PREFIX)]
    if not special:
        return NamespaceMode(), specs
    if len(specs) > 1:
        raise InvalidArgument(
            f"--network {special[0]} can not be combined with another --network"
            " (it replaces the container's own networking)"
        )
    spec = special[0]
    if spec == HOST_MODE:
        return NamespaceMode(HOST_MODE), []
    owner = spec[len(CONTAINER_PREFIX) :]
    if not owner:
        raise InvalidArgument(
            f"invalid network spec {spec!r}: expected container:NAME (a container name or id)"
        )
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", owner):
        raise InvalidArgument(f"invalid network spec {spec!r}: {owner!r} is not a container name")
    return NamespaceMode("container", owner), []


def validate_hostname(text: str, what: str = "--hostname") -> str:
    """RFC 1123: dot-separated labels of letters, digits and '-' (not at either end),
    1-63 characters each, at most 253 in all.  Case is kept (the UTS name is as given)."""
    if not 1 <= len(text) <= 253 or not all(_LABEL_RE.match(p) for p in text.split(".")):
        raise InvalidArgument(
            f"invalid {what} {text!r}: use dot-separated labels of 1-63 letters, digits and"
            " '-' (not first or last), at most 253 characters (RFC 1123)"
        )
    return text


def parse_add_host(text: str) -> tuple[str, str]:
    """`NAME:IP` (IPv6 too, `NAME:fd00::1` or `NAME:[fd00::1]`; `NAME=IP` as newer
    Docker) or `NAME:host-gateway` -> (name, normalised IP or "host-gateway")."""
    sep = "=" if "=" in text else ":"
    name, found, value = text.partition(sep)
    bad = f"invalid --add-host {text!r}: expected NAME:IP (or NAME:host-gateway)"
    if not found or not name or not value:
        raise InvalidArgument(bad)
    validate_hostname(name, "--add-host name")
    if value == HOST_GATEWAY:
        return name, value
    if value.startswith("[") and value.endswith("]"):
        value = value[1:-1]
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        raise InvalidArgument(f"{bad} ({value!r} is not an IP address)") from None
    return name, str(ip)


def check_isolation_supports(mode: NamespaceMode, isolation: str) -> None:
    """Refuse `--network host` and `--network container:NAME` for a VM container: a VM has
    its own kernel, so it can share neither the host's network stack nor another
    container's namespace.  `isolation` is the container's "namespace" or "vm"."""
    if isolation not in ISOLATIONS:
        raise InvalidArgument(f"invalid isolation {isolation!r} (valid: {', '.join(ISOLATIONS)})")
    if isolation == "vm" and mode.kind != "private":
        what = "--network host" if mode.kind == HOST_MODE else f"--network container:{mode.owner}"
        raise InvalidArgument(
            f"{what} is not supported for VM containers (a VM has its own kernel and network"
            " stack); use a network"
        )
