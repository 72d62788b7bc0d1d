"""Seed 002's firmware endpoints over the whole stack, with a `/ws/gateway` device standing in for
firmware (the C host client's own story is `tests/firmware/test_ota.py`): upload → release →
the online device receives `_ota` with url + checksum, the download is resumed with `Range`, the
device's events and `fw` status move its rollout state; an offline device gets `_ota` when it
is back; `firmware/check` before and after; the error bodies (400/401/403/404/409/413/416); `_ota`
refused from every command surface."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection

from tests.bridge.helpers import Stack, open_stack, pair_gateway, recv_until, send_json
from tests.bridge.test_api_keys import as_key, create
from tests.bridge.test_rejection_matrix import PATHS
from tests.factories import make_settings
from tests.mqtt_client import Clients

BINARY = os.urandom(300_000)
CHECKSUM = hashlib.sha256(BINARY).hexdigest()


def refused(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["success"] is False and body["code"] == code and body["error"] and isinstance(body["details"], list)
    return body


async def upload(stack: Stack, version: str, binary: bytes = BINARY, device_type: str = "esp32") -> dict[str, Any]:
    files = {"file": ("app.bin", binary, "application/octet-stream")}
    response = await stack.http.post(
        "/api/v1/firmware/release", data={"device_type": device_type, "version": version}, files=files
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def as_device(stack: Stack, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=stack.base, headers={"Authorization": f"Bearer {token}"}, timeout=5.0)


async def check(stack: Stack, token: str, current: str) -> dict[str, Any]:
    async with as_device(stack, token) as device:
        response = await device.post(
            "/api/v1/firmware/check", json={"device_type": "esp32", "current_version": current}
        )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def state_of(stack: Stack, release_id: str, serial: str, want: str) -> dict[str, Any]:
    for _ in range(100):
        body = (await stack.http.get(f"/api/v1/firmware/{release_id}")).json()
        [row] = [d for d in body["rollout"]["devices"] if d["device_id"] == serial]
        if row["state"] == want:
            return dict(row)
        await asyncio.sleep(0.05)
    raise AssertionError(f"{serial} stayed {row['state']}, not {want}")


async def ota_of(ws: ClientConnection) -> dict[str, Any]:
    cmd = await recv_until(ws, "cmd", action="_ota")
    await send_json(ws, {"t": "ack", "id": cmd["id"], "ok": True})
    return cmd


async def register_gateway(stack: Stack, device_type: str) -> tuple[ClientConnection, str, str]:
    """A device registered seed 002's way (with a type), logged in on `/ws/gateway` with its
    secret: (socket, secret, serial)."""
    response = await stack.http.post("/api/v1/device/register", json={"device_type": device_type})
    assert response.status_code == 201, response.text
    serial, secret = response.json()["device_id"], response.json()["device_secret"]
    ws = await stack.gateway()
    await send_json(ws, {"t": "auth", "token": secret})
    await recv_until(ws, "auth_ok")
    return ws, secret, serial


@pytest.fixture
async def public(tmp_path: Path) -> Any:
    # devices are sent to --public-host (the stack listens on loopback only); the test's gateway
    # devices answer no pings, so the pong timeout is long enough for a slow, shared machine
    settings = make_settings(tmp_path, public_host="127.0.0.1", ws_ping_interval_s=30.0, ws_pong_timeout_s=90.0)
    async with open_stack(settings) as stack:
        yield stack


async def test_upload_release_download_with_resume_and_the_rollout(public: Stack) -> None:
    stack = public
    online, token, d1 = await register_gateway(stack, "esp32")
    offline, later_token, d2 = await register_gateway(stack, "esp32")
    # neither a device of another type nor one of no type is "every device of the type"
    other_type, _, _ = await register_gateway(stack, "esp8266")
    untyped, untyped_token = await pair_gateway(stack, "plain")
    await offline.close()
    for _ in range(100):  # the server has seen it go
        if not stack.core.presence.is_ready(d2):
            break
        await asyncio.sleep(0.02)
    assert await check(stack, token, "1.0.0") == {
        "update_available": False,
        "target_version": None,
        "url": None,
        "checksum": None,
        "size": None,
    }

    created = await upload(stack, "1.1.0")
    assert created["status"] == "created" and created["id"].startswith("fw_")
    assert (created["checksum"], created["size"], created["released"]) == (CHECKSUM, len(BINARY), False)
    assert (stack.core.settings.data_dir / "firmware" / f"{created['id']}.bin").read_bytes() == BINARY
    assert (await check(stack, token, "1.0.0"))["update_available"] is False  # not released yet

    released = await stack.http.post(f"/api/v1/firmware/{created['id']}/release", json={})
    assert released.status_code == 200, released.text
    by_device = {r["device_id"]: r for r in released.json()["results"]}
    assert by_device[d1]["state"] == "sent" and by_device[d2]["state"] == "pending"
    assert released.json()["released"] is True and released.json()["target_all"] is True
    assert set(by_device) == {d1, d2}

    cmd = await ota_of(online)
    params = cmd["params"]
    url = f"{stack.base}/api/v1/firmware/{created['id']}/download"
    assert params == {"url": url, "checksum": CHECKSUM, "version": "1.1.0", "size": len(BINARY)}
    assert cmd["id"] == by_device[d1]["command_id"]

    # the download, interrupted after 100,000 bytes and resumed with Range, with the device's token
    async with as_device(stack, token) as device:
        first = await device.get(params["url"], headers={"Range": "bytes=0-99999"})
        assert first.status_code == 206 and first.headers["content-range"] == f"bytes 0-99999/{len(BINARY)}"
        rest = await device.get(params["url"], headers={"Range": "bytes=100000-"})
        assert rest.status_code == 206 and rest.headers["content-range"] == f"bytes 100000-299999/{len(BINARY)}"
        whole = await device.get(params["url"])
        assert whole.status_code == 200 and whole.headers["accept-ranges"] == "bytes"
    assert hashlib.sha256(first.content + rest.content).hexdigest() == params["checksum"]
    assert whole.content == BINARY

    await state_of(stack, created["id"], d1, "sent")
    await send_json(online, {"t": "event", "type": "ota_started", "version": "1.1.0"})
    await send_json(online, {"t": "event", "type": "ota_progress", "version": "1.1.0", "progress": 40})
    row = await state_of(stack, created["id"], d1, "started")
    for _ in range(50):
        if row["progress"] == 40:
            break
        row = await state_of(stack, created["id"], d1, "started")
    assert row["progress"] == 40
    await send_json(online, {"t": "status", "fw": "1.1.0"})
    row = await state_of(stack, created["id"], d1, "applied")
    assert row["progress"] == 100 and row["error"] is None

    # before and after: the check answers for the calling device
    before = await check(stack, token, "1.0.0")
    assert before == {
        "update_available": True,
        "target_version": "1.1.0",
        "url": url,
        "checksum": CHECKSUM,
        "size": len(BINARY),
    }
    after = await check(stack, token, "1.1.0")
    assert after["update_available"] is False and after["target_version"] == "1.1.0" and after["url"] is None
    assert (await check(stack, token, "1.1.0-rc.1"))["update_available"] is True  # a pre-release is older
    assert (await check(stack, token, "1.10.0"))["update_available"] is False  # 1.10 > 1.1, not text order

    # the offline device gets its _ota when it is back
    assert (await state_of(stack, created["id"], d2, "pending"))["command_id"]
    back = await stack.gateway()
    await send_json(back, {"t": "auth", "token": later_token})
    await recv_until(back, "auth_ok")
    cmd2 = await ota_of(back)
    assert cmd2["params"]["checksum"] == CHECKSUM
    await state_of(stack, created["id"], d2, "sent")
    await send_json(back, {"t": "event", "type": "ota_failed", "version": "1.1.0", "error": "flash write failed"})
    row = await state_of(stack, created["id"], d2, "failed")
    assert row["error"] == "flash write failed"
    counts = (await stack.http.get(f"/api/v1/firmware/{created['id']}")).json()["rollout"]["counts"]
    assert counts == {"pending": 0, "sent": 0, "started": 0, "applied": 1, "failed": 1}

    # releasing again re-sends only to the device whose attempt failed
    again = (await stack.http.post(f"/api/v1/firmware/{created['id']}/release", json={})).json()["results"]
    assert {r["device_id"]: r["sent"] for r in again} == {d1: False, d2: True}
    assert (await ota_of(back))["params"]["version"] == "1.1.0"
    # the device of no type is offered nothing of a whole-type release, nor may it download it
    assert (await check(stack, untyped_token, "1.0.0"))["update_available"] is False
    async with as_device(stack, untyped_token) as device:
        refused(await device.get(url), 404, "FIRMWARE_NOT_FOUND")
    for ws in (online, back, other_type, untyped):
        await ws.close()


async def test_a_raw_body_upload_and_a_staged_rollout_to_listed_devices(public: Stack) -> None:
    stack = public
    ws1, token1 = await pair_gateway(stack, "a1")
    _, token2 = await pair_gateway(stack, "a2")
    response = await stack.http.post("/api/v1/firmware/release?device_type=esp32&version=2.0.0", content=b"\x01" * 5000)
    assert response.status_code == 201, response.text
    release = response.json()
    assert release["checksum"] == hashlib.sha256(b"\x01" * 5000).hexdigest() and release["size"] == 5000
    results = (await stack.http.post(f"/api/v1/firmware/{release['id']}/release", json={"device_ids": ["a1"]})).json()
    assert [r["device_id"] for r in results["results"]] == ["a1"] and results["target_all"] is False
    await ota_of(ws1)
    # only a1 is offered it; a2 is neither told nor allowed to download it
    assert (await check(stack, token1, "1.0.0"))["target_version"] == "2.0.0"
    assert (await check(stack, token2, "1.0.0"))["update_available"] is False
    async with as_device(stack, token2) as other:
        refused(await other.get(release["url"]), 404, "FIRMWARE_NOT_FOUND")
    await ws1.close()


async def test_a_staged_rollout_to_a_group_and_to_a_room(public: Stack) -> None:
    stack = public
    ws1, token1 = await pair_gateway(stack, "g1")  # of no type: named by its group, it gets the release
    ws2, _, r1 = await register_gateway(stack, "esp32")
    release = await upload(stack, "3.0.0", b"\x02" * 100)
    releasing = f"/api/v1/firmware/{release['id']}/release"
    refused(await stack.http.post(releasing, json={"group": "kitchen"}), 404, "GROUP_NOT_FOUND")
    refused(await stack.http.post(releasing, json={"room_id": "r1"}), 404, "ROOM_NOT_FOUND")
    group = await stack.http.post("/api/v1/groups", json={"name": "Kitchen", "device_ids": ["g1"]})
    assert group.status_code == 201, group.text
    to_group = await stack.http.post(releasing, json={"group": "kitchen"})
    assert to_group.status_code == 200, to_group.text
    assert [r["device_id"] for r in to_group.json()["results"]] == ["g1"] and to_group.json()["target_all"] is False
    assert (await ota_of(ws1))["params"]["version"] == "3.0.0"
    assert (await check(stack, token1, "1.0.0"))["target_version"] == "3.0.0"

    home = (await stack.http.post("/api/v1/homes", json={"home_name": "Flat", "timezone": "Europe/Paris"})).json()
    room = await stack.http.post(f"/api/v1/homes/{home['id']}/rooms", json={"name": "Hall"})
    assert room.status_code == 201, room.text
    placed = await stack.http.post(
        "/api/v1/device/register", json={"device_type": "esp32", "home_id": home["id"], "room_id": room.json()["id"]}
    )
    assert placed.status_code == 201, placed.text
    to_room = await stack.http.post(releasing, json={"room_id": room.json()["id"]})
    assert to_room.status_code == 200, to_room.text
    assert [r["device_id"] for r in to_room.json()["results"]] == [placed.json()["device_id"]]
    rollout = (await stack.http.get(f"/api/v1/firmware/{release['id']}")).json()["rollout"]["devices"]
    assert {d["device_id"] for d in rollout} == {"g1", placed.json()["device_id"]}  # r1 was never named
    assert r1 not in {d["device_id"] for d in rollout}
    await ws1.close()
    await ws2.close()


async def test_error_bodies(public: Stack) -> None:
    stack = public
    _, token = await pair_gateway(stack, "e1")
    post = stack.http.post
    refused(await post("/api/v1/firmware/release?device_type=esp32&version=1.2", content=b"x"), 400, "INVALID_VERSION")
    refused(
        await post("/api/v1/firmware/release?device_type=esp32&version=v1.2.0", content=b"x"), 400, "INVALID_VERSION"
    )
    refused(await post("/api/v1/firmware/release?version=1.2.0", content=b"x"), 400, "INVALID_DEVICE_TYPE")
    refused(
        await post("/api/v1/firmware/release?device_type=esp32&version=1.2.0", content=b""), 400, "INVALID_FIRMWARE"
    )
    refused(
        # a multipart form without its file part
        await post("/api/v1/firmware/release", files={"device_type": (None, "esp32"), "version": (None, "1.0.0")}),
        400,
        "INVALID_FIRMWARE",
    )
    garbled = await post(
        "/api/v1/firmware/release",
        content=b"--xyz\r\nContent-Disposition: form-data\r\n\r\nno name\r\n--xyz--\r\n",
        headers={"Content-Type": "multipart/form-data; boundary=xyz"},
    )
    refused(garbled, 400, "INVALID_FIRMWARE")
    release = await upload(stack, "1.2.0", b"abcdefghij")
    refused(
        await post("/api/v1/firmware/release?device_type=esp32&version=1.2.0%2Bbuild.7", content=b"y"),
        409,
        "FIRMWARE_EXISTS",
    )
    releasing = f"/api/v1/firmware/{release['id']}/release"
    refused(await post(releasing, json={"device_ids": "e1"}), 400, "INVALID_TARGET")
    refused(await post(releasing, json={"device_ids": ["e1"], "group": "g"}), 400, "INVALID_TARGET")
    refused(await post(releasing, json={"device_ids": ["ghost"]}), 404, "DEVICE_NOT_FOUND")
    refused(await stack.http.get("/api/v1/firmware/fw_nope"), 404, "FIRMWARE_NOT_FOUND")
    refused(await post("/api/v1/firmware/fw_nope/release", json={}), 404, "FIRMWARE_NOT_FOUND")
    async with as_device(stack, token) as device:
        refused(await device.get(release["url"]), 404, "FIRMWARE_NOT_FOUND")  # not released yet
        bad = await device.post("/api/v1/firmware/check", json={"device_type": "esp32", "current_version": "one"})
        refused(bad, 400, "INVALID_VERSION")
        refused(
            await device.post("/api/v1/firmware/check", json={"current_version": "1.0.0"}), 400, "INVALID_DEVICE_TYPE"
        )
        # a device token is for checking and downloading, not for managing releases
        refused(await device.get(f"/api/v1/firmware/{release['id']}"), 401, "UNAUTHORIZED")

    # 401: no credential, a wrong device token (never counted as an admin password guess)
    async with httpx.AsyncClient(base_url=stack.base, timeout=5.0) as anonymous:
        refused(await anonymous.post("/api/v1/firmware/check", json={}), 401, "UNAUTHORIZED")
        refused(await anonymous.get(release["url"]), 401, "UNAUTHORIZED")
        refused(await anonymous.get(release["url"] + "?token=nxgt_wrong"), 401, "UNAUTHORIZED")
        refused(await anonymous.post("/api/v1/firmware/release", content=b"x"), 401, "UNAUTHORIZED")

    # 403: a user key may check and read, not upload or release
    key = (await create(stack, name="app", role="user"))["key"]
    async with as_key(stack, key) as user:
        refused(
            await user.post("/api/v1/firmware/release?device_type=esp32&version=9.0.0", content=b"x"), 403, "FORBIDDEN"
        )
        refused(await user.post(releasing, json={}), 403, "FORBIDDEN")
        assert (await user.get(f"/api/v1/firmware/{release['id']}")).status_code == 200
        assert (await user.get(release["url"])).content == b"abcdefghij"  # a key may download too

    # 416: ranges that cannot be served name the file's size
    for bad_range in ("bytes=10-", "bytes=20-30", "bytes=0-1,4-5", "bytes=abc", "items=0-1", "bytes=-0", "bytes=5-2"):
        response = await stack.http.get(release["url"], headers={"Range": bad_range})
        refused(response, 416, "RANGE_NOT_SATISFIABLE")
        assert response.headers["content-range"] == "bytes */10"
    head = await stack.http.head(release["url"])
    assert head.status_code == 200 and head.headers["content-length"] == "10" and head.content == b""
    tail = await stack.http.get(release["url"], headers={"Range": "bytes=-3"})
    assert tail.status_code == 206 and tail.content == b"hij" and tail.headers["content-range"] == "bytes 7-9/10"
    clipped = await stack.http.get(release["url"], headers={"Range": "bytes=8-100"})
    assert clipped.status_code == 206 and clipped.content == b"ij"
    stale = await stack.http.get(release["url"], headers={"Range": "bytes=8-", "If-Range": '"other"'})
    assert stale.status_code == 200 and stale.content == b"abcdefghij"  # the file changed: all of it


async def test_uploads_over_the_limit_are_413(tmp_path: Path) -> None:
    async with open_stack(make_settings(tmp_path, firmware_max_bytes=1000)) as stack:
        raw = await stack.http.post("/api/v1/firmware/release?device_type=esp32&version=1.0.0", content=b"z" * 1001)
        refused(raw, 413, "PAYLOAD_TOO_LARGE")
        files = {"file": ("big.bin", b"z" * 70_000, "application/octet-stream")}
        form = await stack.http.post(
            "/api/v1/firmware/release", data={"device_type": "esp32", "version": "1.0.0"}, files=files
        )
        refused(form, 413, "PAYLOAD_TOO_LARGE")
        assert [p.name for p in (tmp_path / "firmware").iterdir()] == []  # nothing left behind
        assert (await upload(stack, "1.0.0", b"z" * 1000))["size"] == 1000


async def test_the_cut_setting_ends_unranged_downloads_early_and_a_resume_completes(tmp_path: Path) -> None:
    async with open_stack(make_settings(tmp_path, firmware_cut_at_bytes=70_000)) as stack:
        release = await upload(stack, "1.0.0")
        got = bytearray()

        async def read_all() -> None:
            url = f"/api/v1/firmware/{release['id']}/download"
            async with stack.http.stream("GET", url) as response:
                assert response.status_code == 200 and response.headers["content-length"] == str(len(BINARY))
                async for chunk in response.aiter_bytes():
                    got.extend(chunk)

        with pytest.raises(httpx.RemoteProtocolError):
            await read_all()
        assert len(got) == 70_000
        rest = await stack.http.get(
            f"/api/v1/firmware/{release['id']}/download", headers={"Range": f"bytes={len(got)}-"}
        )
        assert rest.status_code == 206 and bytes(got) + rest.content == BINARY


@pytest.mark.parametrize("path", sorted(PATHS))
async def test_ota_is_refused_from_every_command_surface(tmp_path: Path, paho: Clients, path: str) -> None:
    async with open_stack(make_settings(tmp_path)) as stack:
        await stack.create_device("dev")
        request = {"action": "_ota", "params": {"url": "http://evil/x.bin", "checksum": "0" * 64, "version": "6.6.6"}}
        assert await PATHS[path](stack, paho, "dev", request) == "RESTRICTED_ACTION"
        assert (await stack.http.get("/api/v1/device/dev/commands")).json()["commands"] == []


async def test_the_protocol_document_describes_ota(stack: Stack) -> None:
    ota = (await stack.http.get("/api/protocol")).json()["ota"]
    assert ota["command"]["action"] == "_ota" and set(ota["command"]["params"]) == {
        "url",
        "checksum",
        "version",
        "size",
    }
    assert [e["type"] for e in ota["events"]] == ["ota_started", "ota_progress", "ota_applied", "ota_failed"]
    assert ota["status_key"] == "fw"
