"""Tenants (seed 002): id, name, slug. The default tenant has no row: it is `settings.tenant_id`."""

from __future__ import annotations

import aiosqlite

from nxg_mqtt.models import Tenant
from nxg_mqtt.store.db import Database

_COLUMNS = "id, name, slug, created_at"


def _tenant(row: aiosqlite.Row) -> Tenant:
    return Tenant(id=row["id"], name=row["name"], slug=row["slug"], created_at=row["created_at"])


class TenantRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def insert(self, tenant: Tenant) -> bool:
        """False if the slug is taken."""
        try:
            await self._db.conn.execute(
                f"INSERT INTO tenants ({_COLUMNS}) VALUES (?, ?, ?, ?)",
                (tenant.id, tenant.name, tenant.slug, tenant.created_at),
            )
        except aiosqlite.IntegrityError:
            return False
        return True

    async def get(self, tenant_id: str) -> Tenant | None:
        row = await self._db.fetchone(f"SELECT {_COLUMNS} FROM tenants WHERE id = ?", (tenant_id,))
        return _tenant(row) if row else None

    async def by_slug(self, slug: str) -> Tenant | None:
        row = await self._db.fetchone(f"SELECT {_COLUMNS} FROM tenants WHERE slug = ?", (slug,))
        return _tenant(row) if row else None

    async def all(self) -> list[Tenant]:
        return [_tenant(r) for r in await self._db.fetchall(f"SELECT {_COLUMNS} FROM tenants ORDER BY created_at")]
