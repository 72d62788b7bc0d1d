"""Commands through the broker: dispatched at QoS 1, queued while offline, closed by the ack."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from nxg_mqtt.models import CommandStatus
from tests.broker.plugins.helpers import STACK_OVERRIDES, Stack, open_stack
from tests.factories import make_settings


async def test_command_to_online_device_is_acked(stack: Stack) -> None:
    device, _ = await stack.device("cm-a")
    results = await stack.bridge_client("nxg/cm-a/cmd/res")
    command = await stack.core.commands.submit("cm-a", "open", target="turn1", params={"speed": 2}, ref="r1")
    assert command.status is CommandStatus.DISPATCHED
    received = await device.next_message()
    assert received.topic == "nxg/cm-a/cmd" and received.qos == 1
    body = json.loads(received.payload)
    assert body == {"t": "cmd", "id": command.id, "target": "turn1", "action": "open", "params": {"speed": 2}}
    await device.publish("nxg/cm-a/ack", json.dumps({"t": "ack", "id": command.id, "ok": True}))
    statuses = [json.loads((await results.next_message()).payload)["status"] for _ in range(2)]
    assert statuses == ["dispatched", "acked"]
    stored = await stack.core.commands.get(command.id)
    assert stored is not None and stored.status is CommandStatus.ACKED
    # a replayed ack changes nothing
    await device.publish("nxg/cm-a/ack", json.dumps({"t": "ack", "id": command.id, "ok": False}))
    assert await results.no_message(0.3)
    assert stack.core.commands.counters.get("ack_replayed") == 1


async def test_queued_command_delivered_on_reconnect_in_order(stack: Stack) -> None:
    device, token = await stack.device("cm-b")
    device.close()
    first = await stack.core.commands.submit("cm-b", "one")
    second = await stack.core.commands.submit("cm-b", "two")
    assert first.status is CommandStatus.QUEUED and second.status is CommandStatus.QUEUED
    again = stack.client("cm-b")
    assert await again.connect(stack.port, "cm-b", token) == 0
    assert await again.no_message(0.3), "nothing before the device subscribes"
    await again.subscribe("nxg/cm-b/cmd")
    got = [json.loads((await again.next_message()).payload) for _ in range(2)]
    assert [g["action"] for g in got] == ["one", "two"]
    await again.publish("nxg/cm-b/ack", json.dumps({"t": "ack", "id": got[0]["id"], "ok": True}))
    await again.publish("nxg/cm-b/ack", json.dumps({"t": "ack", "id": got[1]["id"], "ok": False, "error": "jam"}))
    one = await stack.core.commands.get(first.id)
    two = await stack.core.commands.get(second.id)
    assert one is not None and one.status is CommandStatus.ACKED
    assert two is not None and two.status is CommandStatus.FAILED and two.error == "jam"


async def test_no_ack_times_out(tmp_path: Path) -> None:
    async with open_stack(make_settings(tmp_path, **STACK_OVERRIDES, command_ack_timeout_s=0.5)) as s:
        device, _ = await s.device("cm-c")
        command = await s.core.commands.submit("cm-c", "open")
        await device.next_message()
        await asyncio.sleep(1.2)
        stored = await s.core.commands.get(command.id)
        assert stored is not None and stored.status is CommandStatus.TIMEOUT


async def test_malformed_ack_is_a_warning(stack: Stack) -> None:
    device, _ = await stack.device("cm-d")
    await device.publish("nxg/cm-d/ack", json.dumps({"id": 5}))
    await stack.core.ingest.flush()
    events = await stack.core.store.messages.query("cm-d")
    assert any(e.body.get("type") == "payload_rejected" for e in events)
