"""Every PROTOCOL §4 rejection code on every path that submits commands: REST, batch, intent,
`/ws/app`, raw `nxg/{S}/cmd/req` (a `bridge`-role client standing in for an integrator) and the
CLI. (`RATE_LIMIT_EXCEEDED` is the serving process's count, so the CLI, a process of its own, is
not in that row; `GATEWAY_ERROR` needs an internal failure and has no row.)"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.bridge.helpers import Stack, open_stack, recv_until, send_json
from tests.factories import make_settings
from tests.mqtt_client import Clients

MANIFEST = {
    "capabilities": [
        {
            "action": "set",
            "paramSchema": {"type": "object", "properties": {"level": {"type": "integer"}}, "required": ["level"]},
        },
        {"action": "unlock", "safetyClass": "critical"},
    ]
}
CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("ACTION_NOT_IN_MANIFEST", "dev", {"action": "fly"}),
    ("PARAMS_INVALID", "dev", {"action": "set", "params": {"level": "high"}}),
    ("RESTRICTED_ACTION", "dev", {"action": "_factory"}),
    ("DRY_RUN_REQUIRED", "dev", {"action": "unlock"}),
    ("DEVICE_NOT_FOUND", "ghost", {"action": "set", "params": {"level": 1}}),
    ("DEVICE_REVOKED", "revoked", {"action": "set", "params": {"level": 1}}),
    ("MANIFEST_NOT_FOUND", "bare", {"action": "set", "params": {"level": 1}}),
]
Path_ = Callable[[Stack, Clients, str, dict[str, Any]], Awaitable[str]]


def code_of(response: httpx.Response) -> str:
    """The code of a refused command; seed 002's 409 body names it by its `status` only."""
    body = response.json()
    if response.status_code == 409:
        assert body["status"] == "dry_run_required" and body["dry_run_token"]
        return "DRY_RUN_REQUIRED"
    assert response.status_code >= 400 and body["success"] is False, body
    return str(body["code"])


async def rest(stack: Stack, paho: Clients, serial: str, request: dict[str, Any]) -> str:
    return code_of(await stack.http.post(f"/api/v1/device/{serial}/command", json=request))


async def batch(stack: Stack, paho: Clients, serial: str, request: dict[str, Any]) -> str:
    response = await stack.http.post("/api/v1/devices/command", json={"device_ids": [serial], **request})
    return str(response.json()["results"][0].get("code"))


async def intent(stack: Stack, paho: Clients, serial: str, request: dict[str, Any]) -> str:
    body = {"type": "device.control", "payload": {"device_id": serial, **request}}
    return code_of(await stack.http.post("/api/v1/intent", json=body))


async def ws_app(stack: Stack, paho: Clients, serial: str, request: dict[str, Any]) -> str:
    app = await stack.app_socket()
    try:
        await send_json(app, {"t": "cmd", "serial": serial, "ref": "m", **request})
        return str((await recv_until(app, "error", ref="m"))["code"])
    finally:
        await app.close()


async def mqtt(stack: Stack, paho: Clients, serial: str, request: dict[str, Any]) -> str:
    integrator = paho(f"integrator-{len(paho.made)}")
    assert await integrator.connect(stack.broker.mqtt_port, "bridge", stack.core.settings.internal_secret) == 0
    await integrator.subscribe(f"nxg/{serial}/cmd/res")
    await integrator.publish(f"nxg/{serial}/cmd/req", json.dumps({"ref": "m", **request}))
    reply = json.loads((await integrator.next_message()).payload)
    assert reply["ref"] == "m" and reply["status"] == "rejected"
    return str(reply["code"])


async def cli(stack: Stack, paho: Clients, serial: str, request: dict[str, Any]) -> str:
    args = [sys.executable, "-m", "nxg_mqtt.cli", "cmd", serial, "--action", request["action"], "--require-manifest"]
    args += ["--params", json.dumps(request.get("params", {})), "--data", str(stack.core.settings.data_dir)]
    proc = await asyncio.to_thread(subprocess.run, args, capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0, proc.stdout
    return str(json.loads(proc.stderr.strip().splitlines()[-1])["code"])


PATHS: dict[str, Path_] = {"rest": rest, "batch": batch, "intent": intent, "ws_app": ws_app, "mqtt": mqtt, "cli": cli}


async def prepared(stack: Stack) -> None:
    for serial in ("dev", "bare", "revoked"):
        await stack.create_device(serial)
    await stack.core.manifests.put("dev", MANIFEST)
    await stack.core.manifests.put("revoked", MANIFEST)
    await stack.core.store.db.conn.execute("UPDATE devices SET revoked = 1 WHERE serial = 'revoked'")


@pytest.mark.parametrize("path", sorted(PATHS))
async def test_every_rejection_code_on_every_path(tmp_path: Path, paho: Clients, path: str) -> None:
    async with open_stack(make_settings(tmp_path, require_manifest=True)) as stack:
        await prepared(stack)
        seen = {code: await PATHS[path](stack, paho, serial, request) for code, serial, request in CASES}
        assert seen == {code: code for code, _, _ in CASES}
        assert (await stack.http.get("/api/v1/device/dev/commands")).json()["commands"] == []


@pytest.mark.parametrize("path", sorted(set(PATHS) - {"cli"}))
async def test_rate_limit_on_every_path(tmp_path: Path, paho: Clients, path: str) -> None:
    async with open_stack(make_settings(tmp_path, command_rate_limit=1)) as stack:
        await prepared(stack)
        ok = {"action": "set", "params": {"level": 1}}
        assert (await stack.http.post("/api/v1/device/dev/command", json=ok)).status_code == 202
        assert await PATHS[path](stack, paho, "dev", ok) == "RATE_LIMIT_EXCEEDED"
