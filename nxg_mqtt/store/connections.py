"""The connection log: when each device session began and ended, and why."""

from __future__ import annotations

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
        rows = await self._db.fetchall(
            "SELECT * FROM connections WHERE tenant_id = ? AND serial = ? COLLATE NOCASE"
            " ORDER BY connected_at DESC, id DESC LIMIT ?",
            (self._tenant, serial, limit),
        )
        return [
            ConnectionRecord(
                id=r["id"],
                serial=r["serial"],
                transport=r["transport"],
                remote=r["remote"],
                connected_at=r["connected_at"],
                ended_at=r["ended_at"],
                reason=r["reason"],
            )
            for r in rows
        ]

    async def delete_device(self, serial: str) -> None:
        await self._db.conn.execute(
            "DELETE FROM connections WHERE tenant_id = ? AND serial = ? COLLATE NOCASE",
            (self._tenant, serial),
        )
