"""Device groups (seed 002): a slug unique per tenant, and its member serials."""

from __future__ import annotations

from collections.abc import Iterable

import aiosqlite

from nxg_mqtt.models import Group
from nxg_mqtt.store.db import Database


class GroupRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def insert(self, group: Group) -> bool:
        """False if the tenant already has a group with this slug."""
        try:
            await self._db.conn.execute(
                "INSERT INTO device_groups (tenant_id, slug, name, description, created_at) VALUES (?, ?, ?, ?, ?)",
                (group.tenant, group.slug, group.name, group.description, group.created_at),
            )
        except aiosqlite.IntegrityError:
            return False
        await self.add_members(group.tenant, group.slug, group.device_ids)
        return True

    async def add_members(self, tenant: str, slug: str, serials: Iterable[str]) -> None:
        await self._db.conn.executemany(
            "INSERT OR IGNORE INTO group_members (tenant_id, slug, serial) VALUES (?, ?, ?)",
            [(tenant, slug, s) for s in serials],
        )

    async def members(self, tenant: str, slug: str) -> list[str]:
        rows = await self._db.fetchall(
            "SELECT serial FROM group_members WHERE tenant_id = ? AND slug = ? ORDER BY rowid", (tenant, slug)
        )
        return [str(r["serial"]) for r in rows]

    async def get(self, tenant: str, slug: str) -> Group | None:
        row = await self._db.fetchone("SELECT * FROM device_groups WHERE tenant_id = ? AND slug = ?", (tenant, slug))
        if row is None:
            return None
        members = tuple(await self.members(tenant, slug))
        return Group(row["tenant_id"], row["slug"], row["name"], row["description"], row["created_at"], members)

    async def of_tenant(self, tenant: str) -> list[Group]:
        rows = await self._db.fetchall(
            "SELECT * FROM device_groups WHERE tenant_id = ? ORDER BY created_at, slug", (tenant,)
        )
        members = await self._db.fetchall(
            "SELECT slug, serial FROM group_members WHERE tenant_id = ? ORDER BY rowid", (tenant,)
        )
        by_slug: dict[str, list[str]] = {}
        for m in members:
            by_slug.setdefault(str(m["slug"]), []).append(str(m["serial"]))
        return [
            Group(
                r["tenant_id"],
                r["slug"],
                r["name"],
                r["description"],
                r["created_at"],
                tuple(by_slug.get(r["slug"], ())),
            )
            for r in rows
        ]

    async def delete_device(self, serial: str) -> None:
        await self._db.conn.execute("DELETE FROM group_members WHERE serial = ?", (serial,))
