"""The embedded broker with NXG's plugins and a real core on port 0, plus device helpers."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nxg_mqtt.broker.embedded import open_broker
from nxg_mqtt.broker.server import NxgBroker
from nxg_mqtt.core import Core, open_core
from nxg_mqtt.services.credentials import format_code
from nxg_mqtt.settings import Settings
from tests.mqtt_client import TestClient


@dataclass
class Stack:
    core: Core
    broker: NxgBroker
    clients: list[TestClient]

    @property
    def port(self) -> int:
        return self.broker.mqtt_port

    def client(self, client_id: str, clean_session: bool = True) -> TestClient:
        client = TestClient(client_id, clean_session=clean_session)
        self.clients.append(client)
        return client

    async def close_clients(self) -> None:
        # paho's network thread notices a stop only once a second: stop them all at once
        await asyncio.gather(*(asyncio.to_thread(c.close) for c in self.clients))

    async def create_device(self, serial: str) -> str:
        """Register a device; returns its formatted connection code."""
        device = await self.core.devices.create(serial)
        return format_code(device.code)

    async def pair(self, code: str, client_id: str | None = None) -> dict[str, object]:
        """Pair over MQTT exactly as firmware does; returns the reply object."""
        client_id = client_id or "pair-" + uuid.uuid4().hex[:8]
        pairing = self.client(client_id)
        assert await pairing.connect(self.port, "pair", code) == 0
        assert await pairing.subscribe(f"nxg/pair/{client_id}") == [1]
        await pairing.publish(f"nxg/pair/{client_id}/req", json.dumps({"t": "pair", "code": code}))
        reply = await pairing.next_message()
        assert reply.topic == f"nxg/pair/{client_id}"
        pairing.close()
        result: dict[str, object] = json.loads(reply.payload)
        return result

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


def stack_settings(tmp_path: Path, **changes: object) -> Settings:
    base = Settings(
        data_dir=tmp_path,
        host="127.0.0.1",
        mqtt_port=0,
        ws_port=None,
        http_port=0,
        internal_secret="test-secret",
        batch_window_ms=20,
        signal_poll_s=0.1,
    )
    return base.with_overrides(**changes)


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with open_core(stack_settings(tmp_path), serve=True) as core, open_broker(core) as broker:
        s = Stack(core, broker, [])
        yield s
        await s.close_clients()
