"""Manifests over every way in (REST, MQTT `nxg/{S}/manifest`, `/ws/gateway`), the capability
registry, seed 003's devices_QueryCommands, and `/ws/app` and raw `nxg/{S}/cmd/req` commands
refused with the PROTOCOL §4 codes."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from nxg_mqtt.topics import Channel, device_topic
from tests.bridge.helpers import Stack, pair_gateway, recv_json, recv_until, send_json
from tests.mqtt_client import Clients, pair_over_mqtt, wait_for

LIGHT = {
    "action": "light_on",
    "description": "Turn light on",
    "category": "light",
    "targets": ["l1"],
    "paramSchema": {"type": "object", "properties": {"brightness": {"type": "integer", "maximum": 100}}},
    "outputSchema": {"type": "object"},
}
UNLOCK = {"action": "unlock", "safetyClass": "critical"}
MANIFEST = {"capabilities": [LIGHT, UNLOCK]}


async def test_rest_manifest_lifecycle(stack: Stack) -> None:
    await stack.create_device("d1")
    missing = await stack.http.get("/api/v1/devices/d1/manifest")
    assert missing.status_code == 404 and missing.json()["code"] == "MANIFEST_NOT_FOUND"
    put_first = await stack.http.put("/api/v1/devices/d1/manifest", json=MANIFEST)
    assert put_first.status_code == 404 and put_first.json()["code"] == "MANIFEST_NOT_FOUND"
    created = await stack.http.post("/api/v1/devices/d1/manifest", json=MANIFEST)
    assert created.status_code == 201
    body = created.json()
    assert (body["deviceId"], body["tenantId"], body["version"]) == ("d1", "default", 1)
    assert body["capabilities"][0] == {"id": 1, **LIGHT, "safetyClass": "normal", "supportsDryRun": False}
    assert (await stack.http.post("/api/v1/devices/d1/manifest", json=MANIFEST)).status_code == 409
    updated = await stack.http.put("/api/v1/devices/d1/manifest", json={"capabilities": [LIGHT]})
    assert updated.status_code == 200 and updated.json()["version"] == 2
    current = (await stack.http.get("/api/v1/devices/d1/manifest")).json()
    assert current["version"] == 2 and current["versions"] == [1, 2] and len(current["capabilities"]) == 1
    old = (await stack.http.get("/api/v1/devices/d1/manifest", params={"version": 1})).json()
    assert [c["action"] for c in old["capabilities"]] == ["light_on", "unlock"]
    bad = await stack.http.put(
        "/api/v1/devices/d1/manifest", json={"capabilities": [{"action": "x", "paramSchema": {"type": "int"}}]}
    )
    assert bad.status_code == 400 and bad.json()["code"] == "MANIFEST_INVALID"
    assert bad.json()["details"][0]["path"].startswith("$.capabilities[0].paramSchema")
    big = {"capabilities": [{"action": "x", "description": "y" * 70_000}]}
    assert (await stack.http.put("/api/v1/devices/d1/manifest", json=big)).status_code == 400
    assert (await stack.http.post("/api/v1/devices/ghost/manifest", json=MANIFEST)).json()["code"] == "DEVICE_NOT_FOUND"


async def test_registry_and_query_commands(stack: Stack) -> None:
    await stack.create_device("d1")
    await stack.http.post(
        "/api/v1/devices/d1/manifest", json={"capabilities": [{"action": "garage_open", "category": "door"}, LIGHT]}
    )
    capabilities = (await stack.http.get("/api/v1/manifest/capabilities")).json()["capabilities"]
    actions = [c["action"] for c in capabilities]
    assert "light_on" in actions and "lock" in actions and "garage_open" in actions and capabilities[0]["id"] == 1
    categories = (await stack.http.get("/api/v1/manifest/types")).json()["categories"]
    assert categories["door"] == ["garage_open"] and "light_off" in categories["light"]
    queried = await stack.http.post("/api/v1/actions/invoke/devices_QueryCommands", json={"deviceId": "d1"})
    assert queried.status_code == 200
    commands = queried.json()["manifest"]["commands"]
    assert commands[0] == {"name": "garage_open", "category": "door"}
    assert commands[1] == {
        "name": "light_on",
        "description": "Turn light on",
        "category": "light",
        "input": LIGHT["paramSchema"],
        "output": LIGHT["outputSchema"],
    }
    await stack.create_device("d2")
    empty = await stack.http.post("/api/v1/actions/invoke/devices_QueryCommands", json={"deviceId": "d2"})
    assert empty.json() == {"manifest": {"commands": []}}
    ghost = await stack.http.post("/api/v1/actions/invoke/devices_QueryCommands", json={"deviceId": "ghost"})
    assert ghost.status_code == 404


async def mqtt_device(stack: Stack, paho: Clients, serial: str) -> Any:
    code = await stack.create_device(serial)
    reply = await pair_over_mqtt(stack.broker.mqtt_port, code, "boot-" + serial)
    device = paho(serial)
    assert await device.connect(stack.broker.mqtt_port, serial, reply["token"]) == 0
    return device


async def test_a_device_publishes_its_manifest_and_a_bad_one_is_a_warning(stack: Stack, paho: Clients) -> None:
    device = await mqtt_device(stack, paho, "m1")
    watcher = paho("watcher")
    assert await watcher.connect(stack.broker.mqtt_port, "bridge", stack.core.settings.internal_secret) == 0
    await watcher.subscribe("nxg/m1/event")
    await device.publish("nxg/m1/manifest", json.dumps(MANIFEST), retain=True)
    assert await wait_for(lambda: stack.core.manifests._compiled.get("m1") is not None)
    got = (await stack.http.get("/api/v1/devices/m1/manifest")).json()
    assert got["version"] == 1 and [c["action"] for c in got["capabilities"]] == ["light_on", "unlock"]
    await device.publish("nxg/m1/manifest", json.dumps(MANIFEST))  # again at boot: no new version
    await device.publish("nxg/m1/manifest", '{"capabilities":[{"action":"a","outputSchema":{"type":5}}]}')
    warning = json.loads((await watcher.next_message()).payload)
    assert warning["severity"] == "Warning" and "outputSchema" in warning["body"]["error"]
    assert (await stack.http.get("/api/v1/devices/m1/manifest")).json()["versions"] == [1]


async def test_a_websocket_device_sends_its_manifest(stack: Stack) -> None:
    ws, _ = await pair_gateway(stack, "w1")
    await send_json(ws, {"t": "manifest", "capabilities": [{"action": "bad", "paramSchema": {"required": 3}}]})
    error = await recv_until(ws, "error")
    assert "paramSchema" in error["error"]
    await send_json(ws, {"t": "manifest", "capabilities": [UNLOCK]})
    for _ in range(100):
        response = await stack.http.get("/api/v1/devices/w1/manifest")
        if response.status_code == 200:
            break
        await asyncio.sleep(0.05)
    assert response.json()["capabilities"][0]["action"] == "unlock"
    await ws.close()


APP_REJECTIONS: list[tuple[dict[str, Any], str]] = [
    ({"action": "light_off"}, "ACTION_NOT_IN_MANIFEST"),
    ({"action": "light_on", "target": "l2"}, "ACTION_NOT_IN_MANIFEST"),
    ({"action": "light_on", "params": {"brightness": 500}}, "PARAMS_INVALID"),
    ({"action": "_reboot"}, "RESTRICTED_ACTION"),
    ({"action": "unlock"}, "DRY_RUN_REQUIRED"),
]


async def test_ws_app_commands_are_refused_with_the_codes(stack: Stack) -> None:
    await stack.create_device("d1")
    await stack.http.post("/api/v1/devices/d1/manifest", json=MANIFEST)
    app = await stack.app_socket()
    for index, (request, code) in enumerate(APP_REJECTIONS):
        await send_json(app, {"t": "cmd", "serial": "d1", "ref": index, **request})
        reply = await recv_until(app, "error")
        assert reply["code"] == code and reply["ref"] == index, reply
        if code == "PARAMS_INVALID":
            assert reply["details"] == [{"path": "$.brightness", "message": "500 is greater than the maximum of 100"}]
        if code == "DRY_RUN_REQUIRED":
            token = reply["dry_run_token"]
    await send_json(app, {"t": "cmd", "serial": "ghost", "action": "x", "ref": "g"})
    assert (await recv_until(app, "error"))["code"] == "DEVICE_NOT_FOUND"
    confirmed = await stack.http.post("/api/v1/device/d1/command/confirm", json={"dry_run_token": token})
    assert confirmed.status_code == 202
    await send_json(app, {"t": "cmd", "serial": "d1", "action": "light_on", "params": {"brightness": 5}, "ref": "ok"})
    assert (await recv_json(app))["t"] in ("cmd_accepted", "cmd")
    await app.close()


async def test_raw_mqtt_command_requests(stack: Stack, paho: Clients) -> None:
    device = await mqtt_device(stack, paho, "r1")
    assert await device.subscribe(device_topic("r1", Channel.CMD)) == [1]
    await stack.http.post("/api/v1/devices/r1/manifest", json=MANIFEST)
    integrator = paho("integrator")
    assert await integrator.connect(stack.broker.mqtt_port, "bridge", stack.core.settings.internal_secret) == 0
    await integrator.subscribe("nxg/r1/cmd/res")
    requests: list[tuple[dict[str, Any], str]] = [
        ({"action": "light_off", "ref": "a"}, "ACTION_NOT_IN_MANIFEST"),
        ({"action": "light_on", "params": {"brightness": 101}, "ref": "b"}, "PARAMS_INVALID"),
        ({"action": "_reboot", "ref": "c"}, "RESTRICTED_ACTION"),
        ({"action": "unlock", "ref": "d"}, "DRY_RUN_REQUIRED"),
        ({"action": 5, "ref": "e"}, "INVALID_COMMAND"),
    ]
    for request, code in requests:
        await integrator.publish("nxg/r1/cmd/req", json.dumps(request))
        reply = json.loads((await integrator.next_message()).payload)
        assert (reply["status"], reply["code"], reply["ref"], reply["id"]) == ("rejected", code, request["ref"], None)
    await integrator.publish("nxg/ghost/cmd/req", json.dumps({"action": "x", "ref": "g"}))
    await integrator.publish(
        "nxg/r1/cmd/req", json.dumps({"action": "light_on", "target": "l1", "params": {"brightness": 3}, "ref": "ok"})
    )
    dispatched = json.loads((await integrator.next_message()).payload)
    assert dispatched["status"] == "dispatched" and dispatched["ref"] == "ok"
    cmd = json.loads((await device.next_message()).payload)
    assert cmd["id"] == dispatched["id"] and cmd["params"] == {"brightness": 3}
    await device.publish("nxg/r1/ack", json.dumps({"t": "ack", "id": cmd["id"], "ok": True, "result": {}}))
    acked = json.loads((await integrator.next_message()).payload)
    assert (acked["id"], acked["status"], acked["ref"]) == (cmd["id"], "acked", "ok")
    # a device may not request commands, not even for itself
    await device.publish("nxg/r1/cmd/req", json.dumps({"action": "light_on", "ref": "self"}))
    assert await integrator.no_message(0.5)


async def test_dry_run_on_ws_app_and_mqtt_sends_nothing(stack: Stack, paho: Clients) -> None:
    device = await mqtt_device(stack, paho, "y1")
    assert await device.subscribe(device_topic("y1", Channel.CMD)) == [1]
    await stack.http.post("/api/v1/devices/y1/manifest", json=MANIFEST)
    app = await stack.app_socket()
    await send_json(app, {"t": "cmd", "serial": "y1", "action": "light_on", "dry_run": True, "ref": 1})
    assert await recv_until(app, "cmd_validated") == {"t": "cmd_validated", "ref": 1, "dry_run_token": None}
    await send_json(app, {"t": "cmd", "serial": "y1", "action": "unlock", "dry_run": True, "ref": 2})
    token = (await recv_until(app, "cmd_validated", ref=2))["dry_run_token"]
    await send_json(
        app,
        {"t": "cmd", "serial": "y1", "action": "light_on", "params": {"brightness": 200}, "dry_run": True, "ref": 3},
    )
    assert (await recv_until(app, "error", ref=3))["code"] == "PARAMS_INVALID"
    integrator = paho("integrator")
    assert await integrator.connect(stack.broker.mqtt_port, "bridge", stack.core.settings.internal_secret) == 0
    await integrator.subscribe("nxg/y1/cmd/res")
    await integrator.publish("nxg/y1/cmd/req", json.dumps({"action": "unlock", "dry_run": True, "ref": "q"}))
    reply = json.loads((await integrator.next_message()).payload)
    assert reply["status"] == "validated" and reply["ref"] == "q" and reply["dry_run_token"] and reply["id"] is None
    assert await device.no_message(0.5)  # nothing reached the device
    assert (await stack.http.get("/api/v1/device/y1/commands")).json()["commands"] == []
    confirmed = await stack.http.post("/api/v1/device/y1/command/confirm", json={"dry_run_token": token})
    assert confirmed.status_code == 202
    assert json.loads((await device.next_message()).payload)["action"] == "unlock"
    await app.close()
