"""Helpers for the seed 003 actions tests: invoke an action, a device paired and online over MQTT."""

from __future__ import annotations

from typing import Any

import httpx

from tests.bridge.helpers import Stack
from tests.mqtt_client import Clients, TestClient, pair_over_mqtt

INVOKE = "/api/v1/actions/invoke/"


async def invoke(
    stack: Stack, action: str, body: dict[str, Any] | None = None, *, client: httpx.AsyncClient | None = None
) -> httpx.Response:
    return await (client or stack.http).post(INVOKE + action, json=body if body is not None else {})


async def ok(stack: Stack, action: str, body: dict[str, Any] | None = None) -> Any:
    """The 200 answer's body (anything else fails the test with the response)."""
    response = await invoke(stack, action, body)
    assert response.status_code == 200, (action, response.status_code, response.text)
    return response.json()


def error_of(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The one error shape of `/api/v1` (README): `{"success":false,"code","error","details"}`."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"success", "code", "error", "details"} and body["success"] is False, body
    assert body["code"] == code, body
    assert isinstance(body["error"], str) and body["error"]
    return dict(body)


async def online_device(stack: Stack, paho: Clients, serial: str) -> tuple[TestClient, str]:
    """A device created, paired and connected over MQTT; the client and its token."""
    code = await stack.create_device(serial)
    reply = await pair_over_mqtt(stack.broker.mqtt_port, code, "p-" + serial)
    device = paho(serial)
    token = str(reply["token"])
    assert await device.connect(stack.broker.mqtt_port, serial, token) == 0
    return device, token


async def key(stack: Stack, role: str, devices: list[str] | None = None) -> str:
    body: dict[str, Any] = {"name": f"{role}-key", "role": role}
    if devices is not None:
        body["devices"] = devices
    created = await stack.http.post("/api/v1/auth/api-keys", json=body)
    assert created.status_code == 201, created.text
    return str(created.json()["key"])
