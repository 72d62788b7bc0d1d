"""Deeply nested JSON and huge numbers, on every surface that decodes JSON (issue 7).

Before: 5,000 levels on a device topic were PUBACKed and dropped without the Warning event (a
RecursionError escaped the decoder), 10,000 levels crashed a WebSocket handler, REST answered 500.
Now each surface answers with its documented error, and nothing else is disturbed.
"""

from __future__ import annotations

import json

import pytest

from nxg_mqtt import messages
from tests.bridge.helpers import Stack, pair_gateway, recv_json, recv_until, send_json, still_open
from tests.bridge.test_end_to_end import connect_mqtt, pair_mqtt
from tests.mqtt_client import TestClient


def nested(levels: int) -> str:
    """An object whose "a" holds `levels - 1` nested arrays: `levels` levels in all."""
    return '{"a":' + "[" * (levels - 1) + "]" * (levels - 1) + "}"


async def test_deep_payload_on_a_device_topic_is_a_warning_event(stack: Stack) -> None:
    token = await pair_mqtt(stack, "Deep-1")
    device = await connect_mqtt(stack, "Deep-1", token)
    other = await connect_mqtt(stack, "Calm-1", await pair_mqtt(stack, "Calm-1"))
    watcher = TestClient("watcher")
    assert await watcher.connect(stack.broker.mqtt_port, "bridge", stack.core.settings.internal_secret) == 0
    await watcher.subscribe("nxg/+/event")
    await watcher.subscribe("nxg/Calm-1/telemetry")

    await device.publish("nxg/Deep-1/telemetry", nested(5000).encode(), qos=1)  # PUBACKed
    event = await watcher.next_message()
    assert event.topic == "nxg/Deep-1/event"
    warning = json.loads(event.payload)
    assert warning["type"] == "payload_rejected" and warning["severity"] == "Warning"
    assert warning["body"]["reason"] == "too_deep" and warning["body"]["channel"] == "telemetry"
    assert "5000 levels" in warning["body"]["error"]

    await device.publish("nxg/Deep-1/status", b'{"n": 100000000000000000000000000000000000000000}', qos=1)
    event = await watcher.next_message()
    assert json.loads(event.payload)["body"]["reason"] == "number_range"

    # the sender and everyone else carry on
    await device.publish("nxg/Deep-1/telemetry", b'{"temp": 1}', qos=1)
    await other.publish("nxg/Calm-1/telemetry", b'{"temp": 2}', qos=1)
    delivered = await watcher.next_message()
    body = json.loads(delivered.payload)
    assert delivered.topic == "nxg/Calm-1/telemetry" and body.pop("server_ts") > 0 and body == {"temp": 2}
    assert not device.disconnected.is_set() and not other.disconnected.is_set()

    await stack.core.ingest.flush()
    history = (await stack.http.get("/api/history", params={"serial": "Deep-1", "type": "event"})).json()
    reasons = [m["body"]["reason"] for m in history["messages"] if m.get("type") == "payload_rejected"]
    assert reasons == ["number_range", "too_deep"]
    for client in (device, other, watcher):
        client.close()


@pytest.mark.parametrize(
    ("frame", "fragment"),
    [
        ('{"t":"telemetry","a":' + "[" * 9999 + "]" * 9999 + "}", "10000 levels"),
        ('{"t":"telemetry","n":' + "9" * 40 + "}", "out of range"),
        ('{"t":"telemetry","n":1e400}', "out of range"),
        ('{"t":"telemetry","n":NaN}', "NaN"),
        ('{"t":"telemetry","n":-Infinity}', "Infinity"),
    ],
)
async def test_gateway_answers_an_error_and_stays_open(stack: Stack, frame: str, fragment: str) -> None:
    ws, _ = await pair_gateway(stack, "Deep-2")
    await ws.send(frame)
    reply = await recv_json(ws)
    assert reply["t"] == "error" and fragment in reply["error"], reply
    await still_open(ws)
    app = await stack.app_socket()
    await send_json(ws, {"t": "telemetry", "temp": 4})
    await recv_until(app, "telemetry", serial="Deep-2", temp=4)
    await app.close()
    await ws.close()


async def test_gateway_before_auth_counts_it_as_a_protocol_error(stack: Stack) -> None:
    ws = await stack.gateway()
    await ws.send("[" * 10000 + "]" * 10000)
    assert "levels" in (await recv_json(ws))["error"]
    await still_open(ws)
    await ws.close()


@pytest.mark.parametrize(
    "frame",
    [
        '{"t":"cmd","serial":"X","action":"go","params":{"a":' + "[" * 9999 + "]" * 9999 + "}}",
        '{"t":"cmd","serial":"X","action":"go","params":{"n":' + "1" * 5000 + "}}",
        "[" * 10000 + "]" * 10000,
    ],
)
async def test_app_socket_answers_an_error_and_stays_open(stack: Stack, frame: str) -> None:
    app = await stack.app_socket()
    await app.send(frame)
    reply = await recv_json(app)
    assert reply["t"] == "error" and reply["code"] == "INVALID"
    assert "levels" in reply["error"] or "out of range" in reply["error"], reply
    await still_open(app)
    await app.close()


async def test_rest_body_too_deep_or_out_of_range_is_400(stack: Stack) -> None:
    headers = {"Content-Type": "application/json"}
    deep = await stack.http.post("/api/devices", content=nested(10000).encode(), headers=headers)
    assert deep.status_code == 400
    assert deep.json() == {"error": f"body nests 10000 levels deep; the limit is {messages.MAX_JSON_DEPTH}"}
    huge = await stack.http.post("/api/devices", content=b'{"name": 1e999}', headers=headers)
    assert huge.status_code == 400 and "out of range" in huge.json()["error"]
    assert (await stack.http.post("/api/devices", json={"serial": "Fine-1"})).status_code == 201


@pytest.mark.parametrize(
    "params",
    [
        {"before": str(10**40)},
        {"before": "9" * 5000},
        {"before": str(2**63)},
        {"limit": str(10**40)},
        {"limit": "9" * 5000},
        {"limit": "-" + "9" * 30},
    ],
)
async def test_rest_history_huge_numbers_are_400(stack: Stack, params: dict[str, str]) -> None:
    response = await stack.http.get("/api/history", params=params)
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith(f"{next(iter(params))} must be between")


async def test_rest_history_largest_before_is_fine(stack: Stack) -> None:
    response = await stack.http.get("/api/history", params={"before": str(2**63 - 1)})
    assert response.status_code == 200
    assert response.json() == {"messages": [], "next_before": None}
