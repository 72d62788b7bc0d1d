"""Helpers for the bridge tests: the whole stack in-process on port 0, and clients to drive it."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bridge.server import BridgeServer, open_bridge
from nxg_mqtt.broker.embedded import open_broker
from nxg_mqtt.broker.server import NxgBroker
from nxg_mqtt.cli import ensure_admin_password
from nxg_mqtt.core import Core, open_core
from nxg_mqtt.settings import Settings

# re-exported for tests written against them here: both live in tests.factories
from tests.factories import PASSWORD as PASSWORD
from tests.factories import make_settings as make_settings
from tests.mqtt_client import wait_for

WAIT_S = 5.0


@dataclass
class Stack:
    core: Core
    broker: NxgBroker
    bridge: BridgeServer
    http: httpx.AsyncClient

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.bridge.http_port}"

    def ws_url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.bridge.http_port}{path}"

    async def app_socket(self, **kwargs: Any) -> ClientConnection:
        return await connect(self.ws_url(f"/ws/app?token={PASSWORD}"), **kwargs)

    async def gateway(self) -> ClientConnection:
        return await connect(self.ws_url("/ws/gateway"))

    async def create_device(self, serial: str) -> str:
        """Register a device through the API; returns its connection code."""
        response = await self.http.post("/api/devices", json={"serial": serial})
        assert response.status_code == 201, response.text
        return str(response.json()["code"])

    async def stop_broker(self) -> None:
        """Close the embedded broker and wait (bounded) until the bridge's link has seen it go."""
        await self.broker.close()
        assert await wait_for(lambda: not self.bridge.state.link.connected)


@asynccontextmanager
async def open_stack(settings: Settings) -> AsyncIterator[Stack]:
    async with open_core(settings, serve=True) as core:
        await ensure_admin_password(core)
        async with (
            open_broker(core) as broker,
            open_bridge(settings, core, "127.0.0.1", broker.mqtt_port) as bridge,
            httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{bridge.http_port}",
                headers={"Authorization": f"Bearer {PASSWORD}"},
                timeout=WAIT_S,
            ) as http,
        ):
            yield Stack(core, broker, bridge, http)


async def recv_json(ws: ClientConnection, within_s: float = WAIT_S) -> dict[str, Any]:
    value = json.loads(await asyncio.wait_for(ws.recv(), within_s))
    assert isinstance(value, dict)
    return value


async def recv_until(ws: ClientConnection, t: str, within_s: float = WAIT_S, **match: Any) -> dict[str, Any]:
    """The first message of type `t` (with the given field values); others are skipped."""
    async with asyncio.timeout(within_s):
        while True:
            value = await recv_json(ws, within_s)
            if value.get("t") == t and all(value.get(k) == v for k, v in match.items()):
                return value


async def history_when(
    stack: Stack,
    params: dict[str, str | int],
    ready: Callable[[list[dict[str, Any]]], bool],
    within_s: float = WAIT_S,
) -> dict[str, Any]:
    """`GET /api/history` with `params` once `ready(messages)` holds, or as it is after `within_s`:
    on Mosquitto the serving process's worker may store a message a moment after apps see it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        await stack.core.ingest.flush()
        response = await stack.http.get("/api/history", params=params)
        assert response.status_code == 200, response.text
        page: dict[str, Any] = response.json()
        if ready(page["messages"]) or loop.time() >= deadline:
            return page
        await asyncio.sleep(0.1)


async def send_json(ws: ClientConnection, value: dict[str, Any]) -> None:
    await ws.send(json.dumps(value))


async def pair_gateway(stack: Stack, serial: str) -> tuple[ClientConnection, str]:
    """A WebSocket device, created and paired; returns the open socket and its token."""
    code = await stack.create_device(serial)
    ws = await stack.gateway()
    await send_json(ws, {"t": "pair", "code": code})
    reply = await recv_until(ws, "pair_ok")
    assert reply["serial"] == serial
    return ws, str(reply["token"])


async def expect_closed(ws: ClientConnection, within_s: float = WAIT_S) -> int | None:
    """Read until the server closes the socket; its close code."""
    async with asyncio.timeout(within_s):
        with contextlib.suppress(ConnectionClosed):
            while True:
                await ws.recv()
    return ws.close_code


async def still_open(ws: ClientConnection) -> None:
    """The socket answers a ping message (so an earlier error did not close it)."""
    await send_json(ws, {"t": "ping"})
    assert (await recv_until(ws, "pong"))["t"] == "pong"
