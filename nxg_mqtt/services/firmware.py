"""Firmware OTA: releases uploaded by an admin, pushed to devices with `_ota`, tracked per device.

    release = await firmware.create(tenant, "esp32", "1.4.0", chunks, "app.bin", actor="admin")
    targets = await firmware.resolve_rollout_target(release, device_ids=["S1"])
    sent = await firmware.release(release.id, tenant, targets, url, actor="admin", dispatch=True)

A release is a binary stored as `<data dir>/firmware/<id>.bin` (streamed to disk while its SHA-256
is computed; never held in memory) with its device type and semantic version (unique per type).
Releasing it sends the protocol-internal `_ota` command (`{"url","checksum","version","size"}`)
through the ordinary command path: dispatched at once to a device that is online, queued (the
command TTL) for one that is not, so it goes out when the device is back.

Rollout state per device, derived from what the device does (never from a guess):
`pending` (the `_ota` is queued) → `sent` (dispatched) → `started` (`ota_started` /
`ota_progress` events) → `applied` (`ota_applied`, or the device's status reports the release's
version under `fw`) | `failed` (`ota_failed`, the device refused the command, no ack, or it
expired in the queue). A state never moves backwards; `applied` wins over `failed` (a device that
reports the new version has it).

Tenants: a release belongs to the uploading caller's tenant; to any other tenant it does not
exist (FirmwareNotFound), and it only ever goes to devices of its own tenant. Versions are unique
per tenant and device type. "Every device of the type" is the tenant's devices whose
`device_type` (set at `POST /device/register`) equals the release's. A device without a
`device_type` (created with a connection code: `POST /api/devices`, the CLI) is of no type: a
whole-type release is neither pushed to it nor offered by `firmware/check`; it gets firmware only
when it is named (`device_ids`, or a group or room it is in) — pushing a binary built for another
board to a device whose board nobody declared could brick it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import secrets
from collections.abc import AsyncIterable
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from nxg_mqtt.errors import ConflictError, DeviceNotFound, NotFoundError, NxgError, TooLargeError, ValidationError
from nxg_mqtt.models import Command, CommandStatus, HistoryEntry, now_ms
from nxg_mqtt.protocol import FIRMWARE_STATUS_KEY, InternalAction, MessageType, OtaEvent, RevokeReason
from nxg_mqtt.semver import Version
from nxg_mqtt.services.commands import CommandService
from nxg_mqtt.services.devices import DeviceService
from nxg_mqtt.services.groups import GroupService
from nxg_mqtt.services.homes import HomeService
from nxg_mqtt.services.ingest import IngestService
from nxg_mqtt.settings import Settings
from nxg_mqtt.store import Store
from nxg_mqtt.store.firmware import FirmwareRelease, RolloutEntry

log = logging.getLogger(__name__)

DEVICE_TYPE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
WRITE_CHUNK = 1024 * 1024  # bytes gathered before one write on a worker thread
INBOX_LIMIT = 10_000  # device reports waiting for the rollout worker; beyond it they are dropped


class RolloutState(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    STARTED = "started"
    APPLIED = "applied"
    FAILED = "failed"


_RANK = {
    RolloutState.PENDING: 0,
    RolloutState.SENT: 1,
    RolloutState.STARTED: 2,
    RolloutState.FAILED: 3,
    RolloutState.APPLIED: 4,
}

# what a change of the `_ota` command means for the rollout (None: nothing new)
_FROM_COMMAND: dict[CommandStatus, tuple[RolloutState, str | None] | None] = {
    CommandStatus.QUEUED: (RolloutState.PENDING, None),
    CommandStatus.DISPATCHED: (RolloutState.SENT, None),
    CommandStatus.ACKED: (RolloutState.SENT, None),
    CommandStatus.FAILED: (RolloutState.FAILED, "the device refused the update"),
    CommandStatus.TIMEOUT: (RolloutState.FAILED, "no ack from the device"),
    CommandStatus.EXPIRED: (RolloutState.FAILED, "expired in the queue before the device came back"),
    CommandStatus.REJECTED: (RolloutState.FAILED, "rejected"),
}


_OTA_EVENTS = frozenset(e.value for e in OtaEvent)


class FirmwareNotFound(NotFoundError):
    code = "FIRMWARE_NOT_FOUND"

    def __init__(self, release_id: str) -> None:
        super().__init__(f"firmware release not found: {release_id}")


@dataclass(frozen=True, slots=True)
class RolloutTarget:
    """The devices a release goes to now, and whether it is released to its whole device type."""

    serials: tuple[str, ...]
    all_of_type: bool


@dataclass(frozen=True, slots=True)
class CheckAnswer:
    """`firmware/check`: the newest release meant for the caller (None: none), and whether it is
    newer than the version the caller runs."""

    latest: FirmwareRelease | None
    update_available: bool


def ota_params(release: FirmwareRelease, url: str) -> dict[str, Any]:
    """The `_ota` command's params (the device verifies the download against `checksum`)."""
    return {"url": url, "checksum": release.checksum, "version": release.version, "size": release.size}


