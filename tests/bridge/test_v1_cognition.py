"""Seed 002's cognition observation: 202, stored as a device event of category `observation`,
shown live; the errors."""

from __future__ import annotations

import uuid

import httpx

from tests.bridge.helpers import Stack, recv_until


async def test_an_observation_is_a_stored_event(stack: Stack) -> None:
    await stack.create_device("obs1")
    app = await stack.app_socket()
    body = {"device_id": "obs1", "data": {"temperature": 22.5, "occupancy": True}, "context": "room_entry"}
    response = await stack.http.post("/api/v1/cognition/observation", json=body)
    assert response.status_code == 202, response.text
    reply = response.json()
    assert reply["status"] == "OBSERVATION_RECEIVED" and uuid.UUID(reply["proposal_id"])
    live = await recv_until(app, "event", serial="obs1")
    assert live["category"] == "observation" and live["body"]["data"] == body["data"]
    await stack.core.ingest.flush()
    history = (await stack.http.get("/api/history?serial=obs1&type=event")).json()["messages"]
    assert len(history) == 1
    event = history[0]
    assert event["category"] == "observation" and event["type"] == "observation" and event["severity"] == "Info"
    assert event["body"]["proposal_id"] == reply["proposal_id"] and event["body"]["context"] == "room_entry"
    assert event["ts"] == live["ts"]
    await app.close()


async def test_observation_errors(stack: Stack) -> None:
    await stack.create_device("obs2")
    for body, status, code in (
        ({"data": {}}, 400, "INVALID"),
        ({"device_id": "obs2"}, 400, "INVALID"),
        ({"device_id": "obs2", "data": [1]}, 400, "INVALID"),
        ({"device_id": "obs2", "data": {}, "context": 5}, 400, "INVALID"),
        ({"device_id": "ghost", "data": {}}, 404, "DEVICE_NOT_FOUND"),
    ):
        response = await stack.http.post("/api/v1/cognition/observation", json=body)
        assert response.status_code == status and response.json()["code"] == code, (body, response.text)
    viewer = (await stack.http.post("/api/v1/auth/api-keys", json={"name": "v", "role": "viewer"})).json()["key"]
    async with httpx.AsyncClient(base_url=stack.base, headers={"Authorization": f"Bearer {viewer}"}) as http:
        response = await http.post("/api/v1/cognition/observation", json={"device_id": "obs2", "data": {}})
        assert response.status_code == 403 and response.json()["code"] == "FORBIDDEN"
    async with httpx.AsyncClient(base_url=stack.base) as anonymous:
        response = await anonymous.post("/api/v1/cognition/observation", json={"device_id": "obs2", "data": {}})
        assert response.status_code == 401
