"""The firmware service on a real core (SQLite in a temp dir, no broker): uploads streamed to disk,
versions unique per tenant and type by semver precedence, the rollout state derived from the
`_ota` command and the device's reports, `check` answering per device, group and room targets,
and tenants: a release is its tenant's only, and reaches only its tenant's devices of its type."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from nxg_mqtt.core import Core, open_core
from nxg_mqtt.errors import ConflictError, DeviceNotFound, NotFoundError, TooLargeError, ValidationError
from nxg_mqtt.models import CommandStatus, HistoryEntry, now_ms
from nxg_mqtt.protocol import MessageType
from nxg_mqtt.services.firmware import RolloutState, RolloutTarget
from nxg_mqtt.store.firmware import FirmwareRelease
from nxg_mqtt.topics import Channel
from tests.factories import make_settings


async def chunks(data: bytes, size: int = 7) -> AsyncIterator[bytes]:
    for at in range(0, len(data), size):
        yield data[at : at + size]


@pytest.fixture
async def core(tmp_path: Path) -> AsyncIterator[Core]:
    async with open_core(make_settings(tmp_path, firmware_max_bytes=100, command_ttl_s=0.2), serve=True) as value:
        for serial in ("d1", "d2"):
            await value.devices.create(serial)
        # d1, d2 are esp32 boards (seed 002 registers devices with a type; `create` has none)
        await value.store.db.conn.execute("UPDATE devices SET device_type = 'esp32' WHERE serial IN ('d1', 'd2')")
        yield value


def default(core: Core) -> str:
    return core.tenants.default_id


async def released(core: Core, version: str = "1.1.0", **target: Any) -> FirmwareRelease:
    release = await core.firmware.create(default(core), "esp32", version, chunks(b"firmware!"))
    goal = await core.firmware.resolve_rollout_target(release, **target)
    await core.firmware.release(release.id, default(core), goal, "http://h/x")
    return await core.firmware.get(release.id, default(core))


async def state(core: Core, release_id: str, serial: str) -> str:
    entry = await core.store.firmware.entry(release_id, serial)
    assert entry is not None
    return entry.state


def report(core: Core, serial: str, channel: Channel, body: dict[str, Any]) -> HistoryEntry:
    return core.ingest.accept(serial, channel, json.dumps(body).encode())


async def eventually(core: Core, release_id: str, serial: str, want: RolloutState) -> None:
    for _ in range(100):
        if await state(core, release_id, serial) == want:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{serial}: {await state(core, release_id, serial)}, not {want}")


async def test_an_upload_is_streamed_to_its_file_with_its_checksum(core: Core) -> None:
    release = await core.firmware.create(default(core), "esp32", "1.0.0", chunks(b"x" * 100), "app.bin")
    assert release.checksum == hashlib.sha256(b"x" * 100).hexdigest() and release.size == 100
    assert core.firmware.path_of(release).read_bytes() == b"x" * 100
    with pytest.raises(TooLargeError):
        await core.firmware.create(default(core), "esp32", "1.0.1", chunks(b"x" * 101))
    with pytest.raises(ConflictError) as same:
        await core.firmware.create(default(core), "esp32", "1.0.0+build.2", chunks(b"y"))
    assert same.value.code == "FIRMWARE_EXISTS"
    assert (await core.firmware.create(default(core), "esp8266", "1.0.0", chunks(b"y"))).device_type == "esp8266"
    with pytest.raises(ValidationError):
        await core.firmware.create(default(core), "esp 32", "1.0.2", chunks(b"y"))
    files = sorted(p.name for p in core.firmware.directory.iterdir())
    assert len(files) == 2 and all(name.endswith(".bin") for name in files)  # no partial file left


async def test_the_rollout_follows_the_command_and_the_reports(core: Core) -> None:
    release = await released(core)
    ota = await core.store.commands.open_for("d1")
    assert [c.action for c in ota] == ["_ota"] and ota[0].params["checksum"] == release.checksum
    assert await state(core, release.id, "d1") == RolloutState.PENDING  # offline: queued
    report(core, "d1", Channel.EVENT, {"type": "ota_progress", "version": "1.1.0", "progress": 50})
    await eventually(core, release.id, "d1", RolloutState.STARTED)
    report(core, "d1", Channel.EVENT, {"type": "ota_failed", "version": "1.1.0", "error": "no space"})
    await eventually(core, release.id, "d1", RolloutState.FAILED)
    report(core, "d1", Channel.EVENT, {"type": "ota_progress", "version": "1.1.0", "progress": 75})
    report(core, "d1", Channel.STATUS, {"fw": "9.9.9"})  # another version: not this rollout's
    await asyncio.sleep(0.1)
    assert await state(core, release.id, "d1") == RolloutState.FAILED  # never backwards
    report(core, "d1", Channel.STATUS, {"fw": "1.1.0+local"})  # the same version (build metadata aside)
    await eventually(core, release.id, "d1", RolloutState.APPLIED)


async def test_an_ota_that_expires_in_the_queue_fails_the_rollout(core: Core) -> None:
    release = await released(core, device_ids=["d2"])
    assert await core.store.firmware.entry(release.id, "d1") is None
    await asyncio.sleep(0.3)
    assert await core.commands.expire() == 1
    await eventually(core, release.id, "d2", RolloutState.FAILED)
    entry = await core.store.firmware.entry(release.id, "d2")
    assert entry is not None and entry.error == "expired in the queue"
    command = await core.commands.get(entry.command_id or "")
    assert command is not None and command.status is CommandStatus.EXPIRED


async def test_check_offers_the_newest_release_meant_for_the_device(core: Core) -> None:
    await released(core, "1.1.0")
    await released(core, "1.3.0-beta.1", device_ids=["d2"])
    unreleased = await core.firmware.create(default(core), "esp32", "2.0.0", chunks(b"z"))
    for_d1 = await core.firmware.check(default(core), "esp32", "1.0.0", "d1")
    assert for_d1.latest is not None and for_d1.latest.version == "1.1.0" and for_d1.update_available
    for_d2 = await core.firmware.check(default(core), "esp32", "1.1.0", "d2")
    assert for_d2.latest is not None and for_d2.latest.version == "1.3.0-beta.1" and for_d2.update_available
    assert not (await core.firmware.check(default(core), "esp32", "1.3.0", "d2")).update_available
    assert (await core.firmware.check(default(core), "esp32", "1.0.0", None)).latest.version == "1.1.0"  # type: ignore[union-attr]
    assert (await core.firmware.check(default(core), "esp8266", "0.0.1", "d1")).latest is None
    assert unreleased.released_at is None


async def test_group_and_room_targets_are_the_tenants_groups_and_rooms(core: Core) -> None:
    tenant = default(core)
    release = await core.firmware.create(tenant, "esp32", "1.0.0", chunks(b"z"))
    with pytest.raises(NotFoundError) as group:
        await core.firmware.resolve_rollout_target(release, group="kitchen")
    with pytest.raises(NotFoundError) as room:
        await core.firmware.resolve_rollout_target(release, room_id="r1")
    assert (group.value.code, room.value.code) == ("GROUP_NOT_FOUND", "ROOM_NOT_FOUND")
    await core.devices.create("plain")  # no device_type: only a named target reaches it
    await core.groups.create(tenant, "Kitchen", None, ["d2", "plain"])
    target = await core.firmware.resolve_rollout_target(release, group="kitchen")
    assert target == RolloutTarget(("d2", "plain"), False)
    home = await core.homes.create(tenant, "Flat", "Europe/Paris")
    room_of = await core.homes.add_room(tenant, home.id, "Hall")
    await core.store.devices.place("d1", home.id, room_of.id)
    assert await core.firmware.resolve_rollout_target(release, room_id=room_of.id) == RolloutTarget(("d1",), False)
    whole = await core.firmware.resolve_rollout_target(release)
    assert whole == RolloutTarget(("d1", "d2"), True)  # "plain" has no type, so it is of none


async def test_a_release_is_its_tenants_only(core: Core) -> None:
    other, _, _ = await core.tenants.register("Other", actor="admin")
    await core.devices.create("theirs", tenant=other.id)
    await core.store.db.conn.execute("UPDATE devices SET device_type = 'esp32' WHERE serial = 'theirs'")
    mine = await released(core, "1.1.0")
    with pytest.raises(NotFoundError) as hidden:
        await core.firmware.get(mine.id, other.id)
    assert hidden.value.code == "FIRMWARE_NOT_FOUND"
    assert [e.serial for e in await core.firmware.rollout(mine.id)] == ["d1", "d2"]  # not "theirs"
    with pytest.raises(DeviceNotFound):
        await core.firmware.resolve_rollout_target(mine, device_ids=["theirs"])
    assert not await core.firmware.meant_for(mine, "theirs")
    assert (await core.firmware.check(other.id, "esp32", "1.0.0", "theirs")).latest is None
    # the same type and version is a new release in another tenant, for its devices only
    their_release = await core.firmware.create(other.id, "esp32", "1.1.0", chunks(b"theirs"))
    goal = await core.firmware.resolve_rollout_target(their_release)
    assert goal.serials == ("theirs",)
    await core.firmware.release(their_release.id, other.id, goal, "http://h/y")
    assert (await core.firmware.check(other.id, "esp32", "1.0.0", "theirs")).latest == await core.firmware.get(
        their_release.id, other.id
    )
    assert (await core.firmware.check(default(core), "esp32", "1.0.0", "d1")).latest == mine
    assert not await core.firmware.meant_for(their_release, "d1")


async def test_one_refused_device_does_not_stop_the_release(core: Core) -> None:
    await core.store.db.conn.execute("UPDATE devices SET revoked = 1 WHERE serial = 'd2'")
    release = await core.firmware.create(default(core), "esp32", "1.0.0", chunks(b"z"))
    goal = await core.firmware.resolve_rollout_target(release, device_ids=["d2", "d1"])
    sent = await core.firmware.release(release.id, default(core), goal, "http://h/x")
    assert [(e.serial, e.state, c is not None) for e, c in sent] == [("d2", "failed", False), ("d1", "pending", True)]
    assert sent[0][0].error == "device d2 is revoked" and sent[1][0].command_id == sent[1][1].id  # type: ignore[union-attr]


async def test_a_deleted_device_leaves_no_rollout_row(core: Core) -> None:
    release = await released(core)
    await core.devices.delete("d1")
    assert [e.serial for e in await core.firmware.rollout(release.id)] == ["d2"]


async def test_a_report_from_ingest_is_ignored_when_no_rollout_matches(core: Core) -> None:
    entry = HistoryEntry("d1", MessageType.EVENT, now_ms(), {"t": "event", "type": "ota_applied", "version": "5.0.0"})
    assert await core.firmware.apply_report(entry) is None
