"""The firmware's host client against a real `nxg-mqtt serve`, on each transport (issue 16).

One story per transport: pair with the code from the REST API and store the token; restart and
authenticate with the stored token (no second pairing); telemetry reaches `/ws/app`; `turn1 open`
from the app is executed and its ack reaches the app; after a REST `reset` it pairs again by
itself; after a server restart it reconnects; after `regenerate` it reports the code as refused
and backs off (its attempts are counted). The client is built with ASan + UBSan, which abort it
on any finding, and must exit 0 on SIGTERM."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.firmware.helpers import PASSWORD, Device, Server

WAIT_S = 15.0


async def app_until(app: ClientConnection, t: str, within_s: float = WAIT_S, **match: Any) -> dict[str, Any]:
    async with asyncio.timeout(within_s):
        while True:
            value = json.loads(await app.recv())
            if value.get("t") == t and all(value.get(k) == v for k, v in match.items()):
                assert isinstance(value, dict)
                return value


def rest(server: Server) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{server.http_port}", headers={"Authorization": f"Bearer {PASSWORD}"}, timeout=10
    )


async def stopped_cleanly(device: Device) -> None:
    code, stderr = await device.stop()
    assert code == 0, stderr
    assert "runtime error" not in stderr and "Sanitizer" not in stderr, stderr
    assert device.lines[-1][1] == "stopped"


@pytest.mark.parametrize("transport", ["mqtt", "ws"])
async def test_host_client_story(binary: Path, server: Server, tmp_path: Path, transport: str) -> None:
    serial = f"fw-{transport}"
    async with rest(server) as http:
        created = await http.post("/api/devices", json={"serial": serial})
        assert created.status_code == 201, created.text
        code = created.json()["code"]
    store = tmp_path / "token"

    def args() -> list[str]:
        port = server.mqtt_port if transport == "mqtt" else server.http_port
        return ["--host", "127.0.0.1", "--port", str(port), "--transport", transport, "--code", code,
                "--store", str(store), "--interval-ms", "200"]  # fmt: skip

    device = Device(binary, args())
    try:
        # 1. pairs with the code, stores the token, comes online
        await device.start()
        await device.wait_line(f"^paired serial={serial}$")
        await device.wait_line("^connected$")
        stored_serial, token = store.read_text().split()
        assert stored_serial == serial and token.startswith("nxgt_")
        await stopped_cleanly(device)

        # 2. restarts on the stored token: no second pairing
        await device.start()
        await device.wait_line("^connected$")
        async with connect(f"ws://127.0.0.1:{server.http_port}/ws/app?token={PASSWORD}") as app:
            # 3. telemetry reaches the app
            reading = await app_until(app, "telemetry", serial=serial)
            assert isinstance(reading["temp"], float | int) and isinstance(reading["uptime_s"], int)
            # 4. turn1 open from the app: executed, the ack reaches the app, the status follows
            await app.send(json.dumps({"t": "cmd", "serial": serial, "target": "turn1", "action": "open"}))
            command_id = (await app_until(app, "cmd_accepted"))["id"]
            ack = await app_until(app, "ack", serial=serial, id=command_id)
            assert ack["ok"] is True and ack.get("result") == {"turn1": "open"}
            await app_until(app, "status", serial=serial, turn1="open")
            await device.wait_line(f"^cmd id={command_id} action=open ok$")
            # anything else: acked ok:false with an error, the device keeps going
            await app.send(json.dumps({"t": "cmd", "serial": serial, "target": "led", "action": "blink"}))
            if transport == "mqtt":
                # over MQTT the device published its manifest on connect: the server refuses an
                # action it does not declare before anything reaches the device
                refused = await app_until(app, "error")
                assert refused["code"] == "ACTION_NOT_IN_MANIFEST", refused
            else:
                # the gateway device sent no manifest: the command goes out and the device refuses it
                bad_id = (await app_until(app, "cmd_accepted"))["id"]
                bad = await app_until(app, "ack", serial=serial, id=bad_id)
                assert bad["ok"] is False and bad["error"] == "unknown action"
            if transport == "ws":
                # the server pings every 1 s and closes after 3 s without a pong: still here
                await asyncio.sleep(4)
                await app_until(app, "telemetry", serial=serial)
        assert device.count("^paired") == 0 and device.count("^disconnected$") == 0

        # 5. REST reset: the device erases its token and pairs again by itself, with the same code
        mark = len(device.lines)
        async with rest(server) as http:
            assert (await http.post(f"/api/devices/{serial}/reset")).json()["code"] == code
        await device.wait_line("^auth_reset_required: re-pairing$", since=mark)
        await device.wait_line(f"^paired serial={serial}$", since=mark)
        await device.wait_line("^connected$", since=mark)
        assert store.read_text().split()[1] != token

        # 6. the server restarts on the same ports: the device reconnects by itself
        mark = len(device.lines)
        await server.stop()
        await device.wait_line("^disconnected$", since=mark)
        await server.start()
        _, at = await device.wait_line("^connected$", since=mark, within_s=30)
        reconnect_s = at - server.started_at
        print(
            f"\n[{transport}] reconnected {reconnect_s:.2f} s after the server was restarted"
            f" (its start-up took {server.ready_at - server.started_at:.2f} s)"
        )
        assert reconnect_s < 40  # start-up + at most one NXG_BACKOFF_MAX_MS (60 s) step; here a few s

        # 7. regenerate: the live device is dropped, its token refused, the old code refused
        mark = len(device.lines)
        async with rest(server) as http:
            assert (await http.post(f"/api/devices/{serial}/regenerate")).json()["code"] != code
        reset_at, _ = await device.wait_line("^auth_reset_required: re-pairing$", since=mark, within_s=30)
        await device.wait_line("^pair refused: ", since=reset_at)
        assert not store.exists()  # erased: the next boot pairs with the code
        # counting its attempts: a fresh process, so the backoff starts from its minimum
        await stopped_cleanly(device)
        await device.start()
        first, started = await device.wait_line("^pair refused: ")
        window_s = 7.0
        await asyncio.sleep(window_s - (time.monotonic() - started))
        refusals = [at for at, line in device.lines[first:] if line.startswith("pair refused: ")]
        # 1, 2, 4 s steps with equal jitter: 3 or 4 attempts in 7 s (a tight loop makes hundreds)
        assert 2 <= len(refusals) <= 5, device.text()
        gaps = [b - a for a, b in itertools.pairwise(refusals)]
        assert all(gap >= 0.45 for gap in gaps), gaps
        assert gaps[-1] >= 0.95, gaps  # the second step waits at least half of 2 s
        assert device.count("^connected$") == 0 and not store.exists()
        await stopped_cleanly(device)
    finally:
        await device.kill()
