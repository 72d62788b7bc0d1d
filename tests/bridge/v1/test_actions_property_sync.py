"""Properties shared by an app (seed 003's actions) and a real MQTT device, both ways, with a
compare-and-swap conflict on each side and a protected property the device cannot change."""

from __future__ import annotations

import json

from tests.bridge.helpers import Stack
from tests.bridge.v1.helpers import ok, online_device
from tests.mqtt_client import Clients


async def test_app_and_device_share_properties_without_lost_updates(stack: Stack, paho: Clients) -> None:
    device, _ = await online_device(stack, paho, "sync-1")
    assert await device.subscribe("nxg/sync-1/prop") == [1]
    assert await device.subscribe("nxg/sync-1/prop/res") == [1]
    assert await device.next_json("nxg/sync-1/prop") == {"props": {}}  # the snapshot at subscribe

    # app → device
    assert await ok(stack, "devices_SetProperty", {"deviceId": "sync-1", "name": "interval", "value": 30}) == {
        "result": "Set"
    }
    pushed = await device.next_json("nxg/sync-1/prop")
    assert pushed["delta"] == {"interval": {"value": 30, "version": 1}}

    # device → app, CAS on the version it was given
    report = {"id": "d1", "name": "interval", "value": 45, "expectedVersion": 1}
    await device.publish("nxg/sync-1/prop/set", json.dumps(report))
    assert await device.next_json("nxg/sync-1/prop/res") == {"id": "d1", "result": "Set", "version": 2}
    got = await ok(stack, "devices_GetProperty", {"deviceId": "sync-1", "name": "interval"})
    assert (got["value"], got["version"], got["protected"]) == (45, 2, False)

    # the app still holds version 1: its write is refused, nothing is overwritten
    stale = {"deviceId": "sync-1", "name": "interval", "value": 10, "expectedVersion": 1}
    assert await ok(stack, "devices_SetProperty", stale) == {"result": "VersionConflict", "currentVersion": 2}
    # the app retries on the current version; the device, still on version 2, now conflicts
    assert await ok(stack, "devices_SetProperty", {**stale, "expectedVersion": 2}) == {"result": "Set"}
    assert (await device.next_json("nxg/sync-1/prop"))["delta"] == {"interval": {"value": 10, "version": 3}}
    await device.publish("nxg/sync-1/prop/set", json.dumps({**report, "id": "d2", "value": 50, "expectedVersion": 2}))
    assert await device.next_json("nxg/sync-1/prop/res") == {"id": "d2", "result": "VersionConflict", "version": 3}
    got = await ok(stack, "devices_GetProperty", {"deviceId": "sync-1", "name": "interval"})
    assert (got["value"], got["version"]) == (10, 3)

    # protected: the app's alone
    await ok(
        stack, "devices_SetProperty", {"deviceId": "sync-1", "name": "channel", "value": "beta", "protected": True}
    )
    await device.publish("nxg/sync-1/prop/set", json.dumps({"id": "d3", "name": "channel", "value": "dev"}))
    refused = await device.next_json("nxg/sync-1/prop/res")
    assert (refused["id"], refused["result"]) == ("d3", "Refused")
    got = await ok(stack, "devices_GetProperty", {"deviceId": "sync-1", "name": "channel"})
    assert (got["value"], got["version"], got["protected"]) == ("beta", 1, True)
    props = (await ok(stack, "devices_QueryProperties", {"deviceId": "sync-1"}))["properties"]
    assert {name: p["version"] for name, p in props.items()} == {"interval": 3, "channel": 1}
