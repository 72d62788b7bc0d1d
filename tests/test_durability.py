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
import threading
import time
from pathlib import Path
from typing import Literal

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from nxg_mqtt.core import open_core
from tests.factories import make_settings

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


class Publisher:
    """One device: paho on its own thread; `acked` collects the mids whose PUBACK arrived."""

    def __init__(self, serial: str, token: str, transport: Literal["tcp", "websockets"], port: int) -> None:
        self.serial = serial
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=serial, protocol=mqtt.MQTTv311, transport=transport
        )
        if transport == "websockets":
            self.client.ws_set_options(path="/mqtt")
        self.client.username_pw_set(serial, token)
        self.connected = threading.Event()
        self.acked: set[int] = set()
        self.sent: dict[int, int] = {}  # mid → seq
        self.client.on_connect = self._on_connect
        self.client.on_publish = lambda c, u, mid, reason, p: self.acked.add(mid)
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()

    def _on_connect(self, client: object, userdata: object, flags: object, reason: object, props: object) -> None:
        if reason == 0:
            self.connected.set()

    def publish(self, seq: int) -> None:
        payload = json.dumps({"seq": seq, "temp": 20 + seq % 10})
        info = self.client.publish(f"nxg/{self.serial}/telemetry", payload, qos=1)
        self.sent[info.mid] = seq

    def acked_seqs(self) -> set[int]:
        return {self.sent[mid] for mid in set(self.acked) if mid in self.sent}

    def stop(self) -> None:
        self.client.loop_stop()


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
def test_no_acknowledged_message_lost_on_kill_9(tmp_path: Path, transport: Literal["tcp", "websockets"]) -> None:
    tokens = asyncio.run(_paired(tmp_path, DEVICES))
    env = {**os.environ, "NXG_BATCH_WINDOW_MS": "300"}
    proc = subprocess.Popen(
        [*CLI, "broker", "--host", "127.0.0.1", "--mqtt-port", "0", "--ws-port", "0", "--data", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    publishers: list[Publisher] = []
    try:
        assert proc.stdout is not None
        ports: dict[str, int] = {}
        deadline = time.monotonic() + 20
        while len(ports) < 2 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, "the broker exited before listening"
            match = re.search(r"(mqtt|ws)://[^\s:]+:(\d+)", line)
            if match:
                ports[match.group(1)] = int(match.group(2))
        port = ports["ws" if transport == "websockets" else "mqtt"]
        publishers = [Publisher(serial, token, transport, port) for serial, token in tokens.items()]
        for p in publishers:
            assert p.connected.wait(10), f"{p.serial} did not connect"

        start = time.monotonic()
        seq = 0
        while time.monotonic() - start < LOAD_S:
            for p in publishers:
                p.publish(seq)
            seq += 1
            time.sleep(max(0.0, start + seq / RATE_PER_DEVICE - time.monotonic()))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
        for p in publishers:
            p.stop()

    stored = _stored(tmp_path / "nxg.sqlite3")
    acked_total = 0
    missing: dict[str, list[int]] = {}
    for p in publishers:
        acked = p.acked_seqs()
        acked_total += len(acked)
        lost = sorted(acked - stored.get(p.serial, set()))
        if lost:
            missing[p.serial] = lost
    assert not missing, f"PUBACKed but not stored: {missing}"
    assert acked_total >= DEVICES * RATE_PER_DEVICE * LOAD_S * 0.3, acked_total  # the load really ran
