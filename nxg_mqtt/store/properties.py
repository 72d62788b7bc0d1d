"""Device properties (seed 003): a JSON value per name with a version bumped on every write.

Compare-and-swap is one statement: the UPDATE carries `version = ?` in its WHERE clause, so two
writers (tasks on the one connection, or another process on the same file) can never both
succeed with the same expected version.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiosqlite

from nxg_mqtt.store.db import Database


@dataclass(frozen=True, slots=True)
class Property:
    name: str
    value: Any
    protected: bool
    version: int
    updated_at: int


def _property(row: aiosqlite.Row) -> Property:
    return Property(row["name"], json.loads(row["value"]), bool(row["protected"]), row["version"], row["updated_at"])


class PropertyRepository:
    def __init__(self, db: Database, tenant_id: str) -> None:
        self._db = db
        self._tenant = tenant_id

    async def get(self, serial: str, name: str) -> Property | None:
        row = await self._db.fetchone(
            "SELECT name, value, protected, version, updated_at FROM device_properties"
            " WHERE tenant_id = ? AND serial = ? AND name = ?",
            (self._tenant, serial, name),
        )
        return _property(row) if row else None

    async def all(self, serial: str) -> list[Property]:
        rows = await self._db.fetchall(
            "SELECT name, value, protected, version, updated_at FROM device_properties"
            " WHERE tenant_id = ? AND serial = ? ORDER BY name",
            (self._tenant, serial),
        )
        return [_property(r) for r in rows]

    async def insert(self, serial: str, name: str, value: str, protected: bool, ts: int) -> bool:
        """Create at version 1; False if it exists already."""
        cur = await self._db.conn.execute(
            "INSERT INTO device_properties (tenant_id, serial, name, value, protected, version, updated_at)"
            " VALUES (?, ?, ?, ?, ?, 1, ?) ON CONFLICT DO NOTHING",
            (self._tenant, serial, name, value, int(protected), ts),
        )
        return cur.rowcount > 0

    async def update(
        self, serial: str, name: str, value: str, protected: bool | None, ts: int, expected: int | None
    ) -> tuple[int, bool] | None:
        """(the new version, whether it is protected), or None when the property is absent or (with
        `expected`) at another version. `protected=None` keeps the flag."""
        rows = await self._db.fetchall(
            "UPDATE device_properties SET value = ?, protected = COALESCE(?, protected),"
            " version = version + 1, updated_at = ?"
            " WHERE tenant_id = ? AND serial = ? AND name = ? AND (? IS NULL OR version = ?)"
            " RETURNING version, protected",
            (value, None if protected is None else int(protected), ts, self._tenant, serial, name, expected, expected),
        )
        return (int(rows[0][0]), bool(rows[0][1])) if rows else None

    async def delete(self, serial: str, name: str) -> bool:
        cur = await self._db.conn.execute(
            "DELETE FROM device_properties WHERE tenant_id = ? AND serial = ? AND name = ?",
            (self._tenant, serial, name),
        )
        return cur.rowcount > 0

    async def delete_device(self, serial: str) -> None:
        await self._db.conn.execute(
            "DELETE FROM device_properties WHERE tenant_id = ? AND serial = ?", (self._tenant, serial)
        )
