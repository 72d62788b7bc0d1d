"""Presence on a real core (SQLite in a temp dir): online/offline, takeovers without a flicker,
the connection log, command readiness and recovery after a crash."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nxg_mqtt.core import Core, open_core
from nxg_mqtt.protocol import CloseReason, MessageType
from nxg_mqtt.services.history import HistoryQuery
from tests.factories import make_settings

# a log entry is named by (serial, connected_at in ms): two connections of one serial within the
# same millisecond cannot be told apart (a known limit), so the takeovers here are a few ms apart
SAME_MS = 0.005


@pytest.fixture
async def core(tmp_path: Path) -> AsyncIterator[Core]:
    async with open_core(make_settings(tmp_path, signal_poll_s=0.05), serve=True) as value:
        await value.devices.create("p1")
        yield value


async def presence_kinds(core: Core, serial: str) -> list[str]:
    await core.ingest.flush()
    page = await core.history.query(HistoryQuery(serial, MessageType.PRESENCE, 100, None))
    return [m["t"] for m in reversed(page.messages)]


async def log(core: Core, serial: str) -> list[tuple[str, str | None]]:
    await core.ingest.flush()
    return [(c.transport, c.reason) for c in reversed(await core.devices.connections(serial, limit=10))]


async def test_online_then_offline_is_logged_and_stored(core: Core) -> None:
    presence = core.presence
    await presence.connected("p1", "mqtt", "10.0.0.1")
    assert presence.is_online("p1") and not presence.is_ready("p1")
    await core.ingest.flush()
    assert (await core.devices.get("p1")).online
    await presence.disconnected("p1", CloseReason.KEEPALIVE_TIMEOUT, "mqtt")
    assert not presence.is_online("p1")
    assert await presence_kinds(core, "p1") == ["device_online", "device_offline"]
    assert await log(core, "p1") == [("mqtt", "keepalive timeout")]
    stored = await core.devices.get("p1")
    assert not stored.online and stored.last_seen is not None


async def test_a_takeover_keeps_the_device_online_without_a_flicker(core: Core) -> None:
    presence = core.presence
    await presence.connected("p1", "mqtt", "10.0.0.1")
    await presence.subscribed_commands("p1")
    await asyncio.sleep(SAME_MS)
    await presence.disconnected("p1", CloseReason.TAKEN_OVER, "mqtt")
    assert presence.is_online("p1") and not presence.is_ready("p1"), "the new session has not subscribed yet"
    await presence.connected("p1", "mqtt", "10.0.0.2")
    assert await presence_kinds(core, "p1") == ["device_online"]
    assert await log(core, "p1") == [("mqtt", "taken over"), ("mqtt", None)]


async def test_a_takeover_by_a_new_connection_before_the_old_one_ends(core: Core) -> None:
    presence = core.presence
    await presence.connected("p1", "ws", None)
    await asyncio.sleep(SAME_MS)
    await presence.connected("p1", "ws", None)  # the gateway claims first, closes the old one later
    assert await presence_kinds(core, "p1") == ["device_online"]
    assert [reason for _, reason in await log(core, "p1")] == ["taken over", None]


async def test_a_disconnect_on_another_transport_is_ignored(core: Core) -> None:
    await core.presence.connected("p1", "ws", None)
    await core.presence.disconnected("p1", CloseReason.DISCONNECTED, "mqtt")
    assert core.presence.is_online("p1")
    await core.presence.disconnected("p1", CloseReason.DISCONNECTED)  # no transport: whichever it is
    assert not core.presence.is_online("p1")


async def test_ready_listeners_each_run_even_if_one_fails(core: Core) -> None:
    seen: list[str] = []

    async def broken(serial: str) -> None:
        raise RuntimeError("listener bug")

    async def working(serial: str) -> None:
        seen.append(serial)

    core.presence.on_ready(broken)
    core.presence.on_ready(working)
    await core.presence.subscribed_commands("p1")  # offline: nobody is told
    assert seen == []
    await core.presence.connected("p1", "mqtt", None)
    await core.presence.subscribed_commands("p1")
    assert seen == ["p1"] and core.presence.is_ready("p1")
    core.presence.unsubscribed_commands("p1")
    assert not core.presence.is_ready("p1") and core.presence.is_online("p1")


async def test_recovery_closes_what_a_crashed_process_left_open(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, signal_poll_s=0.05)
    async with open_core(settings, serve=True) as crashed:
        await crashed.devices.create("p2")
        await crashed.presence.connected("p2", "mqtt", "10.0.0.3")
        await crashed.ingest.flush()
        # the process dies here: no disconnect is ever recorded
    async with open_core(settings) as reader:
        assert (await reader.devices.get("p2")).online
    async with open_core(settings, serve=True) as restarted:
        assert not (await restarted.devices.get("p2")).online
        assert await log(restarted, "p2") == [("mqtt", "server shutdown")]
        assert await presence_kinds(restarted, "p2") == ["device_online", "device_offline"]
