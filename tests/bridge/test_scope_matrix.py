"""The scope-isolation matrix (issue 10): two keys with disjoint device scopes, for each role,
across every REST endpoint, both app WebSockets and MQTT. Outside its scope a device does not
exist (404, left out of lists, histories and live streams); inside it the role decides (403)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.bridge.helpers import Stack, recv_json, recv_until, send_json
from tests.mqtt_client import Clients, TestClient, pair_over_mqtt

A, B = "mx-a", "mx-b"
ROLES = ("admin", "user", "viewer")
ADMIN_ONLY = ("code", "config.h", "reset", "regenerate", "delete")


async def paired(stack: Stack, paho: Clients, serial: str) -> TestClient:
    code = await stack.create_device(serial)
    reply = await pair_over_mqtt(stack.broker.mqtt_port, code, "p-" + serial)
    device = paho(serial)
    assert await device.connect(stack.broker.mqtt_port, serial, str(reply["token"])) == 0
    assert await device.subscribe(f"nxg/{serial}/cmd") == [1]
    return device


async def admin_only(client: httpx.AsyncClient, serial: str, what: str) -> httpx.Response:
    if what in ("code", "config.h"):
        return await client.get(f"/api/devices/{serial}/{what}")
    if what == "delete":
        return await client.delete(f"/api/devices/{serial}")
    return await client.post(f"/api/devices/{serial}/{what}")


@pytest.mark.parametrize("role", ROLES)
async def test_nothing_leaks_across_device_scopes(stack: Stack, paho: Clients, role: str) -> None:
    device_a = await paired(stack, paho, A)
    device_b = await paired(stack, paho, B)
    await device_a.publish(f"nxg/{A}/telemetry", '{"temp": 1}')
    await device_b.publish(f"nxg/{B}/telemetry", '{"temp": 2}')
    await stack.core.ingest.flush()
    secrets = {}
    for serial in (A, B):
        created = await stack.http.post(
            "/api/v1/auth/api-keys", json={"name": serial, "role": role, "devices": [serial]}
        )
        secrets[serial] = created.json()["key"]
    key = secrets[A]  # the key under test: may see A, never B
    async with httpx.AsyncClient(base_url=stack.base, headers={"X-API-Key": key}, timeout=5.0) as client:
        # ---- REST: B does not exist, A answers by role
        listed = (await client.get("/api/devices")).json()["devices"]
        assert [d["serial"] for d in listed] == [A]
        history = (await client.get("/api/history")).json()["messages"]
        assert history and {m["serial"] for m in history} == {A}
        for response in (
            await client.get(f"/api/devices/{B}"),
            await client.get(f"/api/history?serial={B}"),
            *[await admin_only(client, B, what) for what in ADMIN_ONLY],
        ):
            assert response.status_code == 404, response.request.url
            assert B in response.json()["error"]  # the same message as a device that never existed
        unknown = (await client.get("/api/devices/never-was")).json()["error"]
        assert unknown.replace("never-was", B) == (await client.get(f"/api/devices/{B}")).json()["error"]
        assert (await client.get(f"/api/devices/{A}")).status_code == 200
        assert (await client.get(f"/api/history?serial={A}")).status_code == 200
        assert (await client.get("/api/protocol")).status_code == 200
        assert (await client.post("/api/devices", json={"serial": "mx-new"})).status_code == 403  # scoped: never
        for what in ("code", "config.h"):
            assert (await admin_only(client, A, what)).status_code == (200 if role == "admin" else 403)
        if role != "admin":
            for what in ("reset", "regenerate", "delete"):
                assert (await admin_only(client, A, what)).status_code == 403
        keys = await client.get("/api/v1/auth/api-keys")
        assert keys.status_code == (200 if role == "admin" else 403)
        if role == "admin":
            assert B not in json.dumps(keys.json())
        me = (await client.get("/api/v1/auth/me")).json()["user"]
        assert me["devices"] == [A] and me["role"] == role

    # ---- /ws/app: only A's messages; a command to B is not found; to A the role decides
    app = await connect(stack.ws_url(f"/ws/app?api_key={key}"))
    await send_json(app, {"t": "cmd", "serial": B, "action": "open", "ref": 1})
    assert (await recv_until(app, "error", ref=1))["code"] == "DEVICE_NOT_FOUND"
    await send_json(app, {"t": "cmd", "serial": A, "action": "open", "ref": 2})
    reply = await recv_json(app)
    if role == "viewer":
        assert reply["t"] == "error" and reply["code"] == "FORBIDDEN"
    else:
        assert reply["t"] == "cmd_accepted"
        assert (await device_a.next_message()).topic == f"nxg/{A}/cmd"
    await device_b.publish(f"nxg/{B}/telemetry", '{"temp": 3}')
    await device_a.publish(f"nxg/{A}/telemetry", '{"temp": 4}')
    seen = await recv_until(app, "telemetry")
    assert seen["serial"] == A and seen["temp"] == 4
    await app.close()

    # ---- /realtime: viewers are refused (seed 001); B is an error, A is subscribed
    if role == "viewer":
        with pytest.raises(InvalidStatus) as refused:
            await connect(stack.ws_url(f"/realtime?api_key={key}"))
        assert refused.value.response.status_code == 401
    else:
        realtime = await connect(stack.ws_url(f"/realtime?api_key={key}"))
        assert (await recv_json(realtime))["type"] == "connected"
        await send_json(realtime, {"type": "subscribe", "hardwareIds": [A, B]})
        assert await recv_json(realtime) == {"type": "subscribed", "hardwareIds": [A]}
        error: dict[str, Any] = await recv_json(realtime)
        assert error["type"] == "error" and B in error["message"]
        await device_b.publish(f"nxg/{B}/telemetry", '{"temp": 5}')
        await device_a.publish(f"nxg/{A}/telemetry", '{"temp": 6}')
        data = await recv_json(realtime)
        assert data["type"] == "device_data" and data["hardwareId"] == A and data["payload"] == {"temp": 6}
        await realtime.close()

    # ---- MQTT: B's topics are refused, A's granted
    integrator = paho("integrator")
    assert await integrator.connect(stack.broker.mqtt_port, "key", key) == 0
    assert await integrator.subscribe(f"nxg/{B}/telemetry") == [0x80]
    assert await integrator.subscribe("nxg/+/telemetry") == [0x80]
    assert await integrator.subscribe(f"nxg/{A}/telemetry") == [1]
    await device_b.publish(f"nxg/{B}/telemetry", '{"temp": 7}')
    await device_a.publish(f"nxg/{A}/telemetry", '{"temp": 8}')
    assert (await integrator.next_message()).topic == f"nxg/{A}/telemetry"
    assert await integrator.no_message(0.3)
