"""The server's own link (the `bridge` login) is not bounded like a device's session: a burst of
commands and their acks for a whole group must all reach the bridge, or apps silently miss acks."""

from __future__ import annotations

import json
from pathlib import Path

from tests.broker.plugins.helpers import STACK_OVERRIDES, open_stack
from tests.factories import make_settings

BURST = 60


async def test_the_bridge_session_queues_past_the_device_bound(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, **STACK_OVERRIDES, session_queue_limit=10, bridge_queue_limit=1000)
    async with open_stack(settings) as stack:
        device, _ = await stack.device("bq-1")
        link = stack.client("bridge-link", clean_session=False)
        assert await link.connect(stack.port, "bridge", settings.internal_secret) == 0
        assert await link.subscribe("nxg/+/telemetry") == [1]
        await link.disconnect()  # a stored session: everything for it now waits in its queue
        for n in range(BURST):
            await device.publish("nxg/bq-1/telemetry", json.dumps({"n": n}))
        again = stack.client("bridge-link", clean_session=False)
        assert await again.connect(stack.port, "bridge", settings.internal_secret) == 0
        got = await again.wait_messages(BURST)
        assert [json.loads(m.payload)["n"] for m in got] == list(range(BURST))


async def test_a_device_sized_bound_still_holds_for_other_sessions(tmp_path: Path) -> None:
    """The same burst to an ordinary stored session keeps only `session_queue_limit` messages: the
    test above passes because of the bridge's own bound, not because nothing is bounded."""
    settings = make_settings(tmp_path, **STACK_OVERRIDES, session_queue_limit=10, allow_anonymous=True)
    async with open_stack(settings) as stack:
        device, _ = await stack.device("bq-2")
        watcher = stack.client("anon-watch", clean_session=False)
        assert await watcher.connect(stack.port, None, None) == 0
        assert await watcher.subscribe("nxg/+/telemetry") == [1]
        await watcher.disconnect()
        for n in range(BURST):
            await device.publish("nxg/bq-2/telemetry", json.dumps({"n": n}))
        again = stack.client("anon-watch", clean_session=False)
        assert await again.connect(stack.port, None, None) == 0
        got = await again.quiet(1.0)
        assert 0 < len(got) <= 10
