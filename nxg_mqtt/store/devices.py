"""Devices: identity, connection code, token hash, presence columns."""

from __future__ import annotations

from typing import Any

import aiosqlite

from nxg_mqtt.models import Device
from nxg_mqtt.store.db import Database

_COLUMNS = (
    "serial, name, code, paired, online, last_seen, created_at, revoked,"
    " owner_tenant, device_type, home_id, room_id, key_version"
)


# the login check's one query: on the loop's reader when it can, else through the database thread
TOKEN_HASH_SQL = "SELECT serial, token_hash, revoked FROM devices WHERE tenant_id = ? AND serial = ?"


class DeviceRepository:
    """`tenant_id` is the data directory's partition; `owner_tenant` (NULL: the default tenant,
    which is the partition's id) the tenant that owns the device (migration 6)."""

    def __init__(self, db: Database, tenant_id: str) -> None:
        self._db = db
        self._tenant = tenant_id

    def _device(self, row: aiosqlite.Row) -> Device:
        return Device(
            serial=row["serial"],
            name=row["name"],
            code=row["code"],
            paired=bool(row["paired"]),
            online=bool(row["online"]),
            last_seen=row["last_seen"],
            created_at=row["created_at"],
            revoked=bool(row["revoked"]),
            tenant=row["owner_tenant"] or self._tenant,
            device_type=row["device_type"],
            home_id=row["home_id"],
            room_id=row["room_id"],
            key_version=row["key_version"],
        )

    def _owner(self, tenant: str | None) -> str | None:
        # the default tenant is stored as NULL, like every row from before tenants existed
        return None if tenant is None or tenant == self._tenant else tenant

    async def insert(
        self,
        serial: str,
        name: str | None,
        code: str,
        created_at: int,
        *,
        tenant: str | None = None,
        device_type: str | None = None,
        home_id: str | None = None,
        room_id: str | None = None,
    ) -> bool:
        """Insert; False if the serial (case-insensitively) or the code is taken."""
        try:
            await self._db.conn.execute(
                "INSERT INTO devices (tenant_id, serial, name, code, created_at, owner_tenant, device_type,"
                " home_id, room_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (self._tenant, serial, name, code, created_at, self._owner(tenant), device_type, home_id, room_id),
            )
        except aiosqlite.IntegrityError:
            return False
        return True

    async def owner(self, serial: str) -> tuple[str, str] | None:
        """(canonical serial, owning tenant) of a device, None if there is none."""
        row = await self._db.fetchone(
            "SELECT serial, owner_tenant FROM devices WHERE tenant_id = ? AND serial = ?", (self._tenant, serial)
        )
        return (str(row["serial"]), row["owner_tenant"] or self._tenant) if row else None

    async def owners(self) -> list[tuple[str, str]]:
        rows = await self._db.fetchall("SELECT serial, owner_tenant FROM devices WHERE tenant_id = ?", (self._tenant,))
        return [(str(r["serial"]), r["owner_tenant"] or self._tenant) for r in rows]

    async def of_tenant(self, tenant: str) -> list[Device]:
        owner = self._owner(tenant)
        where = "owner_tenant IS NULL" if owner is None else "owner_tenant = ?"
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM devices WHERE tenant_id = ? AND {where} ORDER BY created_at, serial",
            (self._tenant,) if owner is None else (self._tenant, owner),
        )
        return [self._device(r) for r in rows]

    async def set_secret(self, serial: str, token_hash: str, version: int) -> bool:
        cur = await self._db.conn.execute(
            "UPDATE devices SET token_hash = ?, paired = 1, key_version = ? WHERE tenant_id = ? AND serial = ?",
            (token_hash, version, self._tenant, serial),
        )
        return cur.rowcount > 0

    async def set_revoked(self, serial: str) -> bool:
        """Revoked for good: no token, and the revoked flag refuses the code too."""
        cur = await self._db.conn.execute(
            "UPDATE devices SET revoked = 1, token_hash = NULL, paired = 0 WHERE tenant_id = ? AND serial = ?",
            (self._tenant, serial),
        )
        return cur.rowcount > 0

    async def place(self, serial: str, home_id: str | None, room_id: str | None) -> bool:
        cur = await self._db.conn.execute(
            "UPDATE devices SET home_id = ?, room_id = ? WHERE tenant_id = ? AND serial = ?",
            (home_id, room_id, self._tenant, serial),
        )
        return cur.rowcount > 0

    async def in_home(self, home_id: str) -> list[str]:
        rows = await self._db.fetchall(
            "SELECT serial FROM devices WHERE tenant_id = ? AND home_id = ? ORDER BY created_at, serial",
            (self._tenant, home_id),
        )
        return [str(r["serial"]) for r in rows]

    async def in_room(self, room_id: str) -> list[str]:
        rows = await self._db.fetchall(
            "SELECT serial FROM devices WHERE tenant_id = ? AND room_id = ? ORDER BY created_at, serial",
            (self._tenant, room_id),
        )
        return [str(r["serial"]) for r in rows]

    async def leave_room(self, room_id: str) -> None:
        await self._db.conn.execute(
            "UPDATE devices SET room_id = NULL WHERE tenant_id = ? AND room_id = ?", (self._tenant, room_id)
        )

    async def get(self, serial: str) -> Device | None:
        row = await self._db.fetchone(
            f"SELECT {_COLUMNS} FROM devices WHERE tenant_id = ? AND serial = ?", (self._tenant, serial)
        )
        return self._device(row) if row else None

    async def by_code(self, code: str) -> Device | None:
        """Every pairing login makes this read, wrong codes included, while the Mosquitto plugin
        waits on its one thread for the answer: on the loop when it can (`Database.read_now`, a
        unique index), so the answer does not queue behind the writes on the database thread (a
        CONNECT storm's presence and connection log: 5 ms per wrong code instead of 0.5)."""
        row = await self._db.fetchone_now(
            f"SELECT {_COLUMNS} FROM devices WHERE tenant_id = ? AND code = ?", (self._tenant, code)
        )
        return self._device(row) if row else None

    async def all(self) -> list[Device]:
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM devices WHERE tenant_id = ? ORDER BY created_at, serial", (self._tenant,)
        )
        return [self._device(r) for r in rows]

    async def token_hash(self, serial: str) -> tuple[str, str | None, bool] | None:
        """(canonical serial, token hash, revoked) — the login check's one query: every device
        CONNECT makes it, so it reads on the loop when it can (`Database.read_now`)."""
        row = await self._db.fetchone_now(TOKEN_HASH_SQL, (self._tenant, serial))
        return (row["serial"], row["token_hash"], bool(row["revoked"])) if row else None

    async def logins(self) -> list[tuple[str, str]]:
        """(serial, token hash) of every device that may log in with a token now: what
        `DeviceService.authenticate` would allow (a token is set, not revoked)."""
        rows = await self._db.fetchall(
            "SELECT serial, token_hash FROM devices WHERE tenant_id = ? AND revoked = 0 AND token_hash IS NOT NULL",
            (self._tenant,),
        )
        return [(str(r[0]), str(r[1])) for r in rows]

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
