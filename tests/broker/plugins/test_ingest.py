"""Telemetry, status and events stored; bad payloads rejected with a Warning event, nothing else disturbed."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nxg_mqtt.broker.embedded import open_broker
from nxg_mqtt.core import open_core
from nxg_mqtt.models import MessageType
from nxg_mqtt.mqtt.codec import PubAck, encode_publish
from tests.broker.broker_clients import RawClient
from tests.broker.plugins.helpers import STACK_OVERRIDES, Stack, open_stack
from tests.factories import make_settings


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


# ---- group commit: a PUBACK only once the message is committed -----------------------------------


@pytest.fixture
async def slow_stack(tmp_path: Path) -> AsyncIterator[Stack]:
    """A long batch window, so an acknowledgement sent before the commit cannot go unnoticed."""
    async with open_stack(make_settings(tmp_path, **(STACK_OVERRIDES | {"batch_window_ms": 400}))) as stack:
        yield stack


async def _raw_device(stack: Stack, serial: str) -> RawClient:
    await stack.create_device(serial)
    device = await stack.core.devices.get(serial)
    token = (await stack.core.devices.pair(device.code, source="test")).token
    client = await RawClient.open(stack.port)
    assert (await client.connect(serial, username=serial, password=token.encode(), keep_alive=30)).return_code == 0
    return client


def _stored_seqs(stack: Stack, serial: str) -> set[int]:
    """Read the database file from a connection of its own: what is committed, nothing in memory."""
    conn = sqlite3.connect(stack.core.settings.db_path)
    try:
        rows = conn.execute("SELECT body FROM messages WHERE serial = ? AND type = 'telemetry'", (serial,))
        return {json.loads(body)["seq"] for (body,) in rows}
    finally:
        conn.close()


async def test_puback_after_commit_in_publish_order(slow_stack: Stack) -> None:
    client = await _raw_device(slow_stack, "gc-order")
    topic = "nxg/gc-order/telemetry"
    client.send(encode_publish(topic, json.dumps({"seq": 1}).encode(), qos=1, packet_id=1))
    client.send(encode_publish(topic, b"{not json", qos=1, packet_id=2))  # rejected: nothing to wait for
    client.send(encode_publish(topic, json.dumps({"seq": 3}).encode(), qos=1, packet_id=3))
    acks: list[int] = []
    for _ in range(3):
        packet = await client.recv(within=5)
        assert isinstance(packet, PubAck), packet
        acks.append(packet.packet_id)
        # each acknowledged message is already in the file
        assert {1, 3} & set(acks) <= _stored_seqs(slow_stack, "gc-order")
    assert acks == [1, 2, 3]
    await client.close()


async def test_failed_commit_closes_without_puback(slow_stack: Stack) -> None:
    client = await _raw_device(slow_stack, "gc-fail")
    db = sqlite3.connect(slow_stack.core.settings.db_path, isolation_level=None)
    try:
        db.execute("ALTER TABLE messages RENAME TO messages_away")  # the next batch's INSERT fails
        client.send(encode_publish("nxg/gc-fail/telemetry", json.dumps({"seq": 1}).encode(), qos=1, packet_id=7))
        # closed, no PUBACK (recv raises ConnectionError once the broker closes the socket)
        with pytest.raises(ConnectionError):
            await client.recv(within=5)
    finally:
        db.execute("ALTER TABLE messages_away RENAME TO messages")
        db.close()
    await client.close()
    # the rows stayed pending and are written once the store works again (the client would resend)
    await slow_stack.core.ingest.flush()
    assert _stored_seqs(slow_stack, "gc-fail") == {1}


async def test_clean_shutdown_sends_pending_pubacks(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, **(STACK_OVERRIDES | {"batch_window_ms": 5000}))
    async with open_core(settings, serve=True) as core:
        async with open_broker(core) as broker:
            stack = Stack(core, broker)
            client = await _raw_device(stack, "gc-stop")
            for n in range(1, 4):
                client.send(encode_publish("nxg/gc-stop/telemetry", json.dumps({"seq": n}).encode(), 1, packet_id=n))
            await asyncio.sleep(0.2)  # routed, waiting for the 5 s window
            assert not client.packets
        # the broker has closed: the batch was committed and every PUBACK written first
        acks = [await client.recv(within=2) for _ in range(3)]
        assert acks == [PubAck(1), PubAck(2), PubAck(3)]
        assert _stored_seqs(stack, "gc-stop") == {1, 2, 3}
        await client.close()
