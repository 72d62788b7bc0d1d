"""Commands: the durable record of every command and its lifecycle.

A device's open commands (queued or dispatched) are bounded: `insert(limit=…)` refuses a command
beyond the limit in the same statement that counts them, so concurrent writers (the server and
the CLI) cannot overshoot. Expiry goes through the partial index `commands_expiry` and touches
only the rows that are due.
"""

from __future__ import annotations

import json

import aiosqlite

from nxg_mqtt.messages import compact
from nxg_mqtt.models import Command, CommandStatus
from nxg_mqtt.store.db import Database

# the covering index commands_open (tenant_id, serial, status, …) answers this without the rows
COUNT_OPEN = "SELECT COUNT(*) FROM commands WHERE tenant_id = ? AND serial = ? AND status IN ('queued', 'dispatched')"
# `status = 'queued'` spelled out so the partial index commands_expiry applies
DUE = (
    "SELECT rowid FROM commands WHERE tenant_id = ? AND status = 'queued' AND expires_at <= ?"
    " ORDER BY expires_at LIMIT ?"
)
# the partial index holds only queued rows; commands_open would walk every command ever sent
SERIALS_WITH_QUEUED = (
    "SELECT DISTINCT serial FROM commands INDEXED BY commands_expiry WHERE tenant_id = ? AND status = 'queued'"
)
EXPIRE_DUE = "UPDATE commands SET status = 'expired', finished_at = ?, error = ? WHERE rowid IN (" + DUE + ")"


def _command(row: aiosqlite.Row) -> Command:
    return Command(
        id=row["id"],
        serial=row["serial"],
        action=row["action"],
        target=row["target"],
        params=json.loads(row["params"]),
        status=CommandStatus(row["status"]),
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        source=row["source"],
        ref=row["ref"],
        error=row["error"],
        result=json.loads(row["result"]) if row["result"] is not None else None,
        dispatched_at=row["dispatched_at"],
        finished_at=row["finished_at"],
    )


class CommandRepository:
    def __init__(self, db: Database, tenant_id: str) -> None:
        self._db = db
        self._tenant = tenant_id

    async def insert(self, command: Command, limit: int = 0) -> bool:
        """Store a new command; False (nothing stored) if its device already has `limit` open
        commands (0 = no limit)."""
        cur = await self._db.conn.execute(
            "INSERT INTO commands (id, tenant_id, serial, target, action, params, ref, source, status,"
            " error, created_at, expires_at) SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?"
            f" WHERE ? <= 0 OR ({COUNT_OPEN}) < ?",
            (
                command.id,
                self._tenant,
                command.serial,
                command.target,
                command.action,
                compact(command.params),
                command.ref,
                command.source,
                command.status.value,
                command.error,
                command.created_at,
                command.expires_at,
                limit,
                self._tenant,
                command.serial,
                limit,
            ),
        )
        return cur.rowcount > 0

    async def count_open(self, serial: str) -> int:
        row = await self._db.fetchone(COUNT_OPEN, (self._tenant, serial))
        return int(row[0]) if row else 0

    async def expire_due(self, now: int, error: str, limit: int = 1000) -> list[str]:
        """Mark queued commands whose TTL has passed `expired` (at most `limit`, the oldest first);
        their ids."""
        rows = await self._db.fetchall(EXPIRE_DUE + " RETURNING id", (now, error, self._tenant, now, limit))
        return [str(r["id"]) for r in rows]

    async def get(self, command_id: str) -> Command | None:
        row = await self._db.fetchone(
            "SELECT * FROM commands WHERE tenant_id = ? AND id = ?", (self._tenant, command_id)
        )
        return _command(row) if row else None

    async def page(self, serial: str, limit: int, before: int | None = None) -> tuple[list[Command], int | None]:
        """A device's commands, newest first, `limit` at a time; the cursor of the next page
        (`before`, a row id) or None on the last one."""
        rows = await self._db.fetchall(
            "SELECT rowid AS cursor, * FROM commands WHERE tenant_id = ? AND serial = ? COLLATE NOCASE"
            " AND rowid < ? ORDER BY rowid DESC LIMIT ?",
            (self._tenant, serial, before if before is not None else 2**63 - 1, limit + 1),
        )
        more = len(rows) > limit
        rows = rows[:limit]
        return [_command(r) for r in rows], (int(rows[-1]["cursor"]) if more else None)

    async def open_for(self, serial: str) -> list[Command]:
        """Queued commands of a device, oldest first (the dispatch order)."""
        rows = await self._db.fetchall(
            "SELECT * FROM commands WHERE tenant_id = ? AND serial = ? AND status = 'queued'"
            " ORDER BY created_at, rowid",
            (self._tenant, serial),
        )
        return [_command(r) for r in rows]

    async def with_status(self, status: CommandStatus) -> list[Command]:
        rows = await self._db.fetchall(
            "SELECT * FROM commands WHERE tenant_id = ? AND status = ? ORDER BY created_at, rowid",
            (self._tenant, status.value),
        )
        return [_command(r) for r in rows]

    async def serials_with_queued(self) -> set[str]:
        rows = await self._db.fetchall(SERIALS_WITH_QUEUED, (self._tenant,))
        return {str(r["serial"]) for r in rows}

    async def mark_dispatched(self, command_id: str, ts: int) -> bool:
        cur = await self._db.conn.execute(
            "UPDATE commands SET status = 'dispatched', dispatched_at = ?"
            " WHERE tenant_id = ? AND id = ? AND status IN ('queued', 'dispatched')",
            (ts, self._tenant, command_id),
        )
        return cur.rowcount > 0

    async def finish(
        self,
        command_id: str,
        status: CommandStatus,
        ts: int,
        error: str | None = None,
        result: object = None,
    ) -> bool:
        """Close an open command; False if it was already final (a replayed ack, say)."""
        cur = await self._db.conn.execute(
            "UPDATE commands SET status = ?, finished_at = ?, error = ?, result = ?"
            " WHERE tenant_id = ? AND id = ? AND status IN ('queued', 'dispatched')",
            (
                status.value,
                ts,
                error,
                json.dumps(result) if result is not None else None,
                self._tenant,
                command_id,
            ),
        )
        return cur.rowcount > 0

    async def delete_device(self, serial: str) -> None:
        await self._db.conn.execute(
            "DELETE FROM commands WHERE tenant_id = ? AND serial = ? COLLATE NOCASE", (self._tenant, serial)
        )
