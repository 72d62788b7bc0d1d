"""Commands on a real core (SQLite in a temp dir): validation, the rate limit, dispatch when the
device is ready, acks, the ack timeout and expiry in the queue (the sweep and at dispatch)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from nxg_mqtt.core import Core, open_core
from nxg_mqtt.errors import CommandRejected, DeviceNotFound, PayloadRejected, RateLimitedError, ValidationError
from nxg_mqtt.models import Command, CommandStatus
from nxg_mqtt.protocol import MessageType, SignalKind
from nxg_mqtt.services.history import HistoryQuery
from nxg_mqtt.topics import Channel
from tests.factories import make_settings
from tests.mqtt_client import wait_for

SWEEP_QUEUED_EVERY_S = 5.0  # the sweep looks at queued commands every 25 ticks of 0.2 s


@asynccontextmanager
async def serving(tmp_path: Path, **changes: Any) -> AsyncIterator[Core]:
    settings = make_settings(tmp_path, signal_poll_s=0.05, **changes)
    async with open_core(settings, serve=True) as core:
        await core.devices.create("c1")
        yield core


@pytest.fixture
async def core(tmp_path: Path) -> AsyncIterator[Core]:
    async with serving(tmp_path) as value:
        yield value


async def ready(core: Core, serial: str = "c1") -> None:
    await core.presence.connected(serial, "mqtt", None)
    await core.presence.subscribed_commands(serial)


def record_changes(core: Core) -> list[Command]:
    changes: list[Command] = []

    async def listener(command: Command) -> None:
        changes.append(command)

    core.commands.on_change(listener)
    return changes


async def status_of(core: Core, command_id: str) -> CommandStatus | None:
    command = await core.commands.get(command_id)
    return None if command is None else command.status


async def wait_status(core: Core, command_id: str, status: CommandStatus, within_s: float) -> bool:
    for _ in range(int(within_s / 0.05)):
        if await status_of(core, command_id) is status:
            return True
        await asyncio.sleep(0.05)
    return await status_of(core, command_id) is status


async def test_an_offline_device_gets_its_command_queued_then_dispatched_when_ready(core: Core) -> None:
    changes = record_changes(core)
    command = await core.commands.submit("c1", "open", target="turn1", params={"speed": 2}, ref="r1")
    assert command.status is CommandStatus.QUEUED and changes == []
    await ready(core)
    assert await status_of(core, command.id) is CommandStatus.DISPATCHED
    assert await wait_for(lambda: len(changes) >= 1, within=2.0)  # listeners run after the commit
    assert [c.status for c in changes] == [CommandStatus.DISPATCHED]
    assert core.commands.counters.get("dispatched") == 1


async def test_the_ack_closes_the_command_and_a_replay_changes_nothing(core: Core) -> None:
    await ready(core)
    command = await core.commands.submit("c1", "open")
    ack = json.dumps({"t": "ack", "id": command.id, "ok": False, "error": "jammed"}).encode()
    closed = await core.commands.on_ack("c1", ack, ts=1234)
    assert closed is not None and closed.status is CommandStatus.FAILED and closed.error == "jammed"
    assert await core.commands.on_ack("c1", ack) is None
    assert core.commands.counters.get("ack_replayed") == 1
    await core.ingest.flush()
    page = await core.history.query(HistoryQuery("c1", MessageType.ACK, 10, None))
    assert len(page.messages) == 2 and page.messages[-1]["ts"] == 1234  # both stored, the first with its ts


async def test_a_redelivered_ack_is_stored_once_and_a_redelivered_bad_ack_warns_once(core: Core) -> None:
    """A broker's second delivery (DUP: the other serving process after a kill) carries the first
    one's receive stamp: the ack row, and a bad ack's Warning, are stored once; the close is not
    repeated. A device's own replay (no DUP) is still stored, as above."""
    await ready(core)
    command = await core.commands.submit("c1", "open")
    ack = json.dumps({"t": "ack", "id": command.id, "ok": True}).encode()
    assert await core.commands.on_ack("c1", ack, ts=1234) is not None
    assert await core.commands.on_ack("c1", ack, ts=1234, redelivered=True) is None
    for dup in (False, True):
        with pytest.raises(PayloadRejected):
            await core.commands.on_ack("c1", b"{not json", ts=2345, redelivered=dup)
    await core.ingest.flush()
    acks = await core.history.query(HistoryQuery("c1", MessageType.ACK, 10, None))
    assert [m["ts"] for m in acks.messages] == [1234]
    events = await core.history.query(HistoryQuery("c1", MessageType.EVENT, 10, None))
    warnings = [m for m in events.messages if m.get("type") == "payload_rejected"]
    assert [m["ts"] for m in warnings] == [2345] and warnings[0]["body"]["channel"] == Channel.ACK.value


