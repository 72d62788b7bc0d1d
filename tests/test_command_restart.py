"""A restart of `serve` between dispatch and ack loses no command (real processes, SIGTERM and
SIGKILL): after the restart the command is still `dispatched`, a late ack closes it `acked`, and
one that is never acknowledged still times out."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.factories import PASSWORD
from tests.mqtt_client import TestClient, pair_over_mqtt

CLI = [sys.executable, "-m", "nxg_mqtt.cli"]
ACK_TIMEOUT_S = 3.0


@asynccontextmanager
async def serving(data: Path, stop: signal.Signals) -> AsyncIterator[tuple[int, httpx.AsyncClient]]:
    """`nxg-mqtt serve` on port 0; yields (MQTT port, a REST client); ended with `stop`."""
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "serve",
        "--host",
        "127.0.0.1",
        "--mqtt-port",
        "0",
        "--http-port",
        "0",
        "--no-ws",
        "--admin-password",
        PASSWORD,
        "--command-ack-timeout",
        str(ACK_TIMEOUT_S),
        "--data",
        str(data),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "NXG_SIGNAL_POLL_S": "0.1"},
    )
    assert proc.stdout is not None
    ports: dict[str, int] = {}
    try:
        async with asyncio.timeout(30):
            while len(ports) < 2:
                line = await proc.stdout.readline()
                assert line, "serve exited before listening"
                match = re.search(rb"(mqtt|http)://[^\s:]+:(\d+)", line)
                if match:
                    ports[match.group(1).decode()] = int(match.group(2))
        base = f"http://127.0.0.1:{ports['http']}/api/v1"
        async with httpx.AsyncClient(
            base_url=base, headers={"Authorization": f"Bearer {PASSWORD}"}, timeout=10
        ) as http:
            yield ports["mqtt"], http
    finally:
        if proc.returncode is None:
            proc.send_signal(stop)
        code = await asyncio.wait_for(proc.wait(), timeout=15)
        if stop is signal.SIGTERM:
            assert code == 0


async def statuses(http: httpx.AsyncClient, serial: str) -> dict[str, str]:
    response = await http.get(f"/device/{serial}/commands")
    assert response.status_code == 200, response.text
    return {c["id"]: c["status"] for c in response.json()["commands"]}


async def wait_status(
    http: httpx.AsyncClient, serial: str, command_id: str, status: str, within_s: float
) -> dict[str, str]:
    for _ in range(int(within_s / 0.1)):
        seen = await statuses(http, serial)
        if seen.get(command_id) == status:
            return seen
        await asyncio.sleep(0.1)
    return await statuses(http, serial)


async def device(port: int, serial: str, token: str) -> TestClient:
    client = TestClient(serial)
    assert await client.connect(port, serial, token) == 0
    assert await client.subscribe(f"nxg/{serial}/cmd") == [1]
    return client


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL])
async def test_a_restart_between_dispatch_and_ack_loses_no_command(tmp_path: Path, stop: signal.Signals) -> None:
    sent: list[dict[str, Any]] = []
    async with serving(tmp_path, stop) as (port, http):
        created = await http.post(
            "http://" + http.base_url.host + f":{http.base_url.port}/api/devices", json={"serial": "r1"}
        )
        assert created.status_code == 201, created.text
        token = (await pair_over_mqtt(port, created.json()["code"], "boot-r1"))["token"]
        first = await device(port, "r1", token)
        for n in range(2):
            response = await http.post("/device/r1/command", json={"action": "go", "params": {"n": n}})
            assert response.status_code == 202, response.text
            sent.append(json.loads((await first.next_message()).payload))
        assert set((await statuses(http, "r1")).values()) == {"dispatched"}
    first.close()  # the server went away between dispatch and ack
    async with serving(tmp_path, signal.SIGTERM) as (port, http):
        assert await statuses(http, "r1") == {c["id"]: "dispatched" for c in sent}  # still tracked
        again = await device(port, "r1", token)
        await again.publish("nxg/r1/ack", json.dumps({"t": "ack", "id": sent[0]["id"], "ok": True}))
        late = await wait_status(http, "r1", sent[0]["id"], "acked", 5)
        assert late[sent[0]["id"]] == "acked" and late[sent[1]["id"]] == "dispatched"
        # the other one's timeout still fires (a full ack timeout after the restart)
        final = await wait_status(http, "r1", sent[1]["id"], "timeout", ACK_TIMEOUT_S + 3)
        assert final == {sent[0]["id"]: "acked", sent[1]["id"]: "timeout"}
        assert await again.no_message(0.3)  # nothing dispatched twice
        again.close()
