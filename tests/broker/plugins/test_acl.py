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


async def test_property_and_proxy_topics(stack: Stack) -> None:
    """PROTOCOL §2: a device subscribes only its own prop, prop/res and http/req, publishes only its
    own prop/set and http/res; nobody but the server publishes prop, prop/res or http/req."""
    a, _ = await stack.device("acl-p", subscribe=False)
    b, _ = await stack.device("acl-q", subscribe=False)
    for leaf in ("prop", "prop/res", "http/req"):
        assert await a.subscribe(f"nxg/acl-p/{leaf}") == [1], leaf
        assert await a.subscribe(f"nxg/acl-q/{leaf}") == [0x80], leaf
    assert await a.subscribe("nxg/acl-p/prop/set") == [0x80]
    assert await a.subscribe("nxg/acl-p/http/res") == [0x80]
    assert await a.subscribe("nxg/acl-p/prop/#") == [0x80]
    assert await b.subscribe("nxg/acl-q/prop") == [1]
    assert await b.subscribe("nxg/acl-q/http/req") == [1]
    await b.drain()
    denied = stack.broker.stats["publish_denied"]
    await a.publish("nxg/acl-q/prop", '{"props":{}}')  # server-only, and another device's
    await a.publish("nxg/acl-p/prop", '{"props":{"x":{"value":1,"version":9}}}')  # server-only
    await a.publish("nxg/acl-p/prop/res", '{"id":"x","result":"Set"}')
    await a.publish("nxg/acl-q/http/req", '{"id":"x","method":"GET","path":"/","headers":{},"body_b64":""}')
    await a.publish("nxg/acl-q/prop/set", '{"id":"x","name":"n","value":1}')  # another device's
    assert await b.no_message(0.5)
    assert stack.broker.stats["publish_denied"] == denied + 5
    assert await stack.core.store.properties.all("acl-q") == []
