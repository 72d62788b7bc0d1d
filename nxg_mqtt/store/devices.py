"""Devices: identity, connection code, token hash, presence columns."""

from __future__ import annotations

from typing import Any

import aiosqlite

from nxg_mqtt.models import Device
from nxg_mqtt.store.db import Database

_COLUMNS = "serial, name, code, paired, online, last_seen, created_at, revoked"


def _device(row: aiosqlite.Row) -> Device:
    return Device(
        serial=row["serial"],
        name=row["name"],
        code=row["code"],
        paired=bool(row["paired"]),
        online=bool(row["online"]),
        last_seen=row["last_seen"],
        created_at=row["created_at"],
        revoked=bool(row["revoked"]),
    )


class DeviceRepository:
    def __init__(self, db: Database, tenant_id: str) -> None:
        self._db = db
        self._tenant = tenant_id

    async def insert(self, serial: str, name: str | None, code: str, created_at: int) -> bool:
        """Insert; False if the serial (case-insensitively) or the code is taken."""
        try:
            await self._db.conn.execute(
                "INSERT INTO devices (tenant_id, serial, name, code, created_at) VALUES (?, ?, ?, ?, ?)",
                (self._tenant, serial, name, code, created_at),
            )
        except aiosqlite.IntegrityError:
            return False
        return True

    async def get(self, serial: str) -> Device | None:
        row = await self._db.fetchone(
            f"SELECT {_COLUMNS} FROM devices WHERE tenant_id = ? AND serial = ?", (self._tenant, serial)
        )
        return _device(row) if row else None

    async def by_code(self, code: str) -> Device | None:
        row = await self._db.fetchone(
            f"SELECT {_COLUMNS} FROM devices WHERE tenant_id = ? AND code = ?", (self._tenant, code)
        )
        return _device(row) if row else None

    async def all(self) -> list[Device]:
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM devices WHERE tenant_id = ? ORDER BY created_at, serial", (self._tenant,)
        )
        return [_device(r) for r in rows]

    async def token_hash(self, serial: str) -> tuple[str, str | None, bool] | None:
        """(canonical serial, token hash, revoked) — the login check's one query."""
        row = await self._db.fetchone(
            "SELECT serial, token_hash, revoked FROM devices WHERE tenant_id = ? AND serial = ?",
            (self._tenant, serial),
        )
        return (row["serial"], row["token_hash"], bool(row["revoked"])) if row else None

    async def serial_by_token_hash(self, token_hash: str) -> str | None:
        row = await self._db.fetchone(
            "SELECT serial FROM devices WHERE tenant_id = ? AND token_hash = ? AND revoked = 0",
            (self._tenant, token_hash),
        )
        return str(row[0]) if row else None

    async def set_token(self, serial: str, token_hash: str | None, paired: bool) -> bool:
        cur = await self._db.conn.execute(
            "UPDATE devices SET token_hash = ?, paired = ? WHERE tenant_id = ? AND serial = ?",
            (token_hash, int(paired), self._tenant, serial),
        )
        return cur.rowcount > 0

    async def set_code(self, serial: str, code: str) -> bool:
        try:
            cur = await self._db.conn.execute(
                "UPDATE devices SET code = ?, token_hash = NULL, paired = 0 WHERE tenant_id = ? AND serial = ?",
                (code, self._tenant, serial),
            )
        except aiosqlite.IntegrityError:
            return False
        return cur.rowcount > 0

    async def set_name(self, serial: str, name: str | None) -> bool:
        cur = await self._db.conn.execute(
            "UPDATE devices SET name = ? WHERE tenant_id = ? AND serial = ?", (name, self._tenant, serial)
        )
        return cur.rowcount > 0

    async def set_fingerprint(self, serial: str, fingerprint: str) -> bool:
        """False when another device has that fingerprint."""
        try:
            cur = await self._db.conn.execute(
                "UPDATE devices SET fingerprint = ? WHERE tenant_id = ? AND serial = ?",
                (fingerprint, self._tenant, serial),
            )
        except aiosqlite.IntegrityError:
            return False
        return cur.rowcount > 0

    async def fingerprint(self, serial: str) -> str | None:
        row = await self._db.fetchone(
            "SELECT fingerprint FROM devices WHERE tenant_id = ? AND serial = ?", (self._tenant, serial)
        )
        return None if row is None or row[0] is None else str(row[0])

    async def by_fingerprint(self, fingerprint: str) -> str | None:
        row = await self._db.fetchone(
            "SELECT serial FROM devices WHERE tenant_id = ? AND fingerprint = ?", (self._tenant, fingerprint)
        )
        return None if row is None else str(row[0])

    async def delete(self, serial: str) -> bool:
        cur = await self._db.conn.execute(
            "DELETE FROM devices WHERE tenant_id = ? AND serial = ?", (self._tenant, serial)
        )
        return cur.rowcount > 0

    async def mark_all_offline(self, ts: int) -> list[str]:
        """At start-up: whatever was online when the last process died is offline now."""
        rows = await self._db.fetchall("SELECT serial FROM devices WHERE tenant_id = ? AND online = 1", (self._tenant,))
        serials = [str(r["serial"]) for r in rows]
        await self._db.conn.execute("UPDATE devices SET online = 0 WHERE tenant_id = ? AND online = 1", (self._tenant,))
        return serials

    async def count(self) -> int:
        row = await self._db.fetchone("SELECT COUNT(*) FROM devices WHERE tenant_id = ?", (self._tenant,))
        return int(row[0]) if row else 0

    async def raw(self, serial: str) -> dict[str, Any] | None:
        """Every column, for tests and diagnostics."""
        row = await self._db.fetchone(
            "SELECT * FROM devices WHERE tenant_id = ? AND serial = ?", (self._tenant, serial)
        )
        return dict(row) if row else None
