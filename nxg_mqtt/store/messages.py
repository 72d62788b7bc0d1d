"""Message history: append-only, written in batches, read newest first."""

from __future__ import annotations

import json
from collections.abc import Collection

from nxg_mqtt.models import HistoryEntry, MessageType
from nxg_mqtt.store.db import Database


class MessageRepository:
    def __init__(self, db: Database, tenant_id: str) -> None:
        self._db = db
        self._tenant = tenant_id

    async def query(
        self,
        serial: str | None = None,
        type_: MessageType | None = None,
        limit: int | None = 100,
        before: int | None = None,
        within: Collection[str] | None = None,
        not_before: int | None = None,
    ) -> list[HistoryEntry]:
        """Newest first; `before` is a ts (exclusive) for paging, `not_before` one (inclusive) below
        which nothing is returned; `within`: only these serials; `limit` None: every match."""
        clauses = ["tenant_id = ?"]
        params: list[object] = [self._tenant]
        if within is not None:
            clauses.append("serial COLLATE NOCASE IN (SELECT value FROM json_each(?))")
            params.append(json.dumps(sorted(within)))
        if serial is not None:
            clauses.append("serial = ? COLLATE NOCASE")
            params.append(serial)
        if type_ is not None:
            clauses.append("type = ?")
            params.append(type_.value)
        if before is not None:
            clauses.append("ts < ?")
            params.append(before)
        if not_before is not None:
            clauses.append("ts >= ?")
            params.append(not_before)
        params.append(-1 if limit is None else limit)  # SQLite: a negative LIMIT is no limit
        sql = (
            "SELECT id, serial, type, ts, device_ts, body FROM messages WHERE "
            + " AND ".join(clauses)
            + " ORDER BY ts DESC, id DESC LIMIT ?"
        )
        rows = await self._db.fetchall(sql, params)
        return [
            HistoryEntry(
                id=r["id"],
                serial=r["serial"],
                type=MessageType(r["type"]),
                ts=r["ts"],
                device_ts=r["device_ts"],
                body=json.loads(r["body"]),
            )
            for r in rows
        ]

    async def reported_firmware(self, serials: Collection[str]) -> dict[str, str]:
        """Each device's newest status value of `firmware` (else `fw_version`, else `version`):
        what seed 002's device list calls `firmware`. One indexed lookup per device."""
        if not serials:
            return {}
        rows = await self._db.fetchall(
            "SELECT d.value AS serial, (SELECT COALESCE(json_extract(m.body, '$.firmware'),"
            " json_extract(m.body, '$.fw_version'), json_extract(m.body, '$.version')) FROM messages m"
            " WHERE m.tenant_id = ? AND m.serial = d.value AND m.type = 'status'"
            " AND COALESCE(json_extract(m.body, '$.firmware'), json_extract(m.body, '$.fw_version'),"
            " json_extract(m.body, '$.version')) IS NOT NULL ORDER BY m.ts DESC LIMIT 1) AS firmware"
            " FROM json_each(?) d",
            (self._tenant, json.dumps(sorted(serials))),
        )
        return {str(r["serial"]): str(r["firmware"]) for r in rows if r["firmware"] is not None}

    async def delete_device(self, serial: str) -> None:
        await self._db.conn.execute(
            "DELETE FROM messages WHERE tenant_id = ? AND serial = ? COLLATE NOCASE", (self._tenant, serial)
        )

    async def prune(self, older_than_ms: int) -> int:
        cur = await self._db.conn.execute(
            "DELETE FROM messages WHERE tenant_id = ? AND ts < ?", (self._tenant, older_than_ms)
        )
        return cur.rowcount