async def test_an_ack_for_another_device_or_an_unknown_id_closes_nothing(core: Core) -> None:
    await core.devices.create("c2")
    await ready(core)
    command = await core.commands.submit("c1", "open")
    assert await core.commands.on_ack("c2", json.dumps({"id": command.id, "ok": True}).encode()) is None
    assert await core.commands.on_ack("c1", json.dumps({"id": "c_nope", "ok": True}).encode()) is None
    assert core.commands.counters.get("ack_unknown") == 2
    assert await status_of(core, command.id) is CommandStatus.DISPATCHED


async def test_a_bad_ack_is_recorded_as_a_warning(core: Core) -> None:
    with pytest.raises(PayloadRejected):
        await core.commands.on_ack("c1", b'{"ok": true}')
    assert core.ingest.rejected.get("schema") == 1
    await core.ingest.flush()
    [warning] = (await core.history.query(HistoryQuery("c1", MessageType.EVENT, 10, None))).messages
    assert warning["type"] == "payload_rejected" and warning["body"]["channel"] == "ack"


async def test_invalid_and_restricted_commands_are_refused_and_not_counted(tmp_path: Path) -> None:
    async with serving(tmp_path, command_rate_limit=1) as core:
        with pytest.raises(CommandRejected) as restricted:
            await core.commands.submit("c1", "_factory_reset")
        assert restricted.value.code == "RESTRICTED_ACTION" and restricted.value.status == 403
        with pytest.raises(ValidationError) as invalid:
            await core.commands.submit("c1", "")
        assert invalid.value.code == "INVALID_COMMAND"
        with pytest.raises(DeviceNotFound):
            await core.commands.submit("ghost", "open")
        await core.commands.submit("c1", "open")  # the one allowed this minute
        with pytest.raises(RateLimitedError) as limited:
            await core.commands.submit("c1", "open")
        assert limited.value.code == "RATE_LIMIT_EXCEEDED"


async def test_a_command_left_to_the_server_signals_it(core: Core) -> None:
    await ready(core)
    command = await core.commands.submit("c1", "open", dispatch=False, source="cli")
    assert command.status is CommandStatus.QUEUED
    signals = await core.store.signals.since(0)
    assert [(s.kind, s.serial) for s in signals] == [(SignalKind.COMMAND, "c1")]


async def test_no_ack_within_the_timeout_ends_in_timeout(tmp_path: Path) -> None:
    async with serving(tmp_path, command_ack_timeout_s=0.3) as core:
        changes = record_changes(core)
        await ready(core)
        command = await core.commands.submit("c1", "open")
        assert await wait_status(core, command.id, CommandStatus.TIMEOUT, within_s=3.0)
        # listeners run after the commit that the status poll already sees: wait for them too
        assert await wait_for(lambda: len(changes) >= 2, within=2.0)
        assert [c.status for c in changes] == [CommandStatus.DISPATCHED, CommandStatus.TIMEOUT]
        stored = await core.commands.get(command.id)
        assert stored is not None and stored.error == "no ack from the device"


async def test_the_sweep_expires_a_command_queued_past_its_ttl(tmp_path: Path) -> None:
    async with serving(tmp_path, command_ttl_s=0.1) as core:
        changes = record_changes(core)
        command = await core.commands.submit("c1", "open")
        assert await wait_status(core, command.id, CommandStatus.EXPIRED, within_s=SWEEP_QUEUED_EVERY_S + 3)
        assert await wait_for(lambda: len(changes) >= 1, within=2.0)  # listeners run after the commit
        assert [c.status for c in changes] == [CommandStatus.EXPIRED]
        assert core.commands.counters.get("expired") == 1


