"""Manifests: every version of every device's capability manifest; the newest one is in force.

The version is the server's: `add` writes MAX(version)+1 in the same statement that reads it,
so the server and the CLI cannot hand out one version twice.
"""

from __future__ import annotations

import json
from typing import Any

import aiosqlite

from nxg_mqtt.messages import compact
from nxg_mqtt.models import ManifestRecord
from nxg_mqtt.store.db import Database


def _record(row: aiosqlite.Row) -> ManifestRecord:
    return ManifestRecord(
        serial=row["serial"],
        version=row["version"],
        capabilities=json.loads(row["body"]),
        source=row["source"],
        created_at=row["created_at"],
    )


class ManifestRepository:
    def __init__(self, db: Database, tenant_id: str) -> None:
        self._db = db
        self._tenant = tenant_id

    async def add(self, serial: str, capabilities: list[dict[str, Any]], source: str, ts: int) -> int:
        """Store a new version; its number."""
        rows = await self._db.fetchall(
            "INSERT INTO manifests (tenant_id, serial, version, body, source, created_at)"
            " SELECT ?, ?, COALESCE(MAX(version), 0) + 1, ?, ?, ? FROM manifests WHERE tenant_id = ? AND serial = ?"
            " RETURNING version",
            (
                self._tenant,
                serial,
                compact(capabilities),
                source,
                ts,
                self._tenant,
                serial,
            ),
        )
        return int(rows[0]["version"])

    async def latest(self, serial: str) -> ManifestRecord | None:
        row = await self._db.fetchone(
            "SELECT * FROM manifests WHERE tenant_id = ? AND serial = ? ORDER BY version DESC LIMIT 1",
            (self._tenant, serial),
        )
        return _record(row) if row else None

    async def version(self, serial: str, version: int) -> ManifestRecord | None:
        row = await self._db.fetchone(
            "SELECT * FROM manifests WHERE tenant_id = ? AND serial = ? AND version = ?",
            (self._tenant, serial, version),
        )
        return _record(row) if row else None

    async def versions(self, serial: str) -> list[int]:
        rows = await self._db.fetchall(
            "SELECT version FROM manifests WHERE tenant_id = ? AND serial = ? ORDER BY version",
            (self._tenant, serial),
        )
        return [int(r["version"]) for r in rows]

    async def all_latest(self) -> list[ManifestRecord]:
        """The manifest in force of every device (for the capability registry)."""
        rows = await self._db.fetchall(
            "SELECT m.* FROM manifests m JOIN (SELECT serial, MAX(version) AS v FROM manifests"
            " WHERE tenant_id = ? GROUP BY serial) l ON m.serial = l.serial AND m.version = l.v"
            " WHERE m.tenant_id = ? ORDER BY m.serial",
            (self._tenant, self._tenant),
        )
        return [_record(r) for r in rows]

    async def delete_device(self, serial: str) -> None:
        await self._db.conn.execute(
            "DELETE FROM manifests WHERE tenant_id = ? AND serial = ? COLLATE NOCASE", (self._tenant, serial)
        )
