"""A burst of authenticated CONNECTs while a device streams telemetry: every login, presence
write and history batch succeeds (no "database is locked"), and no plugin hook fails."""

from __future__ import annotations

import asyncio
import json

from nxg_mqtt.models import MessageType
from nxg_mqtt.mqtt.codec import encode_publish, encode_subscribe
from tests.broker.broker_clients import RawClient
from tests.broker.plugins.helpers import Stack

DEVICES = 400


async def test_connect_storm_during_telemetry(stack: Stack) -> None:
    tokens: dict[str, str] = {}
    for n in range(DEVICES):
        device = await stack.core.devices.create(f"storm-{n:03d}")
        tokens[device.serial] = (await stack.core.devices.pair(device.code, "test")).token
    streamer, _ = await stack.device("streamer")
    stop = asyncio.Event()

    async def stream() -> int:
        sent = 0
        while not stop.is_set():
            await streamer.publish("nxg/streamer/telemetry", json.dumps({"n": sent}), qos=1)
            sent += 1
        return sent

    async def login(serial: str) -> RawClient:
        client = await RawClient.open(stack.port)
        connack = await client.connect(serial, username=serial, password=tokens[serial].encode(), keep_alive=60)
        assert connack.return_code == 0
        client.send(encode_subscribe(1, [(f"nxg/{serial}/cmd", 1)]))
        await client.recv()  # SUBACK
        client.send(encode_publish(f"nxg/{serial}/telemetry", b'{"boot":1}', 0, False))
        return client

    streaming = asyncio.create_task(stream())
    clients = await asyncio.gather(*(login(serial) for serial in tokens))
    stop.set()
    sent = await streaming
    await asyncio.sleep(0.2)
    await stack.core.ingest.flush()

    assert stack.broker.stats["plugin_errors"] == 0
    offline = [s for s in tokens if not (await stack.core.devices.get(s)).online]
    assert offline == []
    stored = await stack.core.store.messages.query(type_=MessageType.TELEMETRY, limit=5000)
    assert sum(1 for e in stored if e.serial == "streamer") == sent
    assert {e.serial for e in stored} >= set(tokens)
    for client in clients:
        await client.close()
