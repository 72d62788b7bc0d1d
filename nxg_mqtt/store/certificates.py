"""Device certificates (seed 003): a certificate's SHA-256 fingerprint bound to a device, with a status."""

from __future__ import annotations

from dataclasses import dataclass

import aiosqlite

from nxg_mqtt.store.db import Database


@dataclass(frozen=True, slots=True)
class Certificate:
    id: str
    serial: str
    fingerprint: str
    status: str
    first_seen: int


def _certificate(row: aiosqlite.Row) -> Certificate:
    return Certificate(row["id"], row["serial"], row["fingerprint"], row["status"], row["first_seen"])


_COLUMNS = "id, serial, fingerprint, status, first_seen"


class CertificateRepository:
    def __init__(self, db: Database, tenant_id: str) -> None:
        self._db = db
        self._tenant = tenant_id

    async def insert(self, cert_id: str, serial: str, fingerprint: str, status: str, ts: int) -> bool:
        """False when this device already has this fingerprint."""
        cur = await self._db.conn.execute(
            "INSERT INTO device_certificates (id, tenant_id, serial, fingerprint, status, first_seen)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (cert_id, self._tenant, serial, fingerprint, status, ts),
        )
        return cur.rowcount > 0

    async def get(self, cert_id: str) -> Certificate | None:
        row = await self._db.fetchone(
            f"SELECT {_COLUMNS} FROM device_certificates WHERE tenant_id = ? AND id = ?", (self._tenant, cert_id)
        )
        return _certificate(row) if row else None

    async def for_device(self, serial: str) -> list[Certificate]:
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM device_certificates WHERE tenant_id = ? AND serial = ? ORDER BY first_seen, id",
            (self._tenant, serial),
        )
        return [_certificate(r) for r in rows]

    async def by_fingerprint(self, fingerprint: str) -> list[Certificate]:
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM device_certificates WHERE tenant_id = ? AND fingerprint = ? ORDER BY first_seen",
            (self._tenant, fingerprint),
        )
        return [_certificate(r) for r in rows]

    async def set_status(self, cert_id: str, status: str) -> bool:
        cur = await self._db.conn.execute(
            "UPDATE device_certificates SET status = ? WHERE tenant_id = ? AND id = ?", (status, self._tenant, cert_id)
        )
        return cur.rowcount > 0

    async def delete(self, cert_id: str) -> bool:
        cur = await self._db.conn.execute(
            "DELETE FROM device_certificates WHERE tenant_id = ? AND id = ?", (self._tenant, cert_id)
        )
        return cur.rowcount > 0

    async def delete_device(self, serial: str) -> None:
        await self._db.conn.execute(
            "DELETE FROM device_certificates WHERE tenant_id = ? AND serial = ?", (self._tenant, serial)
        )
