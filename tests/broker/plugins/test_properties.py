"""Device properties over MQTT (PROTOCOL §2): the retained view on `nxg/{S}/prop` with deltas,
reports on `nxg/{S}/prop/set` with compare-and-swap, answers on `nxg/{S}/prop/res`."""

from __future__ import annotations

import json

from tests.broker.plugins.helpers import Stack


async def test_device_reports_with_cas_and_gets_answers(stack: Stack) -> None:
    device, _ = await stack.device("pp-1", subscribe=False)
    assert await device.subscribe("nxg/pp-1/prop/res") == [1]
    set_topic = "nxg/pp-1/prop/set"
    await device.publish(set_topic, json.dumps({"id": "r1", "name": "mode", "value": "eco"}))
    assert await device.next_json("nxg/pp-1/prop/res") == {"id": "r1", "result": "Set", "version": 1}
    await device.publish(set_topic, json.dumps({"id": "r2", "name": "mode", "value": "on", "expectedVersion": 1}))
    assert await device.next_json("nxg/pp-1/prop/res") == {"id": "r2", "result": "Set", "version": 2}
    await device.publish(set_topic, json.dumps({"id": "r3", "name": "mode", "value": "x", "expectedVersion": 1}))
    assert await device.next_json("nxg/pp-1/prop/res") == {"id": "r3", "result": "VersionConflict", "version": 2}
    await device.publish(set_topic, json.dumps({"id": "r4", "name": "gone", "value": 1, "expectedVersion": 3}))
    assert await device.next_json("nxg/pp-1/prop/res") == {"id": "r4", "result": "Deleted"}
    await stack.core.properties.set("pp-1", "secret", 42, protected=True)
    await device.publish(set_topic, json.dumps({"id": "r5", "name": "secret", "value": 0}))
    refused = await device.next_json("nxg/pp-1/prop/res")
    assert refused["result"] == "Refused" and "protected" in refused["error"]
    await device.publish(set_topic, json.dumps({"id": "r6", "name": "mode"}))  # no value
    bad = await device.next_json("nxg/pp-1/prop/res")
    assert (bad["id"], bad["result"]) == ("r6", "Refused") and "value" in bad["error"]
    await device.publish(set_topic, b"not json")
    assert (await device.next_json("nxg/pp-1/prop/res"))["id"] is None
    stored = {p.name: (p.value, p.version, p.protected) for p in await stack.core.store.properties.all("pp-1")}
    assert stored == {"mode": ("on", 2, False), "secret": (42, 1, True)}


async def test_device_view_is_retained_with_deltas_and_hides_protected(stack: Stack) -> None:
    await stack.core.devices.create("pp-2")
    await stack.core.properties.set("pp-2", "interval", 30)
    await stack.core.properties.set("pp-2", "key", "s3cret", protected=True)
    device, _ = await stack.device("pp-3")  # another device: sees nothing of pp-2
    code = (await stack.core.devices.get("pp-2")).code
    reply = await stack.pair(code)
    pp2 = stack.client("pp-2")
    assert await pp2.connect(stack.port, "pp-2", str(reply["token"])) == 0
    assert await pp2.subscribe("nxg/pp-2/prop") == [1]
    first = await pp2.next_message()  # retained: a snapshot, whatever delta it last carried
    assert first.retain and json.loads(first.payload)["props"] == {"interval": {"value": 30, "version": 1}}
    await pp2.drain()  # the snapshot republished at subscribe (the broker's retained store is in memory)
    await stack.core.properties.set("pp-2", "interval", 60, expected=1)
    change = await pp2.next_json("nxg/pp-2/prop")
    assert change == {
        "props": {"interval": {"value": 60, "version": 2}},
        "delta": {"interval": {"value": 60, "version": 2}},
    }
    await stack.core.properties.set("pp-2", "key", "rotated")  # protected: its name never reaches the device
    assert (await pp2.next_json("nxg/pp-2/prop"))["delta"] == {}
    await stack.core.properties.remove("pp-2", "interval")
    assert await pp2.next_json("nxg/pp-2/prop") == {"props": {}, "delta": {"interval": None}}
    # a late subscriber gets the retained snapshot
    watcher = await stack.bridge_client("nxg/pp-2/prop")
    snapshot = await watcher.next_message()
    assert snapshot.retain and json.loads(snapshot.payload)["props"] == {}
    assert await device.no_message(0.3)
