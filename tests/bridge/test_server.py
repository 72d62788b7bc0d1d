"""The standalone bridge as a user runs it: `nxg-mqtt broker` and `nxg-mqtt bridge` as two real
processes on one data directory. A key revoked or rotated by the CLI (a third process) or through
the bridge's REST closes the key's WebSockets on the bridge and its MQTT sessions on the broker
within 1 s; a device reset by the CLI closes its `/ws/gateway` socket on the bridge."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.bridge.helpers import PASSWORD, expect_closed, recv_json, recv_until, send_json
from tests.cli_process import CLI, start_cli, stop_cli
from tests.mqtt_client import Clients
from tests.test_cli import run_cli

WITHIN_S = 1.0


@dataclass
class Processes:
    data: Path
    mqtt_port: int
    http_port: int

    def ws_url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.http_port}{path}"


@asynccontextmanager
async def broker_and_bridge(data: Path) -> AsyncIterator[Processes]:
    """Both with the default settings (`signal_poll_s` 0.25): what a user's processes do."""
    env = {**os.environ, "NXG_ADMIN_PASSWORD": PASSWORD}
    broker, mqtt_port = await start_cli(data, "broker", "--mqtt-port", "0", pattern=rb"mqtt://[^\s:]+:(\d+)", env=env)
    try:
        bridge, http_port = await start_cli(
            data,
            "bridge",
            "--mqtt",
            f"mqtt://127.0.0.1:{mqtt_port}",
            "--http-port",
            "0",
            pattern=rb"http://[^\s:]+:(\d+)/",
            env=env,
        )
        try:
            yield Processes(data, mqtt_port, http_port)
        finally:
            await stop_cli(bridge)
    finally:
        await stop_cli(broker)


async def run_cli_async(data: Path, *args: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        *CLI, *args, "--data", str(data), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 0, err


async def open_sockets(procs: Processes, key: str) -> tuple[ClientConnection, ClientConnection]:
    app = await connect(procs.ws_url(f"/ws/app?api_key={key}"))
    realtime = await connect(procs.ws_url(f"/realtime?api_key={key}"))
    assert (await recv_json(realtime))["type"] == "connected"
    await send_json(app, {"t": "ping"})
    assert (await recv_until(app, "pong"))["t"] == "pong"
    return app, realtime


@pytest.mark.parametrize(("action", "where"), [("revoke", "cli"), ("rotate", "cli"), ("revoke", "rest")])
async def test_a_revoked_key_is_dropped_by_the_separate_bridge_and_broker(
    tmp_path: Path, paho: Clients, action: str, where: str
) -> None:
    async with broker_and_bridge(tmp_path) as procs:
        created = run_cli(tmp_path, "key", "create", "--name", "doomed")
        key, key_id = str(created["key"]), str(created["id"])
        kept = str(run_cli(tmp_path, "key", "create", "--name", "kept")["key"])
        app, realtime = await open_sockets(procs, key)
        other_app, other_realtime = await open_sockets(procs, kept)
        integrator = paho("integrator")
        assert await integrator.connect(procs.mqtt_port, "key", key) == 0

        if where == "cli":
            await run_cli_async(tmp_path, "key", action, key_id)  # committed when the process has exited
            started = time.monotonic()
        else:
            started = time.monotonic()
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{procs.http_port}", headers={"Authorization": f"Bearer {PASSWORD}"}
            ) as http:
                response = await http.post(f"/api/v1/auth/api-keys/{action}", json={"id": key_id})
                assert response.status_code == 200, response.text
        closes = await asyncio.gather(expect_closed(app, WITHIN_S), expect_closed(realtime, WITHIN_S))
        assert list(closes) == [1008, 1008]
        assert await integrator.wait_disconnected(max(0.05, WITHIN_S - (time.monotonic() - started)))
        assert time.monotonic() - started < WITHIN_S

        # the other key's sockets carry on
        await send_json(other_realtime, {"type": "subscribe", "hardwareIds": []})
        assert await recv_json(other_realtime) == {"type": "subscribed", "hardwareIds": []}
        await send_json(other_app, {"t": "ping"})
        assert (await recv_until(other_app, "pong"))["t"] == "pong"
        await other_app.close()
        await other_realtime.close()


async def test_a_device_reset_by_the_cli_closes_its_gateway_socket_on_the_separate_bridge(tmp_path: Path) -> None:
    async with broker_and_bridge(tmp_path) as procs:
        code = str(run_cli(tmp_path, "device", "create", "--serial", "gw-1")["code"])
        ws = await connect(procs.ws_url("/ws/gateway"))
        await send_json(ws, {"t": "pair", "code": code})
        await recv_until(ws, "pair_ok")
        await run_cli_async(tmp_path, "device", "reset", "gw-1")
        started = time.monotonic()
        assert await expect_closed(ws, WITHIN_S) is not None
        assert time.monotonic() - started < WITHIN_S


async def test_a_bridge_whose_core_watches_no_signals_follows_an_admin_password_change(tmp_path: Path) -> None:
    """The remembered admin hash: a bridge in a process whose core runs no signal watcher (a
    process joining another broker) watches `admin_password` itself, so a password changed by
    another process is the only one accepted within a second."""
    from bridge.server import open_bridge
    from nxg_mqtt.broker.embedded import open_broker
    from nxg_mqtt.core import open_core
    from tests.factories import make_settings

    settings = make_settings(tmp_path, signal_poll_s=0.05)
    async with open_core(settings, serve=True) as owner, open_broker(owner) as broker:
        await owner.admin.set("first-password")
        async with (
            open_core(settings, writer=True) as joined,
            open_bridge(settings, joined, "127.0.0.1", broker.mqtt_port) as bridge,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{bridge.http_port}", timeout=5) as http,
        ):
            assert not joined.signals.running

            async def status(password: str) -> int:
                response = await http.get("/api/v1/devices", headers={"Authorization": f"Bearer {password}"})
                return response.status_code

            assert await status("first-password") == 200
            await owner.admin.set("second-password")
            deadline = time.monotonic() + 1.0
            while await status("second-password") != 200:
                assert time.monotonic() < deadline, "the new password was not accepted within 1 s"
                await asyncio.sleep(0.05)
            assert await status("first-password") == 401
