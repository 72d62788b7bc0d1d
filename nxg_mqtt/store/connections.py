"""The connection log: when each device session began and ended, and why."""

from __future__ import annotations

import aiosqlite

from nxg_mqtt.models import ConnectionRecord
from nxg_mqtt.store.db import Database


class ConnectionRepository:
    def __init__(self, db: Database, tenant_id: str) -> None:
        self._db = db
        self._tenant = tenant_id

    async def close_dangling(self, ts: int, reason: str) -> None:
        await self._db.conn.execute(
            "UPDATE connections SET ended_at = ?, reason = ? WHERE tenant_id = ? AND ended_at IS NULL",
            (ts, reason, self._tenant),
        )

    async def for_device(self, serial: str, limit: int = 100) -> list[ConnectionRecord]:
        return await self.log(serial, limit, active_only=False)

    async def log(self, serial: str, limit: int, active_only: bool) -> list[ConnectionRecord]:
        """The device's log, newest first; `active_only`: the connections not ended."""
        rows = await self._db.fetchall(
            "SELECT * FROM connections WHERE tenant_id = ? AND serial = ? COLLATE NOCASE"
            + (" AND ended_at IS NULL" if active_only else "")
            + " ORDER BY connected_at DESC, id DESC LIMIT ?",
            (self._tenant, serial, limit),
        )
        return [
            ConnectionRecord(
                serial=r["serial"],
                transport=r["transport"],
                remote=r["remote"],
                connected_at=r["connected_at"],
                ended_at=r["ended_at"],
                reason=r["reason"],
                id=r["id"],
                connection_id=r["connection_id"],
                node_id=r["node_id"],
            )
            for r in rows
        ]

    async def register(self, serial: str, connection_id: str, node_id: str, ts: int) -> bool:
        """A connection another node reports (seed 003); False if the id is taken."""
        try:
            await self._db.conn.execute(
                "INSERT INTO connections (tenant_id, serial, transport, connected_at, connection_id, node_id)"
                " VALUES (?, ?, 'external', ?, ?, ?)",
                (self._tenant, serial, ts, connection_id, node_id),
            )
        except aiosqlite.IntegrityError:
            return False
        return True

    async def serial_of(self, connection_id: str) -> str | None:
        """The device of a connection named by its id (a registered one's, or the log's row id)."""
        row = await self._db.fetchone(
            "SELECT serial FROM connections WHERE tenant_id = ? AND (connection_id = ?"
            " OR (connection_id IS NULL AND CAST(id AS TEXT) = ?))",
            (self._tenant, connection_id, connection_id),
        )
        return str(row[0]) if row else None

    async def end(self, connection_id: str, ts: int, reason: str) -> bool:
        """End an open connection; False if there is none with that id."""
        cur = await self._db.conn.execute(
            "UPDATE connections SET ended_at = ?, reason = ? WHERE tenant_id = ? AND ended_at IS NULL"
            " AND (connection_id = ? OR (connection_id IS NULL AND CAST(id AS TEXT) = ?))",
            (ts, reason, self._tenant, connection_id, connection_id),
        )
        return cur.rowcount > 0

    async def summary(self) -> dict[str, tuple[int, int | None, bool]]:
        """Per device (lowercased serial), in one query: its latest `connected_at`, when its open
        connection began (None), and whether another node reports an open connection of it."""
        rows = await self._db.fetchall(
            "SELECT serial, MAX(connected_at) AS last,"
            " MAX(CASE WHEN ended_at IS NULL THEN connected_at END) AS open_since,"
            " MAX(ended_at IS NULL AND node_id IS NOT NULL) AS elsewhere"
            " FROM connections WHERE tenant_id = ? GROUP BY serial COLLATE NOCASE",
            (self._tenant,),
        )
        return {str(r["serial"]).lower(): (int(r["last"]), r["open_since"], bool(r["elsewhere"])) for r in rows}

    async def active_registered(self, serial: str) -> bool:
        """Whether another node reports an open connection of the device."""
        row = await self._db.fetchone(
            "SELECT 1 FROM connections WHERE tenant_id = ? AND serial = ? COLLATE NOCASE"
            " AND node_id IS NOT NULL AND ended_at IS NULL LIMIT 1",
            (self._tenant, serial),
        )
        return row is not None

    async def delete_device(self, serial: str) -> None:
        await self._db.conn.execute(
            "DELETE FROM connections WHERE tenant_id = ? AND serial = ? COLLATE NOCASE",
            (self._tenant, serial),
        )
