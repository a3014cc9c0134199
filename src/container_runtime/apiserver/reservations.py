"""Static addresses in the API server: a container's `ip=`/`ip6=` is reserved in its
network's plugin (protocol: `PUT|DELETE /networks/{name}/reservations/{owner}`) from its
create (or `network connect` with `--ip`) until its removal (or `network disconnect`), so
no one else gets the address while the container exists, even stopped.

The API server never reads a plugin's tables: it knows a reservation only from the
container's own configuration (its `--network` specs) and from the plugin's replies. A
reservation is made before the container row (or configuration change) is committed and
removed after it is, so a crash in between leaves at most a reservation with no user,
which `reconcile` (at every API server start) releases; it also makes again any
reservation a container's configuration asks for that its plugin does not hold.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from ..errors import InvalidArgument, NotFound
from ..models import AttachmentSpec
from .helpers import HelperClient

log = logging.getLogger("container-apiserver")

PluginOf = Callable[[str], str]  # network name -> its plugin


def _unsupported(plugin: str, exc: NotFound) -> InvalidArgument | NotFound:
    """A plugin without the reservation calls (one that predates them) says so."""
    if exc.message.startswith("no such endpoint"):
        return InvalidArgument(
            f"network plugin {plugin} does not support static addresses (ip=, ip6=)"
        )
    return exc


def reserve(helper: HelperClient, owner: str, spec: AttachmentSpec) -> None:
    """Hold a spec's static address for `owner` (idempotent; Conflict when taken)."""
    assert spec.ip is not None
    body = {"address": str(spec.ip), "ipv6Address": str(spec.ip6) if spec.ip6 else None}
    try:
        helper.request("PUT", f"/networks/{spec.network}/reservations/{owner}", body)
    except NotFound as exc:
        raise _unsupported(helper.plugin, exc) from None


def release(helper: HelperClient, owner: str, network: str) -> None:
    """Give a reservation back (idempotent; a failure is left to `reconcile`)."""
    try:
        helper.request("DELETE", f"/networks/{network}/reservations/{owner}")
    except Exception as exc:  # the next start's reconcile releases it
        log.warning(f"container-apiserver: releasing the address of {owner[:12]} failed: {exc}")


def reserve_all(
    helper_for: Callable[[str], HelperClient],
    plugin_of: PluginOf,
    owner: str,
    specs: Iterable[AttachmentSpec],
) -> Callable[[], None]:
    """Reserve every static spec, all or nothing; returns the undo."""
    done: list[tuple[HelperClient, str]] = []

    def undo() -> None:
        for helper, network in reversed(done):
            release(helper, owner, network)

    try:
        for spec in specs:
            if spec.ip is None:
                continue
            helper = helper_for(plugin_of(spec.network))
            reserve(helper, owner, spec)
            done.append((helper, spec.network))
    except BaseException:
        undo()
        raise
    return undo


def reconcile(
    helper_for: Callable[[str], HelperClient],
    networks: dict[str, str],
    wanted: dict[tuple[str, str], AttachmentSpec],
) -> None:
    """Make each plugin's reservations match the containers' static specs: `networks`
    maps every network to its plugin, `wanted` (network, owner) to the spec."""
    for network, plugin in sorted(networks.items()):
        helper = helper_for(plugin)
        try:
            held = helper.request("GET", f"/networks/{network}/reservations")
        except NotFound:
            continue  # a plugin without reservations (or the network went)
        except Exception as exc:
            log.warning(f"container-apiserver: listing the reservations of {network}: {exc}")
            continue
        have = {str(r["owner"]): r for r in held}
        for owner, reply in have.items():
            if (network, owner) not in wanted:
                release(helper, owner, network)
                log.info(f"container-apiserver: released the reserved {reply['address']}")
        for (net, owner), spec in sorted(wanted.items()):
            if net != network:
                continue
            reply = have.get(owner)
            if reply is not None and reply.get("address") == str(spec.ip):
                continue
            try:
                reserve(helper, owner, spec)
                log.info(f"container-apiserver: reserved {spec.ip} for {owner[:12]} again")
            except Exception as exc:
                log.warning(f"container-apiserver: reserving {spec.ip} for {owner[:12]}: {exc}")
