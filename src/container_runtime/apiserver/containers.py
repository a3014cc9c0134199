"""Containers and images in the API server: life cycle, networking, the REST routes.

The API server owns the `containers` table.  A container's networking is built by the
helper of its networks' plugin just before its process starts, in this order (and torn
down in the reverse order at stop, exit, delete, or at the next API server start when
the process is gone):

    sandbox (netns) -> attachments eth0, eth1, ... -> published ports -> /etc files -> runc

Owners of attachments, sandboxes and published ports are container ids (64 hex digits).
The process itself runs under conmon (runtime/oci.py): no Python process per container,
so containers keep running while the API server is down; a watcher thread reads each
running container's state files every WATCH_INTERVAL seconds and releases the networking
of the ones that exited.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import secrets
import signal as signal_mod
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..config import Config
from ..dns.control import notify_dns
from ..errors import Conflict, ContainerError, InvalidArgument, NotFound
from ..http import Request, Router
from ..models import DEFAULT_PLUGIN, ContainerConfig, str_list, validate_container_name
from ..paths import Paths
from ..runtime.images import ImageInfo, ImageStore, normalize_reference
from ..runtime.oci import OciRuntime, ProcessSpec
from ..state import Database
from .helpers import HelperClient
from .networks import NetworkService

log = logging.getLogger("container-apiserver")

WATCH_INTERVAL = 0.5
SHUTDOWN_STOP_TIMEOUT = 3.0
ID_RE = re.compile(r"^[0-9a-f]{64}$")
ANY_ID_RE = re.compile(r"\b[0-9a-f]{64}\b")
LOG_CHUNK = 1 << 20


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


def _short_hostname(name: str) -> str:
    short = re.sub(r"[^a-z0-9-]", "-", name.lower()).strip("-")[:63].strip("-")
    return short or "container"


def parse_create(body: dict[str, Any], config: Config) -> dict[str, Any]:
    """Validate a create request; return the `config` JSON stored in the containers row."""
    return ContainerConfig.parse(body, config.dns_domain).to_json()


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
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._create_lock = threading.Lock()
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None

    # -- locking and rows -------------------------------------------------------------------

    @contextmanager
    def _locked(self, cid: str) -> Iterator[None]:
        with self._locks_guard:
            lock = self._locks.setdefault(cid, threading.Lock())
        with lock:
            yield

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
        out: dict[str, dict[str, Any]] = {}
        for r in conn.execute("SELECT * FROM attachments WHERE owner = ?", (cid,)):
            item: dict[str, Any] = {
                "network": r["network"],
                "hostname": r["hostname"],
                "address": f"{ipaddress.IPv4Address(r['address'])}/{r['prefixlen']}",
                "gateway": r["gateway"],
                "macAddress": r["mac"],
                "mtu": r["mtu"],
                "interface": r["interface"],
            }
            if r["ipv6"]:
                item["ipv6Address"] = r["ipv6"]
            out[r["network"]] = item
        return out

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
            "hostname": _short_hostname(row["name"]),
            "command": cfg.get("command") or [],
            "env": cfg.get("env") or [],
            "networks": networks,
            "publishedPorts": cfg.get("ports") or [],
            "dns": cfg.get("dns") or {},
            "autoRemove": bool(cfg.get("autoRemove")),
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
        image = self.images.inspect(str(body.get("image") or ""))
        for spec in cfg["networks"]:
            self.networks.get(spec["network"])  # NotFound for an unknown network
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
            if name:
                validate_container_name(str(name))
            else:
                taken = set(self._names().values())
                name = next(
                    f"c-{cid[i : i + 8]}"
                    for i in range(0, 56)
                    if f"c-{cid[i : i + 8]}" not in taken
                )
            try:
                with self.db.write() as conn:
                    conn.execute(
                        "INSERT INTO containers(id, name, image, config, state, created_at)"
                        " VALUES (?, ?, ?, ?, 'created', ?)",
                        (cid, name, image.reference, json.dumps(cfg), _now()),
                    )
            except sqlite3.IntegrityError:
                raise Conflict(f"container name {name} is already in use") from None
        log.info(f"container-apiserver: created container {name} ({cid[:12]}, {image.reference})")
        if body.get("start"):
            try:
                self.start(cid)
            except BaseException:
                self._remove(cid)
                raise
        return self.get(cid)

    def _plugin(self, network: str) -> str:
        return self.networks.get(network).configuration.plugin

    def _sandbox_plugin(self, cfg: dict[str, Any]) -> str:
        nets = cfg["networks"]
        return self._plugin(nets[0]["network"]) if nets else DEFAULT_PLUGIN

    def start(self, ref: str) -> dict[str, Any]:
        cid = self.resolve(ref)
        with self._locked(cid):
            row = self._row(cid)
            if row is None:
                raise NotFound(f"container {ref} not found")
            name = row["name"]
            if row["state"] == "running":
                raise Conflict(f"container {name} is already running")
            cfg = json.loads(row["config"])
            self._start_locked(cid, name, row["image"], cfg)
        return self.get(cid)

    def _start_locked(self, cid: str, name: str, image_ref: str, cfg: dict[str, Any]) -> None:
        image = self.images.inspect(image_ref)
        attached: list[tuple[str, str]] = []  # (plugin, network)
        sandbox: tuple[str, str] | None = None
        published: str | None = None
        fresh_bundle = False
        began = time.perf_counter()
        try:
            plugins = [self._plugin(spec["network"]) for spec in cfg["networks"]]
            sb_plugin = plugins[0] if plugins else DEFAULT_PLUGIN
            path = str(
                self.helper_for(sb_plugin).request(
                    "POST", f"/sandboxes/{cid}", {}, idempotent=True
                )["path"]
            )
            sandbox = (sb_plugin, path)
            hostname = name  # the helper adds the DNS domain: NAME.DOMAIN.
            atts: list[dict[str, Any]] = []
            for i, (spec, plugin) in enumerate(zip(cfg["networks"], plugins, strict=True)):
                request = {
                    "owner": cid,
                    "hostname": hostname,
                    "mac": spec.get("mac"),
                    "mtu": spec.get("mtu"),
                    "netns": path,
                    "strategy": "veth",
                    "interface": f"eth{i}",
                    "primary": i == 0,
                }
                reply = self.helper_for(plugin).request(
                    "POST", f"/networks/{spec['network']}/attachments", request, idempotent=True
                )
                attached.append((plugin, spec["network"]))
                atts.append(reply)
            if cfg["ports"]:
                primary_ip = atts[0]["address"].split("/")[0]
                forwards = port_runs([{**p, "containerIP": primary_ip} for p in cfg["ports"]])
                published = plugins[0]
                self.helper_for(plugins[0]).request(
                    "PUT", f"/portforwards/{cid}", {"forwards": forwards}
                )
            notify_dns(self.paths.run_dir)  # the name resolves before the process runs
            network_ms = (time.perf_counter() - began) * 1000
            hosts, resolv = self._etc_files(name, cfg, atts)
            process = ProcessSpec.from_image(
                image,
                command=cfg.get("cmd"),
                entrypoint=cfg.get("entrypoint"),
                env=cfg.get("env"),
                cwd=cfg.get("workdir"),
            )
            if self.runtime.bundle_path(cid).exists():
                self.runtime.update_etc(cid, hosts=hosts, resolv_conf=resolv)
            else:
                self.runtime.create_bundle(
                    cid, image, process, _short_hostname(name), path, hosts, resolv
                )
                fresh_bundle = True
            pid = self.runtime.start(cid)
        except BaseException as exc:
            self._undo(cid, attached, published, sandbox)
            if fresh_bundle:
                try:
                    self.runtime.delete(cid, force=True)
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
        short = _short_hostname(name)
        hosts = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        for att in atts:
            fqdn = str(att.get("hostname") or "").rstrip(".")
            names = " ".join(dict.fromkeys(n for n in (fqdn, short, name) if n))
            hosts.append(f"{att['address'].split('/')[0]}\t{names}")
        dns = cfg["dns"]
        lines = []
        if not dns.get("disabled"):
            servers = dns.get("nameservers") or ([atts[0]["gateway"]] if atts else [])
            lines += [f"nameserver {s}" for s in servers]
        search = ([dns["domain"]] if dns.get("domain") else []) + list(dns.get("search") or [])
        if search:
            lines.append("search " + " ".join(dict.fromkeys(search)))
        return "\n".join(hosts) + "\n", "\n".join(lines) + ("\n" if lines else "")

    def _undo(
        self,
        cid: str,
        attached: list[tuple[str, str]],
        published: str | None,
        sandbox: tuple[str, str] | None,
    ) -> None:
        steps: list[tuple[str, str, str]] = []
        if published:
            steps.append((published, "DELETE", f"/portforwards/{cid}"))
        for plugin, network in reversed(attached):
            steps.append((plugin, "DELETE", f"/networks/{network}/attachments/{cid}"))
        if sandbox:
            steps.append((sandbox[0], "DELETE", f"/sandboxes/{cid}"))
        for plugin, method, path in steps:
            try:
                self.helper_for(plugin).request(method, path)
            except NotFound:
                pass
            except Exception as exc:  # the helper reconciles what is left at its next start
                log.warning(f"container-apiserver: cleanup {method} {path} failed: {exc}")

    def _release(self, cid: str, cfg: dict[str, Any]) -> None:
        """Free everything networking holds for a container (idempotent)."""
        attached = []
        with self.db.read() as conn:
            held = {
                r[0]
                for r in conn.execute("SELECT network FROM attachments WHERE owner = ?", (cid,))
            }
            ports = conn.execute(
                "SELECT 1 FROM port_forwards WHERE owner = ? LIMIT 1", (cid,)
            ).fetchone()
        for spec in cfg["networks"]:
            if spec["network"] in held:
                attached.append((self._plugin(spec["network"]), spec["network"]))
        sb_plugin = self._sandbox_plugin(cfg)
        self._undo(cid, attached, sb_plugin if ports else None, (sb_plugin, ""))
        notify_dns(self.paths.run_dir)

    # -- stop / kill / delete ------------------------------------------------------------

    def _finish(self, cid: str, exit_code: int | None, finished: str | None = None) -> bool:
        """Record a stopped container and free its networking; True if it auto-removes."""
        row = self._row(cid)
        if row is None:
            return False
        cfg = json.loads(row["config"])
        self._release(cid, cfg)
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

    def stop(self, ref: str, timeout: float = 10.0) -> dict[str, Any]:
        cid = self.resolve(ref)
        auto = False
        with self._locked(cid):
            row = self._row(cid)
            if row is None:
                raise NotFound(f"container {ref} not found")
            if row["state"] == "running":
                code = self.runtime.stop(cid, timeout=timeout)
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
            self.runtime.kill(cid, number)
        # Record the exit at once when the signal ends the process (the watcher would too).
        st = self.runtime.wait(cid, timeout=0.5)
        if st.status == "stopped":
            self._check_one(cid)
        return self.get(cid) if self._row(cid) else {"id": cid, "state": "removed"}

    def delete(self, ref: str, force: bool = False) -> str:
        cid = self.resolve(ref)
        with self._locked(cid):
            row = self._row(cid)
            if row is None:
                raise NotFound(f"container {ref} not found")
            if row["state"] == "running":
                alive = self.runtime.state(cid).status == "running"
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
        if self.runtime.bundle_path(cid).exists():
            try:
                self.runtime.delete(cid, force=True)
            except NotFound:
                pass
        self._release(cid, json.loads(row["config"]))
        with self.db.write() as conn:
            conn.execute("DELETE FROM containers WHERE id = ?", (cid,))
        with self._locks_guard:
            self._locks.pop(cid, None)
        log.info(f"container-apiserver: removed container {row['name']} ({cid[:12]})")

    # -- logs and exec ----------------------------------------------------------------------

    def logs(self, ref: str, offset: int) -> dict[str, Any]:
        cid = self.resolve(ref)
        row = self._row(cid)
        path = self.runtime.logs_path(cid)
        entries: list[dict[str, Any]] = []
        new_offset = offset
        try:
            with open(path, "rb") as fh:
                fh.seek(offset)
                data = fh.read(LOG_CHUNK)
        except FileNotFoundError:
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
        argv = self.runtime.exec_argv(
            cid,
            str_list(body.get("args"), "args"),
            tty=bool(body.get("tty")),
            env=str_list(body.get("env"), "env"),
            cwd=str(body["cwd"]) if body.get("cwd") else None,
        )
        return {"argv": argv}

    # -- watching, reconciling, shutting down ---------------------------------------------

    def _check_one(self, cid: str) -> None:
        auto = False
        with self._locked(cid):
            row = self._row(cid)
            if row is None or row["state"] != "running":
                return
            try:
                st = self.runtime.state(cid)
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
        """After a start: release networking of containers whose process is gone, and of
        owners (container ids) with no container row."""
        for cid in self._running_ids():
            try:
                self._check_one(cid)
            except Exception as exc:
                log.warning(f"container-apiserver: reconciling {cid[:12]} failed: {exc}")
        with self.db.read() as conn:
            rows = {r["id"]: r for r in conn.execute("SELECT * FROM containers")}
            owners = {
                (r[0], r[1])
                for r in conn.execute("SELECT network, owner FROM attachments")
                if ID_RE.match(r[1])
            }
            port_owners = {r[0] for r in conn.execute("SELECT owner FROM port_forwards")}
        for cid, row in rows.items():
            if row["state"] != "running" and (
                any(o == cid for _, o in owners) or cid in port_owners
            ):
                self._release(cid, json.loads(row["config"]))
        for network, owner in sorted(owners):
            if owner in rows:
                continue
            try:
                plugin = self._plugin(network)
                helper = self.helper_for(plugin)
                helper.request("DELETE", f"/portforwards/{owner}")
                helper.request("DELETE", f"/networks/{network}/attachments/{owner}")
                helper.request("DELETE", f"/sandboxes/{owner}")
            except Exception as exc:
                log.warning(f"container-apiserver: releasing orphan {owner[:12]} failed: {exc}")
        for cid in self.runtime.list_ids():
            if ID_RE.match(cid) and cid not in rows:
                try:
                    self.runtime.delete(cid, force=True)
                except ContainerError as exc:
                    log.warning(f"container-apiserver: removing orphan bundle failed: {exc}")

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

    def _stop_quietly(self, cid: str) -> None:
        try:
            self.stop(cid, timeout=SHUTDOWN_STOP_TIMEOUT)
        except Exception as exc:
            log.warning(f"container-apiserver: stopping {cid[:12]} failed: {exc}")


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


def _body(req: Request) -> dict[str, Any]:
    if req.body is None:
        return {}
    if not isinstance(req.body, dict):
        raise InvalidArgument("expected a JSON object")
    return req.body


def _flag(req: Request, name: str) -> bool:
    return (req.arg(name) or "").lower() in ("1", "true", "yes")


def _image_json(info: ImageInfo) -> dict[str, Any]:
    return info.to_json()


def register_routes(router: Router, service: ContainerService) -> None:
    s = service

    @router.route("GET", "/v1/containers")
    def list_containers(req: Request) -> tuple[int, Any]:
        return 200, s.list_containers(all_=_flag(req, "all"))

    @router.route("POST", "/v1/containers")
    def create_container(req: Request) -> tuple[int, Any]:
        return 201, s.create(_body(req))

    @router.route("GET", "/v1/containers/{id}")
    def inspect_container(req: Request) -> tuple[int, Any]:
        return 200, s.get(req.params["id"])

    @router.route("DELETE", "/v1/containers/{id}")
    def delete_container(req: Request) -> tuple[int, Any]:
        return 200, {"deleted": s.delete(req.params["id"], force=_flag(req, "force"))}

    @router.route("POST", "/v1/containers/{id}/start")
    def start_container(req: Request) -> tuple[int, Any]:
        return 200, s.start(req.params["id"])

    @router.route("POST", "/v1/containers/{id}/stop")
    def stop_container(req: Request) -> tuple[int, Any]:
        timeout = _body(req).get("timeout", 10)
        if not isinstance(timeout, int | float) or timeout < 0:
            raise InvalidArgument("timeout must be a number of seconds >= 0")
        return 200, s.stop(req.params["id"], float(timeout))

    @router.route("POST", "/v1/containers/{id}/kill")
    def kill_container(req: Request) -> tuple[int, Any]:
        return 200, s.kill(req.params["id"], _body(req).get("signal") or "KILL")

    @router.route("GET", "/v1/containers/{id}/logs")
    def container_logs(req: Request) -> tuple[int, Any]:
        try:
            offset = int(req.arg("offset") or 0)
        except ValueError:
            raise InvalidArgument("offset must be an integer") from None
        return 200, s.logs(req.params["id"], max(0, offset))

    @router.route("POST", "/v1/containers/{id}/exec")
    def exec_container(req: Request) -> tuple[int, Any]:
        return 200, s.exec_argv(req.params["id"], _body(req))

    @router.route("GET", "/v1/images")
    def list_images(_: Request) -> tuple[int, Any]:
        return 200, [_image_json(i) for i in s.images.list()]

    @router.route("POST", "/v1/images/pull")
    def pull_image(req: Request) -> tuple[int, Any]:
        return 200, s.pull(_body(req))

    @router.route("POST", "/v1/images/load")
    def load_image(req: Request) -> tuple[int, Any]:
        path = str(_body(req).get("path") or "")
        if not path.startswith("/"):
            raise InvalidArgument("load needs an absolute archive path")
        return 200, [_image_json(i) for i in s.images.load(Path(path))]

    @router.route("GET", "/v1/images/{ref}")
    def inspect_image(req: Request) -> tuple[int, Any]:
        return 200, _image_json(s.images.inspect(req.params["ref"]))

    @router.route("DELETE", "/v1/images/{ref}")
    def delete_image(req: Request) -> tuple[int, Any]:
        s.delete_image(req.params["ref"])
        return 200, {"deleted": normalize_reference(req.params["ref"])}


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
