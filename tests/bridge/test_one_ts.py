"""PROTOCOL §6, "the same ts everywhere": one message, stamped once at receipt by the broker,
carries the same `ts` on `/ws/app`, in `/api/history` and to an MQTT subscriber."""

from __future__ import annotations

import asyncio
import json
import re
import signal
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect

from nxg_mqtt.protocol import SERVER_TS
from tests.bridge.helpers import Stack, history_when, pair_gateway, recv_until, send_json
from tests.bridge.test_end_to_end import connect_mqtt, pair_mqtt
from tests.cli_process import CLI
from tests.mqtt_client import Received, TestClient, pair_over_mqtt
from tests.test_cli import run_cli


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
    in_history = await held_in_history(stack, "TS1", "telemetry")

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
    in_history = await held_in_history(stack, "TS2", "telemetry")
    assert on_app["ts"] == in_history["ts"] == on_mqtt[SERVER_TS]
    assert "device_ts" not in on_app

    await send_json(app, {"t": "cmd", "serial": "TS2", "action": "open"})
    command = await recv_until(ws_device, "cmd")
    await send_json(ws_device, {"t": "ack", "id": command["id"], "ok": True})
    ack_on_app = await recv_until(app, "ack", id=command["id"])
    ack_on_mqtt = await next_on(watcher, "nxg/TS2/ack")
    ack_in_history = await held_in_history(stack, "TS2", "ack")
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


async def _start(*args: str) -> tuple[asyncio.subprocess.Process, bytes]:
    proc = await asyncio.create_subprocess_exec(
        *CLI, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    assert proc.stdout is not None
    return proc, await asyncio.wait_for(proc.stdout.readline(), timeout=20)


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), timeout=10)


async def test_one_ts_across_a_broker_process_and_a_bridge_process(tmp_path: Path) -> None:
    """The stamp travels from the broker process to a separate bridge process over MQTT."""
    broker, line = await _start("broker", "--mqtt-port", "0", "--host", "127.0.0.1", "--data", str(tmp_path))
    bridge: asyncio.subprocess.Process | None = None
    try:
        found = re.search(rb"mqtt://[^\s:]+:(\d+)", line)
        assert found, line
        port = int(found.group(1))
        bridge, line = await _start(
            "bridge",
            "--mqtt",
            f"mqtt://127.0.0.1:{port}",
            "--host",
            "127.0.0.1",
            "--http-port",
            "0",
            "--admin-password",
            "pw",
            "--data",
            str(tmp_path),
        )
        found = re.search(rb"http://[^\s:]+:(\d+)/", line)
        assert found, line
        http_port = int(found.group(1))
        secret = (tmp_path / "internal_secret").read_text().strip()

        code = str((await asyncio.to_thread(run_cli, tmp_path, "device", "create", "--serial", "TSP"))["code"])
        token = str((await pair_over_mqtt(port, code, "p-tsp"))["token"])
        watcher = TestClient("integrator")
        assert await watcher.connect(port, "bridge", secret) == 0
        await watcher.subscribe("nxg/TSP/telemetry")
        device = TestClient("TSP")

        base = f"127.0.0.1:{http_port}"
        async with connect(f"ws://{base}/ws/app?token=pw") as app:
            assert await device.connect(port, "TSP", token) == 0
            await recv_until(app, "device_online", serial="TSP")
            await device.publish("nxg/TSP/telemetry", json.dumps({"temp": 19.5, "ts": 1700000000000}))
            on_app = await recv_until(app, "telemetry", serial="TSP")
        on_mqtt = await next_on(watcher, "nxg/TSP/telemetry")
        async with httpx.AsyncClient(base_url=f"http://{base}", headers={"Authorization": "Bearer pw"}) as http:
            history: list[dict[str, Any]] = []
            for _ in range(50):  # the broker process writes history in batches
                response = await http.get("/api/history", params={"serial": "TSP", "type": "telemetry"})
                history = response.json()["messages"]
                if history:
                    break
                await asyncio.sleep(0.05)
        assert history, "the telemetry never reached history"
        assert on_app["ts"] == history[0]["ts"] == on_mqtt[SERVER_TS]
        assert on_app == history[0] and on_app["device_ts"] == 1700000000000
        device.close()
        watcher.close()
    finally:
        if bridge is not None:
            await _stop(bridge)
        await _stop(broker)


async def held_in_history(stack: Stack, serial: str, type_: str) -> dict[str, Any]:
    """The one stored message of this type; on Mosquitto the serving process's worker may store it
    a moment after the app saw it."""
    page = await history_when(stack, {"serial": serial, "type": type_}, bool)
    messages: list[dict[str, Any]] = page["messages"]
    [in_history] = messages
    return in_history


async def test_a_gateway_device_cannot_set_the_server_stamp(stack: Stack) -> None:
    """A `/ws/gateway` device's own `server_ts` is dropped before the core publishes its data or
    ack: the broker's stamp is the one ts (on Mosquitto the plugin keeps a stamp the core
    published, so a passed-through one would have been taken for the receive time)."""
    app = await stack.app_socket()
    watcher = await integrator(stack, "nxg/TS4/#")
    ws_device, _ = await pair_gateway(stack, "TS4")
    await recv_until(app, "device_online", serial="TS4")
    for kind, fields in (("telemetry", {"hum": 41}), ("status", {"state": "ok"})):
        await send_json(ws_device, {"t": kind, **fields, SERVER_TS: 5})
        on_app = await recv_until(app, kind, serial="TS4")
        on_mqtt = await next_on(watcher, f"nxg/TS4/{kind}")
        in_history = await held_in_history(stack, "TS4", kind)
        assert on_app["ts"] == in_history["ts"] == on_mqtt[SERVER_TS] > 1_700_000_000_000, kind
        assert SERVER_TS not in on_app and all(on_mqtt[k] == v for k, v in fields.items())

    await send_json(app, {"t": "cmd", "serial": "TS4", "action": "open"})
    command = await recv_until(ws_device, "cmd")
    await send_json(ws_device, {"t": "ack", "id": command["id"], "ok": True, SERVER_TS: 5})
    ack_on_app = await recv_until(app, "ack", id=command["id"])
    ack_on_mqtt = await next_on(watcher, "nxg/TS4/ack")
    ack_in_history = await held_in_history(stack, "TS4", "ack")
    assert ack_on_app["ts"] == ack_in_history["ts"] == ack_on_mqtt[SERVER_TS] > 1_700_000_000_000
    watcher.close()
    await ws_device.close()
    await app.close()
