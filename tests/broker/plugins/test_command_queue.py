"""A device that subscribes to its commands and never reads them cannot make the server hold more
than `command_queue_limit` of its commands: dispatched-but-unacknowledged commands count until
they are acked or time out, so beyond the limit new ones are refused (QUEUE_FULL) instead of
piling up in the broker's session and socket buffers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nxg_mqtt.errors import QueueFullError
from nxg_mqtt.mqtt.codec import encode_subscribe
from tests.broker.broker_clients import RawClient, wait_for
from tests.broker.plugins.helpers import STACK_OVERRIDES, Stack, open_stack
from tests.factories import make_settings

LIMIT = 5


@pytest.fixture
async def small_queue(tmp_path: Path) -> AsyncIterator[Stack]:
    settings = make_settings(tmp_path, **(STACK_OVERRIDES | {"command_queue_limit": LIMIT, "command_rate_limit": 0}))
    async with open_stack(settings) as stack:
        yield stack


async def test_device_that_never_reads_holds_at_most_the_limit(small_queue: Stack) -> None:
    stack = small_queue
    await stack.create_device("nr-1")
    device = await stack.core.devices.get("nr-1")
    token = (await stack.core.devices.pair(device.code, source="test")).token
    client = await RawClient.open(stack.port)
    assert (await client.connect("nr-1", username="nr-1", password=token.encode(), keep_alive=60)).return_code == 0
    client.send(encode_subscribe(1, [("nxg/nr-1/cmd", 1)]))
    await client.recv()  # SUBACK; from here on the client reads nothing and acks nothing
    assert await wait_for(lambda: stack.core.presence.is_ready("nr-1"))

    refused = 0
    for _ in range(LIMIT * 4):
        try:
            await stack.core.commands.submit("nr-1", "open")
        except QueueFullError:
            refused += 1
    assert refused == LIMIT * 3
    assert await stack.core.store.commands.count_open("nr-1") == LIMIT
    session = stack.broker.session("nr-1")
    assert session is not None
    assert len(session.inflight) + len(session.queue) <= LIMIT
    await client.close()
