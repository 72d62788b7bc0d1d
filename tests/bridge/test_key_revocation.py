"""Revoking or rotating a key: refused on new connections at once, and its live REST clients,
`/ws/app`, `/realtime` and MQTT sessions dropped within 1 s, whether the server itself or
another process on the same data directory (the CLI: another core, signals) made the change."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from nxg_mqtt.core import open_core
from tests.bridge.helpers import Stack, expect_closed, recv_json
from tests.mqtt_client import Clients, TestClient


async def open_all(stack: Stack, paho: Clients, key: str) -> tuple[ClientConnection, ClientConnection, TestClient]:
    app = await connect(stack.ws_url(f"/ws/app?api_key={key}"))
    realtime = await connect(stack.ws_url(f"/realtime?api_key={key}"))
    assert (await recv_json(realtime))["type"] == "connected"
    integrator = paho("integrator-" + key[-6:])
    assert await integrator.connect(stack.broker.mqtt_port, "key", key) == 0
    return app, realtime, integrator


@pytest.mark.parametrize(
    ("action", "where"), [("revoke", "rest"), ("rotate", "rest"), ("revoke", "cli"), ("rotate", "cli")]
)
async def test_old_key_is_dropped_everywhere_within_a_second(
    stack: Stack, paho: Clients, action: str, where: str
) -> None:
    created = (await stack.http.post("/api/v1/auth/api-keys", json={"name": "doomed"})).json()
    key, key_id = created["key"], created["id"]
    app, realtime, integrator = await open_all(stack, paho, key)
    started = time.monotonic()
    if where == "rest":
        response = await stack.http.post(f"/api/v1/auth/api-keys/{action}", json={"id": key_id})
        assert response.status_code == 200
    else:
        async with open_core(stack.core.settings) as cli:  # what `nxg-mqtt key revoke|rotate` opens
            if action == "revoke":
                await cli.keys.revoke(key_id, actor="cli")
            else:
                await cli.keys.rotate(key_id, actor="cli")
        started = time.monotonic()
    closes = await asyncio.gather(expect_closed(app, 1.0), expect_closed(realtime, 1.0))
    assert list(closes) == [1008, 1008]
    assert await integrator.wait_disconnected(max(0.05, 1.0 - (time.monotonic() - started)))
    assert time.monotonic() - started < 1.0
    # and refused on every new connection
    async with httpx.AsyncClient(base_url=stack.base, headers={"Authorization": f"Bearer {key}"}) as client:
        assert (await client.get("/api/devices")).status_code == 401
    for path in ("/ws/app", "/realtime"):
        with pytest.raises(InvalidStatus) as refused:
            await connect(stack.ws_url(f"{path}?api_key={key}"))
        assert refused.value.response.status_code == 401
    assert await paho("again").connect(stack.broker.mqtt_port, "key", key) == 4


async def test_revoking_one_key_leaves_the_others_open(stack: Stack, paho: Clients) -> None:
    keep = (await stack.http.post("/api/v1/auth/api-keys", json={"name": "keep"})).json()["key"]
    doomed = (await stack.http.post("/api/v1/auth/api-keys", json={"name": "doomed"})).json()
    app, realtime, integrator = await open_all(stack, paho, keep)
    await stack.http.post("/api/v1/auth/api-keys/revoke", json={"id": doomed["id"]})
    await asyncio.sleep(0.3)
    await realtime.send('{"type": "subscribe", "hardwareIds": []}')
    assert await recv_json(realtime) == {"type": "subscribed", "hardwareIds": []}
    await app.send('{"t": "ping"}')
    assert (await recv_json(app))["t"] == "pong"
    assert not integrator.disconnected.is_set()
    await app.close()
    await realtime.close()
