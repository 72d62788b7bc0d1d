"""PROTOCOL §2 on both brokers (`stack` is `[embedded]` and `[mosquitto]`, see conftest.py):
pairing and every CONNACK code, ACL denials, presence, takeover, kicks within 1 s, queued
commands, bad payloads as Warning events. Clients reach the broker over the network only."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from nxg_mqtt.settings import Settings
from tests.bridge.helpers import Stack, pair_gateway, recv_until, send_json
from tests.mosquitto.conftest import open_broker_stack
from tests.mqtt_client import Clients, TestClient, pair_over_mqtt, wait_for

SUBACK_FAILURE = 0x80


async def paired(stack: Stack, serial: str, code: str | None = None) -> str:
    code = code or await stack.create_device(serial)
    reply = await pair_over_mqtt(stack.broker.mqtt_port, code, "boot-" + serial, json.dumps({"t": "pair"}))
    assert reply["t"] == "pair_ok" and reply["serial"] == serial, reply
    return str(reply["token"])


async def online(stack: Stack, serial: str) -> bool:
    return bool((await stack.http.get(f"/api/devices/{serial}")).json()["online"])


async def eventually(check: Any, within_s: float = 5.0) -> bool:
    """Whether the async `check()` holds within `within_s` (polled: it asks over HTTP)."""
    for _ in range(int(within_s / 0.02)):
        if await check():
            return True
        await asyncio.sleep(0.02)
    return bool(await check())


async def history(stack: Stack, serial: str) -> list[dict[str, Any]]:
    await stack.core.ingest.flush()
    response = await stack.http.get("/api/history", params={"serial": serial})
    return list(response.json()["messages"])


async def test_pairing_then_the_device_session(stack: Stack, paho: Clients) -> None:
    code = await stack.create_device("P1")
    # the code in the request is optional; when given, it must be the session's
    reply = await pair_over_mqtt(stack.broker.mqtt_port, code, "boot-p1", json.dumps({"t": "pair", "code": code}))
    assert reply["t"] == "pair_ok" and reply["serial"] == "P1" and reply["token"].startswith("nxgt_")
    device = paho("P1")
    assert await device.connect(stack.broker.mqtt_port, "P1", reply["token"]) == 0
    assert await device.subscribe("nxg/P1/cmd") == [1]
    await device.publish("nxg/P1/telemetry", json.dumps({"temp": 21.5}))

    async def stored() -> bool:
        return any(m["t"] == "telemetry" and m.get("temp") == 21.5 for m in await history(stack, "P1"))

    assert await eventually(stored)


async def test_every_connack_code(stack: Stack, paho: Clients) -> None:
    port = stack.broker.mqtt_port
    code = await stack.create_device("C1")
    assert await paho("pair-wrong").connect(port, "pair", "0000-0000") == 4  # wrong connection code
    assert await paho("bad+level").connect(port, "pair", code) == 2  # not one topic level
    assert await paho("C1").connect(port, "C1", "nxgt_wrong") == 5  # wrong token
    assert await paho("C1").connect(port) == 5  # no credentials
    assert await paho("nobody").connect(port, "nobody", "nxgt_x") == 5  # unknown serial
    token = await paired(stack, "C1", code)
    assert await paho("other-id").connect(port, "C1", token) == 5  # client id is not the serial
    assert await paho("bridge-x").connect(port, "bridge", "wrong secret") == 4
    assert await paho("key-x").connect(port, "key", "nxgk_wrong") == 4
    assert (await stack.http.post("/api/devices/C1/reset")).status_code == 200
    assert await paho("C1").connect(port, "C1", token) == 5  # stale after reset: auth_reset_required


async def test_wrong_codes_lock_the_address_out_with_0x03(broker_kind: str, settings: Settings, paho: Clients) -> None:
    async with open_broker_stack(broker_kind, settings) as stack:
        code = await stack.create_device("L1")
        port = stack.broker.mqtt_port
        for i in range(settings.pair_failures_per_minute):
            assert await paho(f"guess{i}").connect(port, "pair", "0000-0000") == 4
        assert await paho("right").connect(port, "pair", code) == 3  # locked, even with the right code
        token_holder = await stack.http.get("/api/devices/L1")
        assert token_holder.status_code == 200


async def test_acl_denials(stack: Stack, paho: Clients) -> None:
    port = stack.broker.mqtt_port
    token_a, token_b = await paired(stack, "A1"), await paired(stack, "B1")
    victim = paho("B1")
    assert await victim.connect(port, "B1", token_b) == 0
    assert await victim.subscribe("nxg/B1/cmd") == [1]
    attacker = paho("A1")
    assert await attacker.connect(port, "A1", token_a) == 0
    for topic in ("nxg/B1/cmd", "nxg/B1/telemetry", "nxg/+/cmd", "#", "nxg/pair/boot-B1"):
        assert await attacker.subscribe(topic) == [SUBACK_FAILURE], topic
    assert await attacker.subscribe("nxg/A1/cmd") == [1]
    # publishing as another device, or as the server: dropped
    await attacker.publish("nxg/B1/telemetry", json.dumps({"spoofed": 1}))
    await attacker.publish("nxg/B1/cmd", json.dumps({"t": "cmd", "id": "x", "action": "open"}))
    await attacker.publish("nxg/A1/presence", json.dumps({"online": False}))
    await attacker.publish("nxg/A1/telemetry", json.dumps({"mine": 1}))

    async def own_stored() -> bool:
        return any(m.get("mine") == 1 for m in await history(stack, "A1"))

    assert await eventually(own_stored)
    assert not any(m.get("spoofed") for m in await history(stack, "B1"))
    assert await victim.no_message(0.3)
    assert await online(stack, "A1")


async def test_presence_connect_disconnect_and_takeover(stack: Stack, paho: Clients) -> None:
    port = stack.broker.mqtt_port
    token = await paired(stack, "T1")
    app = await stack.app_socket()
    first = paho("T1")
    assert await first.connect(port, "T1", token) == 0
    await recv_until(app, "device_online", serial="T1")
    assert await online(stack, "T1")
    second = paho("T1")  # the same serial again: takes over, presence stays online
    assert await second.connect(port, "T1", token) == 0
    assert await first.wait_disconnected()
    await asyncio.sleep(0.3)
    assert await online(stack, "T1")
    await second.disconnect()
    await recv_until(app, "device_offline", serial="T1")
    assert not await online(stack, "T1")
    await app.close()


async def test_keepalive_timeout_takes_the_device_offline(stack: Stack, paho: Clients) -> None:
    token = await paired(stack, "KA1")
    device = paho("KA1")
    assert await device.connect(stack.broker.mqtt_port, "KA1", token, keepalive=1) == 0
    assert await eventually(lambda: online(stack, "KA1"))
    device.client.loop_stop()  # silent from now on, the socket stays open: 1.5 x 1 s later it is dropped
    assert await eventually(lambda: _offline(stack, "KA1"), 5.0)


async def test_reset_kicks_within_a_second(stack: Stack, paho: Clients) -> None:
    port = stack.broker.mqtt_port
    token = await paired(stack, "K1")
    device = paho("K1")
    assert await device.connect(port, "K1", token) == 0
    started = time.monotonic()
    assert (await stack.http.post("/api/devices/K1/reset")).status_code == 200
    assert await device.wait_disconnected(1.0)
    assert time.monotonic() - started < 1.0
    assert await eventually(lambda: _offline(stack, "K1"), 2.0)
    assert await paho("K1").connect(port, "K1", token) == 5


async def _offline(stack: Stack, serial: str) -> bool:
    return not await online(stack, serial)


async def test_delete_kicks_a_pairing_session_bound_to_the_code(stack: Stack, paho: Clients) -> None:
    code = await stack.create_device("D1")
    pairing = paho("boot-d1")
    assert await pairing.connect(stack.broker.mqtt_port, "pair", code) == 0
    assert (await stack.http.delete("/api/devices/D1")).status_code == 200
    assert await pairing.wait_disconnected(1.0)


async def test_queued_command_goes_out_when_the_device_subscribes(stack: Stack, paho: Clients) -> None:
    token = await paired(stack, "Q1")
    app = await stack.app_socket()
    await send_json(app, {"t": "cmd", "serial": "Q1", "target": "lock", "action": "open", "ref": "q"})
    accepted = await recv_until(app, "cmd_accepted")
    device = paho("Q1")
    assert await device.connect(stack.broker.mqtt_port, "Q1", token) == 0
    assert await device.no_message(0.3)  # not before it subscribes (PROTOCOL §6)
    assert await device.subscribe("nxg/Q1/cmd") == [1]
    received = await device.next_message()
    command = json.loads(received.payload)
    assert received.topic == "nxg/Q1/cmd" and received.qos == 1 and command["id"] == accepted["id"]
    await device.publish("nxg/Q1/ack", json.dumps({"t": "ack", "id": command["id"], "ok": True}))
    ack = await recv_until(app, "ack")
    assert ack["id"] == command["id"] and ack["ok"] is True
    await app.close()


async def test_bad_payload_becomes_a_warning_event(stack: Stack, paho: Clients) -> None:
    token = await paired(stack, "W1")
    device = paho("W1")
    assert await device.connect(stack.broker.mqtt_port, "W1", token) == 0
    await device.publish("nxg/W1/telemetry", json.dumps({"nested": {"not": "a scalar"}}))

    async def warned() -> bool:
        return any(m["t"] == "event" and m.get("severity") == "Warning" for m in await history(stack, "W1"))

    assert await eventually(warned)
    assert await online(stack, "W1")  # nothing disconnected


async def test_gateway_device_beside_an_mqtt_device(stack: Stack, paho: Clients) -> None:
    app = await stack.app_socket()
    ws_device, _ = await pair_gateway(stack, "G1")
    await recv_until(app, "device_online", serial="G1")
    await send_json(ws_device, {"t": "telemetry", "hum": 41})
    assert (await recv_until(app, "telemetry", serial="G1"))["hum"] == 41
    await send_json(app, {"t": "cmd", "serial": "G1", "target": "turn1", "action": "open", "ref": "g"})
    accepted = await recv_until(app, "cmd_accepted")
    command = await recv_until(ws_device, "cmd")
    assert command["id"] == accepted["id"]
    await send_json(ws_device, {"t": "ack", "id": command["id"], "ok": True})
    assert (await recv_until(app, "ack"))["id"] == command["id"]

    async def stored() -> bool:
        kinds = {m["t"] for m in await history(stack, "G1")}
        return {"telemetry", "cmd", "ack", "device_online"} <= kinds

    assert await eventually(stored)
    await ws_device.close()
    await app.close()


async def test_mqtt_over_websocket(broker_kind: str, settings: Settings, paho: Clients) -> None:
    async with open_broker_stack(broker_kind, settings.with_overrides(ws_port=0)) as stack:
        token = await paired(stack, "S1")
        device = TestClient("S1", transport="websockets")
        try:
            assert await device.connect(stack.broker.ws_port, "S1", token) == 0
            assert await device.subscribe("nxg/S1/cmd") == [1]
            assert await wait_for(lambda: True)
            assert await eventually(lambda: online(stack, "S1"))
        finally:
            device.close()


async def test_mosquitto_drop_notices_are_a_metric(broker_kind: str, stack: Stack) -> None:
    """On Mosquitto, a full serving-process queue (acknowledged messages lost) is on /metrics."""
    from tests.bridge.test_system import scrape, value

    samples = await scrape(stack)
    if broker_kind == "mosquitto":
        assert ("nxg_mosquitto_drop_notices_total", (("subscriber", "ingest"),)) in samples
        assert value(samples, "nxg_mosquitto_drop_notices_total", subscriber="ingest") == 0
    else:
        assert not any(name.startswith("nxg_mosquitto_") for name, _ in samples)
