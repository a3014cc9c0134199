"""The host's records of attachments whose driver allocates itself (Driver.allocates):
the `driver_attachments` table, one row per (network, owner), and the plugin's
`attachments` row the driver's reply becomes.

A record is committed `pending` before the driver acts, becomes `ready` (with the
driver's data, in the same transaction as the attachment row) before the host replies,
and `releasing` (the attachment row gone) before the driver undoes it; reconciliation
undoes every record that is not `ready`, so a crash at any point leaves nothing the
driver did without a record of it.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime

from ..errors import Conflict, NotFound
from ..models import Attachment, AttachmentRequest
from ..state import Database
from .allocator import Allocator, _row_to_attachment
from .driver import DriverRecord


def _record(row: sqlite3.Row) -> DriverRecord:
    return DriverRecord(
        network=row["network"],
        owner=row["owner"],
        netns=row["netns"],
        interface=row["interface"],
        state=row["state"],
        data=json.loads(row["data"]) if row["data"] else None,
    )


class DriverRecords:
    def __init__(self, db: Database, plugin: str) -> None:
        self.db = db
        self.plugin = plugin

    def begin(self, request: AttachmentRequest) -> DriverRecord:
        """Commit the pending record of a new attachment (Conflict if the owner has one)."""
        with self.db.write() as conn:
            try:
                conn.execute(
                    "INSERT INTO driver_attachments(network, owner, plugin, netns, interface,"
                    " state, data, created_at) VALUES (?,?,?,?,?,'pending',NULL,?)",
                    (
                        request.network,
                        request.owner,
                        self.plugin,
                        request.netns,
                        request.interface,
                        datetime.now(UTC).isoformat(),
                    ),
                )
            except sqlite3.IntegrityError:
                raise Conflict(
                    f"{request.owner} is being attached to or detached from {request.network}"
                ) from None
        return DriverRecord(
            request.network, request.owner, request.netns, request.interface, "pending"
        )

    def complete(self, attachment: Attachment, data: dict[str, object]) -> None:
        """The driver's reply and its data, in one transaction."""
        with self.db.write() as conn:
            Allocator._insert(
                conn, attachment, int(attachment.address.ip), attachment.address.network.prefixlen
            )
            conn.execute(
                "UPDATE attachments SET state = 'ready' WHERE network = ? AND owner = ?",
                (attachment.network, attachment.owner),
            )
            conn.execute(
                "UPDATE driver_attachments SET state = 'ready', data = ?"
                " WHERE network = ? AND owner = ?",
                (json.dumps(data), attachment.network, attachment.owner),
            )

    def release(self, network: str, owner: str) -> tuple[Attachment, DriverRecord]:
        """Forget the attachment and mark its record `releasing`, in one transaction."""
        with self.db.write() as conn:
            row = conn.execute(
                "SELECT * FROM attachments WHERE network = ? AND owner = ?", (network, owner)
            ).fetchone()
            record = conn.execute(
                "SELECT * FROM driver_attachments WHERE network = ? AND owner = ?",
                (network, owner),
            ).fetchone()
            if row is None or record is None:
                raise NotFound(f"{owner} is not attached to network {network}")
            conn.execute(
                "DELETE FROM attachments WHERE network = ? AND owner = ?", (network, owner)
            )
            conn.execute(
                "UPDATE driver_attachments SET state = 'releasing' WHERE network = ? AND owner = ?",
                (network, owner),
            )
        return _row_to_attachment(row), _record(record)

    def mark_releasing(self, network: str, owner: str) -> None:
        with self.db.write() as conn:
            conn.execute(
                "DELETE FROM attachments WHERE network = ? AND owner = ?", (network, owner)
            )
            conn.execute(
                "UPDATE driver_attachments SET state = 'releasing' WHERE network = ? AND owner = ?",
                (network, owner),
            )

    def set_data(self, network: str, owner: str, data: dict[str, object]) -> None:
        with self.db.write() as conn:
            conn.execute(
                "UPDATE driver_attachments SET data = ? WHERE network = ? AND owner = ?",
                (json.dumps(data), network, owner),
            )

    def forget(self, network: str, owner: str) -> None:
        with self.db.write() as conn:
            conn.execute(
                "DELETE FROM driver_attachments WHERE network = ? AND owner = ?", (network, owner)
            )

    def get(self, network: str, owner: str) -> DriverRecord | None:
        with self.db.read() as conn:
            row = conn.execute(
                "SELECT * FROM driver_attachments WHERE network = ? AND owner = ?",
                (network, owner),
            ).fetchone()
        return None if row is None else _record(row)

    def list(self, network: str | None = None) -> list[DriverRecord]:
        sql = "SELECT * FROM driver_attachments WHERE plugin = ?"
        args = [self.plugin]
        if network is not None:
            sql += " AND network = ?"
            args.append(network)
        with self.db.read() as conn:
            return [_record(r) for r in conn.execute(sql + " ORDER BY network, owner", args)]
