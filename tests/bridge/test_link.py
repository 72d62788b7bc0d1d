"""The MQTT link: it comes back after the broker does, and the standalone bridge (embedded=False)."""

from __future__ import annotations

import asyncio
import json
import socket
from dataclasses import replace
from pathlib import Path

import httpx

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
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{bridge.http_port}") as http,
        ):
            await wait_health(http, 200, 2)
            await first.__aexit__(None, None, None)
            await wait_health(http, 503, 2)
            async with open_broker(core):
                await wait_health(http, 200, 10)
                assert bridge.state.link.connects == 2


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


async def test_with_the_broker_in_process_the_link_carries_only_what_the_hub_reads(stack: Stack) -> None:
    """A command's `cmd/res` status messages and a device's manifest never cross the link (nothing
    in this process reads them there); the gateway device's `cmd` and its `ack` still do."""
    from tests.bridge.helpers import pair_gateway

    device, _ = await pair_gateway(stack, "lk1")
    app = await stack.app_socket()
    link = stack.bridge.state.link
    await asyncio.sleep(0.2)  # the pairing's presence has crossed
    before = link.received
    await send_json(app, {"t": "cmd", "serial": "lk1", "action": "go", "ref": 1})
    cmd = await recv_until(device, "cmd")
    await send_json(device, {"t": "ack", "id": cmd["id"], "ok": True})
    await recv_until(app, "ack", id=cmd["id"])
    await stack.broker.publish("nxg/lk1/cmd/res", b'{"id":"x","status":"acked"}', qos=1)
    await asyncio.sleep(0.3)  # anything else on its way would have arrived
    assert link.received - before == 2  # cmd (for the gateway socket) and ack
