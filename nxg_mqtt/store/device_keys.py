"""The versions of each device's secret (seed 002's key history): times only, never a secret."""

from __future__ import annotations

from nxg_mqtt.models import DeviceKey
from nxg_mqtt.store.db import Database


class DeviceKeyRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, tenant: str, serial: str, version: int, ts: int) -> None:
        """Version `version` is the live one from `ts`; every earlier one is retired then."""
        await self._db.conn.execute(
            "UPDATE device_keys SET retired_at = ?, reason = 'rotated' WHERE serial = ? AND retired_at IS NULL",
            (ts, serial),
        )
        await self._db.conn.execute(
            "INSERT INTO device_keys (tenant_id, serial, version, created_at) VALUES (?, ?, ?, ?)",
            (tenant, serial, version, ts),
        )

    async def retire_all(self, serial: str, ts: int, reason: str) -> None:
        await self._db.conn.execute(
            "UPDATE device_keys SET retired_at = ?, reason = ? WHERE serial = ? AND retired_at IS NULL",
            (ts, reason, serial),
        )

    async def history(self, serial: str) -> list[DeviceKey]:
        rows = await self._db.fetchall(
            "SELECT version, created_at, retired_at, reason FROM device_keys WHERE serial = ? ORDER BY version",
            (serial,),
        )
        return [DeviceKey(r["version"], r["created_at"], r["retired_at"], r["reason"]) for r in rows]

    async def delete_device(self, serial: str) -> None:
        await self._db.conn.execute("DELETE FROM device_keys WHERE serial = ?", (serial,))
