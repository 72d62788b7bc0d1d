"""The MQTT link: it comes back after the broker does, and the standalone bridge (embedded=False).
Beside the embedded broker the hub hears the broker in-process, and the link only publishes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sqlite3
from dataclasses import replace
from pathlib import Path

import httpx

from bridge.hub import HUB_SUBSCRIPTIONS
from bridge.server import open_bridge
from nxg_mqtt.broker.embedded import open_broker
from nxg_mqtt.cli import ensure_admin_password
from nxg_mqtt.core import open_core
from tests.bridge.helpers import Stack, recv_until, send_json
from tests.bridge.test_end_to_end import connect_mqtt, pair_mqtt
from tests.factories import PASSWORD, make_settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_health(http: httpx.AsyncClient, status: int, within_s: float) -> None:
    for _ in range(int(within_s / 0.05)):
        if (await http.get("/health")).status_code == status:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"/health did not answer {status} within {within_s}s")


async def test_link_reconnects_when_the_broker_returns(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, mqtt_port=free_port())
    async with open_core(settings, serve=True) as core:
        await ensure_admin_password(core)
        first = open_broker(core)
        await first.__aenter__()
        async with (
            open_bridge(settings, core, "127.0.0.1", settings.mqtt_port) as bridge,
            httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{bridge.http_port}", headers={"Authorization": f"Bearer {PASSWORD}"}
            ) as http,
        ):
            await wait_health(http, 200, 2)
            await first.__aexit__(None, None, None)
            await wait_health(http, 503, 2)
            async with open_broker(core) as broker:
                await wait_health(http, 200, 10)
                assert bridge.state.link.connects == 2
                # the hub was attached again to the new broker: a device's messages reach apps
                stack = Stack(core, broker, bridge, http)
                app = await stack.app_socket()
                token = await pair_mqtt(stack, "RA1")
                device = await connect_mqtt(stack, "RA1", token)
                await device.publish("nxg/RA1/telemetry", json.dumps({"v": 7}))
                assert (await recv_until(app, "telemetry", serial="RA1"))["v"] == 7
                assert broker._locals == len(HUB_SUBSCRIPTIONS)
                device.close()
                await app.close()


async def test_standalone_bridge_against_a_separate_broker(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    async with open_core(settings, serve=True) as broker_core, open_broker(broker_core) as broker:
        await ensure_admin_password(broker_core)
        bridge_settings = replace(settings, admin_password=None)
        async with (
            open_core(bridge_settings, writer=True) as core,
            open_bridge(bridge_settings, core, "127.0.0.1", broker.mqtt_port, embedded=False) as bridge,
            httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{bridge.http_port}", headers={"Authorization": f"Bearer {PASSWORD}"}
            ) as http,
        ):
            stack = Stack(core, broker, bridge, http)
            app = await stack.app_socket()
            token = await pair_mqtt(stack, "S1")
            device = await connect_mqtt(stack, "S1", token)
            await recv_until(app, "device_online", serial="S1")
            await send_json(app, {"t": "cmd", "serial": "S1", "action": "open"})
            accepted = await recv_until(app, "cmd_accepted")
            # dispatched by the broker's process, which learns of it through a signal
            command = json.loads((await device.next_message()).payload)
            assert command["id"] == accepted["id"]
            await device.publish("nxg/S1/ack", json.dumps({"t": "ack", "id": command["id"], "ok": True}))
            await recv_until(app, "ack", id=command["id"])
            device.close()

            # a WebSocket device lives in the bridge's process: presence goes out through the link
            code = await stack.create_device("S2")
            ws = await stack.gateway()
            await send_json(ws, {"t": "pair", "code": code})
            await recv_until(ws, "pair_ok")
            await recv_until(app, "device_online", serial="S2")
            await send_json(app, {"t": "cmd", "serial": "S2", "action": "blink"})
            accepted = await recv_until(app, "cmd_accepted")
            ws_command = await recv_until(ws, "cmd")
            assert ws_command["id"] == accepted["id"]
            await send_json(ws, {"t": "ack", "id": ws_command["id"], "ok": True})
            await recv_until(app, "ack", id=ws_command["id"])
            await send_json(ws, {"t": "telemetry", "v": 1})
            assert (await recv_until(app, "telemetry", serial="S2"))["v"] == 1
            for _ in range(50):  # the broker's core closed the command from the republished ack
                closed = await broker_core.commands.get(ws_command["id"])
                if closed is not None and closed.status.value == "acked":
                    break
                await asyncio.sleep(0.02)
            assert closed is not None and closed.status.value == "acked"
            await ws.close()
            await app.close()


async def test_with_the_broker_in_process_nothing_crosses_the_link(stack: Stack) -> None:
    """The hub hears the broker in-process: the gateway device's `cmd` and its `ack` reach their
    sockets, and the link (which still carries the gateway device's publishes) receives nothing."""
    from tests.bridge.helpers import pair_gateway

    device, _ = await pair_gateway(stack, "lk1")
    app = await stack.app_socket()
    link = stack.bridge.state.link
    await send_json(app, {"t": "cmd", "serial": "lk1", "action": "go", "ref": 1})
    cmd = await recv_until(device, "cmd")
    await send_json(device, {"t": "ack", "id": cmd["id"], "ok": True})
    await recv_until(app, "ack", id=cmd["id"])
    await stack.broker.publish("nxg/lk1/cmd/res", b'{"id":"x","status":"acked"}', qos=1)
    await asyncio.sleep(0.2)
    assert link.connected and link.received == 0
    assert stack.broker.stats["messages_out"] > 0
    assert stack.broker._locals == len(HUB_SUBSCRIPTIONS)


async def test_in_process_delivery_keeps_each_devices_order(stack: Stack) -> None:
    app = await stack.app_socket()
    token = await pair_mqtt(stack, "ord1")
    device = await connect_mqtt(stack, "ord1", token)
    # one QoS: paho itself lets a QoS 0 message pass QoS 1 ones held beyond its in-flight window
    for i in range(100):
        device.publish_nowait("nxg/ord1/telemetry", json.dumps({"n": i}), qos=1)
    seen = [(await recv_until(app, "telemetry", serial="ord1"))["n"] for _ in range(100)]
    assert seen == list(range(100))
    device.close()


async def test_in_process_delivery_hears_only_what_the_acl_let_through(stack: Stack) -> None:
    """The publish ACL still decides before routing: a device writing on another device's topic
    is refused, and the hub (bridge role, every topic) hears only what was routed."""
    app = await stack.app_socket()
    tokens = {serial: await pair_mqtt(stack, serial) for serial in ("acl1", "acl2")}
    intruder = await connect_mqtt(stack, "acl1", tokens["acl1"])
    await intruder.publish("nxg/acl2/telemetry", json.dumps({"v": "forged"}))
    await intruder.publish("nxg/acl1/telemetry", json.dumps({"v": "own"}))
    first = await recv_until(app, "telemetry")
    assert (first["serial"], first["v"]) == ("acl1", "own")
    assert stack.broker.stats["publish_denied"] >= 1
    intruder.close()


async def test_an_accepted_command_and_its_ack_are_committed_before_the_app_hears_them(stack: Stack) -> None:
    app = await stack.app_socket()
    token = await pair_mqtt(stack, "dur1")
    device = await connect_mqtt(stack, "dur1", token)
    await recv_until(app, "device_online", serial="dur1")

    def status(command_id: str) -> str | None:
        with contextlib.closing(sqlite3.connect(stack.core.settings.db_path)) as db:
            row = db.execute("SELECT status FROM commands WHERE id = ?", (command_id,)).fetchone()
        return None if row is None else str(row[0])

    await send_json(app, {"t": "cmd", "serial": "dur1", "action": "open", "ref": 5})
    accepted = await recv_until(app, "cmd_accepted")
    assert status(accepted["id"]) in ("queued", "dispatched")  # read by another connection: committed
    command = json.loads((await device.next_message()).payload)
    await device.publish("nxg/dur1/ack", json.dumps({"t": "ack", "id": command["id"], "ok": True}))
    await recv_until(app, "ack", id=command["id"])
    assert status(command["id"]) == "acked"
    device.close()
