"""PROTOCOL §6, "the same ts everywhere": one message, stamped once at receipt by the broker,
carries the same `ts` on `/ws/app`, in `/api/history` and to an MQTT subscriber."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from nxg_mqtt.protocol import SERVER_TS
from tests.bridge.helpers import Stack, pair_gateway, recv_until, send_json
from tests.bridge.test_end_to_end import connect_mqtt, pair_mqtt
from tests.mqtt_client import Received, TestClient


async def integrator(stack: Stack, topic_filter: str) -> TestClient:
    """A raw MQTT subscriber (the bridge role: every topic)."""
    client = TestClient("integrator")
    assert await client.connect(stack.broker.mqtt_port, "bridge", stack.core.settings.internal_secret) == 0
    await client.subscribe(topic_filter)
    return client


async def next_on(client: TestClient, topic: str) -> dict[str, Any]:
    for _ in range(20):
        received: Received = await client.next_message()
        if received.topic == topic:
            value = json.loads(received.payload)
            assert isinstance(value, dict)
            return value
    raise AssertionError(f"nothing on {topic}")


async def stored(stack: Stack, serial: str, type_: str) -> list[dict[str, Any]]:
    await stack.core.ingest.flush()
    response = await stack.http.get("/api/history", params={"serial": serial, "type": type_})
    assert response.status_code == 200, response.text
    messages: list[dict[str, Any]] = response.json()["messages"]
    return messages


async def test_one_telemetry_message_has_one_ts_on_every_surface(stack: Stack) -> None:
    app = await stack.app_socket()
    watcher = await integrator(stack, "nxg/+/telemetry")
    device = await connect_mqtt(stack, "TS1", await pair_mqtt(stack, "TS1"))
    await recv_until(app, "device_online", serial="TS1")

    await asyncio.sleep(0.01)  # a later ts than anything stamped so far
    await device.publish("nxg/TS1/telemetry", json.dumps({"temp": 22.5, "ts": 1700000000000}))
    on_app = await recv_until(app, "telemetry", serial="TS1")
    on_mqtt = await next_on(watcher, "nxg/TS1/telemetry")
    [in_history] = await stored(stack, "TS1", "telemetry")

    assert on_app["ts"] == in_history["ts"] == on_mqtt[SERVER_TS]
    assert on_app == in_history
    # the device's own ts reaches subscribers untouched, and apps as device_ts
    assert on_mqtt["ts"] == on_app["device_ts"] == 1700000000000 and on_mqtt["temp"] == 22.5
    watcher.close()
    device.close()
    await app.close()


async def test_gateway_telemetry_and_acks_have_one_ts(stack: Stack) -> None:
    app = await stack.app_socket()
    watcher = await integrator(stack, "nxg/TS2/#")
    ws_device, _ = await pair_gateway(stack, "TS2")
    await recv_until(app, "device_online", serial="TS2")

    await send_json(ws_device, {"t": "telemetry", "hum": 41})
    on_app = await recv_until(app, "telemetry", serial="TS2")
    on_mqtt = await next_on(watcher, "nxg/TS2/telemetry")
    [in_history] = await stored(stack, "TS2", "telemetry")
    assert on_app["ts"] == in_history["ts"] == on_mqtt[SERVER_TS]
    assert "device_ts" not in on_app

    await send_json(app, {"t": "cmd", "serial": "TS2", "action": "open"})
    command = await recv_until(ws_device, "cmd")
    await send_json(ws_device, {"t": "ack", "id": command["id"], "ok": True})
    ack_on_app = await recv_until(app, "ack", id=command["id"])
    ack_on_mqtt = await next_on(watcher, "nxg/TS2/ack")
    [ack_in_history] = await stored(stack, "TS2", "ack")
    assert ack_on_app["ts"] == ack_in_history["ts"] == ack_on_mqtt[SERVER_TS]
    assert ack_on_app == ack_in_history
    watcher.close()
    await ws_device.close()
    await app.close()


async def test_a_rejected_payload_warning_has_one_ts(stack: Stack) -> None:
    device = await connect_mqtt(stack, "TS3", await pair_mqtt(stack, "TS3"))
    app = await stack.app_socket()
    await device.publish("nxg/TS3/telemetry", b'{"t": 1}')
    warning = await recv_until(app, "event", serial="TS3")
    [in_history] = await stored(stack, "TS3", "event")
    assert warning == in_history and warning["type"] == "payload_rejected"
    device.close()
    await app.close()
