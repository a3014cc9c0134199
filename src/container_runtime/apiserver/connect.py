"""`network connect` and `network disconnect` of a container (Docker's semantics), live
on a running one, in its configuration for the next start on a stopped one.

A running container's new attachment is the next free interface (`eth1`, ...) in its
sandbox, built by the network's plugin like the ones of its start; its endpoint (with its
DNS aliases) and the container's configuration are committed in one transaction, so DNS
answers for it at once and inspect shows it. A disconnect forgets endpoint and
configuration entry first (the name stops resolving), then asks the plugin to release the
interface. The first network is primary (default route, DNS server in resolv.conf,
published ports): it is disconnected only when it is the last one, or with `force`; then
the next network becomes primary: the plugin moves the default route to it
(`POST .../attachments/{owner}/primary`), the published ports follow it, and /etc/hosts
and /etc/resolv.conf are rewritten.

Crash safety: a connect whose commit did not happen leaves at most an attachment of a
running container that its configuration does not list, which recovery.sync_endpoints
releases at the next start; a disconnect committed before the plugin released the
interface is finished the same way. Static addresses: reservations.py.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from ..container_config import str_list as _str_list
from ..dns.control import notify_dns
from ..errors import Conflict, ContainerError, InvalidArgument, NotFound
from ..models import AttachmentSpec, NetworkConfiguration, check_static_address, network_mtu
from . import endpoints, netjoin, reservations, vmstart

if TYPE_CHECKING:
    from .containers import ContainerService

log = logging.getLogger("container-apiserver")


def refuse_live_change_of_vm(cfg: dict[str, Any], name: str) -> None:
    """The hook for VM containers (`isolation: vm` in their configuration): their NICs
    are not hot-plugged (yet), so a running one's networks cannot change."""
    if cfg.get("isolation") == "vm":
        raise Conflict(f"container {name} runs in a VM: stop it to change its networks")


def attach_request(
    owner: str,
    hostname: str,
    spec: AttachmentSpec,
    config: NetworkConfiguration,
    netns: str | None,
    interface: str,
    primary: bool,
    strategy: str,
) -> dict[str, Any]:
    """The helper request for one of a container's attachments (start and connect);
    `strategy`: the one the plugin builds a namespace's interface with."""
    return {
        "owner": owner,
        "hostname": hostname,
        "mac": spec.mac,
        "mtu": spec.mtu or network_mtu(config),  # per attachment, else the network's
        "ip": str(spec.ip) if spec.ip else None,
        "ip6": str(spec.ip6) if spec.ip6 else None,
        "netns": netns,
        "strategy": strategy,
        "interface": interface,
        "primary": primary,
    }


def specs_of(cfg: dict[str, Any]) -> list[AttachmentSpec]:
    return [AttachmentSpec.from_json(s) for s in cfg["networks"]]


def connect_spec(network: str, body: dict[str, Any]) -> AttachmentSpec:
    """`network connect` flags as a spec (validated like a `--network` spec)."""
    mtu = body.get("mtu")
    if mtu is not None and (isinstance(mtu, bool) or not isinstance(mtu, int | str)):
        raise InvalidArgument("mtu must be an integer")
    values = {k: body.get(k) for k in ("mac", "ip", "ip6")}
    for key, value in values.items():
        if value is not None and not isinstance(value, str):
            raise InvalidArgument(f"{key} must be a string")
    return AttachmentSpec.build(
        network, mtu=mtu, aliases=_str_list(body.get("aliases"), "aliases"), **values
    )


def _container_ref(body: dict[str, Any]) -> str:
    ref = body.get("container")
    if not isinstance(ref, str) or not ref:
        raise InvalidArgument("give the container (a name or an id)")
    return ref