class FirmwareService:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        devices: DeviceService,
        commands: CommandService,
        ingest: IngestService,
        groups: GroupService,
        homes: HomeService,
    ) -> None:
        self._store = store
        self._groups = groups
        self._homes = homes
        self._settings = settings
        self._devices = devices
        self._commands = commands
        self.directory = settings.data_dir / "firmware"
        self._inbox: asyncio.Queue[HistoryEntry] = asyncio.Queue(INBOX_LIMIT)
        self.dropped = 0  # reports dropped with the inbox full (a device flooding ota_progress)
        self._task: asyncio.Task[None] | None = None
        self._rows = asyncio.Lock()  # rollout rows: one read-decide-write at a time
        commands.on_change(self._command_changed)
        ingest.observe(self._observed)
        devices.on_revoked(self._forget_deleted)

    # ---- releases ---------------------------------------------------------------------------------

    def path_of(self, release: FirmwareRelease) -> Path:
        return self.directory / f"{release.id}.bin"

    async def create(
        self,
        tenant: str,
        device_type: object,
        version: object,
        chunks: AsyncIterable[bytes],
        filename: str | None = None,
        actor: str = "admin",
    ) -> FirmwareRelease:
        """Store an uploaded binary as a new (not yet released) release of `tenant`'s `device_type`."""
        if not isinstance(device_type, str) or not DEVICE_TYPE_RE.match(device_type):
            raise ValidationError(
                '"device_type" is required: 1-64 characters of A-Z, a-z, 0-9, ".", "_" or "-"',
                code="INVALID_DEVICE_TYPE",
            )
        parsed = Version.parse(version)
        if (same := await self._same_version(tenant, device_type, parsed)) is not None:
            raise ConflictError(f"{device_type} {same.version} already exists", code="FIRMWARE_EXISTS")
        release_id = "fw_" + secrets.token_hex(8)
        self.directory.mkdir(parents=True, exist_ok=True)
        partial = self.directory / f".{release_id}.part"
        try:
            checksum, size = await self._receive(chunks, partial)
            if size == 0:
                raise ValidationError("the firmware binary is empty", code="INVALID_FIRMWARE")
            release = FirmwareRelease(
                id=release_id,
                tenant=tenant,
                device_type=device_type,
                version=parsed.text,
                checksum=checksum,
                size=size,
                filename=filename[:200] if filename else None,
                created_at=now_ms(),
                created_by=actor,
                released_at=None,
                target_all=False,
            )
            os.replace(partial, self.path_of(release))
        finally:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
        # a second upload of the same version may have finished meanwhile
        taken = await self._same_version(tenant, device_type, parsed) is not None
        if taken or not await self._store.firmware.insert(release):
            self.path_of(release).unlink(missing_ok=True)
            raise ConflictError(f"{device_type} {parsed.text} already exists", code="FIRMWARE_EXISTS")
        detail = {"id": release.id, "device_type": device_type, "version": release.version, "size": size}
        await self._store.audit.add(now_ms(), actor, "firmware.create", None, detail)
        return release

    async def _same_version(self, tenant: str, device_type: str, version: Version) -> FirmwareRelease | None:
        """A release of the tenant's type with this version (semver equality: build metadata does
        not make a new version), or None."""
        for existing in await self._store.firmware.of_type(tenant, device_type):
            if Version.parse(existing.version) == version:
                return existing
        return None

    async def _receive(self, chunks: AsyncIterable[bytes], path: Path) -> tuple[str, int]:
        """Write the upload to `path` while hashing it; (SHA-256 hex, size). Beyond the size limit:
        TooLargeError (the partial file is the caller's to remove)."""
        limit = self._settings.firmware_max_bytes
        digest = hashlib.sha256()
        size = 0
        pending: list[bytes] = []
        pending_bytes = 0
        with path.open("wb") as out:
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise TooLargeError(f"the firmware binary is larger than {limit} bytes (firmware_max_bytes)")
                digest.update(chunk)
                pending.append(chunk)
                pending_bytes += len(chunk)
                if pending_bytes >= WRITE_CHUNK:
                    await asyncio.to_thread(out.write, b"".join(pending))
                    pending, pending_bytes = [], 0
            if pending:
                await asyncio.to_thread(out.write, b"".join(pending))
        return digest.hexdigest(), size

    async def get(self, release_id: str, tenant: str) -> FirmwareRelease:
        """Release `release_id` of `tenant`; FirmwareNotFound for another tenant's too."""
        release = await self._store.firmware.get(release_id)
        if release is None or release.tenant != tenant:
            raise FirmwareNotFound(release_id)
        return release

    async def rollout(self, release_id: str) -> list[RolloutEntry]:
        return await self._store.firmware.rollout(release_id)

    # ---- releasing --------------------------------------------------------------------------------

    async def resolve_rollout_target(
        self,
        release: FirmwareRelease,
        *,
        device_ids: list[str] | None = None,
        group: str | None = None,
        room_id: str | None = None,
    ) -> RolloutTarget:
        """The devices of the release's tenant it goes to. Nothing named: every device of the
        release's type (and `firmware/check` offers it to those that come later); `device_ids`:
        those devices (DeviceNotFound for an unknown one or another tenant's); `group`: the
        tenant's group's members (GroupNotFound); `room_id`: the devices placed in the tenant's
        room (RoomNotFound). Any device named, typed or not, gets the release."""
        if group is not None:
            named = await self._groups.devices_in_group(release.tenant, group)
        elif room_id is not None:
            named = await self._homes.devices_in_room(release.tenant, room_id)
        elif device_ids is not None:
            named = device_ids
        else:
            return RolloutTarget(tuple(await self._devices_of_type(release.tenant, release.device_type)), True)
        serials: list[str] = []
        for serial in named:
            device = await self._devices.get(serial)
            if device.tenant != release.tenant:
                raise DeviceNotFound(serial)
            if device.serial not in serials:
                serials.append(device.serial)
        return RolloutTarget(tuple(serials), False)

    async def _devices_of_type(self, tenant: str, device_type: str) -> list[str]:
        devices = await self._store.devices.of_tenant(tenant)
        return [d.serial for d in devices if d.device_type == device_type and not d.revoked]

    async def release(
        self,
        release_id: str,
        tenant: str,
        target: RolloutTarget,
        url: str,
        *,
        actor: str = "admin",
        dispatch: bool = True,
    ) -> list[tuple[RolloutEntry, Command | None]]:
        """Mark the tenant's release released and send `_ota` to each target device that does not
        have it yet (a device whose earlier attempt failed gets it again). Each target's rollout
        row, with the command sent now (None: already under way or applied)."""
        release = await self.get(release_id, tenant)
        ts = now_ms()
        await self._store.firmware.mark_released(release.id, ts, target.all_of_type)
        await self._store.audit.add(
            ts, actor, "firmware.release", None, {"id": release.id, "devices": len(target.serials)}
        )
        params = ota_params(release, url)
        out: list[tuple[RolloutEntry, Command | None]] = []
        for serial in target.serials:
            existing = await self._store.firmware.entry(release.id, serial)
            if existing is not None and existing.state != RolloutState.FAILED:
                out.append((existing, None))
                continue
            # the row exists before the command goes out, so the device's first reports find it
            async with self._rows:
                await self._store.firmware.put(
                    RolloutEntry(release.id, serial, RolloutState.PENDING.value, None, None, None, now_ms())
                )
            try:
                command = await self._commands.submit(
                    serial,
                    InternalAction.OTA.value,
                    None,
                    params,
                    source="firmware",
                    dispatch=dispatch,
                    actor=actor,
                    internal=True,
                )
            except NxgError as exc:  # one device's refusal (revoked, queue full) never stops the others
                failed = await self._advance(release.id, serial, RolloutState.FAILED, error=exc.message)
                if failed is not None:
                    out.append((failed, None))
                continue
            # its state now (an ack may already have come back), with the command it belongs to
            now = await self._commands.get(command.id) or command
            state, error = _FROM_COMMAND[now.status] or (RolloutState.PENDING, None)
            entry = await self._advance(release.id, serial, state, error=now.error or error, command_id=command.id)
            if entry is not None:
                out.append((entry, command))
        return out

    # ---- devices asking ---------------------------------------------------------------------------

    async def meant_for(self, release: FirmwareRelease, serial: str | None) -> bool:
        """Whether a released release is offered to device `serial`: one of its tenant that it
        was sent to, or of its type when it is released to the whole type. (None: a caller of the
        release's tenant that is no device sees only releases to a whole device type.)"""
        if release.released_at is None:
            return False
        if serial is None:
            return release.target_all
        device = await self._store.devices.get(serial)
        if device is None or device.tenant != release.tenant:
            return False
        if release.target_all and device.device_type == release.device_type:
            return True
        return await self._store.firmware.entry(release.id, device.serial) is not None

    async def check(self, tenant: str, device_type: object, current_version: object, serial: str | None) -> CheckAnswer:
        """The newest release of `tenant` meant for device `serial` (None: an app asking about
        whole-type releases) among those of `device_type`."""
        if not isinstance(device_type, str) or not DEVICE_TYPE_RE.match(device_type):
            raise ValidationError('"device_type" is required (a device type such as esp32)', code="INVALID_DEVICE_TYPE")
        current = Version.parse(current_version, "current_version")
        latest: FirmwareRelease | None = None
        for release in await self._store.firmware.of_type(tenant, device_type):
            if await self.meant_for(release, serial) and (
                latest is None or Version.parse(release.version) > Version.parse(latest.version)
            ):
                latest = release
        return CheckAnswer(latest, latest is not None and Version.parse(latest.version) > current)

    async def _forget_deleted(self, serial: str, why: RevokeReason) -> None:
        # a deleted device leaves no rollout row behind (its commands went with it)
        if why is RevokeReason.DELETE:
            await self._store.firmware.delete_device(serial)

    # ---- what devices report ----------------------------------------------------------------------

    def _observed(self, entry: HistoryEntry) -> None:
        body = entry.body
        if (entry.type is MessageType.EVENT and body.get("type") in _OTA_EVENTS) or (
            entry.type is MessageType.STATUS and isinstance(body.get(FIRMWARE_STATUS_KEY), str)
        ):
            try:
                self._inbox.put_nowait(entry)
            except asyncio.QueueFull:
                self.dropped += 1

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="nxg-firmware-rollouts")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        # one at a time, in arrival order: a device's started → progress → applied land in order
        while True:
            entry = await self._inbox.get()
            try:
                await self.apply_report(entry)
            except Exception:
                log.exception("firmware rollout update from %s failed", entry.serial)

    async def apply_report(self, entry: HistoryEntry) -> RolloutEntry | None:
        """Move the rollout of the release a device's OTA event or `fw` status names."""
        body = entry.body
        if entry.type is MessageType.STATUS:
            version, kind = body.get(FIRMWARE_STATUS_KEY), None
        else:
            version, kind = body.get("version"), OtaEvent(body["type"])
        if not isinstance(version, str):
            return None
        try:
            reported = Version.parse(version)
        except ValidationError:
            return None
        row = await self._row_for(entry.serial, reported)
        if row is None:
            return None
        progress: int | None = None  # None: as it was
        error: str | None = None
        if kind is None or kind is OtaEvent.APPLIED:
            state, progress = RolloutState.APPLIED, 100
        elif kind is OtaEvent.FAILED:
            state = RolloutState.FAILED
            error = str(body.get("error") or "the device reported ota_failed")[:500]
        else:
            state = RolloutState.STARTED
            percent = body.get("progress", 0 if kind is OtaEvent.STARTED else None)
            if isinstance(percent, (int, float)) and not isinstance(percent, bool):
                progress = max(0, min(100, int(percent)))
        return await self._advance(row.release_id, row.serial, state, progress=progress, error=error)

    async def _row_for(self, serial: str, version: Version) -> RolloutEntry | None:
        """The device's newest rollout row of a release with that version."""
        for row in await self._store.firmware.of_device(serial):
            release = await self._store.firmware.get(row.release_id)
            if release is not None and Version.parse(release.version) == version:
                return row
        return None

    async def _command_changed(self, command: Command) -> None:
        if command.action != InternalAction.OTA.value:
            return
        row = await self._store.firmware.by_command(command.id)
        change = _FROM_COMMAND[command.status]
        if row is None or change is None:
            return
        state, error = change
        await self._advance(row.release_id, row.serial, state, error=command.error or error)

    async def _advance(
        self,
        release_id: str,
        serial: str,
        state: RolloutState,
        *,
        progress: int | None = None,
        error: str | None = None,
        command_id: str | None = None,
    ) -> RolloutEntry | None:
        """Move a rollout row forwards to `state` (never backwards; `progress` None keeps it);
        `command_id` records the `_ota` it belongs to. Read and write under one lock: the worker,
        the command listener and `release` all write rows."""
        async with self._rows:
            row = await self._store.firmware.entry(release_id, serial)
            if row is None:
                return None
            old = RolloutState(row.state)
            stays = (
                _RANK[state] < _RANK[old]
                or old is RolloutState.APPLIED
                or (state is old and (progress is None or progress == row.progress))
            )
            if stays and command_id is None:
                return row
            if not stays:
                row = replace(
                    row,
                    state=state.value,
                    progress=row.progress if progress is None else progress,
                    error=error if state is RolloutState.FAILED else None,
                )
            if command_id is not None:
                row = replace(row, command_id=command_id)
            row = replace(row, updated_at=now_ms())
            await self._store.firmware.put(row)
            return row
