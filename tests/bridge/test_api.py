"""Seed 000's REST API: shapes, status codes and the admin password."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest

from bridge import config_h
from tests.bridge.helpers import Stack, history_when, pair_gateway, recv_until, send_json

CODE_RE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$")
ROUTES = [
    ("GET", "/api/devices"),
    ("POST", "/api/devices"),
    ("GET", "/api/devices/D1"),
    ("DELETE", "/api/devices/D1"),
    ("GET", "/api/devices/D1/code"),
    ("GET", "/api/devices/D1/config.h"),
    ("POST", "/api/devices/D1/reset"),
    ("POST", "/api/devices/D1/regenerate"),
    ("GET", "/api/history"),
    ("GET", "/api/protocol"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_every_route_needs_the_password(stack: Stack, method: str, path: str) -> None:
    await stack.create_device("D1")
    async with httpx.AsyncClient(base_url=stack.base) as anonymous:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic cHc="}):
            response = await anonymous.request(method, path, headers=headers)
            assert response.status_code == 401, (headers, response.text)
            assert "error" in response.json()
    assert (await stack.http.get("/api/devices/D1")).status_code == 200  # nothing was changed


async def test_create_list_get_code(stack: Stack) -> None:
    created = await stack.http.post("/api/devices", json={"serial": "Lamp-1", "name": "hall lamp"})
    assert created.status_code == 201
    body = created.json()
    assert body["serial"] == "Lamp-1" and body["name"] == "hall lamp"
    assert CODE_RE.match(body["code"])
    assert body["paired"] is False and body["online"] is False and "token" not in body

    generated = await stack.http.post("/api/devices", json={"serial": ""})
    assert generated.status_code == 201
    assert re.match(r"^NXG-[0-9A-Z]{8}$", generated.json()["serial"])
    assert (await stack.http.post("/api/devices")).status_code == 201  # no body: generated too

    listed = (await stack.http.get("/api/devices")).json()["devices"]
    assert {"Lamp-1", generated.json()["serial"]} <= {d["serial"] for d in listed}
    assert all(set(d) == {"serial", "name", "online", "paired", "last_seen", "created_at"} for d in listed)

    one = (await stack.http.get("/api/devices/Lamp-1")).json()
    assert one["serial"] == "Lamp-1" and isinstance(one["created_at"], int)
    code = (await stack.http.get("/api/devices/Lamp-1/code")).json()
    assert code == {"serial": "Lamp-1", "code": body["code"]}


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        ({"serial": "lamp-1"}, 409),  # taken, case-insensitively
        ({"serial": "bad/serial"}, 400),
        ({"serial": "PAIR"}, 400),  # reserved, case-insensitively
        ({"serial": 12}, 400),
        ({"name": ["x"]}, 400),
        ([1, 2], 400),
    ],
)
async def test_create_refuses(stack: Stack, payload: object, status: int) -> None:
    await stack.create_device("Lamp-1")
    response = await stack.http.post("/api/devices", json=payload)
    assert response.status_code == status
    assert isinstance(response.json()["error"], str)


async def test_create_refuses_a_body_that_is_not_json(stack: Stack) -> None:
    response = await stack.http.post("/api/devices", content=b"{nope", headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json() == {"error": "body must be a JSON object"}


@pytest.mark.parametrize(
    ("method", "path"),
    [(m, p.replace("D1", "Ghost")) for m, p in ROUTES if "D1" in p],
)
async def test_unknown_serial_is_404(stack: Stack, method: str, path: str) -> None:
    response = await stack.http.request(method, path)
    assert response.status_code == 404
    assert response.json() == {"error": "device not found: Ghost"}


async def test_reset_regenerate_delete(stack: Stack) -> None:
    ws, _token = await pair_gateway(stack, "D2")
    code = (await stack.http.get("/api/devices/D2/code")).json()["code"]
    assert (await stack.http.get("/api/devices/D2")).json()["paired"] is True

    reset = await stack.http.post("/api/devices/D2/reset")
    assert reset.status_code == 200 and reset.json() == {"serial": "D2", "code": code}
    assert (await stack.http.get("/api/devices/D2")).json()["paired"] is False
    await ws.close()

    regenerated = await stack.http.post("/api/devices/D2/regenerate")
    assert regenerated.status_code == 200
    assert regenerated.json()["serial"] == "D2"
    assert CODE_RE.match(regenerated.json()["code"]) and regenerated.json()["code"] != code
    assert (await stack.http.get("/api/devices/D2/code")).json()["code"] == regenerated.json()["code"]

    deleted = await stack.http.delete("/api/devices/D2")
    assert deleted.status_code == 200 and deleted.json() == {"ok": True}
    assert (await stack.http.get("/api/devices/D2")).status_code == 404
    assert (await stack.http.delete("/api/devices/D2")).status_code == 404


async def test_history(stack: Stack) -> None:
    ws, _token = await pair_gateway(stack, "H1")
    app = await stack.app_socket()
    for i in range(5):
        await send_json(ws, {"t": "telemetry", "n": i})
        await recv_until(app, "telemetry", n=i)
    await send_json(ws, {"t": "status", "door": "open"})
    await recv_until(app, "status")
    everything = await history_when(stack, {"serial": "H1"}, lambda ms: any(m["t"] == "status" for m in ms))
    types = [m["t"] for m in everything["messages"]]
    # newest first, and `device_online` before everything the device sent on that connection
    assert types == ["status"] + ["telemetry"] * 5 + ["device_online"] and everything["next_before"] is None

    page = (await stack.http.get("/api/history", params={"serial": "H1", "type": "telemetry", "limit": 2})).json()
    assert [m["n"] for m in page["messages"]] == [4, 3]
    first = page["messages"][0]
    assert first["t"] == "telemetry" and first["serial"] == "H1" and isinstance(first["ts"], int)
    assert page["next_before"] == page["messages"][-1]["ts"]
    rest = await stack.http.get(
        "/api/history", params={"serial": "H1", "type": "telemetry", "before": page["next_before"]}
    )
    assert all(m["ts"] < page["next_before"] for m in rest.json()["messages"])

    for params in ({"type": "nope"}, {"limit": "0"}, {"limit": "1001"}, {"limit": "x"}, {"before": "-1"}):
        response = await stack.http.get("/api/history", params=params)
        assert response.status_code == 400, params
        assert "error" in response.json()
    assert (await stack.http.get("/api/history", params={"serial": "Ghost"})).status_code == 404


async def test_a_burst_pages_by_limit_exactly_and_loses_nothing(stack: Stack) -> None:
    # sent without waiting, many share a millisecond on arrival: each still gets a ts of its own
    # (one device's stamps never repeat), so every page holds exactly `limit` and none is skipped
    ws, _token = await pair_gateway(stack, "B1")
    app = await stack.app_socket()
    sent = 40
    for i in range(sent):
        await send_json(ws, {"t": "telemetry", "n": i})
    await recv_until(app, "telemetry", n=sent - 1)
    everything: dict[str, str | int] = {"serial": "B1", "type": "telemetry", "limit": 1000}
    stored = (await history_when(stack, everything, lambda ms: len(ms) == sent, within_s=10))["messages"]
    assert [m["n"] for m in stored] == list(reversed(range(sent)))
    stamps = [m["ts"] for m in stored]
    assert len(set(stamps)) == sent and stamps == sorted(stamps, reverse=True)

    pages: list[list[int]] = []
    before: int | None = None
    while True:
        params: dict[str, str | int] = {"serial": "B1", "type": "telemetry", "limit": 7}
        if before is not None:
            params["before"] = before
        page = (await stack.http.get("/api/history", params=params)).json()
        pages.append([m["n"] for m in page["messages"]])
        before = page["next_before"]
        if before is None:
            break
        assert page["next_before"] == page["messages"][-1]["ts"]
    assert [len(p) for p in pages] == [7, 7, 7, 7, 7, 5]
    assert [n for p in pages for n in p] == list(reversed(range(sent)))


async def test_protocol_is_generated_from_the_schemas(stack: Stack) -> None:
    doc = (await stack.http.get("/api/protocol")).json()
    assert {"telemetry", "status", "event", "ack", "cmd"} <= set(doc["schemas"])
    assert doc["schemas"]["ack"]["required"] == ["id", "ok"]
    assert any(t["topic"] == "nxg/{S}/telemetry" for t in doc["mqtt"]["topics"])
    assert doc["gateway"]["path"] == "/ws/gateway"


async def test_config_h(stack: Stack) -> None:
    code = await stack.create_device("Flash-1")
    response = await stack.http.get("/api/devices/Flash-1/config.h")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert '#define NXG_DEVICE_SERIAL     "Flash-1"' in text
    assert f'#define NXG_CONNECTION_CODE   "{code}"' in text
    assert f"#define NXG_MQTT_PORT         {stack.broker.mqtt_port}" in text
    assert f"#define NXG_HTTP_PORT         {stack.bridge.http_port}" in text
    # fetched from 127.0.0.1: a device cannot reach that, so this machine's outward address
    assert f'#define NXG_SERVER_HOST       "{config_h.machine_address() or "127.0.0.1"}"' in text
    assert '"nxg/Flash-1/cmd"' in text and text.rstrip().endswith("#endif /* NXG_CONFIG_H */")


async def test_unknown_api_path_answers_json(stack: Stack) -> None:
    response = await stack.http.get("/api/nothing")
    assert response.status_code == 404
    assert "error" in response.json()


async def test_health_reports_a_lost_broker(stack: Stack) -> None:
    assert (await stack.http.get("/health")).status_code == 200
    await stack.broker.close()
    for _ in range(50):
        response = await stack.http.get("/health")
        if response.status_code == 503:
            break
        await asyncio.sleep(0.05)
    assert response.status_code == 503
    assert response.json() == {"status": "degraded", "broker": False, "store": True}
