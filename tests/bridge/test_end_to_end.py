"""An MQTT device and a WebSocket device side by side, seen and commanded by one app."""

from __future__ import annotations

import asyncio
import json

from tests.bridge.helpers import Stack, history_when, pair_gateway, recv_until, send_json
from tests.mqtt_client import TestClient, pair_over_mqtt


async def pair_mqtt(stack: Stack, serial: str) -> str:
    """Pair over MQTT as a firmware does; returns the token."""
    code = await stack.create_device(serial)
    reply = await pair_over_mqtt(stack.broker.mqtt_port, code, "boot-" + serial, json.dumps({"t": "pair"}))
    assert reply["t"] == "pair_ok" and reply["serial"] == serial
    return str(reply["token"])


async def connect_mqtt(stack: Stack, serial: str, token: str) -> TestClient:
    device = TestClient(serial)
    assert await device.connect(stack.broker.mqtt_port, serial, token) == 0
    await device.subscribe(f"nxg/{serial}/cmd")
    return device


async def test_history_lists_presence_around_what_the_device_sent(stack: Stack) -> None:
    """A device that publishes the moment it is connected, then leaves: newest first, history has
    `device_offline`, its messages, then `device_online`. On Mosquitto the core hears of the connect
    and the disconnect from the plugin's reports, after the plugin stamped the messages: the reports
    carry the plugin's own stamps for them."""
    app = await stack.app_socket()
    token = await pair_mqtt(stack, "P1")
    device = TestClient("P1")
    assert await device.connect(stack.broker.mqtt_port, "P1", token) == 0
    for i in range(3):
        device.publish_nowait("nxg/P1/telemetry", json.dumps({"n": i}))
    await device.publish("nxg/P1/status", json.dumps({"door": "open"}))
    await device.disconnect()
    await recv_until(app, "device_offline", serial="P1")
    history = (await history_when(stack, {"serial": "P1"}, lambda ms: len(ms) >= 6))["messages"]
    types = [m["t"] for m in history]
    assert types == ["device_offline", "status", "telemetry", "telemetry", "telemetry", "device_online"]
    await app.close()


async def test_mqtt_and_ws_devices_through_one_app(stack: Stack) -> None:
    app = await stack.app_socket()
    token = await pair_mqtt(stack, "M1")
    mqtt_device = await connect_mqtt(stack, "M1", token)
    ws_device, _ = await pair_gateway(stack, "W1")
    await recv_until(app, "device_online", serial="M1")
    await recv_until(app, "device_online", serial="W1")

    await mqtt_device.publish("nxg/M1/telemetry", json.dumps({"temp": 22.5, "ts": 1700000000000}))
    await send_json(ws_device, {"t": "telemetry", "hum": 41})
    m1 = await recv_until(app, "telemetry", serial="M1")
    w1 = await recv_until(app, "telemetry", serial="W1")
    assert m1["temp"] == 22.5 and m1["device_ts"] == 1700000000000 and isinstance(m1["ts"], int)
    assert w1["hum"] == 41 and "device_ts" not in w1

    for serial in ("M1", "W1"):
        await send_json(app, {"t": "cmd", "serial": serial, "target": "turn1", "action": "open", "ref": serial})
    accepted = {}
    for _ in range(2):
        reply = await recv_until(app, "cmd_accepted")
        accepted[reply["ref"]] = reply["id"]

    received = await mqtt_device.next_message()
    assert received.topic == "nxg/M1/cmd" and received.qos == 1
    command = json.loads(received.payload)
    assert command == {"t": "cmd", "id": accepted["M1"], "target": "turn1", "action": "open", "params": {}}
    await mqtt_device.publish("nxg/M1/ack", json.dumps({"t": "ack", "id": command["id"], "ok": True}))
    ws_command = await recv_until(ws_device, "cmd")
    assert ws_command["id"] == accepted["W1"]
    await send_json(ws_device, {"t": "ack", "id": ws_command["id"], "ok": True, "result": {"done": 1}})

    acks = [await recv_until(app, "ack") for _ in range(2)]
    assert {a["id"] for a in acks} == set(accepted.values())
    assert all(a["ok"] is True and isinstance(a["ts"], int) for a in acks)

    wanted = {"telemetry", "cmd", "ack", "device_online"}
    history = await history_when(stack, {"serial": "W1"}, lambda ms: wanted <= {m["t"] for m in ms})
    assert wanted <= {m["t"] for m in history["messages"]}

    mqtt_device.close()
    await recv_until(app, "device_offline", serial="M1")
    await ws_device.close()
    await app.close()


async def test_command_to_an_offline_mqtt_device_is_delivered_when_it_reconnects(stack: Stack) -> None:
    token = await pair_mqtt(stack, "M2")
    app = await stack.app_socket()
    await send_json(app, {"t": "cmd", "serial": "M2", "action": "reboot"})
    accepted = await recv_until(app, "cmd_accepted")
    assert accepted["ref"] is None
    device = await connect_mqtt(stack, "M2", token)
    command = json.loads((await device.next_message()).payload)
    assert command["id"] == accepted["id"] and command["action"] == "reboot"
    await device.publish("nxg/M2/ack", json.dumps({"t": "ack", "id": command["id"], "ok": True}))
    assert (await recv_until(app, "ack", id=accepted["id"]))["serial"] == "M2"
    device.close()
    await app.close()


async def test_invalid_mqtt_payload_reaches_the_app_as_a_warning(stack: Stack) -> None:
    token = await pair_mqtt(stack, "M3")
    device = await connect_mqtt(stack, "M3", token)
    app = await stack.app_socket()
    await device.publish("nxg/M3/telemetry", b"{oops", qos=1)
    warning = await recv_until(app, "event", serial="M3")
    assert warning["type"] == "payload_rejected" and warning["severity"] == "Warning"
    assert "not valid JSON" in warning["body"]["error"]
    device.close()
    await asyncio.sleep(0)
    await app.close()
