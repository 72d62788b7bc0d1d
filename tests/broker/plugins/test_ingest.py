"""Telemetry, status and events stored; bad payloads rejected with a Warning event, nothing else disturbed."""

from __future__ import annotations

import asyncio
import json

import pytest

from nxg_mqtt.models import MessageType
from tests.broker.plugins.helpers import Stack


async def _history(stack: Stack, serial: str, type_: MessageType) -> list[dict[str, object]]:
    await stack.core.ingest.flush()
    return [e.app_message() for e in await stack.core.store.messages.query(serial, type_)]


async def test_telemetry_status_event_are_stored(stack: Stack) -> None:
    device, _ = await stack.device("ing-a")
    await device.publish("nxg/ing-a/telemetry", json.dumps({"temp": 22.5, "hum": 41, "ts": 1700000000123}))
    await device.publish("nxg/ing-a/status", json.dumps({"door1": "closed"}))
    await device.publish("nxg/ing-a/event", json.dumps({"type": "device_unlocked", "source": "rfid"}))
    telemetry = await _history(stack, "ing-a", MessageType.TELEMETRY)
    assert len(telemetry) == 1
    assert telemetry[0]["temp"] == 22.5 and telemetry[0]["hum"] == 41
    assert telemetry[0]["device_ts"] == 1700000000123
    assert isinstance(telemetry[0]["ts"], int) and telemetry[0]["ts"] != 1700000000123
    assert (await _history(stack, "ing-a", MessageType.STATUS))[0]["door1"] == "closed"
    assert (await _history(stack, "ing-a", MessageType.EVENT))[0]["type"] == "device_unlocked"
    device_row = await stack.core.devices.get("ing-a")
    assert device_row.last_seen is not None


BAD_PAYLOADS = [
    pytest.param(b"{not json", "not_json", id="malformed"),
    pytest.param(b"[1, 2, 3]", "not_object", id="non-object"),
    pytest.param(b"\xff\xfe\x00", "not_utf8", id="non-utf8"),
    pytest.param(json.dumps({"pad": "x" * 17000}).encode(), "too_large", id="oversized"),
    pytest.param(json.dumps({"nested": {"a": 1}}).encode(), "schema", id="non-scalar"),
    pytest.param(json.dumps({"t": "telemetry"}).encode(), "schema", id="reserved-key"),
]


@pytest.mark.parametrize(("payload", "reason"), BAD_PAYLOADS)
async def test_bad_payload_rejected_with_warning_event(stack: Stack, payload: bytes, reason: str) -> None:
    bad, _ = await stack.device("ing-bad")
    good, _ = await stack.device("ing-good")
    watcher = await stack.bridge_client("nxg/+/telemetry")
    events = await stack.bridge_client("nxg/ing-bad/event")
    await bad.publish("nxg/ing-bad/telemetry", payload)
    await good.publish("nxg/ing-good/telemetry", json.dumps({"temp": 1}))
    # the good device's telemetry is routed and stored; the bad one's is not
    routed = await watcher.next_message()
    assert routed.topic == "nxg/ing-good/telemetry"
    assert await watcher.no_message(0.3)
    warning = json.loads((await events.next_message()).payload)
    assert warning["severity"] == "Warning" and warning["category"] == "protocol"
    assert warning["body"]["reason"] == reason and warning["body"]["error"]
    assert await _history(stack, "ing-bad", MessageType.TELEMETRY) == []
    stored_events = await _history(stack, "ing-bad", MessageType.EVENT)
    assert stored_events[0]["severity"] == "Warning"
    assert stored_events[0]["body"]["reason"] == reason  # type: ignore[index]
    assert len(await _history(stack, "ing-good", MessageType.TELEMETRY)) == 1
    assert stack.core.ingest.rejected.get(reason) == 1
    # the bad device is still connected and can send a good message
    await bad.publish("nxg/ing-bad/telemetry", json.dumps({"temp": 2}))
    assert (await watcher.next_message()).topic == "nxg/ing-bad/telemetry"


async def test_batches_are_flushed_on_clean_shutdown(stack: Stack) -> None:
    device, _ = await stack.device("ing-flush")
    for n in range(50):
        await device.publish("nxg/ing-flush/telemetry", json.dumps({"n": n}), qos=1)
    # no explicit flush: closing the core must write what is pending
    await stack.core.ingest.close()
    stored = await stack.core.store.messages.query("ing-flush", MessageType.TELEMETRY, limit=100)
    assert len(stored) == 50


async def test_events_schema(stack: Stack) -> None:
    device, _ = await stack.device("ing-ev")
    await device.publish("nxg/ing-ev/event", json.dumps({"severity": "Loud"}))
    await asyncio.sleep(0.1)
    events = await _history(stack, "ing-ev", MessageType.EVENT)
    assert events and events[0]["type"] == "payload_rejected"
