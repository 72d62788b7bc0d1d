"""Seed 002's devices: register → log in with the secret (MQTT and `/ws/gateway`), list and get
with the reported firmware, rotate (old secret refused, live session dropped within 1 s), key
history, revoke (no login by token or code, commands DEVICE_REVOKED), and the error bodies."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx

from tests.bridge.helpers import PASSWORD, Stack, recv_json, send_json
from tests.mqtt_client import Clients, pair_over_mqtt

ADMIN = {"Authorization": f"Bearer {PASSWORD}"}


def failed(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False and body["code"] == code and body["error"] and isinstance(body["details"], list)
    return dict(body)


async def register(stack: Stack, **body: Any) -> dict[str, Any]:
    response = await stack.http.post("/api/v1/device/register", json={"device_type": "esp32", **body})
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_register_then_log_in_with_the_secret_over_mqtt_and_the_gateway(stack: Stack, paho: Clients) -> None:
    reg = await register(stack)
    assert reg["status"] == "registered" and reg["tenant_id"] == "default" and reg["initial_sequence"] == 0
    assert reg["api_base_url"] == f"{stack.base}/api/v1" and reg["home_id"] is None and reg["room_id"] is None
    serial, secret = reg["device_id"], reg["device_secret"]
    assert serial.startswith("NXG-") and secret.startswith("nxgt_")
    device = paho(serial)
    assert await device.connect(stack.broker.mqtt_port, serial, secret) == 0
    await device.publish(f"nxg/{serial}/status", json.dumps({"firmware": "1.2.3", "light": "on"}))
    ws = await stack.gateway()
    await send_json(ws, {"t": "auth", "token": secret})
    assert await recv_json(ws) == {"t": "auth_ok", "serial": serial}
    await ws.close()
    await stack.core.ingest.flush()
    listed = (await stack.http.get("/api/v1/devices")).json()
    assert listed["count"] == 1
    (entry,) = listed["devices"]
    assert {k: entry[k] for k in ("id", "device_type", "home_id", "room_id", "firmware", "revoked")} == {
        "id": serial,
        "device_type": "esp32",
        "home_id": None,
        "room_id": None,
        "firmware": "1.2.3",
        "revoked": False,
    }
    assert entry["last_seen"].endswith("Z")
    one = (await stack.http.get(f"/api/v1/devices/{serial}")).json()
    assert one["id"] == serial and one["key_version"] == 1 and one["firmware"] == "1.2.3"
    # its connection code still exists, for re-pairing like any device
    code = (await stack.http.get(f"/api/devices/{serial}/code")).json()["code"]
    assert (await pair_over_mqtt(stack.broker.mqtt_port, code, "p-reg"))["serial"] == serial


async def test_a_device_that_never_reported_firmware_is_0_0_0(stack: Stack) -> None:
    reg = await register(stack)
    assert (await stack.http.get(f"/api/v1/devices/{reg['device_id']}")).json()["firmware"] == "0.0.0"


async def test_rotate_refuses_the_old_secret_at_once_and_drops_the_session_within_1s(
    stack: Stack, paho: Clients
) -> None:
    reg = await register(stack)
    serial, old = reg["device_id"], reg["device_secret"]
    device = paho(serial)
    assert await device.connect(stack.broker.mqtt_port, serial, old) == 0
    ws = await stack.gateway()
    await send_json(ws, {"t": "auth", "token": old})
    assert (await recv_json(ws))["t"] == "auth_ok"
    started = time.monotonic()
    response = await stack.http.post(f"/api/v1/device/{serial}/rotate-secret")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["device_id"] == serial and body["key_version"] == 2 and body["new_secret"] != old
    assert await device.wait_disconnected(1.0)
    await asyncio.wait_for(ws.wait_closed(), 1.0)
    assert time.monotonic() - started < 1.0
    assert await paho(serial).connect(stack.broker.mqtt_port, serial, old) == 5
    assert await paho(serial).connect(stack.broker.mqtt_port, serial, body["new_secret"]) == 0
    history = (await stack.http.get(f"/api/v1/device/{serial}/key-history")).json()
    assert history["device_id"] == serial
    assert [(k["key_version"], k["active"]) for k in history["keys"]] == [(1, False), (2, True)]
    assert (
        history["keys"][0]["reason"] == "rotated"
        and history["keys"][0]["retired_at"] >= history["keys"][0]["created_at"]
    )
    assert "secret" not in json.dumps(history).replace("rotate", "")


async def test_revoke_ends_every_way_in_and_commands_are_device_revoked(stack: Stack, paho: Clients) -> None:
    reg = await register(stack)
    serial, secret = reg["device_id"], reg["device_secret"]
    code = (await stack.http.get(f"/api/devices/{serial}/code")).json()["code"]
    device = paho(serial)
    assert await device.connect(stack.broker.mqtt_port, serial, secret) == 0
    response = await stack.http.post(f"/api/v1/device/{serial}/revoke")
    assert response.status_code == 200 and response.json() == {
        "status": "revoked",
        "device_id": serial,
        "revoked": True,
    }
    assert await device.wait_disconnected(1.0)
    assert await paho(serial).connect(stack.broker.mqtt_port, serial, secret) == 5
    assert await paho("p-revoked").connect(stack.broker.mqtt_port, "pair", code) == 4
    ws = await stack.gateway()
    await send_json(ws, {"t": "auth", "token": secret})
    assert (await recv_json(ws))["t"] == "auth_reset_required"
    await ws.close()
    ws = await stack.gateway()
    await send_json(ws, {"t": "pair", "code": code})
    assert (await recv_json(ws))["t"] == "pair_error"
    await ws.close()
    failed(await stack.http.post(f"/api/v1/device/{serial}/command", json={"action": "x"}), 403, "DEVICE_REVOKED")
    failed(await stack.http.post(f"/api/v1/device/{serial}/rotate-secret"), 409, "DEVICE_REVOKED")
    assert (await stack.http.get(f"/api/v1/devices/{serial}")).json()["revoked"] is True
    again = await stack.http.post(f"/api/v1/device/{serial}/revoke")  # idempotent
    assert again.status_code == 200 and again.json()["revoked"] is True


async def test_register_places_the_device_in_a_home_and_room(stack: Stack) -> None:
    home = (await stack.http.post("/api/v1/homes", json={"home_name": "H", "timezone": "Europe/Paris"})).json()["id"]
    room = (await stack.http.post(f"/api/v1/homes/{home}/rooms", json={"name": "Kitchen"})).json()["id"]
    reg = await register(stack, room_id=room)
    assert reg["home_id"] == home and reg["room_id"] == room
    other = (await stack.http.post("/api/v1/homes", json={"home_name": "Other"})).json()["id"]
    failed(
        await stack.http.post(
            "/api/v1/device/register", json={"device_type": "esp32", "home_id": other, "room_id": room}
        ),
        400,
        "INVALID",
    )
    failed(
        await stack.http.post("/api/v1/device/register", json={"device_type": "esp32", "home_id": "nope"}),
        404,
        "HOME_NOT_FOUND",
    )
    failed(
        await stack.http.post("/api/v1/device/register", json={"device_type": "esp32", "room_id": "nope"}),
        404,
        "ROOM_NOT_FOUND",
    )


async def test_error_bodies(stack: Stack) -> None:
    failed(await stack.http.post("/api/v1/device/register", json={}), 400, "INVALID")
    failed(await stack.http.post("/api/v1/device/register", json={"device_type": "a b"}), 400, "INVALID")
    failed(await stack.http.post("/api/v1/device/register", content=b"[1]"), 400, "INVALID")
    anonymous = httpx.AsyncClient(base_url=stack.base)
    async with anonymous:
        failed(await anonymous.get("/api/v1/devices"), 401, "UNAUTHORIZED")
        failed(await anonymous.post("/api/v1/device/register", json={"device_type": "esp32"}), 401, "UNAUTHORIZED")
    viewer = (await stack.http.post("/api/v1/auth/api-keys", json={"name": "v", "role": "viewer"})).json()["key"]
    reg = await register(stack)
    as_viewer = {"Authorization": f"Bearer {viewer}"}
    failed(
        await stack.http.post("/api/v1/device/register", json={"device_type": "e"}, headers=as_viewer), 403, "FORBIDDEN"
    )
    for path in ("rotate-secret", "revoke"):
        failed(await stack.http.post(f"/api/v1/device/{reg['device_id']}/{path}", headers=as_viewer), 403, "FORBIDDEN")
    failed(await stack.http.get(f"/api/v1/device/{reg['device_id']}/key-history", headers=as_viewer), 403, "FORBIDDEN")
    assert (await stack.http.get("/api/v1/devices", headers=as_viewer)).json()["count"] == 1
    for path in ("rotate-secret", "revoke"):
        failed(await stack.http.post(f"/api/v1/device/NXG-NONE/{path}"), 404, "DEVICE_NOT_FOUND")
    failed(await stack.http.get("/api/v1/device/NXG-NONE/key-history"), 404, "DEVICE_NOT_FOUND")
    failed(await stack.http.get("/api/v1/devices/NXG-NONE"), 404, "DEVICE_NOT_FOUND")
    # a key limited to some devices sees only those, and cannot register
    limited = (
        await stack.http.post("/api/v1/auth/api-keys", json={"name": "l", "role": "admin", "devices": ["other"]})
    ).json()["key"]
    as_limited = {"Authorization": f"Bearer {limited}"}
    assert (await stack.http.get("/api/v1/devices", headers=as_limited)).json() == {"devices": [], "count": 0}
    failed(await stack.http.get(f"/api/v1/devices/{reg['device_id']}", headers=as_limited), 404, "DEVICE_NOT_FOUND")
    failed(
        await stack.http.post("/api/v1/device/register", json={"device_type": "e"}, headers=as_limited),
        403,
        "FORBIDDEN",
    )
