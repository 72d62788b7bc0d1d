"""Seed 002's command endpoints over the whole stack: every rejection code with its status and
body, the critical action's dry-run → confirm → ack, tokens replayed / expired / for another
device, batch, intent, the command history, and the rate limit's 429 with Retry-After."""

from __future__ import annotations

import asyncio
import contextlib
import re
from pathlib import Path
from typing import Any

import httpx

from tests.bridge.helpers import Stack, open_stack, pair_gateway, recv_until, send_json
from tests.factories import make_settings

LIGHT = {
    "action": "light_on",
    "targets": ["l1"],
    "category": "light",
    "paramSchema": {
        "type": "object",
        "properties": {"brightness": {"type": "integer", "minimum": 0, "maximum": 100}},
        "required": ["brightness"],
    },
    "outputSchema": {"type": "object", "required": ["level"]},
}
UNLOCK = {"action": "unlock", "safetyClass": "critical", "supportsDryRun": True}
MANIFEST = {"capabilities": [LIGHT, UNLOCK]}
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


async def with_manifest(stack: Stack, serial: str) -> None:
    await stack.create_device(serial)
    response = await stack.http.post(f"/api/v1/devices/{serial}/manifest", json=MANIFEST)
    assert response.status_code == 201, response.text


def rejected(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False and body["code"] == code and body["error"], body
    assert isinstance(body["details"], list)
    return dict(body)


async def test_a_command_is_202_reaches_the_device_and_its_ack_closes_it(stack: Stack) -> None:
    ws, _ = await pair_gateway(stack, "d1")
    response = await stack.http.post("/api/v1/devices/d1/manifest", json=MANIFEST)
    assert response.status_code == 201
    response = await stack.http.post(
        "/api/v1/device/d1/command", json={"action": "light_on", "target": "l1", "params": {"brightness": 40}}
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["success"] is True and body["command_id"].startswith("c_") and len(body["message_id"]) == 36
    cmd = await recv_until(ws, "cmd")
    assert cmd["id"] == body["command_id"] and cmd["params"] == {"brightness": 40} and cmd["target"] == "l1"
    await send_json(ws, {"t": "ack", "id": cmd["id"], "ok": True, "result": {"level": 40}})
    for _ in range(100):
        listing = (await stack.http.get("/api/v1/device/d1/commands")).json()
        if listing["commands"][0]["status"] == "acked":
            break
        await asyncio.sleep(0.05)
    [entry] = listing["commands"]
    assert entry["id"] == body["command_id"] and entry["status"] == "acked" and entry["action"] == "light_on"
    assert ISO.match(entry["timestamp"]) and entry["params"] == {"brightness": 40} and listing["next_before"] is None
    await ws.close()


async def test_rejections_have_the_protocol_codes_statuses_and_bodies(stack: Stack) -> None:
    await with_manifest(stack, "d1")
    post = stack.http.post
    rejected(await post("/api/v1/device/d1/command", json={"action": "light_off"}), 400, "ACTION_NOT_IN_MANIFEST")
    rejected(
        await post(
            "/api/v1/device/d1/command", json={"action": "light_on", "target": "l7", "params": {"brightness": 1}}
        ),
        400,
        "ACTION_NOT_IN_MANIFEST",
    )
    invalid = rejected(
        await post("/api/v1/device/d1/command", json={"action": "light_on", "params": {"brightness": 101}}),
        400,
        "PARAMS_INVALID",
    )
    assert invalid["details"] == [{"path": "$.brightness", "message": "101 is greater than the maximum of 100"}]
    rejected(await post("/api/v1/device/d1/command", json={"action": "_reboot"}), 403, "RESTRICTED_ACTION")
    rejected(await post("/api/v1/device/ghost/command", json={"action": "x"}), 404, "DEVICE_NOT_FOUND")
    await stack.core.store.db.conn.execute("UPDATE devices SET revoked = 1 WHERE serial = 'd1'")
    rejected(await post("/api/v1/device/d1/command", json={"action": "light_off"}), 403, "DEVICE_REVOKED")
    response = await stack.http.post(
        "/api/v1/device/d1/command", json={"action": "x"}, headers={"Authorization": "Bearer no"}
    )
    assert response.status_code == 401
    assert (await stack.http.get("/api/v1/device/d1/commands")).json()["commands"] == []


async def test_a_store_failure_is_a_502_gateway_error_and_nothing_is_sent(stack: Stack) -> None:
    """A real internal failure, no mock: the commands table is renamed away under the running
    server, so the command writer's transaction fails. REST answers 502 GATEWAY_ERROR, `/ws/app`
    an `error` with that code, the device receives nothing, and once the table is back the next
    command goes through (the writer recovers)."""
    ws, _ = await pair_gateway(stack, "d1")
    conn = stack.core.store.db.conn
    await conn.execute("ALTER TABLE commands RENAME TO commands_away")
    try:
        rejected(await stack.http.post("/api/v1/device/d1/command", json={"action": "light_on"}), 502, "GATEWAY_ERROR")
        app = await stack.app_socket()
        await send_json(app, {"t": "cmd", "serial": "d1", "action": "light_on", "ref": "r1"})
        error = await recv_until(app, "error")
        assert error["code"] == "GATEWAY_ERROR" and error["ref"] == "r1", error
        await app.close()
        with contextlib.suppress(TimeoutError):
            unexpected = await recv_until(ws, "cmd", within_s=0.5)
            raise AssertionError(f"the device received a command that was never stored: {unexpected}")
    finally:
        await conn.execute("ALTER TABLE commands_away RENAME TO commands")
    response = await stack.http.post("/api/v1/device/d1/command", json={"action": "light_on"})
    assert response.status_code == 202, response.text
    assert (await recv_until(ws, "cmd"))["id"] == response.json()["command_id"]


async def test_manifest_required(tmp_path: Path) -> None:
    async with open_stack(make_settings(tmp_path, require_manifest=True)) as stack:
        await stack.create_device("bare")
        rejected(await stack.http.post("/api/v1/device/bare/command", json={"action": "x"}), 400, "MANIFEST_NOT_FOUND")


async def test_critical_action_dry_run_confirm_ack_and_token_misuse(tmp_path: Path) -> None:
    async with open_stack(make_settings(tmp_path, dry_run_token_s=1.0)) as stack:
        ws, _ = await pair_gateway(stack, "d1")
        await stack.http.post("/api/v1/devices/d1/manifest", json=MANIFEST)
        await with_manifest(stack, "d2")
        response = await stack.http.post("/api/v1/device/d1/command", json={"action": "unlock", "params": {"door": 1}})
        assert response.status_code == 409
        body = response.json()
        assert body.keys() == {"status", "reason", "dry_run_token"} and body["status"] == "dry_run_required"
        # a dry run validates only (token bound to its own params)
        dry = await stack.http.post(
            "/api/v1/device/d1/command", json={"action": "unlock", "params": {"door": 2}, "dry_run": True}
        )
        assert dry.status_code == 200 and dry.json()["dry_run"] is True
        token = dry.json()["dry_run_token"]
        other = await stack.http.post("/api/v1/device/d2/command/confirm", json={"dry_run_token": token})
        assert "another device" in rejected(other, 400, "DRY_RUN_TOKEN_INVALID")["error"]
        confirmed = await stack.http.post("/api/v1/device/d1/command/confirm", json={"dry_run_token": token})
        assert confirmed.status_code == 202 and confirmed.json()["success"] is True
        cmd = await recv_until(ws, "cmd")
        assert (
            cmd["action"] == "unlock" and cmd["params"] == {"door": 2} and cmd["id"] == confirmed.json()["command_id"]
        )
        await send_json(ws, {"t": "ack", "id": cmd["id"], "ok": True})
        replay = await stack.http.post("/api/v1/device/d1/command/confirm", json={"dry_run_token": token})
        assert "already used" in rejected(replay, 400, "DRY_RUN_TOKEN_INVALID")["error"]
        # expiry: the token of the 409 above, after its lifetime
        await asyncio.sleep(1.1)
        late = await stack.http.post("/api/v1/device/d1/command/confirm", json={"dry_run_token": body["dry_run_token"]})
        assert "expired" in rejected(late, 400, "DRY_RUN_TOKEN_INVALID")["error"]
        normal = await stack.http.post(
            "/api/v1/device/d1/command", json={"action": "light_on", "params": {"brightness": 1}, "dry_run": True}
        )
        assert normal.status_code == 200 and normal.json()["dry_run_token"] is None
        listing = (await stack.http.get("/api/v1/device/d1/commands")).json()["commands"]
        assert [c["action"] for c in listing] == ["unlock"]  # dry runs and refusals store nothing
        await ws.close()


async def test_batch_gives_each_device_its_own_result(stack: Stack) -> None:
    await with_manifest(stack, "d1")
    await stack.create_device("d2")  # no manifest: accepts anything
    await with_manifest(stack, "d3")
    response = await stack.http.post(
        "/api/v1/devices/command",
        json={"device_ids": ["d1", "ghost", "d2", "d3"], "action": "light_on", "params": {"brightness": 7}},
    )
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["device_id"] for r in results] == ["d1", "ghost", "d2", "d3"]
    assert [r["success"] for r in results] == [True, False, True, True]
    assert results[1]["code"] == "DEVICE_NOT_FOUND" and "message_id" in results[0]
    bad = await stack.http.post(
        "/api/v1/devices/command", json={"device_ids": ["d1", "d2"], "action": "light_on", "params": {"brightness": -1}}
    )
    assert [r.get("code") for r in bad.json()["results"]] == ["PARAMS_INVALID", None]
    critical = await stack.http.post("/api/v1/devices/command", json={"device_ids": ["d1"], "action": "unlock"})
    [result] = critical.json()["results"]
    assert result["code"] == "DRY_RUN_REQUIRED" and result["dry_run_token"]
    rejected(
        await stack.http.post("/api/v1/devices/command", json={"device_ids": [], "action": "x"}), 400, "INVALID_COMMAND"
    )


async def test_batch_goes_in_one_transaction_and_reaches_every_device_in_order(tmp_path: Path) -> None:
    """The batch is submitted together (one writer transaction for all its devices), a device
    named twice gets both commands in the order given, and the rate limit admits the first ones."""
    async with open_stack(make_settings(tmp_path, command_rate_limit=4)) as stack:
        devices = {serial: (await pair_gateway(stack, serial))[0] for serial in ("b1", "b2")}
        writer = stack.core.store.command_writer
        batches = writer.batches
        response = await stack.http.post(
            "/api/v1/devices/command",
            json={"device_ids": ["b1", "ghost", "b2", "b1", "b2", "b1"], "action": "go", "params": {"n": 1}},
        )
        assert response.status_code == 200
        results = response.json()["results"]
        assert [r.get("code") for r in results] == [None, "DEVICE_NOT_FOUND", None, None, None, "RATE_LIMIT_EXCEEDED"]
        assert writer.batches - batches == 1  # four inserts and the refusal's audit row: one COMMIT
        ids: dict[str, list[str]] = {r["device_id"]: [] for r in results if r["success"]}
        for r in results:
            if r["success"]:
                ids[r["device_id"]].append(r["command_id"])
        for serial, ws in devices.items():
            got = [(await recv_until(ws, "cmd"))["id"] for _ in ids[serial]]
            assert got == ids[serial]


async def test_intent_device_control_only(stack: Stack) -> None:
    await with_manifest(stack, "d1")
    response = await stack.http.post(
        "/api/v1/intent",
        json={
            "type": "device.control",
            "payload": {"device_id": "d1", "action": "light_on", "params": {"brightness": 9}},
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "SUCCESS" and body["commands_executed"] == 1 and body["commands_rejected"] == 0
    [result] = body["results"]
    assert result["device_id"] == "d1" and result["action"] == "light_on" and result["command_id"].startswith("c_")
    assert result["status"] in ("queued", "dispatched")
    rejected(await stack.http.post("/api/v1/intent", json={"type": "scene.set", "payload": {}}), 400, "INVALID_INTENT")
    refused = await stack.http.post(
        "/api/v1/intent",
        json={"type": "device.control", "payload": {"device_id": "d1", "action": "light_on", "params": {}}},
    )
    rejected(refused, 400, "PARAMS_INVALID")
    rejected(
        await stack.http.post(
            "/api/v1/intent", json={"type": "device.control", "payload": {"device_id": "d1", "action": "_x"}}
        ),
        403,
        "RESTRICTED_ACTION",
    )


async def test_rate_limit_is_429_with_retry_after_and_refusals_do_not_count(tmp_path: Path) -> None:
    async with open_stack(make_settings(tmp_path, command_rate_limit=2)) as stack:
        await with_manifest(stack, "d1")
        ok = {"action": "light_on", "params": {"brightness": 1}}
        for _ in range(3):  # refused: not counted
            rejected(
                await stack.http.post("/api/v1/device/d1/command", json={"action": "nope"}),
                400,
                "ACTION_NOT_IN_MANIFEST",
            )
        for _ in range(2):
            assert (await stack.http.post("/api/v1/device/d1/command", json=ok)).status_code == 202
        limited = await stack.http.post("/api/v1/device/d1/command", json=ok)
        rejected(limited, 429, "RATE_LIMIT_EXCEEDED")
        assert 1 <= int(limited.headers["Retry-After"]) <= 60


async def test_history_pages(stack: Stack) -> None:
    await stack.create_device("d1")
    ids = [
        (await stack.http.post("/api/v1/device/d1/command", json={"action": "go", "params": {"n": n}})).json()[
            "command_id"
        ]
        for n in range(3)
    ]
    first = (await stack.http.get("/api/v1/device/d1/commands", params={"limit": 2})).json()
    second = (
        await stack.http.get("/api/v1/device/d1/commands", params={"limit": 2, "before": first["next_before"]})
    ).json()
    assert [c["id"] for c in first["commands"] + second["commands"]] == ids[::-1] and second["next_before"] is None
    assert (await stack.http.get("/api/v1/device/d1/commands", params={"limit": "x"})).status_code == 400
    rejected(await stack.http.get("/api/v1/device/ghost/commands"), 404, "DEVICE_NOT_FOUND")


async def statuses(stack: Stack, serial: str) -> dict[str, dict[str, Any]]:
    listing = (await stack.http.get(f"/api/v1/device/{serial}/commands")).json()["commands"]
    return {c["id"]: c for c in listing}


async def wait_status(stack: Stack, serial: str, command_id: str, status: str, within_s: float) -> dict[str, Any]:
    for _ in range(int(within_s / 0.1)):
        entry = (await statuses(stack, serial))[command_id]
        if entry["status"] == status:
            return entry
        await asyncio.sleep(0.1)
    return (await statuses(stack, serial))[command_id]


async def test_lifecycle_queued_delivered_expired_timeout_failed(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, command_ttl_s=1.0, command_ack_timeout_s=1.0)
    async with open_stack(settings) as stack:
        go = {"action": "go"}
        # offline: queued, then delivered when it is back
        ws, token = await pair_gateway(stack, "d1")
        await ws.close()
        await stack.create_device("gone")  # never comes back: expires in the queue
        for _ in range(50):
            if not stack.core.presence.is_ready("d1"):
                break
            await asyncio.sleep(0.05)
        queued = (await stack.http.post("/api/v1/device/d1/command", json=go)).json()["command_id"]
        lost = (await stack.http.post("/api/v1/device/gone/command", json=go)).json()["command_id"]
        assert (await statuses(stack, "d1"))[queued]["status"] == "queued"
        ws = await stack.gateway()
        await send_json(ws, {"t": "auth", "token": token})
        assert (await recv_until(ws, "cmd"))["id"] == queued
        await send_json(ws, {"t": "ack", "id": queued, "ok": False, "error": "jammed"})
        failed = await wait_status(stack, "d1", queued, "failed", 3)
        assert failed["status"] == "failed" and failed["error"] == "jammed"
        # dispatched, never acknowledged: timeout
        silent = (await stack.http.post("/api/v1/device/d1/command", json=go)).json()["command_id"]
        assert (await recv_until(ws, "cmd"))["id"] == silent
        assert (await wait_status(stack, "d1", silent, "timeout", 4))["status"] == "timeout"
        # the sweep looks at the queue every 5 s
        expired = await wait_status(stack, "gone", lost, "expired", 8)
        assert expired["status"] == "expired" and "finished_at" in expired
        await ws.close()
