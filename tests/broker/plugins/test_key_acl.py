"""Integrators on raw MQTT (PROTOCOL §2, username `key`): the key's role, scopes and device scope."""

from __future__ import annotations

import asyncio
import json
import time

from tests.broker.plugins.helpers import Stack


async def _key(stack: Stack, devices: list[str] | None, role: str = "user", scopes: list[str] | None = None) -> str:
    _, secret = await stack.core.keys.create("integrator", role, scopes, devices)
    return secret


async def test_scoped_key_reads_only_its_devices_and_no_wildcards(stack: Stack) -> None:
    mine, _ = await stack.device("kacl-a")
    other, _ = await stack.device("kacl-b")
    secret = await _key(stack, ["kacl-a"])
    client = stack.client("integrator-1")
    assert await client.connect(stack.port, "key", secret) == 0
    for channel in ("telemetry", "status", "event", "ack", "presence", "cmd/res", "cmd"):
        assert await client.subscribe(f"nxg/kacl-a/{channel}") == [1], channel
    refused = [
        "nxg/kacl-b/telemetry",  # outside the scope
        "nxg/+/telemetry",  # covers kacl-b: only for an all-devices key
        "nxg/#",
        "#",
        "nxg/kacl-a/#",  # covers manifest and other server-only topics
        "nxg/kacl-a/+",
        "nxg/kacl-a/manifest",
        "nxg/pair/+",
        "$SYS/#",
    ]
    for topic_filter in refused:
        assert await client.subscribe(topic_filter) == [0x80], topic_filter
    assert {m.topic for m in await client.drain()} == {"nxg/kacl-a/presence"}  # retained, its own only
    await other.publish("nxg/kacl-b/telemetry", '{"temp": 2}')
    await mine.publish("nxg/kacl-a/telemetry", '{"temp": 1}')
    received = await client.next_message()
    assert received.topic == "nxg/kacl-a/telemetry"
    assert json.loads(received.payload)["temp"] == 1
    assert await client.no_message(0.4), "a device outside the scope leaked"


async def test_all_devices_key_may_use_the_serial_wildcard(stack: Stack) -> None:
    a, _ = await stack.device("kacl-c")
    secret = await _key(stack, None, role="viewer")
    client = stack.client("integrator-2")
    assert await client.connect(stack.port, "key", secret) == 0
    assert await client.subscribe("nxg/+/telemetry") == [1]
    assert await client.subscribe("nxg/+/manifest") == [0x80]
    assert await client.subscribe("nxg/+/cmd/+") == [0x80]
    assert await client.subscribe("nxg/+/+") == [0x80]
    await a.publish("nxg/kacl-c/telemetry", '{"temp": 3}')
    assert (await client.next_message()).topic == "nxg/kacl-c/telemetry"


async def test_publishing_is_cmd_req_in_scope_with_write_only(stack: Stack) -> None:
    await stack.device("kacl-d")
    await stack.device("kacl-e")
    watcher = await stack.bridge_client("nxg/+/cmd/res")  # a request is consumed by the server
    user = stack.client("integrator-3")
    assert await user.connect(stack.port, "key", await _key(stack, ["kacl-d"])) == 0
    viewer = stack.client("integrator-4")
    assert await viewer.connect(stack.port, "key", await _key(stack, ["kacl-d"], role="viewer")) == 0
    denied = stack.broker.stats["publish_denied"]
    await viewer.publish("nxg/kacl-d/cmd/req", '{"action": "open"}')  # no write:devices
    await user.publish("nxg/kacl-e/cmd/req", '{"action": "open"}')  # outside the scope
    await user.publish("nxg/kacl-d/cmd", '{"t":"cmd","id":"x","action":"open","params":{}}')  # server only
    await user.publish("nxg/kacl-d/telemetry", '{"temp": 9}')  # the device's
    await user.publish("nxg/kacl-d/cmd/req", '{"action": "open"}')
    received = await watcher.next_message()
    assert received.topic == "nxg/kacl-d/cmd/res"  # the one allowed request became a command
    assert {m.topic for m in await watcher.drain()} <= {"nxg/kacl-d/cmd/res"}
    assert stack.broker.stats["publish_denied"] - denied == 4


async def test_revoke_and_rotate_end_key_sessions_within_a_second(stack: Stack) -> None:
    for action in ("revoke", "rotate"):
        key, secret = await stack.core.keys.create("to-" + action)
        client = stack.client(f"integrator-{action}")
        assert await client.connect(stack.port, "key", secret) == 0
        started = time.monotonic()
        if action == "revoke":
            await stack.core.keys.revoke(key.id)
        else:
            _, fresh = await stack.core.keys.rotate(key.id)
            assert await stack.client(f"fresh-{action}").connect(stack.port, "key", fresh) == 0
        assert await client.wait_disconnected(1.0)
        assert time.monotonic() - started < 1.0
        assert await stack.client(f"again-{action}").connect(stack.port, "key", secret) == 4
    await asyncio.sleep(0)


async def test_a_command_request_goes_through_the_command_path(stack: Stack) -> None:
    device, _ = await stack.device("kacl-f")
    _, secret = await stack.core.keys.create("commander", "user", None, ["kacl-f", "kacl-ghost"])
    client = stack.client("integrator-cmd")
    assert await client.connect(stack.port, "key", secret) == 0
    assert await client.subscribe("nxg/kacl-f/cmd/res") == [1]
    # a device that does not exist is refused like another tenant's (seed 002): were it granted,
    # the difference would tell a key which serials another tenant holds
    assert await client.subscribe("nxg/kacl-ghost/cmd/res") == [128]
    await client.publish("nxg/kacl-f/cmd/req", json.dumps({"action": "open", "target": "door1", "ref": "r1"}))
    command = json.loads((await device.next_message()).payload)
    assert command["action"] == "open" and command["target"] == "door1"
    result = json.loads((await client.next_message()).payload)
    assert result["id"] == command["id"] and result["ref"] == "r1" and result["status"] == "dispatched"
    await client.publish("nxg/kacl-f/cmd/req", json.dumps({"target": "door1", "ref": "r2"}))  # no action
    rejected = json.loads((await client.next_message()).payload)
    assert rejected["status"] == "rejected" and rejected["ref"] == "r2" and rejected["id"] is None
    assert rejected["code"] == "INVALID_COMMAND"
    await client.publish("nxg/kacl-ghost/cmd/req", json.dumps({"action": "open"}))  # in scope, not registered
    await client.publish("nxg/kacl-f/cmd/req", b"not json")
    assert json.loads((await client.next_message()).payload)["status"] == "rejected"
    audit = await stack.core.store.audit.recent(10, "kacl-f")
    assert [(e["actor"], e["outcome"]) for e in audit if e["action"] == "command"][-1] == (
        f"key:{(await stack.core.keys.list())[0].id}",
        "ok",
    )
