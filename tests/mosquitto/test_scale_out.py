"""Two serving processes on one Mosquitto and one data store (README "Scaling out").

Process A is this test's (`open_foreign_stack`, it owns Mosquitto); process B is a real second
`nxg-mqtt serve --broker external --mqtt ...` on the same data directory. Devices publish QoS 1
telemetry, each message numbered. Both take part (shared subscriptions), together they store
every message once. Then B is killed with SIGKILL in the middle of a stream and started again:
its worker session is persistent (`nxg_mqtt.hooks.worker`), so Mosquitto keeps what B had in
flight and what the group dealt B while it was down, and hands all of it over when B is back.
Every message Mosquitto acknowledged to a device is stored, and none twice (a message B had
committed but not yet acknowledged comes back with DUP set and is recognised).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
from collections import Counter
from pathlib import Path

import pytest

from nxg_mqtt.hooks.stack import open_foreign_stack
from nxg_mqtt.settings import Settings
from tests.factories import PASSWORD
from tests.mosquitto.conftest import mosquitto_ready
from tests.mqtt_client import Clients, TestClient, wait_for

DEVICES = 10


def stored_seqs(db: Path, phase: int) -> Counter[tuple[str, int]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT serial, body FROM messages WHERE type = 'telemetry'").fetchall()
    seen: Counter[tuple[str, int]] = Counter()
    for serial, body in rows:
        value = json.loads(body)
        if value.get("phase") == phase:
            seen[(serial, int(value["seq"]))] += 1
    return seen


async def start_second_process(settings: Settings, mqtt_port: int) -> asyncio.subprocess.Process:
    env = {**os.environ, "NXG_INTERNAL_SECRET": settings.internal_secret}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "nxg_mqtt",
        "serve",
        "--broker",
        "external",
        "--mqtt",
        f"mqtt://127.0.0.1:{mqtt_port}",
        "--data",
        str(settings.data_dir),
        "--host",
        "127.0.0.1",
        "--http-port",
        "0",
        "--ws-port",
        "off",
        "--admin-password",
        PASSWORD,
        "--batch-window-ms",
        str(settings.batch_window_ms),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=env,
    )
    assert process.stdout is not None
    async with asyncio.timeout(20):
        while b"is running" not in await process.stdout.readline():
            pass
    return process


async def connect_devices(stack_core: object, port: int, paho: Clients) -> list[TestClient]:
    from nxg_mqtt.core import Core

    core = stack_core
    assert isinstance(core, Core)
    devices = []
    for i in range(DEVICES):
        serial = f"SO{i}"
        device = await core.devices.create(serial)
        paired = await core.devices.complete_pairing(serial, device.code, "test")
        client = paho(serial)
        assert await client.connect(port, serial, paired.token) == 0
        devices.append(client)
    return devices


async def publish_all(devices: list[TestClient], phase: int, count: int, pause_every: int = 0) -> int:
    """`count` numbered messages per device; the number Mosquitto acknowledged."""
    infos = []
    for seq in range(count):
        for device in devices:
            body = json.dumps({"phase": phase, "seq": seq, "v": seq})
            infos.append(device.publish_nowait(f"nxg/{device.client._client_id.decode()}/telemetry", body))
        if pause_every and seq % pause_every == 0:
            await asyncio.sleep(0.01)
    assert await wait_for(lambda: all(info.is_published() for info in infos), 60)
    return len(infos)


async def settle(db: Path, phase: int, expected: int, within_s: float = 20.0) -> Counter[tuple[str, int]]:
    """The stored messages of `phase` once their count stops growing (or reaches `expected`)."""
    last = -1
    for _ in range(int(within_s / 0.5)):
        seen = stored_seqs(db, phase)
        if len(seen) >= expected or len(seen) == last:
            return seen
        last = len(seen)
        await asyncio.sleep(0.5)
    return stored_seqs(db, phase)


async def test_two_processes_split_the_ingest_and_a_kill_loses_nothing(settings: Settings, paho: Clients) -> None:
    why = mosquitto_ready()
    if why:
        pytest.skip(why)
    async with open_foreign_stack(settings) as a:
        b = await start_second_process(settings, a.mqtt_port)
        try:
            devices = await connect_devices(a.core, a.mqtt_port, paho)
            # phase 1: both processes up; every message stored exactly once, by one or the other
            sent = await publish_all(devices, 1, 200)
            seen = await settle(settings.db_path, 1, sent)
            by_a = a.worker.stored
            print(f"\nphase 1: sent {sent}, stored {len(seen)}, by A {by_a}, by B {len(seen) - by_a}")
            assert len(seen) == sent and max(seen.values()) == 1
            assert 0 < by_a < sent  # each saw part of the traffic

            # phase 2: B killed (SIGKILL) in the middle of a stream, then started again
            stream = asyncio.create_task(publish_all(devices, 2, 400, pause_every=20))
            await asyncio.sleep(0.3)
            b.send_signal(signal.SIGKILL)
            await b.wait()
            sent = await stream
            stranded = sent - len(await settle(settings.db_path, 2, sent))  # waiting in B's session
            b = await start_second_process(settings, a.mqtt_port)
            seen = await settle(settings.db_path, 2, sent)
            lost = sent - len(seen)
            print(f"phase 2: acknowledged by Mosquitto {sent}, held for B while down {stranded}, lost {lost}")
            assert stranded > 0  # the kill did strand messages: what follows is a real resume
            assert lost == 0
            assert max(seen.values()) == 1  # nothing twice
        finally:
            if b.returncode is None:
                b.kill()
                await b.wait()
