"""Firmware releases and their per-device rollout rows.

The binary itself is a file in the data directory (`firmware/<id>.bin`, see the firmware
service); a release row holds what describes it (type, version, SHA-256, size) and whether it is
released to every device of its type. A rollout row is one device's progress through one release.

Tenants: `tenant_id` is the OWNER tenant (the uploading caller's; these tables are newer than
tenants and have no data-directory partition, as migration 6's comment says). A release id is
unique across tenants, so `get` finds any tenant's release and the firmware service refuses
another tenant's; a rollout row takes its release's tenant.
"""

from __future__ import annotations

from dataclasses import dataclass

import aiosqlite

from nxg_mqtt.store.db import Database


@dataclass(frozen=True, slots=True)
class FirmwareRelease:
    id: str
    tenant: str  # the owning tenant
    device_type: str
    version: str
    checksum: str  # SHA-256, lowercase hex
    size: int
    filename: str | None
    created_at: int
    created_by: str
    released_at: int | None
    target_all: bool  # released to every device of `device_type`, now and later


@dataclass(frozen=True, slots=True)
class RolloutEntry:
    release_id: str
    serial: str
    state: str  # services.firmware.RolloutState
    command_id: str | None
    progress: int | None  # percent, from ota_progress
    error: str | None
    updated_at: int


_RELEASE = (
    "id, tenant_id, device_type, version, checksum, size, filename, created_at, created_by, released_at, target_all"
)
_ROLLOUT = "release_id, serial, state, command_id, progress, error, updated_at"


def _release(row: aiosqlite.Row) -> FirmwareRelease:
    return FirmwareRelease(
        id=row["id"],
        tenant=row["tenant_id"],
        device_type=row["device_type"],
        version=row["version"],
        checksum=row["checksum"],
        size=row["size"],
        filename=row["filename"],
        created_at=row["created_at"],
        created_by=row["created_by"],
        released_at=row["released_at"],
        target_all=bool(row["target_all"]),
    )


def _rollout(row: aiosqlite.Row) -> RolloutEntry:
    return RolloutEntry(
        release_id=row["release_id"],
        serial=row["serial"],
        state=row["state"],
        command_id=row["command_id"],
        progress=row["progress"],
        error=row["error"],
        updated_at=row["updated_at"],
    )


class FirmwareRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    # ---- releases ---------------------------------------------------------------------------------

    async def insert(self, release: FirmwareRelease) -> bool:
        """False when the tenant's device type already has that version string."""
        try:
            await self._db.conn.execute(
                f"INSERT INTO firmware_releases ({_RELEASE}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    release.id,
                    release.tenant,
                    release.device_type,
                    release.version,
                    release.checksum,
                    release.size,
                    release.filename,
                    release.created_at,
                    release.created_by,
                    release.released_at,
                    int(release.target_all),
                ),
            )
        except aiosqlite.IntegrityError:
            return False
        return True

    async def get(self, release_id: str) -> FirmwareRelease | None:
        """The release of any tenant (the service checks whose it is)."""
        row = await self._db.fetchone(f"SELECT {_RELEASE} FROM firmware_releases WHERE id = ?", (release_id,))
        return _release(row) if row else None

    async def of_type(self, tenant: str, device_type: str) -> list[FirmwareRelease]:
        rows = await self._db.fetchall(
            f"SELECT {_RELEASE} FROM firmware_releases WHERE tenant_id = ? AND device_type = ? ORDER BY created_at",
            (tenant, device_type),
        )
        return [_release(r) for r in rows]

    async def mark_released(self, release_id: str, ts: int, target_all: bool) -> None:
        """Released at `ts` the first time; `target_all` once set stays set."""
        await self._db.conn.execute(
            "UPDATE firmware_releases SET released_at = COALESCE(released_at, ?), target_all = MAX(target_all, ?)"
            " WHERE id = ?",
            (ts, int(target_all), release_id),
        )

    # ---- rollouts (release ids and serials are unique across tenants) ------------------------------

    async def rollout(self, release_id: str) -> list[RolloutEntry]:
        rows = await self._db.fetchall(
            f"SELECT {_ROLLOUT} FROM firmware_rollouts WHERE release_id = ? ORDER BY serial", (release_id,)
        )
        return [_rollout(r) for r in rows]

    async def entry(self, release_id: str, serial: str) -> RolloutEntry | None:
        row = await self._db.fetchone(
            f"SELECT {_ROLLOUT} FROM firmware_rollouts WHERE release_id = ? AND serial = ?", (release_id, serial)
        )
        return _rollout(row) if row else None

    async def of_device(self, serial: str) -> list[RolloutEntry]:
        """Every rollout row of a device, newest first."""
        rows = await self._db.fetchall(
            f"SELECT {_ROLLOUT} FROM firmware_rollouts WHERE serial = ? ORDER BY updated_at DESC", (serial,)
        )
        return [_rollout(r) for r in rows]

    async def by_command(self, command_id: str) -> RolloutEntry | None:
        row = await self._db.fetchone(f"SELECT {_ROLLOUT} FROM firmware_rollouts WHERE command_id = ?", (command_id,))
        return _rollout(row) if row else None

    async def delete_device(self, serial: str) -> None:
        await self._db.conn.execute("DELETE FROM firmware_rollouts WHERE serial = ?", (serial,))

    async def put(self, entry: RolloutEntry) -> None:
        # the row's tenant is its release's
        await self._db.conn.execute(
            f"INSERT INTO firmware_rollouts (tenant_id, {_ROLLOUT})"
            " SELECT tenant_id, ?, ?, ?, ?, ?, ?, ? FROM firmware_releases WHERE id = ?"
            " ON CONFLICT (release_id, serial) DO UPDATE SET state = excluded.state,"
            " command_id = excluded.command_id, progress = excluded.progress, error = excluded.error,"
            " updated_at = excluded.updated_at",
            (
                entry.release_id,
                entry.serial,
                entry.state,
                entry.command_id,
                entry.progress,
                entry.error,
                entry.updated_at,
                entry.release_id,
            ),
        )
