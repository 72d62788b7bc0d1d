"""The firmware's host client (`nxg-device`) takes a firmware update end to end against a real
`nxg-mqtt serve` (issue 13): an admin uploads and releases a binary; the online device receives
`_ota` with url + checksum, downloads it with its token, the server cuts the first response
(`--firmware-cut-at-bytes`, the test-controlled interruption) and the client resumes with
`Range`, verifies the SHA-256, writes it to `--ota-dir` and reports its new version (`fw`); a
device that was offline at the release gets it when it comes online; `firmware/check` answers
before and after. The client runs under ASan + UBSan."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.firmware.helpers import PASSWORD, Device, Server

BINARY = os.urandom(200_000)
CUT_AT = 50_000


def client(server: Server, secret: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{server.http_port}", headers={"Authorization": f"Bearer {secret}"}, timeout=10
    )


async def check(server: Server, token: str, current: str) -> dict[str, Any]:
    async with client(server, token) as device:
        response = await device.post(
            "/api/v1/firmware/check", json={"device_type": "esp32", "current_version": current}
        )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def rollout_state(http: httpx.AsyncClient, release_id: str, serial: str, want: str) -> None:
    for _ in range(200):
        devices = (await http.get(f"/api/v1/firmware/{release_id}")).json()["rollout"]["devices"]
        if any(d["device_id"] == serial and d["state"] == want for d in devices):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{serial} never reached {want}: {devices}")


async def stopped_cleanly(device: Device) -> None:
    code, stderr = await device.stop()
    assert code == 0, stderr
    assert "runtime error" not in stderr and "Sanitizer" not in stderr, stderr


@pytest.mark.parametrize("transport", ["mqtt", "ws"])
async def test_the_host_client_applies_a_release_with_a_resumed_download(
    binary: Path, tmp_path: Path, transport: str
) -> None:
    server = Server(tmp_path / "data", extra=["--public-host", "127.0.0.1", "--firmware-cut-at-bytes", str(CUT_AT)])
    await server.start()
    devices: list[Device] = []
    try:
        async with client(server, PASSWORD) as http:

            async def device(serial: str) -> tuple[Device, Path, Path]:
                created = await http.post("/api/devices", json={"serial": serial})
                assert created.status_code == 201, created.text
                store, ota_dir = tmp_path / f"{serial}.token", tmp_path / f"{serial}-ota"
                ota_dir.mkdir()
                port = server.mqtt_port if transport == "mqtt" else server.http_port
                args = ["--host", "127.0.0.1", "--port", str(port), "--transport", transport,
                        "--code", created.json()["code"],
                        "--store", str(store), "--interval-ms", "1000", "--ota-dir", str(ota_dir),
                        "--fw-version", "1.0.0"]  # fmt: skip
                devices.append(Device(binary, args))
                return devices[-1], store, ota_dir

            online, store, ota_dir = await device("ota-on")
            offline, offline_store, offline_dir = await device("ota-off")
            await online.start()
            await online.wait_line("^connected$")
            token = store.read_text().split()[1]
            assert (await check(server, token, "1.0.0"))["update_available"] is False

            upload = await http.post("/api/v1/firmware/release?device_type=esp32&version=1.1.0", content=BINARY)
            assert upload.status_code == 201, upload.text
            release = upload.json()
            # created with a connection code, the devices have no device_type: they are named
            body = {"device_ids": ["ota-on", "ota-off"]}
            released = await http.post(f"/api/v1/firmware/{release['id']}/release", json=body)
            assert released.status_code == 200, released.text
            states = {r["device_id"]: r["state"] for r in released.json()["results"]}
            assert states == {"ota-on": "sent", "ota-off": "pending"}

            # the online device: _ota accepted, the cut download resumed with Range, verified, applied
            await online.wait_line(r"^cmd id=c_\w+ action=_ota ok$")
            await online.wait_line(r"^ota 1\.1\.0: downloading 200000 bytes$")
            await online.wait_line(rf"^ota 1\.1\.0: interrupted at {CUT_AT} of 200000 bytes, resuming with Range$")
            await online.wait_line(r"^ota 1\.1\.0: checksum ok, applied$")
            assert (ota_dir / "firmware-1.1.0.bin").read_bytes() == BINARY
            assert (ota_dir / "current").read_text() == "1.1.0\n"
            assert not list(ota_dir.glob("*.part"))
            await rollout_state(http, release["id"], "ota-on", "applied")
            # the rollout follows ingest at once; history commits in batches, so it may lag a little
            for _ in range(100):
                history = (await http.get("/api/history", params={"serial": "ota-on", "type": "event"})).json()
                kinds = [m["type"] for m in reversed(history["messages"])]  # oldest first
                if "ota_applied" in kinds:
                    break
                await asyncio.sleep(0.05)
            assert kinds[0] == "ota_started" and {"ota_progress", "ota_applied"} <= set(kinds), kinds
            for _ in range(100):
                statuses = (await http.get("/api/history", params={"serial": "ota-on", "type": "status"})).json()
                if statuses["messages"] and statuses["messages"][0].get("fw") == "1.1.0":
                    break
                await asyncio.sleep(0.05)
            assert statuses["messages"][0]["fw"] == "1.1.0"  # the new version, reported by the device

            after = await check(server, token, "1.1.0")
            assert after["update_available"] is False and after["target_version"] == "1.1.0"
            before = await check(server, token, "1.0.0")
            assert before["update_available"] is True and before["checksum"] == hashlib.sha256(BINARY).hexdigest()

            # the device that was offline gets the queued _ota when it comes online
            await offline.start()
            await offline.wait_line(r"^ota 1\.1\.0: checksum ok, applied$", within_s=30)
            assert (offline_dir / "firmware-1.1.0.bin").read_bytes() == BINARY
            await rollout_state(http, release["id"], "ota-off", "applied")
            assert (await check(server, offline_store.read_text().split()[1], "1.1.0"))["update_available"] is False

            await stopped_cleanly(online)
            await stopped_cleanly(offline)
    finally:
        for each in devices:
            await each.kill()
        await server.stop()
