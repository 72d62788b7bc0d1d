"""Two tenants, each with devices, keys, homes, rooms and groups: nothing of one is visible to
or touchable by the other, on every `/api/v1` and `/api` endpoint, every WebSocket and MQTT
with the `key` role. Another tenant's thing answers exactly as a thing that does not exist."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.bridge.helpers import Stack, recv_json, send_json
from tests.mqtt_client import Clients

LIGHT_MANIFEST = {"capabilities": [{"action": "secret_light_on", "category": "light"}]}


@dataclass
class Tenant:
    id: str
    slug: str
    admin: str  # its first admin key
    user: str  # a user key
    http: httpx.AsyncClient  # as its admin
    devices: list[tuple[str, str]]  # (serial, secret)
    home: str
    room: str
    group: str
    key_id: str


@asynccontextmanager
async def as_key(stack: Stack, key: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.base, headers={"Authorization": f"Bearer {key}"}, timeout=5) as http:
        yield http


async def make_tenant(stack: Stack, name: str, http_clients: list[httpx.AsyncClient]) -> Tenant:
    response = await stack.http.post("/api/v1/tenant/register", json={"tenant_name": name})
    assert response.status_code == 201, response.text
    body = response.json()
    admin = body["api_key"]["key"]
    http = httpx.AsyncClient(base_url=stack.base, headers={"Authorization": f"Bearer {admin}"}, timeout=5)
    http_clients.append(http)
    user = await http.post("/api/v1/auth/api-keys", json={"name": "u", "role": "user"})
    assert user.status_code == 201
    home = (await http.post("/api/v1/homes", json={"home_name": "Home", "timezone": "UTC"})).json()["id"]
    room = (await http.post(f"/api/v1/homes/{home}/rooms", json={"name": "Living"})).json()["id"]
    devices = []
    for _ in range(2):
        reg = (await http.post("/api/v1/device/register", json={"device_type": "esp32", "room_id": room})).json()
        devices.append((reg["device_id"], reg["device_secret"]))
        put = await http.post(f"/api/v1/devices/{reg['device_id']}/manifest", json=LIGHT_MANIFEST)
        assert put.status_code == 201, put.text
    group = await http.post("/api/v1/groups", json={"name": "Lights", "device_ids": [s for s, _ in devices]})
    assert group.status_code == 201 and group.json()["slug"] == "lights"  # the same slug in both tenants
    return Tenant(
        body["tenant_id"],
        body["tenant_slug"],
        admin,
        user.json()["key"],
        http,
        devices,
        home,
        room,
        "lights",
        user.json()["id"],
    )


@pytest.fixture
async def two(stack: Stack) -> AsyncIterator[tuple[Tenant, Tenant]]:
    clients: list[httpx.AsyncClient] = []
    try:
        yield await make_tenant(stack, "Alpha", clients), await make_tenant(stack, "Beta", clients)
    finally:
        for http in clients:
            await http.aclose()


def not_found(response: httpx.Response, code: str = "DEVICE_NOT_FOUND") -> None:
    assert response.status_code == 404, (response.request.method, response.request.url, response.text)
    body = response.json()
    if "code" in body:
        assert body["code"] == code, body


async def test_rest_v1_and_api_show_nothing_of_the_other_tenant(stack: Stack, two: tuple[Tenant, Tenant]) -> None:
    a, b = two
    theirs, _ = a.devices[0]
    for http in (b.http,):  # its admin key: every scope, so only the tenant stands in the way
        # devices
        listed = (await http.get("/api/v1/devices")).json()
        assert sorted(d["id"] for d in listed["devices"]) == sorted(s for s, _ in b.devices) and listed["count"] == 2
        not_found(await http.get(f"/api/v1/devices/{theirs}"))
        not_found(await http.post(f"/api/v1/device/{theirs}/rotate-secret"))
        not_found(await http.get(f"/api/v1/device/{theirs}/key-history"))
        not_found(await http.post(f"/api/v1/device/{theirs}/revoke"))
        # commands
        command = {"action": "secret_light_on"}
        not_found(await http.post(f"/api/v1/device/{theirs}/command", json=command))
        not_found(await http.post(f"/api/v1/devices/{theirs}/command", json=command))
        not_found(await http.post(f"/api/v1/device/{theirs}/command/confirm", json={"dry_run_token": "x"}))
        not_found(await http.get(f"/api/v1/device/{theirs}/commands"))
        batch = (await http.post("/api/v1/devices/command", json={"device_ids": [theirs], **command})).json()
        assert batch["results"][0]["success"] is False and batch["results"][0]["code"] == "DEVICE_NOT_FOUND"
        intent = {"type": "device.control", "payload": {"device_id": theirs, **command}}
        not_found(await http.post("/api/v1/intent", json=intent))
        not_found(await http.post("/api/v1/cognition/observation", json={"device_id": theirs, "data": {"t": 1}}))
        # manifests, and their actions in the registry
        not_found(await http.get(f"/api/v1/devices/{theirs}/manifest"))
        not_found(await http.post(f"/api/v1/devices/{theirs}/manifest", json=LIGHT_MANIFEST))
        not_found(await http.put(f"/api/v1/devices/{theirs}/manifest", json=LIGHT_MANIFEST))
        not_found(await http.post("/api/v1/actions/invoke/devices_QueryCommands", json={"deviceId": theirs}))
        # keys
        keys = (await http.get("/api/v1/auth/api-keys")).json()["keys"]
        assert a.key_id not in [k["id"] for k in keys] and len(keys) == 2
        not_found(await http.post("/api/v1/auth/api-keys/revoke", json={"id": a.key_id}), "KEY_NOT_FOUND")
        not_found(await http.post("/api/v1/auth/api-keys/rotate", json={"id": a.key_id}), "KEY_NOT_FOUND")
        # homes and rooms
        assert [h["id"] for h in (await http.get("/api/v1/homes")).json()["homes"]] == [b.home]
        not_found(await http.patch(f"/api/v1/homes/{a.home}", json={"home_name": "x"}), "HOME_NOT_FOUND")
        not_found(await http.delete(f"/api/v1/homes/{a.home}"), "HOME_NOT_FOUND")
        not_found(await http.get(f"/api/v1/homes/{a.home}/rooms"), "HOME_NOT_FOUND")
        not_found(await http.post(f"/api/v1/homes/{a.home}/rooms", json={"name": "x"}), "HOME_NOT_FOUND")
        not_found(await http.delete(f"/api/v1/homes/{a.home}/rooms/{a.room}"), "HOME_NOT_FOUND")
        not_found(await http.delete(f"/api/v1/homes/{b.home}/rooms/{a.room}"), "ROOM_NOT_FOUND")
        not_found(await http.post(f"/api/v1/rooms/{a.room}/command", json=command), "ROOM_NOT_FOUND")
        reg = {"device_type": "esp32", "home_id": a.home}
        not_found(await http.post("/api/v1/device/register", json=reg), "HOME_NOT_FOUND")
        # groups: the same slug is each tenant's own
        groups = (await http.get("/api/v1/groups")).json()["groups"]
        assert [(g["slug"], sorted(g["device_ids"])) for g in groups] == [("lights", sorted(s for s, _ in b.devices))]
        not_found(await http.post("/api/v1/groups/lights/join", json={"device_ids": [theirs]}))
        not_found(await http.post("/api/v1/groups", json={"name": "Mine", "device_ids": [theirs]}))
        results = (await http.post("/api/v1/groups/lights/command", json=command)).json()["results"]
        assert sorted(r["device_id"] for r in results) == sorted(s for s, _ in b.devices)
        # seed 000's /api
        assert sorted(d["serial"] for d in (await http.get("/api/devices")).json()["devices"]) == sorted(
            s for s, _ in b.devices
        )
        for path in ("", "/code", "/config.h"):
            assert (await http.get(f"/api/devices/{theirs}{path}")).status_code == 404
        for path in ("/reset", "/regenerate"):
            assert (await http.post(f"/api/devices/{theirs}{path}")).status_code == 404
        assert (await http.delete(f"/api/devices/{theirs}")).status_code == 404
        assert (await http.get(f"/api/history?serial={theirs}")).status_code == 404
    # the registry lists the caller's own tenant's actions only
    mine = await stack.http.get("/api/v1/manifest/capabilities")  # the default tenant: no device declares it
    assert "secret_light_on" not in [c["action"] for c in mine.json()["capabilities"]]
    assert "secret_light_on" in [
        c["action"] for c in (await b.http.get("/api/v1/manifest/capabilities")).json()["capabilities"]
    ]
    # and the default tenant (the admin password) sees neither
    assert (await stack.http.get("/api/v1/devices")).json()["count"] == 0
    not_found(await stack.http.get(f"/api/v1/devices/{theirs}"))
    assert (await stack.http.get("/api/v1/homes")).json()["homes"] == []
    # A's things are all still there, untouched
    assert (await a.http.get("/api/v1/devices")).json()["count"] == 2
    assert (await a.http.get(f"/api/v1/device/{theirs}/key-history")).json()["keys"][0]["active"] is True


async def test_history_and_command_rate_limits_are_per_tenant(tmp_path: Any, paho: Clients) -> None:
    from tests.bridge.helpers import open_stack
    from tests.factories import make_settings

    async with open_stack(make_settings(tmp_path, command_rate_limit=2)) as stack:
        clients: list[httpx.AsyncClient] = []
        a, b = await make_tenant(stack, "A", clients), await make_tenant(stack, "B", clients)
        (sa, secret), _ = a.devices
        device = paho(sa)
        assert await device.connect(stack.broker.mqtt_port, sa, secret) == 0
        await device.publish(f"nxg/{sa}/telemetry", json.dumps({"temp": 1}))
        await stack.core.ingest.flush()
        assert any(m["serial"] == sa for m in (await a.http.get("/api/history")).json()["messages"])
        assert (await b.http.get("/api/history")).json()["messages"] == []
        # A uses up its 2 commands a minute; B still has its own
        for _ in range(2):
            assert (
                await a.http.post(f"/api/v1/device/{sa}/command", json={"action": "secret_light_on"})
            ).status_code == 202
        limited = await a.http.post(f"/api/v1/device/{sa}/command", json={"action": "secret_light_on"})
        assert limited.status_code == 429 and limited.json()["code"] == "RATE_LIMIT_EXCEEDED"
        sb = b.devices[0][0]
        assert (
            await b.http.post(f"/api/v1/device/{sb}/command", json={"action": "secret_light_on"})
        ).status_code == 202
        for http in clients:
            await http.aclose()


async def test_websockets_carry_nothing_of_the_other_tenant(
    stack: Stack, two: tuple[Tenant, Tenant], paho: Clients
) -> None:
    a, b = two
    (sa, secret_a), _ = a.devices
    (sb, secret_b), _ = b.devices
    app = await connect(stack.ws_url(f"/ws/app?token={b.user}"))
    state = await connect(stack.ws_url(f"/ws/state?token={b.user}"))
    realtime = await connect(stack.ws_url(f"/realtime?api_key={b.user}"))
    assert (await recv_json(realtime))["type"] == "connected"
    await send_json(realtime, {"type": "subscribe", "hardwareIds": [sa, sb]})
    # another tenant's id is as absent as one not registered yet: subscribed, and silent
    assert await recv_json(realtime) == {"type": "subscribed", "hardwareIds": [sa, sb]}
    await send_json(app, {"t": "cmd", "serial": sa, "action": "secret_light_on", "ref": "r"})
    refused = await recv_json(app)
    assert refused["t"] == "error" and refused["code"] == "DEVICE_NOT_FOUND" and refused["ref"] == "r"
    dev_a, dev_b = paho(sa), paho(sb)
    assert await dev_a.connect(stack.broker.mqtt_port, sa, secret_a) == 0
    assert await dev_b.connect(stack.broker.mqtt_port, sb, secret_b) == 0
    await dev_a.publish(f"nxg/{sa}/status", json.dumps({"light": "A"}))
    await dev_a.publish(f"nxg/{sa}/telemetry", json.dumps({"temp": 1}))
    await asyncio.sleep(0.2)
    await dev_b.publish(f"nxg/{sb}/status", json.dumps({"light": "B"}))
    update = await recv_json(state)
    assert update["type"] == "state_update" and update["device_id"] == sb and update["state"] == {"light": "B"}
    seen_app = []
    async with asyncio.timeout(5):
        while True:
            message = await recv_json(app)
            seen_app.append(message)
            if message.get("t") == "status":
                break
    assert all(m["serial"] == sb for m in seen_app), seen_app
    data = await recv_json(realtime)
    while data["type"] == "device_status":
        assert data["hardwareId"] == sb
        data = await recv_json(realtime)
    assert data["type"] == "device_data" and data["hardwareId"] == sb and data["payload"] == {"light": "B"}
    for ws in (app, state, realtime):
        await ws.close()


async def test_mqtt_key_role_sees_and_commands_only_its_tenant(
    stack: Stack, two: tuple[Tenant, Tenant], paho: Clients
) -> None:
    a, b = two
    (sa, secret_a), _ = a.devices
    (sb, secret_b), _ = b.devices
    integrator = paho("b-integrator")
    assert await integrator.connect(stack.broker.mqtt_port, "key", b.user) == 0
    assert await integrator.subscribe(f"nxg/{sa}/telemetry") == [128]
    assert await integrator.subscribe(f"nxg/{sa}/cmd/res") == [128]
    assert await integrator.subscribe("nxg/+/telemetry") == [1]
    assert await integrator.subscribe(f"nxg/{sb}/cmd/res") == [1]
    dev_a, dev_b = paho(sa), paho(sb)
    assert await dev_a.connect(stack.broker.mqtt_port, sa, secret_a) == 0
    assert await dev_a.subscribe(f"nxg/{sa}/cmd") == [1]
    assert await dev_b.connect(stack.broker.mqtt_port, sb, secret_b) == 0
    assert await dev_b.subscribe(f"nxg/{sb}/cmd") == [1]
    await dev_a.publish(f"nxg/{sa}/telemetry", json.dumps({"temp": 1}))
    await dev_b.publish(f"nxg/{sb}/telemetry", json.dumps({"temp": 2}))
    got = await integrator.next_message()
    assert got.topic == f"nxg/{sb}/telemetry"
    await integrator.publish(f"nxg/{sa}/cmd/req", json.dumps({"action": "secret_light_on"}))
    await integrator.publish(f"nxg/{sb}/cmd/req", json.dumps({"action": "secret_light_on", "ref": "mine"}))
    res = json.loads((await integrator.next_message()).payload)
    assert res["ref"] == "mine" and res["status"] == "dispatched"
    assert json.loads((await dev_b.next_message()).payload)["action"] == "secret_light_on"
    assert await dev_a.no_message(0.5)  # A's device never got B's command
    assert all(m.topic.startswith(f"nxg/{sb}/") for m in await integrator.quiet(0.3))


# ---- seed 003's actions API, firmware, the HTTP proxy, MQTT properties --------------------------

INVOKE = "/api/v1/actions/invoke/"
FINGERPRINT = "ab" * 32


async def act(http: httpx.AsyncClient, action: str, body: dict[str, Any]) -> httpx.Response:
    return await http.post(INVOKE + action, json=body)


async def acted(http: httpx.AsyncClient, action: str, body: dict[str, Any]) -> Any:
    response = await act(http, action, body)
    assert response.status_code == 200, (action, response.text)
    return response.json()


async def test_actions_api_shows_nothing_of_the_other_tenant(stack: Stack, two: tuple[Tenant, Tenant]) -> None:
    a, b = two
    theirs, _ = a.devices[0]
    # A's things: a property, a certificate, a connection, a device JWT, a proxy token
    assert (await acted(a.http, "devices_SetProperty", {"deviceId": theirs, "name": "p", "value": 1}))[
        "result"
    ] == "Set"
    active = {"deviceId": theirs, "fingerprint": FINGERPRINT, "status": "Active"}
    cert = await acted(a.http, "devices_AddCertificate", active)
    connection = {"deviceId": theirs, "nodeId": "n1", "connectionId": "conn-a"}
    await acted(a.http, "devices_RegisterConnection", connection)
    device_jwt = (await acted(a.http, "devices_IssueDeviceToken", {"deviceId": theirs}))["jwt"]
    proxy_jwt = (await acted(a.http, "devices_IssueHttpProxyToken", {"deviceId": theirs}))["jwt"]
    event = {"eventId": "e1", "category": "c", "severity": "Info", "body": {}}
    by_device: dict[str, dict[str, Any]] = {
        "devices_GetDetails": {},
        "devices_Delete": {},
        "devices_SetName": {"name": "mine now"},
        "devices_QueryCommands": {},
        "devices_PublishEvents": {"events": [event]},
        "devices_QueryEvents": {},
        "devices_QueryAuditLog": {},
        "devices_SetProperty": {"name": "p", "value": 2, "expectedVersion": 1},
        "devices_GetProperty": {"name": "p"},
        "devices_RemoveProperty": {"name": "p"},
        "devices_QueryProperties": {},
        "devices_AddCertificate": {"fingerprint": "cd" * 32},
        "devices_QueryConnections": {},
        "devices_RegisterConnection": {"nodeId": "n1", "connectionId": "conn-b"},
        "devices_IssueDeviceToken": {},
        "devices_IssueHttpProxyToken": {},
    }
    for http in (b.http, stack.http):  # B's admin key, and the admin password (the default tenant)
        for name, extra in by_device.items():
            not_found(await act(http, name, {"deviceId": theirs, **extra}))
        certificate = {"certificateId": cert["certificateId"]}
        not_found(await act(http, "devices_DeleteCertificate", certificate), "CERTIFICATE_NOT_FOUND")
        not_found(
            await act(http, "devices_SetCertificateStatus", {**certificate, "status": "Revoked"}),
            "CERTIFICATE_NOT_FOUND",
        )
        ending = {"connectionId": "conn-a", "endReason": "Disconnected"}
        not_found(await act(http, "devices_UnregisterConnection", ending), "CONNECTION_NOT_FOUND")
        assert await acted(http, "devices_ValidateDeviceToken", {"jwt": device_jwt}) == {"result": "Invalid"}
        assert await acted(http, "devices_ValidateHttpProxyToken", {"jwt": proxy_jwt}) == {"result": "Invalid"}
        for project in (a.id, a.slug):
            create = {"projectId": project, "fingerprint": "ef" * 32}
            not_found(await act(http, "devices_Create", create), "PROJECT_NOT_FOUND")
    # A's certificate fingerprint added to B's own device: no Conflict across tenants (B learns
    # nothing, and A's certificate stays as it was)
    mine = b.devices[0][0]
    added = await acted(b.http, "devices_AddCertificate", {"deviceId": mine, "fingerprint": FINGERPRINT})
    details_b = await acted(b.http, "devices_GetDetails", {"deviceId": mine})
    assert [(c["certificateId"], c["status"]) for c in details_b["certificates"]] == [
        (added["certificateId"], "Pending")
    ]
    listed = (await acted(b.http, "devices_Query", {}))["devices"]
    assert sorted(d["deviceId"] for d in listed) == sorted(s for s, _ in b.devices)
    assert {d["projectId"] for d in listed} == {b.id}
    assert (await acted(stack.http, "devices_Query", {}))["devices"] == []
    # A's things are all still there, untouched
    assert (await acted(a.http, "devices_GetProperty", {"deviceId": theirs, "name": "p"}))["version"] == 1
    details = await acted(a.http, "devices_GetDetails", {"deviceId": theirs})
    assert details.get("name") != "mine now"
    assert [c["status"] for c in details["certificates"]] == ["Active"]
    assert await acted(a.http, "devices_ValidateDeviceToken", {"jwt": device_jwt}) == {
        "result": "Valid",
        "deviceId": theirs,
        "claims": None,
    }
    active = await acted(a.http, "devices_QueryConnections", {"deviceId": theirs, "activeOnly": True})
    assert [c["connectionId"] for c in active["connections"]] == ["conn-a"]
    events = (await acted(a.http, "devices_QueryEvents", {"deviceId": theirs}))["events"]
    assert all(e.get("eventId") != "e1" for e in events)
    audit = (await acted(a.http, "devices_QueryAuditLog", {"deviceId": theirs}))["events"]
    # B's refused attempts are not written into A's device's audit log (nor name B's key or tenant)
    assert {r["data"]["outcome"] for r in audit} == {"ok"}, audit
    assert b.id not in json.dumps(audit) and b.admin not in json.dumps(audit)


async def upload_release(http: httpx.AsyncClient, version: str, binary: bytes) -> dict[str, Any]:
    created = await http.post(f"/api/v1/firmware/release?device_type=esp32&version={version}", content=binary)
    assert created.status_code == 201, created.text
    released = await http.post(f"/api/v1/firmware/{created.json()['id']}/release", json={})
    assert released.status_code == 200, released.text
    body: dict[str, Any] = released.json()
    return body


async def test_firmware_is_its_tenants_only(stack: Stack, two: tuple[Tenant, Tenant]) -> None:
    a, b = two
    (sa, secret_a), _ = a.devices
    (sb, secret_b), _ = b.devices
    mine = await upload_release(a.http, "2.0.0", b"A" * 1000)
    # A's release went to A's esp32 devices only, though B's devices are esp32 too
    assert sorted(r["device_id"] for r in mine["results"]) == sorted(s for s, _ in a.devices)
    for http in (b.http, stack.http):
        not_found(await http.get(f"/api/v1/firmware/{mine['id']}"), "FIRMWARE_NOT_FOUND")
        not_found(await http.post(f"/api/v1/firmware/{mine['id']}/release", json={}), "FIRMWARE_NOT_FOUND")
        not_found(await http.get(f"/api/v1/firmware/{mine['id']}/download"), "FIRMWARE_NOT_FOUND")
        not_found(
            await http.post(f"/api/v1/firmware/{mine['id']}/release", json={"device_ids": [sb]}), "FIRMWARE_NOT_FOUND"
        )
        check = await http.post("/api/v1/firmware/check", json={"device_type": "esp32", "current_version": "1.0.0"})
        assert check.status_code == 200 and check.json()["update_available"] is False, check.text
    async with as_key(stack, secret_b) as device_b:
        not_found(await device_b.get(f"/api/v1/firmware/{mine['id']}/download"), "FIRMWARE_NOT_FOUND")
        check = await device_b.post("/api/v1/firmware/check", json={"device_type": "esp32", "current_version": "1.0.0"})
        assert check.json()["update_available"] is False, check.text
    # B may publish the same type and version: its own release, for its own devices
    theirs = await upload_release(b.http, "2.0.0", b"B" * 1000)
    assert sorted(r["device_id"] for r in theirs["results"]) == sorted(s for s, _ in b.devices)
    not_found(await b.http.post(f"/api/v1/firmware/{theirs['id']}/release", json={"device_ids": [sa]}))
    not_found(await b.http.post(f"/api/v1/firmware/{theirs['id']}/release", json={"room_id": a.room}), "ROOM_NOT_FOUND")
    for device, own in ((secret_a, mine), (secret_b, theirs)):
        async with as_key(stack, device) as http:
            check = await http.post("/api/v1/firmware/check", json={"device_type": "esp32", "current_version": "1.0.0"})
            assert check.json()["checksum"] == own["checksum"] and check.json()["url"].endswith(
                f"/{own['id']}/download"
            )
            other = mine if own is theirs else theirs
            not_found(await http.get(f"/api/v1/firmware/{other['id']}/download"), "FIRMWARE_NOT_FOUND")
            got = await http.get(f"/api/v1/firmware/{own['id']}/download")
            assert got.status_code == 200 and got.content == (b"A" if own is mine else b"B") * 1000
    rollout = (await b.http.get(f"/api/v1/firmware/{theirs['id']}")).json()["rollout"]["devices"]
    assert sorted(r["device_id"] for r in rollout) == sorted(s for s, _ in b.devices)
    # the group target: B's "lights" is B's own (A has a group of the same slug)
    to_group = await b.http.post(f"/api/v1/firmware/{theirs['id']}/release", json={"group": "lights"})
    assert sorted(r["device_id"] for r in to_group.json()["results"]) == sorted(s for s, _ in b.devices)


async def test_the_http_proxy_token_of_another_tenants_device(
    stack: Stack, two: tuple[Tenant, Tenant], paho: Clients
) -> None:
    a, b = two
    (sa, secret_a), _ = a.devices
    issued = await acted(a.http, "devices_IssueHttpProxyToken", {"deviceId": sa, "validForSecs": 60})
    # B can neither issue one for A's device nor learn anything from A's token
    not_found(await act(b.http, "devices_IssueHttpProxyToken", {"deviceId": sa}))
    assert await acted(b.http, "devices_ValidateHttpProxyToken", {"jwt": issued["jwt"]}) == {"result": "Invalid"}
    # the token itself is the credential (seed 003): whoever holds the URL reaches A's device,
    # and only A's device; a B key adds nothing to it, and a token forged for B's device is refused
    device = paho(sa)
    assert await device.connect(stack.broker.mqtt_port, sa, secret_a) == 0
    assert await device.subscribe(f"nxg/{sa}/http/req") == [1]

    async def answer() -> None:
        request = json.loads((await device.next_message()).payload)
        reply = {"id": request["id"], "status": 200, "headers": {}, "body_b64": "QQ=="}
        await device.publish(f"nxg/{sa}/http/res", json.dumps(reply))

    responder = asyncio.create_task(answer())
    async with as_key(stack, b.admin) as http:
        fetched = await http.get(f"/proxy/{issued['jwt']}/")
    await responder
    assert fetched.status_code == 200 and fetched.content == b"A"
    # the token names the device's own tenant (`tid`); changing it (or the device) breaks the signature
    head, payload, signature = issued["jwt"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["sub"] == sa and claims["tid"] == a.id
    for change in ({"sub": b.devices[0][0]}, {"tid": b.id}):
        body = base64.urlsafe_b64encode(json.dumps({**claims, **change}).encode()).rstrip(b"=").decode()
        assert (await stack.http.get(f"/proxy/{head}.{body}.{signature}/")).status_code == 401


async def test_mqtt_property_topics_are_the_tenants_own(
    stack: Stack, two: tuple[Tenant, Tenant], paho: Clients
) -> None:
    a, b = two
    (sa, secret_a), _ = a.devices
    (sb, secret_b), _ = b.devices
    await acted(a.http, "devices_SetProperty", {"deviceId": sa, "name": "secret", "value": "A"})
    await acted(b.http, "devices_SetProperty", {"deviceId": sb, "name": "mine", "value": "B"})
    dev_a = paho(sa)
    assert await dev_a.connect(stack.broker.mqtt_port, sa, secret_a) == 0
    assert await dev_a.subscribe(f"nxg/{sa}/prop") == [1]  # its snapshot is retained from now on
    assert json.loads((await dev_a.next_message()).payload)["props"]["secret"]["value"] == "A"
    integrator = paho("b-props")
    assert await integrator.connect(stack.broker.mqtt_port, "key", b.user) == 0
    assert await integrator.subscribe(f"nxg/{sa}/prop") == [128]
    assert await integrator.subscribe(f"nxg/{sa}/prop/res") == [128]
    assert await integrator.subscribe("nxg/+/prop") == [1]  # retained snapshots: B's only
    # B's key cannot set A's device's properties over MQTT (a device's topic, not the key's)
    await integrator.publish(f"nxg/{sa}/prop/set", json.dumps({"id": "x", "name": "secret", "value": "B"}))
    await integrator.publish(f"nxg/{sb}/prop/set", json.dumps({"id": "y", "name": "mine", "value": "C"}))
    await acted(a.http, "devices_SetProperty", {"deviceId": sa, "name": "secret", "value": "A2"})
    await acted(b.http, "devices_SetProperty", {"deviceId": sb, "name": "mine", "value": "B2"})
    got = await integrator.quiet(0.8)
    assert got and all(m.topic == f"nxg/{sb}/prop" for m in got), [m.topic for m in got]
    assert (await acted(a.http, "devices_GetProperty", {"deviceId": sa, "name": "secret"}))["value"] == "A2"
    assert (await acted(b.http, "devices_GetProperty", {"deviceId": sb, "name": "mine"}))["value"] == "B2"
    assert secret_b  # B's device never spoke: its snapshot exists from the app's set alone
