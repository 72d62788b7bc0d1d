"""API keys: one row per key, found by the SHA-256 of the key (the plain key is never stored)."""

from __future__ import annotations

import json
from typing import Any

import aiosqlite

from nxg_mqtt.models import ApiKey
from nxg_mqtt.store.db import Database

_COLUMNS = "id, name, prefix, role, scopes, devices, created_at, last_used_at, revoked_at, owner_tenant"


def _key(row: aiosqlite.Row, default_tenant: str) -> ApiKey:
    devices = row["devices"]
    return ApiKey(
        id=row["id"],
        name=row["name"],
        prefix=row["prefix"],
        role=row["role"],
        scopes=tuple(json.loads(row["scopes"])),
        devices=None if devices is None else tuple(json.loads(devices)),
        created_at=row["created_at"],
        last_used_at=row["last_used_at"],
        revoked_at=row["revoked_at"],
        tenant=row["owner_tenant"] or default_tenant,
    )


class ApiKeyRepository:
    def __init__(self, db: Database, tenant_id: str) -> None:
        self._db = db
        self._tenant = tenant_id

    async def insert(self, key: ApiKey, key_hash: str) -> None:
        devices: Any = None if key.devices is None else json.dumps(list(key.devices))
        await self._db.conn.execute(
            f"INSERT INTO api_keys (tenant_id, key_hash, {_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                self._tenant,
                key_hash,
                key.id,
                key.name,
                key.prefix,
                key.role,
                json.dumps(list(key.scopes)),
                devices,
                key.created_at,
                key.last_used_at,
                key.revoked_at,
                None if key.tenant in ("", self._tenant) else key.tenant,  # NULL: the default tenant
            ),
        )

    async def by_hash(self, key_hash: str) -> ApiKey | None:
        row = await self._db.fetchone(
            f"SELECT {_COLUMNS} FROM api_keys WHERE tenant_id = ? AND key_hash = ?", (self._tenant, key_hash)
        )
        return None if row is None else _key(row, self._tenant)

    async def get(self, key_id: str) -> ApiKey | None:
        row = await self._db.fetchone(
            f"SELECT {_COLUMNS} FROM api_keys WHERE tenant_id = ? AND id = ?", (self._tenant, key_id)
        )
        return None if row is None else _key(row, self._tenant)

    async def list(self, tenant: str | None = None) -> list[ApiKey]:
        """Every key, or those `tenant` owns."""
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM api_keys WHERE tenant_id = ? ORDER BY created_at, id", (self._tenant,)
        )
        keys = [_key(r, self._tenant) for r in rows]
        return keys if tenant is None else [k for k in keys if k.tenant == tenant]

    async def revoke(self, key_id: str, ts: int) -> bool:
        cursor = await self._db.conn.execute(
            "UPDATE api_keys SET revoked_at = ? WHERE tenant_id = ? AND id = ? AND revoked_at IS NULL",
            (ts, self._tenant, key_id),
        )
        return cursor.rowcount > 0

    async def rehash(self, key_id: str, key_hash: str, prefix: str) -> bool:
        cursor = await self._db.conn.execute(
            "UPDATE api_keys SET key_hash = ?, prefix = ? WHERE tenant_id = ? AND id = ? AND revoked_at IS NULL",
            (key_hash, prefix, self._tenant, key_id),
        )
        return cursor.rowcount > 0

    async def touch(self, key_id: str, ts: int) -> None:
        await self._db.conn.execute(
            "UPDATE api_keys SET last_used_at = ? WHERE tenant_id = ? AND id = ?", (ts, self._tenant, key_id)
        )