async def test_an_expired_command_is_not_dispatched_when_the_device_comes_back(tmp_path: Path) -> None:
    async with serving(tmp_path, command_ttl_s=0.05) as core:
        stale = await core.commands.submit("c1", "stale")
        await asyncio.sleep(0.1)
        await ready(core)
        assert await status_of(core, stale.id) is CommandStatus.EXPIRED
        assert core.commands.counters.get("dispatched") == 0


async def test_commands_queued_before_a_restart_go_out_in_order(tmp_path: Path) -> None:
    async with serving(tmp_path) as core:
        first = await core.commands.submit("c1", "one")
        second = await core.commands.submit("c1", "two")
    settings = make_settings(tmp_path)
    async with open_core(settings, serve=True) as restarted:
        order: list[str] = []

        async def listener(command: Command) -> None:
            order.append(command.id)

        restarted.commands.on_change(listener)
        await ready(restarted)
        assert order == [first.id, second.id]


async def test_queuing_a_command_leaves_last_seen_alone(core: Core) -> None:
    # only the device's own traffic says it was seen; a command for it is the server's doing
    await core.commands.submit("c1", "open")
    await core.ingest.flush()
    cmd_history = await core.history.query(HistoryQuery("c1", MessageType.CMD, 10, None))
    assert cmd_history.messages  # the command is in history: its batch was written
    assert (await core.devices.get("c1")).last_seen is None
    entry = core.ingest.accept("c1", Channel.TELEMETRY, b'{"temp": 1}')
    await core.ingest.flush()
    assert (await core.devices.get("c1")).last_seen == entry.ts


async def test_submit_many_checks_each_device_and_shares_only_what_is_alike(core: Core) -> None:
    """One verdict per capability definition, yet every device its own: a different paramSchema,
    a missing action, a critical action (its own dry-run token), a device revoked behind the
    cache's back, an unknown one; the ready device is dispatched, the others queued, in the order given."""
    loose = {"type": "object", "properties": {"level": {"type": "integer", "maximum": 100}}}
    strict = {"type": "object", "properties": {"level": {"type": "integer", "maximum": 10}}}
    manifests: dict[str, list[dict[str, Any]]] = {
        "c1": [{"action": "dim", "paramSchema": loose}],
        "c2": [{"action": "dim", "paramSchema": loose}],
        "c3": [{"action": "dim", "paramSchema": strict}],
        "c4": [{"action": "other"}],
        "c5": [{"action": "dim", "safetyClass": "critical"}],
    }
    for serial, capabilities in manifests.items():
        if serial != "c1":
            await core.devices.create(serial)
        await core.manifests.put(serial, {"capabilities": capabilities})
    await core.devices.create("c6")
    await core.commands.submit("c6", "dim", params={"level": 1})  # c6 is now in the device cache
    # revoked behind the cache's back (another process): the writer's own check refuses it
    await core.store.db.conn.execute("UPDATE devices SET revoked = 1 WHERE serial = 'c6'")
    await ready(core, "c2")
    serials = ["c1", "c2", "c3", "c4", "c5", "c6", "ghost"]
    outcomes = await core.commands.submit_many(serials, "dim", params={"level": 50}, source="group", actor="tester")
    assert isinstance(outcomes[0], Command) and outcomes[0].status is CommandStatus.QUEUED
    assert isinstance(outcomes[1], Command) and outcomes[1].status is CommandStatus.DISPATCHED
    codes = [o.code for o in outcomes[2:] if not isinstance(o, Command)]
    assert codes == [
        "PARAMS_INVALID",
        "ACTION_NOT_IN_MANIFEST",
        "DRY_RUN_REQUIRED",
        "DEVICE_REVOKED",
        "DEVICE_NOT_FOUND",
    ]
    assert "c4" in outcomes[3].message  # type: ignore[union-attr]
    assert await core.commands.get(outcomes[1].id) is not None
    # the critical action's token confirms it for c5 only
    token = outcomes[4].token  # type: ignore[union-attr]
    confirmed = await core.commands.confirm("c5", token, source="group")
    assert confirmed.serial == "c5" and confirmed.params == {"level": 50}
    # a request the schema refuses is every device's refusal, after their own existence
    bad = await core.commands.submit_many(["c1", "ghost"], "_ota", source="group")
    assert [o.code for o in bad if not isinstance(o, Command)] == ["RESTRICTED_ACTION", "DEVICE_NOT_FOUND"]
