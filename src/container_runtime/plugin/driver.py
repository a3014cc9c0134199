"""The driver interface of the plugin SDK: what a network plugin writes; everything
generic (socket, routes, lock, pid file, signals, allocation, commit-before-reply,
idempotency per owner, reconcile at start) is the host's (host.py).

A driver only builds and removes kernel (or other) state for networks and attachments the
host has already validated and committed; it never touches the allocator's tables itself
except through the host.  A driver whose backend picks addresses itself (`allocates`, e.g.
the cni plugin, whose CNI IPAM plugin allocates) implements allocate/deallocate instead of
realise/unrealise: the host then commits its intent before the driver acts and the
driver's reply (with its own data) before the host replies (host.py).
"""

from __future__ import annotations

import ipaddress
import sqlite3
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import InvalidArgument
from ..models import RUNTIME_OPTIONS, Attachment, AttachmentRequest, NetworkConfiguration
from ..netoptions import specs_from_table, validate_options
from .allocator import FULL_POOL, AddressPool

if TYPE_CHECKING:
    from .host import PluginHost


@dataclass(frozen=True)
class DriverRecord:
    """The host's record of an attachment a driver allocates itself: what it was asked for
    and, once it acted, its own data (JSON object: for cni the ADD result)."""

    network: str
    owner: str
    netns: str | None
    interface: str
    state: str  # pending | ready | releasing
    data: dict[str, Any] | None = None


class Driver:
    """Base class of a network plugin's driver; override the methods the plugin needs.

    Class attributes say what the plugin offers (also served by GET /status):
    `name` (as in its manifest), `version`, `strategies` (interface strategies it can
    realise) and `options` (`network create --option KEY=VALUE` it accepts, in the manifest's
    form: each key with its values, the default first, or a type name; netoptions.py).
    """

    name: ClassVar[str] = ""
    version: ClassVar[str] = "0.1.0"
    strategies: ClassVar[tuple[str, ...]] = ()
    options: ClassVar[dict[str, tuple[str, ...] | str]] = {}
    # Tables of its own in the plugin's private database (plugin/store.py; `;`-separated
    # CREATE ... IF NOT EXISTS statements), reached through `self.host.db`.
    schema: ClassVar[str] = ""
    # True: the driver allocates addresses itself (allocate/deallocate), not the host's
    # allocator (realise/unrealise).
    allocates: ClassVar[bool] = False

    host: PluginHost

    def bind(self, host: PluginHost) -> None:
        """Called once by the host before anything else (gives the driver its allocator,
        database and network lookups)."""
        self.host = host

    # -- networks ---------------------------------------------------------------------

    def validate(self, config: NetworkConfiguration) -> None:
        """Refuse a network the plugin cannot build (options parsed once, here). By
        default: its options checked against `options` (netoptions.py); a driver that
        overrides this should call it first."""
        specs = specs_from_table({**self.options, **RUNTIME_OPTIONS})
        try:
            validate_options([f"{k}={v}" for k, v in config.options.items()], specs)
        except InvalidArgument as exc:
            raise InvalidArgument(f"plugin {self.name}: {exc.message}") from None

    def create_network(self, config: NetworkConfiguration) -> str | None:
        """Build the network (idempotent); returns its kernel link's name, if any (the
        reply's `link`: a bridge, a shim, whatever kind the plugin makes)."""
        return None

    def delete_network(self, name: str) -> None:
        """Remove the network's state (idempotent); it has no attachments left."""

    def address_pool(self, config: NetworkConfiguration) -> AddressPool:
        """The addresses the host may allocate on this network (default: the whole subnet
        but its network, gateway and broadcast addresses)."""
        return FULL_POOL

    def dns_address(self, config: NetworkConfiguration) -> ipaddress.IPv4Address | None:
        """Where the embedded DNS serves this network's members (their nameserver): by
        default the gateway, as on a bridge; None for no embedded DNS on the network."""
        return config.ipv4_gateway

    # -- attachments ------------------------------------------------------------------

    def realise(
        self, attachment: Attachment, request: AttachmentRequest, config: NetworkConfiguration
    ) -> str | None:
        """Build a committed attachment's interface for `request.strategy`; all or nothing
        (on failure undo your own work and raise: the host then releases the allocation).
        Returns the host-side interface name, if any."""
        raise InvalidArgument(f"plugin {self.name} cannot build interfaces")

    def unrealise(self, attachment: Attachment, host_ifname: str | None) -> None:
        """Remove a released attachment's interface (idempotent)."""

    def make_primary(self, attachment: Attachment, config: NetworkConfiguration) -> None:
        """Make a realised attachment its sandbox's primary: the default route(s) via its
        gateway (replacing the old ones), when the owner's primary network goes."""
        raise InvalidArgument(f"plugin {self.name} cannot move a default route")

    # -- attachments of a driver that allocates (allocates = True) ------------------------

    def allocate(
        self, request: AttachmentRequest, config: NetworkConfiguration
    ) -> tuple[Attachment, dict[str, Any]]:
        """Build the attachment and pick its addresses, all or nothing (undo your own work
        and raise on failure). Returns it with the data the host commits beside it and
        hands back to deallocate and check. The host has committed a pending record first."""
        raise InvalidArgument(f"plugin {self.name} does not allocate addresses itself")

    def deallocate(self, record: DriverRecord) -> None:
        """Undo an allocate (idempotent; `record.data` is None if it never completed)."""

    # -- verification -----------------------------------------------------------------

    def check(self, config: NetworkConfiguration, attachments: list[Attachment]) -> list[str]:
        """`container network check`: one line per way the kernel differs from the
        network's attachments (empty: healthy)."""
        raise InvalidArgument(f"plugin {self.name} cannot check its attachments")

    # -- published ports (optional) ---------------------------------------------------

    def publish(self, owner: str, forwards: list[dict[str, Any]]) -> None:
        raise InvalidArgument(f"plugin {self.name} does not publish ports")

    def unpublish(self, owner: str) -> None:
        """Withdraw an owner's published ports (idempotent; nothing to do by default)."""

    # -- life cycle -------------------------------------------------------------------

    def reconcile(self) -> None:
        """Make the world match the state (at start, after a crash, on POST /reload)."""

    def migrate_legacy(
        self, old: sqlite3.Connection, new: sqlite3.Connection, owners: set[str]
    ) -> tuple[str, ...]:
        """Move this plugin's rows of its own tables out of the pre-11.1 shared state file
        (`old`, in a transaction) into its database (`new`, in a transaction), for the
        attachments of `owners` the host moved; returns the old tables it emptied of them."""
        return ()

    def start(self, stop: threading.Event) -> None:
        """Start background work (watchers) once serving; end it when `stop` is set."""

    def close(self) -> None:
        """Release resources at shutdown."""
