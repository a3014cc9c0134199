"""Recovery of the containers' world at API server start, and of the run dir's mounts
at `system stop`: what a SIGKILL at any moment may have left half-done.

- A start the API server did not finish: conmon dies with it (SIGPIPE on its sync
  pipe) and may leave a `runc init` behind, reparented to init, for a container still
  recorded as `created`.  If the process runs under a live conmon the start is finished
  (recorded as running); otherwise the process is killed and removed, the rootfs
  unmounted, and the container left `stopped`.  An attached start (`run -i/-t`) whose
  client is gone is let run.  runc state of ids with no container row is deleted.
- Containers recorded as running whose process is gone are recorded as stopped; the
  endpoints record is made to match each helper's attachments (sync_endpoints), and the
  attachments of containers not running, and of owners with no container row, released
  through the protocol; bundles with no row deleted.
- An attachment of a running container on a network its configuration does not list (a
  `network connect` not committed, a `disconnect` not finished) is released.
- Static addresses: each plugin's reservations are made to match the containers'
  `ip=` specs (reservations.py).
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ContainerError
from ..models import AttachmentSpec
from ..syscalls import umount_detach
from . import endpoints, reservations

if TYPE_CHECKING:
    from .containers import ContainerService

log = logging.getLogger("container-apiserver")
ID_RE = re.compile(r"^[0-9a-f]{64}$")


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _interrupted_starts(svc: ContainerService) -> None:
    """A start the API server did not finish (it was killed): conmon dies with it
    (SIGPIPE on the sync pipe) and may leave a `runc init` behind, reparented to init.
    Finish the start when the process runs under a live conmon; otherwise remove the
    process and unmount the rootfs, leaving the container stopped."""
    with svc.db.read() as conn:
        rows = conn.execute("SELECT id, name, state FROM containers").fetchall()
    for cid, name, state in rows:
        try:
            with svc._locked(cid):
                _reconcile_one(svc, cid, name, state)
        except Exception as exc:
            log.warning(f"container-apiserver: reconciling {cid[:12]} failed: {exc}")
    known = {r[0] for r in rows}
    for cid in svc.runtime.runc_ids():  # runc state with no container row at all
        if cid not in known and ID_RE.match(cid):
            svc.runtime.abort(cid)


def _reconcile_one(svc: ContainerService, cid: str, name: str, state: str) -> None:
    if not svc.runtime.bundle_path(cid).exists():
        return
    svc.runtime.settle(cid)
    st = svc.runtime.state(cid)
    conmon = svc.runtime.conmon_alive(cid)
    if state == "running":
        if st.status == "created" and st.pid is not None:  # an attached start
            if conmon:
                svc._resume_locked(cid)
            else:
                svc.runtime.abort(cid)
                svc._finish(cid, None)
        return
    if st.status == "running" and conmon and st.pid is not None:
        with svc.db.write() as conn:
            conn.execute(
                "UPDATE containers SET state = 'running', pid = ?, exit_code = NULL,"
                " started_at = ?, finished_at = NULL WHERE id = ?",
                (st.pid, _now(), cid),
            )
        log.info(f"container-apiserver: finished the interrupted start of {name}")
        return
    live = st.pid is not None
    if live or svc.runtime.has_runc_state(cid):
        svc.runtime.abort(cid)
    if live or (state == "created" and svc.runtime.has_started(cid)):
        svc._mark_failed(cid)
        log.info(f"container-apiserver: removed the process of the interrupted start of {name}")
    svc.runtime.release_rootfs(cid)


def reconcile(svc: ContainerService) -> None:
    """After a start: finish or undo interrupted starts, release networking of
    containers whose process is gone, and of owners (container ids) with no row."""
    _interrupted_starts(svc)
    for cid in svc._running_ids():
        try:
            svc._check_one(cid)
        except Exception as exc:
            log.warning(f"container-apiserver: reconciling {cid[:12]} failed: {exc}")
    sync_endpoints(svc)
    sync_reservations(svc)
    with svc.db.read() as conn:
        rows = {r[0] for r in conn.execute("SELECT id FROM containers")}
        running = [r[0] for r in conn.execute("SELECT id FROM containers WHERE state = 'running'")]
    _orphan_sandboxes(svc, running)
    for cid in svc.runtime.list_ids():
        if ID_RE.match(cid) and cid not in rows:
            try:
                svc.runtime.delete(cid, force=True)
            except ContainerError as exc:
                log.warning(f"container-apiserver: removing orphan bundle failed: {exc}")


def _helper_attachments(
    svc: ContainerService,
) -> tuple[dict[tuple[str, str], tuple[str, dict[str, Any]]], set[str]]:
    """Every attachment each helper reports (protocol: GET /networks/{name}/attachments),
    by (network, owner) with its plugin, and the networks whose helper answered."""
    live: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
    listed: set[str] = set()
    for network in svc.networks.list():
        name, plugin = network.id, network.configuration.plugin
        try:
            replies = svc.helper_for(plugin).request("GET", f"/networks/{name}/attachments")
        except Exception as exc:  # its endpoints are left as they are until it answers
            log.warning(f"container-apiserver: listing the attachments of {name} failed: {exc}")
            continue
        listed.add(name)
        for reply in replies:
            live[(name, str(reply["owner"]))] = (plugin, reply)
    return live, listed


def sync_endpoints(svc: ContainerService) -> None:
    """Make the API server's endpoints match what the helpers hold, then release what no
    live owner holds.  Repairs a crash between a helper's reply and the endpoint's commit
    (or the release's): an attachment of a running container or a bare owner is recorded
    (bare attachments are idempotent per owner: the client's retry gets the same one);
    one of a container not running, or of an id with no container, is released through
    the protocol; an endpoint its helper does not hold is forgotten."""
    live, listed = _helper_attachments(svc)
    specs = _container_specs(svc)
    with svc.db.read() as conn:
        states = {r[0]: r[1] for r in conn.execute("SELECT id, state FROM containers")}
        recorded = {(r[0], r[1]) for r in conn.execute("SELECT network, owner FROM endpoints")}

    def wanted(network: str, owner: str) -> bool:
        if not ID_RE.match(owner):
            return True
        return states.get(owner) == "running" and (network, owner) in specs

    with svc.db.write() as conn:
        for network, owner in sorted(recorded):
            if network in listed and ((network, owner) not in live or not wanted(network, owner)):
                endpoints.forget(conn, owner, [network])
        for (network, owner), (plugin, reply) in sorted(live.items()):
            if (network, owner) not in recorded and wanted(network, owner):
                spec = specs.get((network, owner))
                endpoints.record(conn, plugin, reply, owner, spec.aliases if spec else ())
                log.info(f"container-apiserver: recorded the attachment of {owner[:12]}")
    unpublished: set[tuple[str, str]] = set()
    for (network, owner), (plugin, _) in sorted(live.items()):
        if wanted(network, owner):
            continue
        if states.get(owner) == "running":  # only this network: keep its ports elsewhere
            try:
                svc.helper_for(plugin).request("DELETE", f"/networks/{network}/attachments/{owner}")
                log.info(f"container-apiserver: released {owner[:12]} on {network} (not listed)")
            except Exception as exc:
                log.warning(f"container-apiserver: releasing {owner[:12]} on {network}: {exc}")
            continue
        helper = svc.helper_for(plugin)
        try:
            if (plugin, owner) not in unpublished:
                helper.request("DELETE", f"/portforwards/{owner}")
                unpublished.add((plugin, owner))
            helper.request("DELETE", f"/networks/{network}/attachments/{owner}")
            log.info(f"container-apiserver: released the attachment of {owner[:12]} to {network}")
        except Exception as exc:
            log.warning(f"container-apiserver: releasing {owner[:12]} on {network} failed: {exc}")


def _container_specs(svc: ContainerService) -> dict[tuple[str, str], AttachmentSpec]:
    """Every container's network specs, by (network, container id)."""
    out: dict[tuple[str, str], AttachmentSpec] = {}
    with svc.db.read() as conn:
        rows = conn.execute("SELECT id, config FROM containers").fetchall()
    for cid, text in rows:
        for raw in json.loads(text).get("networks") or []:
            try:
                spec = AttachmentSpec.from_json(raw)
            except (ContainerError, KeyError) as exc:
                log.warning(f"container-apiserver: container {cid[:12]}: bad spec {raw}: {exc}")
                continue
            out[(spec.network, str(cid))] = spec
    return out


def sync_reservations(svc: ContainerService) -> None:
    """Each plugin's reservations as the containers' static specs ask (reservations.py)."""
    networks = {n.id: n.configuration.plugin for n in svc.networks.list()}
    wanted = {k: s for k, s in _container_specs(svc).items() if s.ip is not None}
    reservations.reconcile(svc.helper_for, networks, wanted)


def _orphan_sandboxes(svc: ContainerService, running: list[str]) -> None:
    """Remove the sandboxes (network namespaces) of containers not running."""
    keep = {svc.sandboxes.path(cid).name for cid in running}
    for name in svc.sandboxes.names():
        if name in keep:
            continue
        try:
            svc.sandboxes.delete_named(name)
            log.info(f"container-apiserver: removed the orphan sandbox {name}")
        except OSError as exc:
            log.warning(f"container-apiserver: removing the sandbox {name} failed: {exc}")


def unmount_netns_dir(netns_dir: Path) -> None:
    """The network helper makes the run dir's netns/ a shared mount (as `ip netns`
    does): with no sandbox left under it, undo that so `system stop` leaves no mount."""
    target = str(netns_dir)
    try:
        with open("/proc/self/mountinfo") as fh:
            points = [line.split()[4] for line in fh]
    except OSError:
        return
    if any(p.startswith(target + "/") for p in points):
        return  # a sandbox is still mounted (a container that did not stop)
    for _ in range(points.count(target)):
        try:
            umount_detach(target)
        except OSError:
            break
