"""Device registry and pairing decisions, with an injected clock for the lockouts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nxg_mqtt.errors import AuthError, ConflictError, DeviceNotFound, RateLimitedError, ValidationError
from nxg_mqtt.protocol import RevokeReason, SignalKind
from nxg_mqtt.services import credentials
from nxg_mqtt.services.devices import DeviceService
from nxg_mqtt.settings import Settings
from nxg_mqtt.store import Store, open_store


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with open_store(tmp_path / "nxg.sqlite3") as s:
        yield s


async def test_codes_survive_reset_and_change_on_regenerate(store: Store) -> None:
    devices = DeviceService(store, Settings())
    device = await devices.create("d1")
    paired = await devices.pair(device.code, "1.2.3.4")
    assert await devices.authenticate("d1", paired.token) == "d1"
    await devices.reset("d1")
    assert await devices.authenticate("d1", paired.token) is None
    assert (await devices.get("d1")).code == device.code
    regenerated = await devices.regenerate("d1")
    assert regenerated.code != device.code
    with pytest.raises(AuthError):
        await devices.pair(device.code, "1.2.3.4")


async def test_create_validates(store: Store) -> None:
    devices = DeviceService(store, Settings())
    with pytest.raises(ValidationError):
        await devices.create("has space")
    with pytest.raises(ValidationError):
        await devices.create("BRIDGE")
    await devices.create("x")
    with pytest.raises(ConflictError):
        await devices.create("X")
    with pytest.raises(DeviceNotFound):
        await devices.get("nope")


async def test_lockout_after_ten_wrong_codes_then_release(store: Store) -> None:
    clock = Clock()
    devices = DeviceService(store, Settings(), clock=clock)
    device = await devices.create("d2")
    for _ in range(10):
        with pytest.raises(AuthError):
            await devices.resolve_code("0000-0000", "10.0.0.1")
    with pytest.raises(RateLimitedError):
        await devices.resolve_code(device.code, "10.0.0.1")  # the right code too
    assert (await devices.resolve_code(device.code, "10.0.0.2")).serial == "d2"  # other addresses unaffected
    clock.now += 301
    assert (await devices.resolve_code(device.code, "10.0.0.1")).serial == "d2"


async def test_global_cap_slows_a_distributed_attack(store: Store) -> None:
    clock = Clock()
    devices = DeviceService(store, Settings(pair_global_failures_per_minute=20), clock=clock)
    device = await devices.create("d3")
    for n in range(20):
        with pytest.raises(AuthError):
            await devices.resolve_code("0000-0000", f"10.1.0.{n}")
    with pytest.raises(RateLimitedError):
        await devices.resolve_code(device.code, "10.2.0.1")
    clock.now += 61
    assert (await devices.resolve_code(device.code, "10.2.0.1")).serial == "d3"


def test_credentials() -> None:
    code = credentials.new_code()
    assert len(code) == 8 and credentials.normalize_code(credentials.format_code(code).lower()) == code
    assert credentials.normalize_code("ILO0-0000") == "1100" + "0000"
    assert credentials.normalize_code("abc-12") is None
    assert credentials.normalize_code("UUUU-UUUU") is None  # U is not Crockford
    token = credentials.new_token()
    assert token.startswith("nxgt_") and len(token) >= 5 + 43
    assert credentials.tokens_equal(credentials.token_hash(token), token)
    stored = credentials.hash_password("pw")
    assert credentials.verify_password(stored, "pw") and not credentials.verify_password(stored, "px")


async def test_own_signal_is_the_emitted_row_even_with_another_writer(store: Store, tmp_path: Path) -> None:
    devices = DeviceService(store, Settings())
    await devices.create("s1")
    async with open_store(tmp_path / "nxg.sqlite3") as other:  # another process on the same file
        await other.signals.emit(SignalKind.COMMAND, "s1", 1)
        await devices.reset("s1")
        await other.signals.emit(SignalKind.COMMAND, "s1", 2)
    rows = await store.signals.since(0)
    mine = [r.id for r in rows if r.kind is SignalKind.REVOKED and r.reason is RevokeReason.RESET]
    assert devices.own_signal_ids == set(mine)
