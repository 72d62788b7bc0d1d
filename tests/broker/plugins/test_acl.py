"""Every ACL denial of PROTOCOL §2, with the other device watching nothing leak."""

from __future__ import annotations

import json
from pathlib import Path

from tests.broker.plugins.helpers import STACK_OVERRIDES, Stack, open_stack
from tests.factories import make_settings


async def test_device_may_not_subscribe_outside_its_command_topic(stack: Stack) -> None:
    device, _ = await stack.device("acl-a", subscribe=False)
    await stack.device("acl-b")
    assert await device.subscribe("nxg/#") == [0x80]
    assert await device.subscribe("nxg/acl-b/cmd") == [0x80]
    assert await device.subscribe("nxg/+/cmd") == [0x80]
    assert await device.subscribe("nxg/acl-a/telemetry") == [0x80]
    assert await device.subscribe("$SYS/#") == [0x80]
    assert await device.subscribe("nxg/acl-a/cmd") == [1]


async def test_device_may_not_publish_to_another_device_or_server_topics(stack: Stack) -> None:
    a, _ = await stack.device("acl-c")
    b, _ = await stack.device("acl-d")
    watcher = await stack.bridge_client()
    retained = await watcher.drain()
    assert {m.topic for m in retained} == {"nxg/acl-c/presence", "nxg/acl-d/presence"}
    await a.publish("nxg/acl-d/telemetry", '{"temp": 1}')  # another device's topic
    await a.publish("nxg/acl-d/cmd", '{"t":"cmd","id":"x","action":"open","params":{}}')
    await a.publish("nxg/acl-c/cmd", '{"t":"cmd","id":"x","action":"open","params":{}}')  # its own cmd
    await a.publish("nxg/acl-c/presence", '{"online": false}')
    assert await b.no_message(0.5), "a device received a command published by another device"
    assert await watcher.no_message(0.3)
    await stack.core.ingest.flush()
    stored = await stack.core.store.messages.query("acl-d")
    assert [m.type.value for m in stored if m.type.value != "presence"] == []
    assert stack.broker.stats["publish_denied"] >= 4


async def test_pairing_session_is_confined(stack: Stack) -> None:
    code = await stack.create_device("acl-e")
    pairing = stack.client("pe")
    assert await pairing.connect(stack.port, "pair", code) == 0
    assert await pairing.subscribe("nxg/#") == [0x80]
    assert await pairing.subscribe("nxg/pair/other") == [0x80]
    assert await pairing.subscribe("nxg/pair/pe") == [1]
    await pairing.publish("nxg/acl-e/telemetry", json.dumps({"temp": 3}))
    await stack.core.ingest.flush()
    assert not [m for m in await stack.core.store.messages.query("acl-e") if m.type.value == "telemetry"]


async def test_anonymous_standalone_broker_keeps_server_topics_closed(tmp_path: Path) -> None:
    async with open_stack(make_settings(tmp_path, **STACK_OVERRIDES, allow_anonymous=True)) as s:
        code = await s.create_device("anon-dev")
        anon = s.client("anon")
        assert await anon.connect(s.port) == 0
        assert await anon.subscribe("$SYS/#") == [0x80]
        assert await anon.subscribe("#") == [1]
        device, _ = await s.device("anon-dev2")
        await anon.drain()
        await anon.publish("nxg/anon-dev2/cmd", '{"t":"cmd","id":"x","action":"open","params":{}}')
        assert await device.no_message(0.3), "anonymous clients may not command devices"
        reply = await s.pair(code)  # a pairing reply carries a token: never to anonymous `#`
        assert reply["t"] == "pair_ok"
        assert not [m for m in await anon.drain() if m.topic.startswith("nxg/pair/")]
