"""Seed 002's homes and rooms: create/list/update/delete, time zones checked against the IANA
database, deleting a home with devices refused 409, deleting a room detaches its devices."""

from __future__ import annotations

import httpx

from tests.bridge.helpers import Stack


def failed(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False and body["code"] == code and body["error"], body


async def test_homes_and_rooms_lifecycle(stack: Stack) -> None:
    created = await stack.http.post("/api/v1/homes", json={"home_name": "My Home", "timezone": "America/New_York"})
    assert created.status_code == 201 and created.json()["status"] == "created"
    home = created.json()["id"]
    homes = (await stack.http.get("/api/v1/homes")).json()["homes"]
    assert [(h["id"], h["home_name"], h["timezone"]) for h in homes] == [(home, "My Home", "America/New_York")]
    patched = await stack.http.patch(f"/api/v1/homes/{home}", json={"timezone": "Asia/Kolkata"})
    assert patched.status_code == 200 and patched.json()["home"]["timezone"] == "Asia/Kolkata"
    assert patched.json()["home"]["home_name"] == "My Home"
    room = await stack.http.post(f"/api/v1/homes/{home}/rooms", json={"name": "Living Room"})
    assert room.status_code == 201 and room.json()["status"] == "created"
    room_id = room.json()["id"]
    rooms = (await stack.http.get(f"/api/v1/homes/{home}/rooms")).json()["rooms"]
    assert [(r["id"], r["name"], r["home_id"]) for r in rooms] == [(room_id, "Living Room", home)]
    reg = await stack.http.post("/api/v1/device/register", json={"device_type": "esp32", "room_id": room_id})
    serial = reg.json()["device_id"]
    # a home with devices: 409, its devices named; nothing is lost
    refused = await stack.http.delete(f"/api/v1/homes/{home}")
    failed(refused, 409, "HOME_NOT_EMPTY")
    assert refused.json()["details"] == [serial]
    # deleting the room detaches the device from it; it stays in the home
    deleted = await stack.http.delete(f"/api/v1/homes/{home}/rooms/{room_id}")
    assert deleted.status_code == 200 and deleted.json() == {"status": "deleted", "id": room_id}
    device = (await stack.http.get(f"/api/v1/devices/{serial}")).json()
    assert device["home_id"] == home and device["room_id"] is None
    failed(await stack.http.delete(f"/api/v1/homes/{home}/rooms/{room_id}"), 404, "ROOM_NOT_FOUND")
    await stack.http.delete(f"/api/devices/{serial}")
    gone = await stack.http.delete(f"/api/v1/homes/{home}")
    assert gone.status_code == 200 and gone.json() == {"status": "deleted", "id": home}
    assert (await stack.http.get("/api/v1/homes")).json()["homes"] == []


async def test_home_errors(stack: Stack) -> None:
    for body in (
        {"home_name": "x", "timezone": "Mars/Olympus"},
        {"home_name": "x", "timezone": "../etc/passwd"},
        {"home_name": "x", "timezone": 5},
        {"timezone": "UTC"},
        {"home_name": "  "},
    ):
        failed(await stack.http.post("/api/v1/homes", json=body), 400, "INVALID")
    home = (await stack.http.post("/api/v1/homes", json={"home_name": "H"})).json()["id"]
    assert (await stack.http.get("/api/v1/homes")).json()["homes"][0]["timezone"] == "UTC"  # the default
    failed(await stack.http.patch(f"/api/v1/homes/{home}", json={"timezone": "Nowhere/Else"}), 400, "INVALID")
    failed(await stack.http.patch(f"/api/v1/homes/{home}", json={"owner": "me"}), 400, "INVALID")
    failed(await stack.http.post(f"/api/v1/homes/{home}/rooms", json={}), 400, "INVALID")
    failed(await stack.http.patch("/api/v1/homes/nope", json={"home_name": "x"}), 404, "HOME_NOT_FOUND")
    failed(await stack.http.get("/api/v1/homes/nope/rooms"), 404, "HOME_NOT_FOUND")
    failed(await stack.http.post("/api/v1/rooms/nope/command", json={"action": "x"}), 404, "ROOM_NOT_FOUND")
    async with httpx.AsyncClient(base_url=stack.base) as anonymous:
        failed(await anonymous.get("/api/v1/homes"), 401, "UNAUTHORIZED")
    viewer = (await stack.http.post("/api/v1/auth/api-keys", json={"name": "v", "role": "viewer"})).json()["key"]
    async with httpx.AsyncClient(base_url=stack.base, headers={"Authorization": f"Bearer {viewer}"}) as http:
        assert (await http.get("/api/v1/homes")).status_code == 200
        failed(await http.post("/api/v1/homes", json={"home_name": "x"}), 403, "FORBIDDEN")
        failed(await http.delete(f"/api/v1/homes/{home}"), 403, "FORBIDDEN")
        failed(await http.post(f"/api/v1/rooms/{home}/command", json={"action": "x"}), 403, "FORBIDDEN")
