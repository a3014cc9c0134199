"""Recovery of the containers' world at API server start, and of the run dir's mounts
at `system stop`: what a SIGKILL at any moment may have left half-done.

- A start the API server did not finish: conmon dies with it (SIGPIPE on its sync
  pipe) and may leave a `runc init` behind, reparented to init, for a container still
  recorded as `created`.  If the process runs under a live conmon the start is finished
  (recorded as running); otherwise the process is killed and removed, the rootfs
  unmounted, and the container left `stopped`.  An attached start (`run -i/-t`) whose
  client is gone is let run.  runc state of ids with no container row is deleted.
- Containers recorded as running whose process is gone are recorded as stopped; the
  networking of containers not running, and of owners with no container row, released;
  bundles with no row deleted.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ContainerError
from ..syscalls import umount_detach

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
    with svc.db.read() as conn:
        rows = {r["id"]: r for r in conn.execute("SELECT * FROM containers")}
        owners = {
            (r[0], r[1])
            for r in conn.execute("SELECT network, owner FROM attachments")
            if ID_RE.match(r[1])
        }
        port_owners = {r[0] for r in conn.execute("SELECT owner FROM port_forwards")}
    for cid, row in rows.items():
        if row["state"] != "running" and (any(o == cid for _, o in owners) or cid in port_owners):
            svc._release(cid, json.loads(row["config"]))
    for network, owner in sorted(owners):
        if owner in rows:
            continue
        try:
            plugin = svc._plugin(network)
            helper = svc.helper_for(plugin)
            helper.request("DELETE", f"/portforwards/{owner}")
            helper.request("DELETE", f"/networks/{network}/attachments/{owner}")
            helper.request("DELETE", f"/sandboxes/{owner}")
        except Exception as exc:
            log.warning(f"container-apiserver: releasing orphan {owner[:12]} failed: {exc}")
    for cid in svc.runtime.list_ids():
        if ID_RE.match(cid) and cid not in rows:
            try:
                svc.runtime.delete(cid, force=True)
            except ContainerError as exc:
                log.warning(f"container-apiserver: removing orphan bundle failed: {exc}")


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
