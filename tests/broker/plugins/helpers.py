"""Helpers for the plugin tests: the embedded broker with NXG's plugins and a real core on port 0,
and device helpers that pair and connect exactly as firmware does."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from nxg_mqtt.broker.embedded import open_broker
from nxg_mqtt.broker.server import NxgBroker
from nxg_mqtt.core import Core, open_core
from nxg_mqtt.services.credentials import format_code
from nxg_mqtt.settings import Settings
from tests.mqtt_client import Clients, TestClient, pair_over_mqtt

# what the plugin stack changes in `make_settings`: a known bridge secret, quicker signals
STACK_OVERRIDES: dict[str, object] = {"internal_secret": "test-secret", "batch_window_ms": 20, "signal_poll_s": 0.1}


@dataclass
class Stack:
    core: Core
    broker: NxgBroker
    clients: Clients = field(default_factory=Clients)

    @property
    def port(self) -> int:
        return self.broker.mqtt_port

    def client(self, client_id: str, clean_session: bool = True) -> TestClient:
        return self.clients(client_id, clean_session=clean_session)

    async def create_device(self, serial: str) -> str:
        """Register a device; returns its formatted connection code."""
        device = await self.core.devices.create(serial)
        return format_code(device.code)

    async def pair(self, code: str, client_id: str | None = None) -> dict[str, object]:
        """Pair over MQTT exactly as firmware does; returns the reply object."""
        client_id = client_id or "pair-" + uuid.uuid4().hex[:8]
        return await pair_over_mqtt(self.port, code, client_id, json.dumps({"t": "pair", "code": code}))

    async def device(self, serial: str, *, subscribe: bool = True, keepalive: int = 30) -> tuple[TestClient, str]:
        """A registered, paired, connected device (subscribed to its commands)."""
        code = await self.create_device(serial)
        reply = await self.pair(code)
        token = str(reply["token"])
        client = self.client(serial)
        assert await client.connect(self.port, serial, token, keepalive=keepalive) == 0
        if subscribe:
            assert await client.subscribe(f"nxg/{serial}/cmd") == [1]
        return client, token

    async def bridge_client(self, topic: str = "nxg/#") -> TestClient:
        client = self.client("bridge-" + uuid.uuid4().hex[:6])
        assert await client.connect(self.port, "bridge", self.core.settings.internal_secret) == 0
        assert await client.subscribe(topic) == [1]
        return client


@asynccontextmanager
async def open_stack(settings: Settings) -> AsyncIterator[Stack]:
    """Core and embedded broker; every client made through the stack is closed before they stop."""
    async with open_core(settings, serve=True) as core, open_broker(core) as broker:
        stack = Stack(core, broker)
        try:
            yield stack
        finally:
            await stack.clients.close_all()
