"""Seed 002's groups (create, list, join) and the room and group command fan-out: one result per
device in the `results` shape, a rejected device never blocking the others, `capability`
filtering by manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.bridge.helpers import Stack, open_stack, pair_gateway, recv_until, send_json
from tests.factories import make_settings

LIGHT = {"capabilities": [{"action": "light_on", "category": "light"}]}
LOCK = {"capabilities": [{"action": "lock", "category": "security"}]}


def failed(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False and body["code"] == code and body["error"], body
    return dict(body)


async def test_group_create_list_join(stack: Stack) -> None:
    for serial in ("g1", "g2", "g3"):
        await stack.create_device(serial)
    created = await stack.http.post(
        "/api/v1/groups", json={"name": "Living Room Lights", "description": "All lights", "device_ids": ["g1", "g2"]}
    )
    assert created.status_code == 201 and created.json() == {"status": "created", "slug": "living-room-lights"}
    failed(await stack.http.post("/api/v1/groups", json={"name": "living room lights!"}), 409, "GROUP_EXISTS")
    joined = await stack.http.post("/api/v1/groups/living-room-lights/join", json={"device_ids": ["g3", "g1"]})
    assert joined.status_code == 200 and joined.json()["device_ids"] == ["g1", "g2", "g3"]
    one = await stack.http.post("/api/v1/groups/living-room-lights/join", json={"device_id": "g2"})
    assert one.json()["device_ids"] == ["g1", "g2", "g3"]  # already a member: no duplicate
    groups = (await stack.http.get("/api/v1/groups")).json()["groups"]
    assert [(g["slug"], g["name"], g["description"], g["device_ids"]) for g in groups] == [
        ("living-room-lights", "Living Room Lights", "All lights", ["g1", "g2", "g3"])
    ]
    # a key limited to g1 sees only g1 of the group, and cannot add g2
    key = await stack.http.post("/api/v1/auth/api-keys", json={"name": "k", "role": "user", "devices": ["g1"]})
    async with httpx.AsyncClient(base_url=stack.base, headers={"Authorization": f"Bearer {key.json()['key']}"}) as http:
        assert (await http.get("/api/v1/groups")).json()["groups"][0]["device_ids"] == ["g1"]
        failed(
            await http.post("/api/v1/groups/living-room-lights/join", json={"device_ids": ["g2"]}),
            404,
            "DEVICE_NOT_FOUND",
        )
        failed(await http.post("/api/v1/groups", json={"name": "mine"}), 403, "FORBIDDEN")
    # deleting a device takes it out of its groups
    await stack.http.delete("/api/devices/g2")
    assert (await stack.http.get("/api/v1/groups")).json()["groups"][0]["device_ids"] == ["g1", "g3"]


async def test_group_errors(stack: Stack) -> None:
    for body in ({}, {"name": ""}, {"name": "x", "device_ids": "g1"}, {"name": "x", "description": 5}):
        failed(await stack.http.post("/api/v1/groups", json=body), 400, "INVALID")
    failed(
        await stack.http.post("/api/v1/groups", json={"name": "x", "device_ids": ["ghost"]}), 404, "DEVICE_NOT_FOUND"
    )
    failed(await stack.http.post("/api/v1/groups/none/join", json={"device_ids": []}), 400, "INVALID")
    await stack.create_device("e1")
    failed(await stack.http.post("/api/v1/groups/none/join", json={"device_ids": ["e1"]}), 404, "GROUP_NOT_FOUND")
    failed(await stack.http.post("/api/v1/groups/none/command", json={"action": "x"}), 404, "GROUP_NOT_FOUND")
    async with httpx.AsyncClient(base_url=stack.base) as anonymous:
        failed(await anonymous.get("/api/v1/groups"), 401, "UNAUTHORIZED")
        failed(await anonymous.post("/api/v1/groups/x/command", json={"action": "x"}), 401, "UNAUTHORIZED")


async def test_group_command_fans_out_and_one_rejection_blocks_nobody(stack: Stack) -> None:
    light1, _ = await pair_gateway(stack, "f1")
    lock, _ = await pair_gateway(stack, "f2")
    light2, _ = await pair_gateway(stack, "f3")
    for serial, manifest in (("f1", LIGHT), ("f2", LOCK), ("f3", LIGHT)):
        assert (await stack.http.post(f"/api/v1/devices/{serial}/manifest", json=manifest)).status_code == 201
    await stack.http.post("/api/v1/groups", json={"name": "All", "device_ids": ["f1", "f2", "f3"]})
    response = await stack.http.post("/api/v1/groups/all/command", json={"action": "light_on"})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["device_id"] for r in results] == ["f1", "f2", "f3"]
    assert [r["success"] for r in results] == [True, False, True]
    assert results[1]["code"] == "ACTION_NOT_IN_MANIFEST" and results[1]["error"]
    for ok in (results[0], results[2]):
        assert ok["command_id"].startswith("c_") and len(ok["message_id"]) == 36
    for ws, result in ((light1, results[0]), (light2, results[2])):
        cmd = await recv_until(ws, "cmd")
        assert cmd["id"] == result["command_id"] and cmd["action"] == "light_on"
        await send_json(ws, {"t": "ack", "id": cmd["id"], "ok": True})
    # `capability` keeps only devices whose manifest declares it
    filtered = (
        await stack.http.post("/api/v1/groups/all/command", json={"action": "lock", "capability": "security"})
    ).json()
    assert [(r["device_id"], r["success"]) for r in filtered["results"]] == [("f2", True)]
    # a revoked device is its own failure too
    await stack.http.post("/api/v1/device/f3/revoke")
    again = (await stack.http.post("/api/v1/groups/all/command", json={"action": "light_on"})).json()["results"]
    assert [(r["device_id"], r["success"], r.get("code")) for r in again] == [
        ("f1", True, None),
        ("f2", False, "ACTION_NOT_IN_MANIFEST"),
        ("f3", False, "DEVICE_REVOKED"),
    ]
    for body in ({}, {"action": 1}, {"action": "x", "capability": 3}, {"action": "x", "dry_run": True}):
        failed(await stack.http.post("/api/v1/groups/all/command", json=body), 400, "INVALID_COMMAND")
    for ws in (light1, lock, light2):
        await ws.close()


async def test_room_command_reaches_the_devices_of_the_room(stack: Stack) -> None:
    home = (await stack.http.post("/api/v1/homes", json={"home_name": "H"})).json()["id"]
    room = (await stack.http.post(f"/api/v1/homes/{home}/rooms", json={"name": "R"})).json()["id"]
    other = (await stack.http.post(f"/api/v1/homes/{home}/rooms", json={"name": "Other"})).json()["id"]
    inside = [
        await stack.http.post("/api/v1/device/register", json={"device_type": "esp32", "room_id": room})
        for _ in range(2)
    ]
    await stack.http.post("/api/v1/device/register", json={"device_type": "esp32", "room_id": other})
    serials = [r.json()["device_id"] for r in inside]
    await stack.http.post(f"/api/v1/devices/{serials[0]}/manifest", json=LIGHT)
    results = (await stack.http.post(f"/api/v1/rooms/{room}/command", json={"action": "light_on"})).json()["results"]
    # the second has no manifest: any command passes (PROTOCOL §4); both are queued for offline devices
    assert sorted(r["device_id"] for r in results) == sorted(serials) and all(r["success"] for r in results)
    lights = (
        await stack.http.post(f"/api/v1/rooms/{room}/command", json={"action": "light_on", "capability": "light"})
    ).json()["results"]
    assert [r["device_id"] for r in lights] == [serials[0]]
    history = (await stack.http.get(f"/api/v1/device/{serials[1]}/commands")).json()["commands"]
    assert [c["status"] for c in history] == ["queued"]
    empty = (await stack.http.post(f"/api/v1/rooms/{other}/command", json={"action": "x", "capability": "none"})).json()
    assert empty == {"results": []}


DIMMER = {
    "capabilities": [
        {
            "action": "light_on",
            "category": "light",
            "paramSchema": {"type": "object", "properties": {"brightness": {"type": "integer", "maximum": 100}}},
        }
    ]
}
NIGHT_LIGHT = {  # the same action, a stricter schema: the command below breaks it
    "capabilities": [
        {
            "action": "light_on",
            "category": "light",
            "paramSchema": {"type": "object", "properties": {"brightness": {"type": "integer", "maximum": 10}}},
        }
    ]
}


async def test_group_command_to_50_devices_with_2_rejected(stack: Stack) -> None:
    """One batch: 48 accepted (2 online and dispatched, 46 queued), 2 refused each with its own
    code and message, every attempt audited, nothing of the refused ones stored."""
    online = [await pair_gateway(stack, f"m{i:02d}") for i in range(2)]
    serials = [f"m{i:02d}" for i in range(50)]
    for serial in serials[2:]:
        await stack.create_device(serial)
    for i, serial in enumerate(serials):
        manifest = {17: LOCK, 33: NIGHT_LIGHT}.get(i, DIMMER if i % 2 else LIGHT)
        await stack.core.manifests.put(serial, manifest)
    created = await stack.http.post("/api/v1/groups", json={"name": "Fifty", "device_ids": serials})
    assert created.status_code == 201, created.text
    writer = stack.core.store.command_writer
    batches = writer.batches
    response = await stack.http.post(
        "/api/v1/groups/fifty/command", json={"action": "light_on", "params": {"brightness": 50}}
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["device_id"] for r in results] == serials
    assert [i for i, r in enumerate(results) if not r["success"]] == [17, 33]
    assert results[17]["code"] == "ACTION_NOT_IN_MANIFEST" and "m17" in results[17]["error"]
    assert results[33]["code"] == "PARAMS_INVALID" and "brightness" in results[33]["error"]
    assert results[33]["details"][0]["path"] == "$.brightness"
    ok = [r for r in results if r["success"]]
    assert len(ok) == 48 and len({r["command_id"] for r in ok}) == 48
    assert all(r["command_id"].startswith("c_") and len(r["command_id"]) == 18 for r in ok)
    # the inserts and the refusals' audit rows: one transaction
    assert writer.batches == batches + 1
    for (ws, _), result in zip(online, results[:2], strict=True):
        cmd = await recv_until(ws, "cmd")
        assert cmd["id"] == result["command_id"] and cmd["params"] == {"brightness": 50}
        await send_json(ws, {"t": "ack", "id": cmd["id"], "ok": True})
    for serial, result in zip(serials, results, strict=True):
        history = (await stack.http.get(f"/api/v1/device/{serial}/commands")).json()["commands"]
        if not result["success"]:
            assert history == []
        else:
            assert [c["id"] for c in history] == [result["command_id"]]
            assert history[0]["status"] in (("acked", "dispatched") if serial in serials[:2] else ("queued",))
    # `capability` over a big group (the manifests read at once): only the lock is commanded
    locks = await stack.http.post("/api/v1/groups/fifty/command", json={"action": "lock", "capability": "security"})
    assert [(r["device_id"], r["success"]) for r in locks.json()["results"]] == [("m17", True)]
    refused = [a for a in await stack.core.store.audit.recent(200) if a["outcome"] != "ok"]
    assert sorted((a["target"], a["outcome"]) for a in refused) == [
        ("m17", "ACTION_NOT_IN_MANIFEST"),
        ("m33", "PARAMS_INVALID"),
    ]
    for ws, _ in online:
        await ws.close()


async def test_group_command_rate_limit_and_queue_bound_per_device(tmp_path: Path) -> None:
    """The fan-out counts each device's command against the tenant's rate limit (PROTOCOL §6) in
    the group's order, refused ones not counting; the queue bound is each device's own."""
    async with open_stack(make_settings(tmp_path, command_rate_limit=6, command_queue_limit=1)) as stack:
        serials = [f"r{i}" for i in range(8)]
        for serial in serials:
            await stack.create_device(serial)
        await stack.core.manifests.put("r1", LOCK)
        first = await stack.http.post("/api/v1/device/r2/command", json={"action": "light_on"})
        assert first.status_code == 202, first.text  # r2's queue (bound 1) is now full; 1 of 6 used
        await stack.http.post("/api/v1/groups", json={"name": "R", "device_ids": serials})
        results = (await stack.http.post("/api/v1/groups/r/command", json={"action": "light_on"})).json()["results"]
        codes = [(r["device_id"], r.get("code")) for r in results]
        # r0 ok; r1 refused by its manifest (not counted); r2 admitted by the rate limit, refused
        # by its queue bound; r3, r4, r5 take the rest of the 6; r6 and r7 are over the limit
        assert codes == [
            ("r0", None),
            ("r1", "ACTION_NOT_IN_MANIFEST"),
            ("r2", "QUEUE_FULL"),
            ("r3", None),
            ("r4", None),
            ("r5", None),
            ("r6", "RATE_LIMIT_EXCEEDED"),
            ("r7", "RATE_LIMIT_EXCEEDED"),
        ]
        # r2's QUEUE_FULL did not count: one more command fits in this minute
        await stack.http.post("/api/v1/groups", json={"name": "Late", "device_ids": ["r6", "r7"]})
        late = (await stack.http.post("/api/v1/groups/late/command", json={"action": "light_on"})).json()["results"]
        assert [(r["device_id"], r.get("code")) for r in late] == [("r6", None), ("r7", "RATE_LIMIT_EXCEEDED")]
        assert late[1]["error"] == "more than 6 commands a minute"
