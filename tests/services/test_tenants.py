"""TenantService, HomeService, GroupService and RegistrationService on the core alone: slugs,
device owners (remembered, forgotten on delete, learned from another process), time zones, the
rollout helpers, and a rotation made by another process reaching the server's listeners."""

from __future__ import annotations

from pathlib import Path

import pytest

from nxg_mqtt.core import open_core
from nxg_mqtt.errors import NotFoundError, ValidationError
from nxg_mqtt.protocol import RevokeReason
from nxg_mqtt.services.homes import check_timezone
from nxg_mqtt.services.tenants import slugify
from tests.factories import make_settings
from tests.mqtt_client import wait_for


def test_slugify() -> None:
    assert slugify("Living Room Lights") == "living-room-lights"
    assert slugify("  Ça va? 42!! ") == "a-va-42"
    assert slugify("!!!") == "x"
    assert len(slugify("a" * 500)) == 60


def test_timezones_are_iana_names() -> None:
    assert check_timezone("Europe/Paris") == "Europe/Paris"
    for bad in ("Europe/Nowhere", "../../etc/passwd", "", None, 3, "europe/paris"):
        with pytest.raises(ValidationError):
            check_timezone(bad)


async def test_owners_are_remembered_forgotten_and_learned(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    async with open_core(settings, serve=True) as core:
        tenant, _, _ = await core.tenants.register("Acme", actor="test")
        device, _ = await core.registration.register(tenant.id, "esp32", actor="test")
        assert core.tenants.cached_owner(device.serial) == tenant.id
        assert await core.tenants.owner(device.serial.lower()) == tenant.id  # serials are case-insensitive
        assert await core.tenants.owner("nope") is None
        await core.devices.delete(device.serial)
        assert core.tenants.cached_owner(device.serial) is None
        # a device made by another process (the CLI) is looked up on first sight
        async with open_core(settings) as cli:
            made = await cli.devices.create("CLI-1")
        assert core.tenants.cached_owner("CLI-1") is None
        assert await core.tenants.owner(made.serial) == "default"
        assert core.tenants.cached_owner("CLI-1") == "default"


async def test_rollout_helpers_stay_within_their_tenant(tmp_path: Path) -> None:
    async with open_core(make_settings(tmp_path), serve=True) as core:
        a, _, _ = await core.tenants.register("A", actor="t")
        b, _, _ = await core.tenants.register("B", actor="t")
        home = await core.homes.create(a.id, "H", "UTC")
        room = await core.homes.add_room(a.id, home.id, "R")
        d1, _ = await core.registration.register(a.id, "esp32", room_id=room.id, actor="t")
        d2, _ = await core.registration.register(a.id, "esp32", actor="t")
        await core.groups.create(a.id, "Everything", None, [d1.serial, d2.serial])
        assert await core.homes.devices_in_room(a.id, room.id) == [d1.serial]
        assert await core.groups.devices_in_group(a.id, "everything") == [d1.serial, d2.serial]
        with pytest.raises(NotFoundError) as room_error:
            await core.homes.devices_in_room(b.id, room.id)
        assert room_error.value.code == "ROOM_NOT_FOUND"
        with pytest.raises(NotFoundError) as group_error:
            await core.groups.devices_in_group(b.id, "everything")
        assert group_error.value.code == "GROUP_NOT_FOUND"
        with pytest.raises(NotFoundError):
            await core.groups.create(b.id, "Theirs", None, [d1.serial])


async def test_a_rotation_by_another_process_reaches_the_server(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, signal_poll_s=0.05)
    async with open_core(settings, serve=True) as server:
        seen: list[tuple[str, RevokeReason]] = []

        async def listener(serial: str, why: RevokeReason) -> None:
            seen.append((serial, why))

        server.devices.on_revoked(listener)
        device, secret = await server.registration.register("default", "esp32", actor="t")
        async with open_core(settings) as other:
            await other.registration.rotate("default", device.serial, actor="cli")
            await other.registration.revoke("default", device.serial, actor="cli")
        assert await wait_for(lambda: len(seen) == 2, 1.0)
        assert seen == [(device.serial, RevokeReason.ROTATED), (device.serial, RevokeReason.REVOKED)]
        assert await server.devices.authenticate(device.serial, secret) is None
