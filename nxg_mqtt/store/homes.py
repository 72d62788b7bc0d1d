"""Homes and rooms (seed 002), each owned by one tenant; a room belongs to one home."""

from __future__ import annotations

import aiosqlite

from nxg_mqtt.models import Home, Room
from nxg_mqtt.store.db import Database


def _home(row: aiosqlite.Row) -> Home:
    return Home(row["id"], row["tenant_id"], row["name"], row["timezone"], row["created_at"])


def _room(row: aiosqlite.Row) -> Room:
    return Room(row["id"], row["tenant_id"], row["home_id"], row["name"], row["created_at"])


class HomeRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def insert(self, home: Home) -> None:
        await self._db.conn.execute(
            "INSERT INTO homes (id, tenant_id, name, timezone, created_at) VALUES (?, ?, ?, ?, ?)",
            (home.id, home.tenant, home.name, home.timezone, home.created_at),
        )

    async def get(self, tenant: str, home_id: str) -> Home | None:
        row = await self._db.fetchone("SELECT * FROM homes WHERE tenant_id = ? AND id = ?", (tenant, home_id))
        return _home(row) if row else None

    async def of_tenant(self, tenant: str) -> list[Home]:
        rows = await self._db.fetchall("SELECT * FROM homes WHERE tenant_id = ? ORDER BY created_at, id", (tenant,))
        return [_home(r) for r in rows]

    async def update(self, tenant: str, home_id: str, name: str, timezone: str) -> None:
        await self._db.conn.execute(
            "UPDATE homes SET name = ?, timezone = ? WHERE tenant_id = ? AND id = ?", (name, timezone, tenant, home_id)
        )

    async def delete(self, tenant: str, home_id: str) -> None:
        await self._db.conn.execute("DELETE FROM rooms WHERE tenant_id = ? AND home_id = ?", (tenant, home_id))
        await self._db.conn.execute("DELETE FROM homes WHERE tenant_id = ? AND id = ?", (tenant, home_id))

    async def insert_room(self, room: Room) -> None:
        await self._db.conn.execute(
            "INSERT INTO rooms (id, tenant_id, home_id, name, created_at) VALUES (?, ?, ?, ?, ?)",
            (room.id, room.tenant, room.home_id, room.name, room.created_at),
        )

    async def room(self, tenant: str, room_id: str) -> Room | None:
        row = await self._db.fetchone("SELECT * FROM rooms WHERE tenant_id = ? AND id = ?", (tenant, room_id))
        return _room(row) if row else None

    async def rooms(self, tenant: str, home_id: str) -> list[Room]:
        rows = await self._db.fetchall(
            "SELECT * FROM rooms WHERE tenant_id = ? AND home_id = ? ORDER BY created_at, id", (tenant, home_id)
        )
        return [_room(r) for r in rows]

    async def delete_room(self, tenant: str, room_id: str) -> None:
        await self._db.conn.execute("DELETE FROM rooms WHERE tenant_id = ? AND id = ?", (tenant, room_id))