class NetworkChanges:
    def __init__(self, svc: ContainerService) -> None:
        self.svc = svc

    def _save(self, cid: str, cfg: dict[str, Any], specs: list[AttachmentSpec]) -> None:
        cfg["networks"] = [s.to_json() for s in specs]
        with self.svc.db.write() as conn:
            conn.execute("UPDATE containers SET config = ? WHERE id = ?", (json.dumps(cfg), cid))

    def _live(self, cid: str, specs: list[AttachmentSpec]) -> list[dict[str, Any]]:
        """The running container's attachment replies, primary first (as its specs)."""
        with self.svc.db.read() as conn:
            rows = conn.execute(
                "SELECT network, attachment FROM endpoints WHERE owner = ?", (cid,)
            ).fetchall()
        replies = {str(r[0]): json.loads(r[1]) for r in rows}
        return [replies[s.network] for s in specs if s.network in replies]

    def _refresh_etc(
        self, cid: str, name: str, cfg: dict[str, Any], atts: list[Any], primary: bool
    ) -> None:
        """Rewrite /etc/hosts (and, when the primary network changed, resolv.conf)."""
        try:
            hosts, resolv = self.svc._etc_files(name, cfg, atts)
            self.svc.runtime.update_etc(cid, hosts=hosts, resolv_conf=resolv if primary else None)
        except (OSError, ContainerError) as exc:  # the network change itself stands
            log.warning(f"container-apiserver: rewriting /etc files of {name}: {exc}")

    def _publish(self, cid: str, cfg: dict[str, Any], plugin: str, reply: dict[str, Any]) -> None:
        from .containers import port_runs

        primary_ip = str(reply["address"]).split("/")[0]
        forwards = port_runs([{**p, "containerIP": primary_ip} for p in cfg["ports"]])
        self.svc.helper_for(plugin).request("PUT", f"/portforwards/{cid}", {"forwards": forwards})

    def _changeable(
        self, cid: str, body: dict[str, Any]
    ) -> tuple[Any, str, dict[str, Any], list[AttachmentSpec]]:
        """The container's row, name, configuration and specs, under its lock; refused when
        it has no networks of its own to change."""
        row = self.svc._row(cid)
        if row is None:
            raise NotFound(f"container {body.get('container')} not found")
        name, cfg = str(row["name"]), json.loads(row["config"])
        netjoin.refuse_network_change(self.svc, cfg, name)
        return row, name, cfg, specs_of(cfg)

    # -- connect ------------------------------------------------------------------------

    def connect(self, network: str, body: dict[str, Any]) -> dict[str, Any]:
        svc = self.svc
        spec = connect_spec(network, body)
        cid = svc.resolve(_container_ref(body))
        config = svc.networks.configuration(network)  # NotFound for an unknown network
        check_static_address(config, spec.ip, spec.ip6)
        with svc._locked(cid):
            row, name, cfg, specs = self._changeable(cid, body)
            if any(s.network == network for s in specs):
                raise Conflict(f"container {name} is already connected to network {network}")
            running = row["state"] == "running"
            if running:
                refuse_live_change_of_vm(cfg, name)
            vmstart.check_network(cfg, config, svc.networks.strategies(config.plugin))
            svc.networks.check_dns_names(name, [network], cid)
            svc.networks.check_aliases(spec.aliases, network, cid)
            if not specs and cfg.get("hostname"):  # its first network: --hostname's name
                svc.networks.check_dns_names(cfg["hostname"], [network], cid, what="hostname")
            plugin = config.plugin
            undo = reservations.reserve_all(svc.helper_for, lambda _: plugin, cid, [spec])
            try:
                if running:
                    self._connect_live(cid, name, cfg, specs, spec, config)
                else:
                    self._save(cid, cfg, [*specs, spec])
            except BaseException:
                undo()
                raise
        log.info(f"container-apiserver: connected container {name} to network {network}")
        return svc.get(cid)

    def _connect_live(
        self,
        cid: str,
        name: str,
        cfg: dict[str, Any],
        specs: list[AttachmentSpec],
        spec: AttachmentSpec,
        config: NetworkConfiguration,
    ) -> None:
        svc = self.svc
        live = self._live(cid, specs)
        used = {str(a.get("interface")) for a in live}
        interface = next(f"eth{i}" for i in range(len(used) + 1) if f"eth{i}" not in used)
        primary = not live
        request = attach_request(
            cid,
            (cfg.get("hostname") if primary else None) or name,  # eth0: --hostname's name
            spec,
            config,
            str(svc.sandboxes.path(cid)),
            interface,
            primary,
            svc.networks.namespace_strategy(config.plugin),
        )
        helper = svc.helper_for(config.plugin)
        path = f"/networks/{config.name}/attachments"
        reply = helper.request("POST", path, request, idempotent=True)
        try:
            cfg["networks"] = [s.to_json() for s in (*specs, spec)]
            with svc.db.write() as conn:  # endpoint, aliases and configuration at once
                endpoints.record(conn, config.plugin, reply, cid, spec.aliases)
                conn.execute(
                    "UPDATE containers SET config = ? WHERE id = ?", (json.dumps(cfg), cid)
                )
            try:  # again once recorded: a racing start or connect sees one of the two
                svc.networks.check_dns_names(name, [config.name], cid)
                svc.networks.check_aliases(spec.aliases, config.name, cid)
            except Conflict:
                with svc.db.write() as conn:
                    endpoints.forget(conn, cid, [config.name])
                self._save(cid, cfg, list(specs))
                raise
            if primary and cfg.get("ports"):
                self._publish(cid, cfg, config.plugin, reply)
        except BaseException:
            try:
                helper.request("DELETE", f"{path}/{cid}")
            except ContainerError as exc:  # recovery releases it at the next start
                log.warning(f"container-apiserver: undoing the connect of {name}: {exc}")
            raise
        notify_dns(svc.paths.run_dir)
        self._refresh_etc(cid, name, cfg, [*live, reply], primary)

    # -- disconnect ---------------------------------------------------------------------

    def disconnect(self, network: str, body: dict[str, Any]) -> dict[str, Any]:
        svc = self.svc
        force = body.get("force", False)
        if not isinstance(force, bool):
            raise InvalidArgument("force must be true or false")
        cid = svc.resolve(_container_ref(body))
        with svc._locked(cid):
            row, name, cfg, specs = self._changeable(cid, body)
            index = next((i for i, s in enumerate(specs) if s.network == network), None)
            if index is None:
                raise NotFound(f"container {name} is not connected to network {network}")
            rest = [s for s in specs if s.network != network]
            if index == 0 and rest and not force:
                raise Conflict(
                    f"network {network} is the primary network of container {name} (default"
                    " route, DNS server, published ports): disconnect its other networks"
                    f" first, or use --force to make {rest[0].network} its primary network"
                )
            running = row["state"] == "running"
            if running:
                refuse_live_change_of_vm(cfg, name)
                self._disconnect_live(cid, name, cfg, specs, index)
            else:
                self._save(cid, cfg, rest)
            removed = specs[index]
            if removed.ip is not None:
                reservations.release(svc.helper_for(svc._plugin(network)), cid, network)
        log.info(f"container-apiserver: disconnected container {name} from network {network}")
        return svc.get(cid)

    def _disconnect_live(
        self, cid: str, name: str, cfg: dict[str, Any], specs: list[AttachmentSpec], index: int
    ) -> None:
        svc = self.svc
        network = specs[index].network
        rest = [s for s in specs if s.network != network]
        live = {str(a["network"]): a for a in self._live(cid, specs)}
        plugin = svc._plugin(network)
        ports = bool(cfg.get("ports"))
        if index == 0 and rest and rest[0].network in live:
            # The next network becomes primary before this one goes: nothing has changed
            # if the plugin cannot move the route.
            successor = rest[0].network
            new_plugin = svc._plugin(successor)
            try:
                svc.helper_for(new_plugin).request(
                    "POST", f"/networks/{successor}/attachments/{cid}/primary", {}
                )
            except NotFound as exc:
                if exc.message.startswith("no such endpoint"):
                    raise InvalidArgument(
                        f"network plugin {new_plugin} cannot make network {successor} the"
                        f" primary network of a running container: stop {name} first"
                    ) from None
                raise
            if ports:
                if new_plugin != plugin:
                    svc.helper_for(plugin).request("DELETE", f"/portforwards/{cid}")
                self._publish(cid, cfg, new_plugin, live[successor])
        elif index == 0 and ports:
            svc.helper_for(plugin).request("DELETE", f"/portforwards/{cid}")
        cfg["networks"] = [s.to_json() for s in rest]
        with svc.db.write() as conn:  # forgotten first: the name never outlives it
            endpoints.forget(conn, cid, [network])
            conn.execute("UPDATE containers SET config = ? WHERE id = ?", (json.dumps(cfg), cid))
        notify_dns(svc.paths.run_dir)
        if network in live:
            try:
                svc.helper_for(plugin).request("DELETE", f"/networks/{network}/attachments/{cid}")
            except NotFound:
                pass
            except ContainerError as exc:  # recovery releases it at the next start
                log.warning(f"container-apiserver: releasing {name} on {network}: {exc}")
        atts = [live[s.network] for s in rest if s.network in live]
        self._refresh_etc(cid, name, cfg, atts, index == 0)
