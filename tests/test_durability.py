"""A PUBACK is a promise: QoS 1 telemetry acknowledged by a broker that is then `kill -9`ed is in
the database. A real `nxg-mqtt broker` process, paired devices publishing with paho over TCP and
MQTT over WebSocket at a modest rate, the kill mid-load, then the SQLite file read directly.

With acknowledgements sent when a message is routed (before its history batch commits) every
run lost the last batch window's worth of acknowledged messages; a long window makes that loss
certain here, while with group commit it only adds latency.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Literal

import paho.mqtt.client as mqtt
import pytest

from nxg_mqtt.core import open_core
from tests.factories import make_settings
from tests.mqtt_client import Clients

CLI = [sys.executable, "-m", "nxg_mqtt.cli"]
DEVICES = 4
RATE_PER_DEVICE = 100  # msg/s
LOAD_S = 1.5  # then kill -9, while publishing


async def _paired(data: Path, count: int) -> dict[str, str]:
    tokens: dict[str, str] = {}
    async with open_core(make_settings(data)) as core:
        for i in range(count):
            device = await core.devices.create(f"dur-{i}")
            tokens[device.serial] = (await core.devices.pair(device.code, source="test")).token
    return tokens


def _stored(db: Path) -> dict[str, set[int]]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT serial, body FROM messages WHERE type = 'telemetry'").fetchall()
    finally:
        conn.close()
    stored: dict[str, set[int]] = {}
    for serial, body in rows:
        stored.setdefault(serial, set()).add(json.loads(body)["seq"])
    return stored


@pytest.mark.parametrize("transport", ["tcp", "websockets"])
async def test_no_acknowledged_message_lost_on_kill_9(
    tmp_path: Path, transport: Literal["tcp", "websockets"], paho: Clients
) -> None:
    tokens = await _paired(tmp_path, DEVICES)
    env = {**os.environ, "NXG_BATCH_WINDOW_MS": "300"}
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        *("broker", "--host", "127.0.0.1", "--mqtt-port", "0", "--ws-port", "0", "--data", str(tmp_path)),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    sent: dict[str, list[tuple[mqtt.MQTTMessageInfo, int]]] = {serial: [] for serial in tokens}
    try:
        assert proc.stdout is not None
        ports: dict[str, int] = {}
        deadline = time.monotonic() + 20
        while len(ports) < 2 and time.monotonic() < deadline:
            line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
            assert line, "the broker exited before listening"
            match = re.search(r"(mqtt|ws)://[^\s:]+:(\d+)", line)
            if match:
                ports[match.group(1)] = int(match.group(2))
        port = ports["ws" if transport == "websockets" else "mqtt"]
        devices = {serial: paho(serial, transport=transport) for serial in tokens}
        for serial, client in devices.items():
            assert await client.connect(port, serial, tokens[serial]) == 0

        start = time.monotonic()
        seq = 0
        while time.monotonic() - start < LOAD_S:
            for serial, client in devices.items():
                payload = json.dumps({"seq": seq, "temp": 20 + seq % 10})
                sent[serial].append((client.publish_nowait(f"nxg/{serial}/telemetry", payload), seq))
            seq += 1
            await asyncio.sleep(max(0.0, start + seq / RATE_PER_DEVICE - time.monotonic()))
        proc.send_signal(signal.SIGKILL)
        await asyncio.wait_for(proc.wait(), 10)
    finally:
        if proc.returncode is None:
            proc.kill()
            await asyncio.wait_for(proc.wait(), 10)

    stored = _stored(tmp_path / "nxg.sqlite3")
    acked_total = 0
    missing: dict[str, list[int]] = {}
    for serial, messages in sent.items():
        acked = {seq for info, seq in messages if info.is_published()}
        acked_total += len(acked)
        lost = sorted(acked - stored.get(serial, set()))
        if lost:
            missing[serial] = lost
    assert not missing, f"PUBACKed but not stored: {missing}"
    assert acked_total >= DEVICES * RATE_PER_DEVICE * LOAD_S * 0.3, acked_total  # the load really ran
