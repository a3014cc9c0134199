"""Containers and images in the API server: life cycle and networking (REST routes in
container_routes.py, /etc files in etcfiles.py, process options in runopts.py, recovery
after a crash in recovery.py).

The API server owns the `containers` table.  A container's networking is built just
before its process starts, in this order (and torn down in the reverse order at stop,
exit, delete, or at the next API server start when the process is gone):

    sandbox (netns, made here: runtime/sandbox.py) -> attachments eth0, eth1, ... (each
    by its network's plugin helper, recorded in endpoints) -> published ports -> /etc
    files -> runc

Owners of attachments, sandboxes and published ports are container ids (64 hex digits).
The process itself runs under conmon (runtime/oci.py): no Python process per container,
so containers keep running while the API server is down; a watcher thread reads each
running container's state files every WATCH_INTERVAL seconds and releases the networking
of the ones that exited.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import logging
import os
import re
import secrets
import signal as signal_mod
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from ..config import Config
from ..container_config import ContainerConfig, parse_env, str_list
from ..dns.control import notify_dns
from ..errors import Conflict, ContainerError, InvalidArgument, NotFound
from ..models import DEFAULT_PLUGIN, check_static_address, validate_container_name
from ..netmode import check_isolation_supports
from ..paths import Paths
from ..runtime.images import ImageStore, normalize_reference
from ..runtime.oci import OciRuntime, ProcessSpec
from ..runtime.sandbox import Sandboxes
from ..runtime.spec import BindMount
from ..runtime.vm.machine import VmRuntime
from ..state import Database
from . import endpoints, netjoin, recovery, reservations, vmstart
from .connect import NetworkChanges, attach_request, specs_of
from .container_routes import register_routes
from .etcfiles import short_hostname
from .helpers import HelperClient
from .networks import NetworkService
from .runopts import parse_run_options

__all__ = ["ContainerService", "register_routes"]

log = logging.getLogger("container-apiserver")

WATCH_INTERVAL = 0.5
SHUTDOWN_STOP_TIMEOUT = 3.0
ANY_ID_RE = re.compile(r"\b[0-9a-f]{64}\b")
LOG_CHUNK = 1 << 20
# An attached run (`run -i/-t`) waits after `runc create` for its client to connect to
# the attach socket; if the client never says "go", the container starts anyway.
ATTACH_WAIT = 30.0


def name_containers(message: str, names: dict[str, str]) -> str:
    """`message` with container ids (full, or the 12-character short id after the word
    "container") replaced by "container NAME", never "container container NAME"."""
    for cid, name in names.items():
        message = message.replace(f"container {cid}", f"container {name}")
        message = message.replace(f"container {cid[:12]}", f"container {name}")

    def bare(m: re.Match[str]) -> str:
        return f"container {names[m.group(0)]}" if m.group(0) in names else m.group(0)

    return ANY_ID_RE.sub(bare, message)


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


_short_hostname = short_hostname


def parse_create(body: dict[str, Any], config: Config) -> dict[str, Any]:
    """Validate a create request; return the `config` JSON stored in the containers row."""
    parsed = ContainerConfig.parse(body, config.dns_domain, config.isolation)
    check_isolation_supports(parsed.namespace, parsed.isolation)  # VMs: docs/VM.md
    cfg = parsed.to_json()
    cfg.update(parse_run_options(body))
    vmstart.check_create(cfg)
    return cfg


class ContainerService:
    def __init__(
        self,
        db: Database,
        config: Config,
        paths: Paths,
        networks: NetworkService,
        helper_for: Callable[[str], HelperClient],
    ) -> None:
        self.db = db
        self.config = config
        self.paths = paths
        self.networks = networks
        self.helper_for = helper_for
        self.images = ImageStore(paths.images_dir)
        self.runtime = OciRuntime(paths.containers_dir, paths.run_dir, self.images)
        self.sandboxes = Sandboxes(paths.netns_dir)
        self.vms = VmRuntime(paths.vms_dir, paths.run_dir, self.images)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._create_lock = threading.Lock()
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None
        self.changes = NetworkChanges(self)

    # -- locking and rows -------------------------------------------------------------------

    @contextmanager
    def _locked(self, cid: str) -> Iterator[None]:
        with self._locks_guard:
            lock = self._locks.setdefault(cid, threading.Lock())
        with lock:
            yield

    def _rt(self, cid: str, cfg: dict[str, Any] | None = None) -> OciRuntime | VmRuntime:
        """The runtime of a container: runc + conmon, or its own VM (isolation "vm")."""
        if cfg is None:
            row = self._row(cid)
            cfg = json.loads(row["config"]) if row is not None else {}
        return self.vms if cfg.get("isolation") == "vm" else self.runtime

    def _row(self, cid: str) -> sqlite3.Row | None:
        with self.db.read() as conn:
            row: sqlite3.Row | None = conn.execute(
                "SELECT * FROM containers WHERE id = ?", (cid,)
            ).fetchone()
            return row

    def resolve(self, ref: str) -> str:
        """A container id from a name, a full id or a unique id prefix."""
        with self.db.read() as conn:
            row = conn.execute("SELECT id FROM containers WHERE name = ?", (ref,)).fetchone()
            if row is not None:
                return str(row[0])
            if re.fullmatch(r"[0-9a-f]{1,64}", ref):
                rows = conn.execute(
                    "SELECT id FROM containers WHERE id LIKE ?", (ref + "%",)
                ).fetchall()
                if len(rows) == 1:
                    return str(rows[0][0])
                if len(rows) > 1:
                    raise InvalidArgument(f"container id prefix {ref} is ambiguous")
        raise NotFound(f"container {ref} not found")

    def _names(self) -> dict[str, str]:
        with self.db.read() as conn:
            return {r[0]: r[1] for r in conn.execute("SELECT id, name FROM containers")}

    def _humanise(self, exc: ContainerError) -> ContainerError:
        """Helpers name owners by container id: show container names instead."""
        text = name_containers(exc.message, self._names())
        return exc if text == exc.message else type(exc)(text)

    # -- JSON views ---------------------------------------------------------------------------

    def _attachments(self, conn: sqlite3.Connection, cid: str) -> dict[str, dict[str, Any]]:
        return endpoints.shown(conn, cid)

    def _to_json(self, conn: sqlite3.Connection, row: sqlite3.Row) -> dict[str, Any]:
        cfg = json.loads(row["config"])
        live = self._attachments(conn, row["id"])
        networks = []
        for i, spec in enumerate(cfg["networks"]):
            att = live.get(spec["network"])
            if att is None:  # not running: what was asked for
                att = {"network": spec["network"], "interface": f"eth{i}"}
                if spec.get("mac"):
                    att["macAddress"] = spec["mac"]
                if spec.get("mtu"):
                    att["mtu"] = spec["mtu"]
                if spec.get("ip"):  # reserved: it is the container's even while stopped
                    att.update(_static_shown(conn, spec))
                if spec.get("aliases"):
                    att["aliases"] = list(spec["aliases"])
            networks.append(att)
        return {
            "id": row["id"],
            "name": row["name"],
            "image": row["image"],
            "imageDigest": cfg.get("imageDigest"),
            "state": row["state"],
            "pid": row["pid"],
            "exitCode": row["exit_code"],
            "created": row["created_at"],
            "startedAt": row["started_at"],
            "finishedAt": row["finished_at"],
            "hostname": cfg.get("hostname") or _short_hostname(row["name"]),
            **netjoin.inspect_fields(self, cfg),
            "command": cfg.get("command") or [],
            "env": cfg.get("env") or [],
            "networks": networks,
            "publishedPorts": cfg.get("ports") or [],
            "dns": cfg.get("dns") or {},
            "autoRemove": bool(cfg.get("autoRemove")),
            "volumes": cfg.get("volumes") or [],
            "init": bool(cfg.get("init")),
            "tty": bool(cfg.get("tty")),
            "interactive": bool(cfg.get("interactive")),
            "isolation": cfg.get("isolation") or "namespace",
            **vmstart.inspect_fields(self.vms, row["id"], cfg),
        }

    def list_containers(self, all_: bool = False) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            sql = "SELECT * FROM containers"
            if not all_:
                sql += " WHERE state = 'running'"
            rows = conn.execute(sql + " ORDER BY created_at, name").fetchall()
            return [self._to_json(conn, r) for r in rows]

    def get(self, ref: str) -> dict[str, Any]:
        cid = self.resolve(ref)
        with self.db.read() as conn:
            row = conn.execute("SELECT * FROM containers WHERE id = ?", (cid,)).fetchone()
            if row is None:
                raise NotFound(f"container {ref} not found")
            return self._to_json(conn, row)

    # -- images -------------------------------------------------------------------------------

    def pull(self, body: dict[str, Any]) -> dict[str, Any]:
        ref = str(body.get("reference") or "")
        progress: list[str] = []
        info = self.images.pull(ref, insecure=bool(body.get("insecure")), progress=progress.append)
        out = info.to_json()
        out["progress"] = progress
        return out

    def delete_image(self, ref: str) -> None:
        norm = normalize_reference(ref)
        with self.db.read() as conn:
            users = [
                r[0]
                for r in conn.execute(
                    "SELECT name FROM containers WHERE image = ? ORDER BY name", (norm,)
                )
            ]
        if users:
            raise Conflict(f"image {norm} is used by containers {', '.join(users)}")
        self.images.delete(norm)

    # -- create / start -------------------------------------------------------------------

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body.get("name")
        cfg = parse_create(body, self.config)
        for port in cfg["ports"]:
            _check_host_ip(port.get("hostIP"))
        image = self.images.inspect(str(body.get("image") or ""))
        specs = specs_of(cfg)
        plugins: dict[str, str] = {}
        for spec in specs:
            config = self.networks.configuration(spec.network)  # NotFound if unknown
            check_static_address(config, spec.ip, spec.ip6)
            vmstart.check_network(cfg, config, self.networks.strategies(config.plugin))
            plugins[spec.network] = config.plugin
        netjoin.resolve_owner(self, cfg)
        process = ProcessSpec.from_image(
            image,
            command=cfg["cmd"],
            entrypoint=cfg["entrypoint"],
            env=cfg["env"],
            cwd=cfg["workdir"],
        )
        cfg["command"] = list(process.args)
        cfg["imageDigest"] = image.digest
        cid = secrets.token_hex(32)
        with self._create_lock:
            if name is not None:  # given but empty is refused, not replaced by a generated one
                validate_container_name(str(name))
            else:
                taken = set(self._names().values())
                name = next(
                    f"c-{cid[i : i + 8]}"
                    for i in range(0, 56)
                    if f"c-{cid[i : i + 8]}" not in taken
                )
            self.networks.check_dns_names(str(name), [n["network"] for n in cfg["networks"]])
            self._check_hostname(cfg)
            for spec in specs:
                self.networks.check_aliases(spec.aliases, spec.network, cid)
            # Static addresses are held from here until the container is removed.
            try:
                unreserve = reservations.reserve_all(
                    self.helper_for, plugins.__getitem__, cid, specs
                )
            except ContainerError as exc:
                raise self._humanise(exc) from None
            try:
                with self.db.write() as conn:
                    # Checked in the inserting transaction: a network delete (which checks
                    # its users in its own) either sees this container or happened first.
                    for spec in cfg["networks"]:
                        if not conn.execute(
                            "SELECT 1 FROM networks WHERE name = ?", (spec["network"],)
                        ).fetchone():
                            raise NotFound(f"network {spec['network']} not found")
                    conn.execute(
                        "INSERT INTO containers(id, name, image, config, state, created_at)"
                        " VALUES (?, ?, ?, ?, 'created', ?)",
                        (cid, name, image.reference, json.dumps(cfg), _now()),
                    )
            except BaseException as exc:
                unreserve()
                if isinstance(exc, sqlite3.IntegrityError):
                    raise Conflict(f"container name {name} is already in use") from None
                raise
        log.info(f"container-apiserver: created container {name} ({cid[:12]}, {image.reference})")
        attach = bool(body.get("start")) and bool(body.get("attach"))
        if body.get("start"):
            try:
                self.start(cid, attach=attach)
            except BaseException:
                self._remove(cid)
                raise
        out = self.get(cid)
        if attach:
            out["attach"] = self.attach_info(cid)
        return out

    def attach_info(self, cid: str) -> dict[str, str]:
        """Where an attached client connects (it runs as root on this host, as the API's
        peers must): conmon's attach socket and its control FIFO (TTY resizes)."""
        return {
            "socket": str(self.runtime.attach_socket(cid)),
            "control": str(self.runtime.control_fifo(cid)),
        }

    def _check_hostname(self, cfg: dict[str, Any], cid: str | None = None) -> None:
        """--hostname is the first network's DNS name: one owner per name there too."""
        if cfg.get("hostname") and cfg["networks"]:
            first = [cfg["networks"][0]["network"]]
            self.networks.check_dns_names(cfg["hostname"], first, cid, what="hostname")

    def _plugin(self, network: str) -> str:
        return self.networks.get(network).configuration.plugin

    def _ports_plugin(self, cfg: dict[str, Any]) -> str:
        """The plugin that publishes a container's ports: its first network's."""
        nets = cfg["networks"]
        try:
            return self._plugin(nets[0]["network"]) if nets else DEFAULT_PLUGIN
        except NotFound:  # a network gone (state from before creates checked): remove anyway
            return DEFAULT_PLUGIN

    def start(self, ref: str, attach: bool = False) -> dict[str, Any]:
        """Start a container; with attach, stop after `runc create` (see ATTACH_WAIT).
        Starting an attached container that waits for its client lets it run."""
        cid = self.resolve(ref)
        with self._locked(cid):
            row = self._row(cid)
            if row is None:
                raise NotFound(f"container {ref} not found")
            name = row["name"]
            if row["state"] == "running":
                if self._waiting(cid):
                    self._resume_locked(cid)
                    return self.get(cid)
                raise Conflict(f"container {name} is already running")
            cfg = json.loads(row["config"])
            # A name taken meanwhile is a refusal: the container stays as it was.
            self.networks.check_dns_names(name, [s["network"] for s in cfg["networks"]], cid)
            self._check_hostname(cfg, cid)
            netjoin.check_joinable(self, cfg)  # an owner that runs, or a refusal
            try:
                self._start_locked(cid, name, row["image"], cfg, attach)
            except BaseException:
                self._mark_failed(cid)
                raise
        if attach:
            timer = threading.Timer(ATTACH_WAIT, self._resume_waiting, (cid,))
            timer.daemon = True
            timer.start()
        return self.get(cid)

    def _waiting(self, cid: str) -> bool:
        """Made by `runc create` but not yet let go (an attached start)."""
        st = self.runtime.state(cid)
        return st.status == "created" and st.pid is not None

    def _resume_locked(self, cid: str) -> None:
        try:
            self.runtime.resume(cid)
        except ContainerError as exc:
            self._finish(cid, None)
            raise self._humanise(exc) from None

    def _resume_waiting(self, cid: str) -> None:
        try:
            with self._locked(cid):
                row = self._row(cid)
                if row is not None and row["state"] == "running" and self._waiting(cid):
                    log.info(f"container-apiserver: no client attached to {cid[:12]}: starting")
                    self._resume_locked(cid)
        except Exception as exc:
            log.warning(f"container-apiserver: starting {cid[:12]} failed: {exc}")

    def _mark_failed(self, cid: str) -> None:
        """A start that failed leaves the container stopped (not created), holding nothing."""
        with self.db.write() as conn:
            conn.execute(
                "UPDATE containers SET state = 'stopped', pid = NULL, exit_code = NULL,"
                " finished_at = ? WHERE id = ? AND state != 'running'",
                (_now(), cid),
            )

    def _start_locked(
        self, cid: str, name: str, image_ref: str, cfg: dict[str, Any], attach: bool = False
    ) -> None:
        image = self.images.inspect(image_ref)
        attached: list[tuple[str, str]] = []  # (plugin, network)
        sandbox = False
        published: str | None = None
        fresh_bundle = False
        began = time.perf_counter()
        try:
            specs = specs_of(cfg)
            configs = [self.networks.configuration(spec.network) for spec in specs]
            plugins = [c.plugin for c in configs]
            mode = netjoin.mode_of(cfg)
            vm = cfg.get("isolation") == "vm"
            for config in configs:  # checked at create; again for a manifest changed since
                vmstart.check_network(cfg, config, self.networks.strategies(config.plugin))
            path: str | None
            if vm:  # no namespace of ours: each attachment is a TAP that QEMU opens
                path = None
            elif mode.kind == "private":
                # The runtime's own: plugins are handed its path (`--network none`: no plugin).
                path = self.sandboxes.create(cid)
                sandbox = True
            else:  # the host's (None) or another container's: no attachment of its own
                path = netjoin.namespace_path(self, mode)
            atts: list[dict[str, Any]] = []
            for i, (spec, config) in enumerate(zip(specs, configs, strict=True)):
                strategy = "tap" if vm else self.networks.namespace_strategy(config.plugin)
                # the helper adds the DNS domain: NAME.DOMAIN. (--hostname: on eth0)
                hostname = (cfg.get("hostname") if i == 0 else None) or name
                request = attach_request(
                    cid, hostname, spec, config, path, f"eth{i}", i == 0, strategy
                )
                reply = self.helper_for(config.plugin).request(
                    "POST", f"/networks/{spec.network}/attachments", request, idempotent=True
                )
                attached.append((config.plugin, spec.network))
                atts.append(reply)
            with self.db.write() as conn:  # the record inspect and DNS read: before any reply
                for plugin, reply, spec in zip(plugins, atts, specs, strict=True):
                    endpoints.record(conn, plugin, reply, cid, spec.aliases)
            # After the attachments are committed: of two racing starts, the later check
            # sees both, so two live containers never answer to one DNS name.
            self.networks.check_dns_names(name, [s.network for s in specs], cid)
            self._check_hostname(cfg, cid)
            for spec in specs:
                self.networks.check_aliases(spec.aliases, spec.network, cid)
            if cfg["ports"]:
                primary_ip = atts[0]["address"].split("/")[0]
                forwards = port_runs([{**p, "containerIP": primary_ip} for p in cfg["ports"]])
                published = plugins[0]
                self.helper_for(plugins[0]).request(
                    "PUT", f"/portforwards/{cid}", {"forwards": forwards}
                )
            notify_dns(self.paths.run_dir)  # the name resolves before the process runs
            network_ms = (time.perf_counter() - began) * 1000
            hosts, resolv = netjoin.etc_files(self, name, cfg, atts, mode)
            if vm:
                fresh_bundle = not self.vms.bundle_path(cid).exists()
                pid = vmstart.start_vm(self.vms, cid, image, name, cfg, atts, hosts, resolv)
            else:
                process = ProcessSpec.from_image(
                    image,
                    command=cfg.get("cmd"),
                    entrypoint=cfg.get("entrypoint"),
                    env=cfg.get("env"),
                    cwd=cfg.get("workdir"),
                    terminal=bool(cfg.get("tty")),
                )
                if self.runtime.bundle_path(cid).exists():
                    self.runtime.update_etc(cid, hosts=hosts, resolv_conf=resolv)
                else:
                    volumes = [BindMount(**v) for v in cfg.get("volumes") or []]
                    self.runtime.create_bundle(
                        cid,
                        image,
                        process,
                        _short_hostname(name),
                        path,
                        hosts,
                        resolv,
                        volumes=volumes,
                        init=bool(cfg.get("init")),
                        uts=netjoin.uts_names(self, name, cfg, mode),
                    )
                    fresh_bundle = True
                pid = self.runtime.start(cid, stdin=bool(cfg.get("interactive")), begin=not attach)
        except BaseException as exc:
            self._undo(cid, attached, published, sandbox)
            rt = self._rt(cid, cfg)
            try:
                if fresh_bundle:
                    rt.delete(cid, force=True)
                elif rt.bundle_path(cid).exists():
                    rt.release_rootfs(cid)
            except ContainerError:
                pass
            if isinstance(exc, ContainerError):
                raise self._humanise(exc) from None
            raise
        with self.db.write() as conn:
            conn.execute(
                "UPDATE containers SET state = 'running', pid = ?, exit_code = NULL,"
                " started_at = ?, finished_at = NULL WHERE id = ?",
                (pid, _now(), cid),
            )
        total_ms = (time.perf_counter() - began) * 1000
        log.info(
            f"container-apiserver: started container {name} ({cid[:12]}, pid {pid}) in "
            f"{total_ms:.1f} ms, networking {network_ms:.1f} ms"
        )

    def _etc_files(
        self, name: str, cfg: dict[str, Any], atts: list[dict[str, Any]]
    ) -> tuple[str, str]:
        return netjoin.etc_files(self, name, cfg, atts, netjoin.mode_of(cfg))

    def _undo(
        self,
        cid: str,
        attached: list[tuple[str, str]],
        published: str | None,
        sandbox: bool,
    ) -> None:
        if attached:  # forgotten first: a helper call that fails leaves a helper-side
            # orphan, released by the next start's reconciliation, never a stale name
            with self.db.write() as conn:
                endpoints.forget(conn, cid, [network for _, network in attached])
        steps: list[tuple[str, str, str]] = []
        if published:
            steps.append((published, "DELETE", f"/portforwards/{cid}"))
        for plugin, network in reversed(attached):
            steps.append((plugin, "DELETE", f"/networks/{network}/attachments/{cid}"))
        for plugin, method, path in steps:
            try:
                self.helper_for(plugin).request(method, path)
            except NotFound:
                pass
            except Exception as exc:  # the helper reconciles what is left at its next start
                log.warning(f"container-apiserver: cleanup {method} {path} failed: {exc}")
        if sandbox:
            try:
                self.sandboxes.delete(cid)
            except OSError as exc:  # recovery at the next start removes what is left
                log.warning(f"container-apiserver: removing the sandbox of {cid[:12]}: {exc}")

    def _release(self, cid: str, cfg: dict[str, Any]) -> None:
        """Free everything networking holds for a container (idempotent)."""
        with self.db.read() as conn:
            attached = endpoints.held(conn, cid)
        # Ports are published after the attachments and unpublished before them: with no
        # attachment left there is no port left (or the helper's reconciliation drops it).
        ports = bool(cfg.get("ports")) and bool(attached)
        self._undo(cid, attached, self._ports_plugin(cfg) if ports else None, True)
        notify_dns(self.paths.run_dir)

    # -- stop / kill / delete ------------------------------------------------------------

    def _finish(self, cid: str, exit_code: int | None, finished: str | None = None) -> bool:
        """Record a stopped container and free its networking; True if it auto-removes."""
        row = self._row(cid)
        if row is None:
            return False
        cfg = json.loads(row["config"])
        self._release(cid, cfg)
        try:
            self._rt(cid, cfg).release_rootfs(cid)  # a stopped container holds no mount
        except ContainerError as exc:
            log.warning(f"container-apiserver: unmounting the rootfs of {cid[:12]}: {exc}")
        with self.db.write() as conn:
            conn.execute(
                "UPDATE containers SET state = 'stopped', pid = NULL, exit_code = ?,"
                " finished_at = ? WHERE id = ?",
                (exit_code, finished or _now(), cid),
            )
        log.info(
            f"container-apiserver: container {row['name']} ({cid[:12]}) stopped"
            f" (exit code {exit_code})"
        )
        return bool(cfg.get("autoRemove"))

    def stop(self, ref: str, timeout: float = 10.0, sig: str | int = "TERM") -> dict[str, Any]:
        cid = self.resolve(ref)
        number = _signal_number(sig)
        auto = False
        with self._locked(cid):
            row = self._row(cid)
            if row is None:
                raise NotFound(f"container {ref} not found")
            if row["state"] == "running":
                code = self._rt(cid).stop(cid, timeout=timeout, sig=number)
                auto = self._finish(cid, code if code >= 0 else None)
        if auto:
            out = self.get(cid)
            self._remove(cid)
            out["state"] = "removed"
            return out
        return self.get(cid)

    def kill(self, ref: str, sig: str | int) -> dict[str, Any]:
        cid = self.resolve(ref)
        number = _signal_number(sig)
        with self._locked(cid):
            row = self._row(cid)
            if row is None:
                raise NotFound(f"container {ref} not found")
            if row["state"] != "running":
                raise Conflict(f"container {row['name']} is not running")
            self._rt(cid).kill(cid, number)
        # Record the exit at once when the signal ends the process (the watcher would too).
        st = self._rt(cid).wait(cid, timeout=0.5)
        if st.status == "stopped":
            self._check_one(cid)
        return self.get(cid) if self._row(cid) else {"id": cid, "state": "removed"}

    def delete(self, ref: str, force: bool = False) -> str:
        cid = self.resolve(ref)
        with self._locked(cid):
            row = self._row(cid)
            if row is None:
                raise NotFound(f"container {ref} not found")
            netjoin.check_removable(self, cid, str(row["name"]))
            if row["state"] == "running":
                alive = self._rt(cid).state(cid).status == "running"
                if alive and not force:
                    raise Conflict(
                        f"container {row['name']} is running: stop it first or use --force"
                    )
            self._remove_locked(cid, row)
        return str(row["name"])

    def _remove(self, cid: str) -> None:
        with self._locked(cid):
            row = self._row(cid)
            if row is not None:
                self._remove_locked(cid, row)

    def _remove_locked(self, cid: str, row: sqlite3.Row) -> None:
        rt = self._rt(cid, json.loads(row["config"]))
        if rt.bundle_path(cid).exists():
            try:
                rt.delete(cid, force=True)
            except NotFound:
                pass
        cfg = json.loads(row["config"])
        self._release(cid, cfg)
        with self.db.write() as conn:
            conn.execute("DELETE FROM containers WHERE id = ?", (cid,))
        for spec in specs_of(cfg):  # after the row: a crash between leaves only a spare
            if spec.ip is not None:  # reservation, which the next start's reconcile frees
                try:
                    reservations.release(
                        self.helper_for(self._plugin(spec.network)), cid, spec.network
                    )
                except NotFound:
                    pass
        with self._locks_guard:
            self._locks.pop(cid, None)
        log.info(f"container-apiserver: removed container {row['name']} ({cid[:12]})")

    # -- network connect / disconnect (connect.py) ----------------------------------------

    def connect(self, network: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            return self.changes.connect(network, body)
        except ContainerError as exc:
            raise self._humanise(exc) from None

    def disconnect(self, network: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            return self.changes.disconnect(network, body)
        except ContainerError as exc:
            raise self._humanise(exc) from None

    # -- logs and exec ----------------------------------------------------------------------

    def logs(self, ref: str, offset: int) -> dict[str, Any]:
        cid = self.resolve(ref)
        row = self._row(cid)
        path = self._rt(cid).logs_path(cid)
        entries: list[dict[str, Any]] = []
        new_offset = offset
        try:
            with open(path, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                if offset > size:
                    raise InvalidArgument(
                        f"offset {offset} is beyond the end of the log ({size} bytes)"
                    )
                fh.seek(offset)
                data = fh.read(LOG_CHUNK)
        except FileNotFoundError:
            if offset:
                raise InvalidArgument(
                    f"offset {offset} is beyond the end of the log (0 bytes)"
                ) from None
            data = b""
        end = data.rfind(b"\n")
        if end >= 0:
            new_offset = offset + end + 1
            for raw in data[: end + 1].decode("utf-8", "replace").splitlines():
                parts = raw.split(" ", 3)
                if len(parts) < 3 or parts[1] not in ("stdout", "stderr"):
                    continue
                entries.append(
                    {
                        "time": parts[0],
                        "stream": parts[1],
                        "text": parts[3] if len(parts) == 4 else "",
                        "partial": parts[2] == "P",
                    }
                )
        more = end >= 0 and len(data) == LOG_CHUNK
        return {
            "entries": entries,
            "offset": new_offset,
            "more": more,
            "state": row["state"] if row is not None else "removed",
            "exitCode": row["exit_code"] if row is not None else None,
        }

    def exec_argv(self, ref: str, body: dict[str, Any]) -> dict[str, Any]:
        cid = self.resolve(ref)
        row = self._row(cid)
        if row is None or row["state"] != "running":
            raise Conflict(f"container {ref} is not running")
        args = str_list(body.get("args"), "args")
        tty, env = bool(body.get("tty")), parse_env(body.get("env"))
        cwd = str(body["cwd"]) if body.get("cwd") else None
        cfg = json.loads(row["config"])
        if cfg.get("isolation") == "vm":
            process = vmstart.process_of(self.images.inspect(row["image"]), cfg)
            argv = self.vms.exec_argv(cid, args, tty=tty, env=env, cwd=cwd, process=process)
        else:
            argv = self.runtime.exec_argv(cid, args, tty=tty, env=env, cwd=cwd)
        return {"argv": argv}

    # -- watching, reconciling, shutting down ---------------------------------------------

    def _check_one(self, cid: str) -> None:
        auto = False
        with self._locked(cid):
            row = self._row(cid)
            if row is None or row["state"] != "running":
                return
            try:
                st = self._rt(cid).state(cid)
            except NotFound:
                auto = self._finish(cid, None)
            else:
                if st.status == "running":
                    return
                if st.status == "created" and st.pid is not None:
                    return
                auto = self._finish(cid, st.exit_code, st.finished_at)
        if auto:
            self._remove(cid)

    def _running_ids(self) -> list[str]:
        with self.db.read() as conn:
            return [r[0] for r in conn.execute("SELECT id FROM containers WHERE state = 'running'")]

    def _watch(self) -> None:
        while not self._stopping.wait(WATCH_INTERVAL):
            for cid in self._running_ids():
                if self._stopping.is_set():
                    return
                try:
                    self._check_one(cid)
                except Exception as exc:
                    log.warning(f"container-apiserver: watching {cid[:12]} failed: {exc}")

    def reconcile(self) -> None:
        """After a start: finish or undo interrupted starts, release networking of
        containers whose process is gone, and of owners (container ids) with no row."""
        recovery.reconcile(self)

    def start_watcher(self) -> None:
        self._stopping.clear()
        self._watcher = threading.Thread(target=self._watch, name="watcher", daemon=True)
        self._watcher.start()

    def shutdown(self) -> None:
        """Stop the watcher, then every running container (in parallel)."""
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        threads = []
        for cid in self._running_ids():
            t = threading.Thread(target=self._stop_quietly, args=(cid,), daemon=True)
            t.start()
            threads.append(t)
        for t in threads:
            t.join(timeout=SHUTDOWN_STOP_TIMEOUT + 20)
        recovery.unmount_netns_dir(self.paths.netns_dir)

    def _stop_quietly(self, cid: str) -> None:
        try:
            self.stop(cid, timeout=SHUTDOWN_STOP_TIMEOUT)
        except Exception as exc:
            log.warning(f"container-apiserver: stopping {cid[:12]} failed: {exc}")


def _static_shown(conn: sqlite3.Connection, spec: dict[str, Any]) -> dict[str, str]:
    """A stopped container's reserved address(es) as inspect shows live ones (`A/len`)."""
    row = conn.execute("SELECT config FROM networks WHERE name = ?", (spec["network"],)).fetchone()
    config = json.loads(row[0]) if row is not None else {}
    v4, v6 = config.get("ipv4Subnet"), config.get("ipv6Subnet")
    out = {"address": f"{spec['ip']}/{v4.split('/')[1]}" if v4 else str(spec["ip"])}
    if spec.get("ip6"):
        out["ipv6Address"] = f"{spec['ip6']}/{v6.split('/')[1]}" if v6 else str(spec["ip6"])
    return out


def _check_host_ip(host_ip: str | None) -> None:
    """Refuse at create (not only at start) a -p host IP this host does not have, so a
    refused create leaves nothing behind: bind a throwaway socket to it."""
    if not host_ip:
        return
    try:
        ip = ipaddress.ip_address(host_ip.strip("[]"))
    except ValueError:
        return  # the models refuse it
    if ip.is_unspecified:
        return
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((str(ip), 0))
        except OSError as exc:
            if exc.errno == errno.EADDRNOTAVAIL:
                raise InvalidArgument(f"host IP {host_ip} is not an address of this host") from None


def _signal_number(sig: str | int) -> int:
    text = str(sig).strip().upper()
    if text.isdigit():
        number = int(text)
    else:
        name = text if text.startswith("SIG") else "SIG" + text
        try:
            number = int(signal_mod.Signals[name])
        except KeyError:
            raise InvalidArgument(f"unknown signal {sig!r}") from None
    try:
        signal_mod.Signals(number)
    except ValueError:
        raise InvalidArgument(f"unknown signal {sig!r}") from None
    return number


def port_runs(forwards: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Consecutive ports as one entry with a `count` (a 65535-port range fits a request)."""
    out: list[dict[str, Any]] = []
    for f in forwards:
        last = out[-1] if out else None
        if (
            last is not None
            and all(last.get(k) == f.get(k) for k in ("hostIP", "protocol", "containerIP"))
            and last["hostPort"] + last["count"] == f["hostPort"]
            and last["containerPort"] + last["count"] == f["containerPort"]
        ):
            last["count"] += 1
        else:
            out.append({**f, "count": 1})
    return out
