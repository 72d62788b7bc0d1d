"""Commands: the per-device queue bound (QUEUE_FULL, 429) and the expiry of queued commands."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nxg_mqtt.core import Core, open_core
from nxg_mqtt.errors import QueueFullError
from nxg_mqtt.models import CommandStatus, now_ms
from tests.factories import make_settings


@pytest.fixture
async def core(tmp_path: Path) -> AsyncIterator[Core]:
    settings = make_settings(tmp_path, command_queue_limit=3, command_rate_limit=6)
    async with open_core(settings) as value:
        await value.devices.create("q-1")
        await value.devices.create("q-2")
        yield value


async def test_queue_is_bounded_per_device(core: Core) -> None:
    first = [await core.commands.submit("q-1", "open") for _ in range(3)]
    with pytest.raises(QueueFullError) as refused:
        await core.commands.submit("q-1", "open")
    assert refused.value.code == "QUEUE_FULL" and refused.value.status == 429
    assert "q-1" in refused.value.message
    assert await core.store.commands.count_open("q-1") == 3  # nothing stored for the refused one
    # another device has a queue of its own; a refused command did not use up the rate limit (6)
    await core.commands.submit("q-2", "open")
    # a finished command frees its place
    await core.store.commands.finish(first[0].id, CommandStatus.ACKED, now_ms())
    await core.commands.submit("q-1", "open")
    with pytest.raises(QueueFullError):
        await core.commands.submit("q-1", "open")


async def test_dispatched_commands_count_until_they_are_done(core: Core) -> None:
    commands = [await core.commands.submit("q-1", "open") for _ in range(3)]
    await core.store.commands.mark_dispatched(commands[0].id, now_ms())  # sent, not acked yet
    with pytest.raises(QueueFullError):
        await core.commands.submit("q-1", "open")
    await core.store.commands.finish(commands[0].id, CommandStatus.TIMEOUT, now_ms())
    await core.commands.submit("q-1", "open")


async def test_expiry_takes_only_the_due_commands(core: Core) -> None:
    commands = [await core.commands.submit(serial, "open") for serial in ("q-1", "q-1", "q-2")]
    due = {commands[0].id, commands[2].id}
    await core.store.db.conn.execute(
        "UPDATE commands SET expires_at = ? WHERE id IN (?, ?)", (now_ms() - 1, *sorted(due))
    )
    changed: list[str] = []

    async def listener(command: object) -> None:
        changed.append(getattr(command, "id", ""))

    core.commands.on_change(listener)
    assert await core.commands.expire(batch=1) == 2  # in batches, until none is due
    assert set(changed) == due
    for command in commands:
        stored = await core.commands.get(command.id)
        assert stored is not None
        expected = CommandStatus.EXPIRED if command.id in due else CommandStatus.QUEUED
        assert stored.status is expected
        assert (stored.error == "expired in the queue") is (command.id in due)
    assert await core.commands.expire() == 0
