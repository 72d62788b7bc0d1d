"""The serving process started again on its data directory (`nxg_mqtt.hooks.worker`): Mosquitto
restores the worker's persistent session from its own store, and the worker's login takes that
session over. Real Mosquitto, the real plugin; the hook service's counters say whether the broker
asked."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time

from nxg_mqtt.hooks.worker import COMMIT_AT_UNACKED
from nxg_mqtt.protocol import MessageType
from nxg_mqtt.settings import Settings
from tests.mosquitto.test_credential_table import eventually, foreign_stack, online, pair
from tests.mqtt_client import Clients


async def test_a_restarted_process_resumes_its_session_without_acl_calls(settings: Settings, paho: Clients) -> None:
    """The core's login stays a superuser through the takeover of its restored session; otherwise
    every message the worker receives and every presence it publishes is a blocking `/mqtt/acl`
    call on Mosquitto's one thread (with 5,000 idle devices: ~4,000 calls in 15 s of saturation,
    QoS 1 accepted 0.95× the embedded broker's instead of ≥ 2×)."""
    async with foreign_stack(settings) as (stack, http):
        token = await pair(stack, http, "RS1")
    async with foreign_stack(settings) as (stack, http):
        counters = stack.hooks.counters
        asked = counters["acl_allow"] + counters["acl_deny"]
        device = paho("RS1")
        assert await device.connect(stack.mqtt_port, "RS1", token) == 0
        assert await eventually(lambda: online(http, "RS1"))  # the worker has published its presence
        for n in range(3):
            await device.publish("nxg/RS1/telemetry", json.dumps({"n": n}))

        async def stored() -> bool:
            rows = await stack.core.store.messages.query("RS1", limit=10)
            return sum(1 for e in rows if e.type is MessageType.TELEMETRY) == 3

        assert await eventually(stored), "the worker received and stored them"
        await device.disconnect()
        assert counters["acl_allow"] + counters["acl_deny"] == asked


async def test_a_full_in_flight_window_is_committed_without_waiting_out_the_batch_window(
    settings: Settings, paho: Clients
) -> None:
    """Mosquitto holds back a session's messages past its in-flight window (1000), and the worker
    acknowledges them only once committed: at `COMMIT_AT_UNACKED` unacknowledged messages the
    batch commits at once. With a 10 s batch window, the first 500 of 600 are stored in well under
    that (before this, none were stored until the window ended)."""
    settings = dataclasses.replace(settings, batch_window_ms=10_000)
    async with foreign_stack(settings) as (stack, http):
        token = await pair(stack, http, "FW1")
        device = paho("FW1")
        assert await device.connect(stack.mqtt_port, "FW1", token) == 0
        started = time.monotonic()
        await asyncio.gather(*(device.publish("nxg/FW1/telemetry", json.dumps({"n": n})) for n in range(600)))

        async def stored_most() -> bool:
            rows = await stack.core.store.messages.query("FW1", limit=1000)
            return sum(1 for e in rows if e.type is MessageType.TELEMETRY) >= COMMIT_AT_UNACKED

        assert await eventually(stored_most, within_s=5.0)
        assert time.monotonic() - started < 5.0
        await device.disconnect()
