"""What group commit costs: QoS 1 telemetry acknowledged only after its batch commits.

    .venv/bin/python -m bench.group_commit                          # this checkout only
    git archive <commit> nxg_mqtt | tar -x -C /tmp/base             # a build that acks on route
    .venv/bin/python -m bench.group_commit --baseline /tmp/base --runs 3

Each run starts a fresh `nxg-mqtt broker` (port 0, own data dir, devices paired first by that
build's own code) and measures, from one uvloop process of raw-socket devices:

- saturation: every device keeps `--inflight` QoS 1 PUBLISHes unacknowledged and sends a new
  one per PUBACK: accepted msg/s (PUBACKs in the window), stored msg/s (rows whose `stored_at` is
  in the window), PUBACK latency p50/p99 (PUBLISH written → its PUBACK read);
- paced: `--rate` msg/s over all devices: PUBACK latency p50/p99.

`--baseline DIR` runs the same against the `nxg_mqtt` package in DIR (e.g. the commit before
group commit), alternating with this checkout, so both sets of figures come from one session.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import make_payload, now_ms, percentile, run_async
from bench.mqttproto import PUBACK, MqttConn, open_conn, publish_prefix
from bench.nxg import Store

ROOT = Path(__file__).resolve().parent.parent
BROKER = [sys.executable, "-m", "nxg_mqtt.cli", "broker", "--host", "127.0.0.1", "--mqtt-port", "0"]
COLUMNS = (
    "variant | run | accepted msg/s | stored msg/s | sat PUBACK p50/p99 ms | paced PUBACK p50/p99 ms | paced acked/sent"
)
PROVISION = """
import asyncio, json, sys
from pathlib import Path
from nxg_mqtt.core import open_core
from nxg_mqtt.settings import Settings
async def main(d, n):
    out = []
    async with open_core(Settings(data_dir=Path(d))) as core:
        for i in range(n):
            dev = await core.devices.create(f"gc-{i:04d}")
            out.append([dev.serial, (await core.devices.pair(dev.code, source="bench")).token])
    print(json.dumps(out))
asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


@dataclass
class Figures:
    accepted: float = 0.0
    stored: float = 0.0
    sat_p50: float = float("nan")
    sat_p99: float = float("nan")
    paced_p50: float = float("nan")
    paced_p99: float = float("nan")
    paced_acked: int = 0
    paced_sent: int = 0


class Device(MqttConn):
    """One device: remembers when each packet id went out and measures its PUBACK."""

    def __init__(self, serial: str, meter: Meter) -> None:
        super().__init__()
        self.prefix = publish_prefix(f"nxg/{serial}/telemetry", 1, len(make_payload(0, now_ms())))
        self.meter = meter
        self.sent: dict[int, float] = {}
        self.next_id = 0
        self.seq = 0
        self.refill = False  # saturation: a new PUBLISH for every PUBACK
        self.last_sent = 0.0

    def publish(self) -> None:
        self.next_id = self.next_id % 65535 + 1
        self.seq += 1
        packet_id = self.next_id
        self.last_sent = self.sent[packet_id] = time.monotonic()
        self.write(self.prefix + packet_id.to_bytes(2, "big") + make_payload(self.seq, now_ms()))

    def on_packets(self, packets: list[tuple[int, bytes]]) -> None:
        now = time.monotonic()
        meter = self.meter
        others = [(first, body) for first, body in packets if first & 0xF0 != PUBACK]
        if others:
            super().on_packets(others)  # CONNACK
        for first, body in packets:
            if first & 0xF0 != PUBACK:
                continue
            sent = self.sent.pop(int.from_bytes(body[:2], "big"), None)
            if sent is None:
                continue
            if meter.win0 <= now < meter.win1:
                meter.acked += 1
            if meter.win0 <= sent < meter.win1:
                meter.latencies.append((now - sent) * 1000)
            if self.refill and now < meter.win1:
                self.publish()


@dataclass
class Meter:
    win0: float = float("inf")
    win1: float = float("inf")
    acked: int = 0
    latencies: list[float] = field(default_factory=list)


class Broker:
    def __init__(self, source: Path, data: Path) -> None:
        self.source = source
        self.data = data
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0

    def provision(self, count: int) -> list[tuple[str, str]]:
        # the build under test migrates and pairs: a newer schema would be refused by an older build
        out = subprocess.run(
            [sys.executable, "-c", PROVISION, str(self.data), str(count)],
            cwd=self.source,
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        return [(s, t) for s, t in json.loads(out.stdout)]

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [*BROKER, "--data", str(self.data)],
            cwd=self.source,  # sys.path[0]: this build's nxg_mqtt, not the installed one
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "NXG_COMMAND_RATE_LIMIT": "0"},
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("the broker exited before listening")
            match = re.search(r"mqtt://[^\s:]+:(\d+)", line)
            if match:
                self.port = int(match.group(1))
                return
        raise RuntimeError("the broker did not print its port")

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


async def _measure(port: int, creds: list[tuple[str, str]], args: argparse.Namespace) -> tuple[Figures, float, float]:
    meter = Meter()
    devices: list[Device] = []
    for serial, token in creds:
        factory = functools.partial(Device, serial, meter)
        devices.append(await open_conn(factory, "127.0.0.1", port, serial, serial, token, keepalive=60))
    figures = Figures()
    # saturation
    start = time.monotonic()
    meter.win0, meter.win1 = start + args.warmup, start + args.warmup + args.duration
    wall0 = now_ms() + args.warmup * 1000
    for device in devices:
        device.refill = True
        for _ in range(args.inflight):
            device.publish()
    await asyncio.sleep(args.warmup + args.duration)
    wall1 = now_ms()
    for device in devices:
        device.refill = False
    figures.accepted = meter.acked / args.duration
    lat = sorted(meter.latencies)
    if lat:
        figures.sat_p50, figures.sat_p99 = percentile(lat, 50), percentile(lat, 99)
    await asyncio.sleep(3)  # the backlog drains before the paced phase
    # paced
    meter.latencies.clear()
    meter.acked = 0
    start = time.monotonic()
    meter.win0, meter.win1 = start + args.warmup, start + args.warmup + args.duration
    sent = 0
    index = 0
    while (now := time.monotonic()) < meter.win1:
        due = int((now - start) * args.rate)
        while sent < due:
            devices[index].publish()
            index = (index + 1) % len(devices)
            sent += 1
            if meter.win0 <= devices[index - 1].last_sent < meter.win1:
                figures.paced_sent += 1  # the same clock reading as the latency's window test
        await asyncio.sleep(0.002)
    await asyncio.sleep(2)  # late PUBACKs
    lat = sorted(meter.latencies)
    figures.paced_acked = len(lat)
    if lat:
        figures.paced_p50, figures.paced_p99 = percentile(lat, 50), percentile(lat, 99)
    for device in devices:
        device.close()
    return figures, wall0, wall1


def run_once(source: Path, args: argparse.Namespace) -> Figures:
    data = Path(tempfile.mkdtemp(prefix="nxg-gc-"))
    broker = Broker(source, data)
    try:
        creds = broker.provision(args.devices)
        broker.start()
        figures, wall0, wall1 = run_async(_measure(broker.port, creds, args))
        figures.stored = Store(data / "nxg.sqlite3").count_stored(wall0, wall1) / args.duration
        return figures
    finally:
        broker.stop()
        shutil.rmtree(data, ignore_errors=True)


def _fmt(v: float) -> str:
    return "–" if v != v else (f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.1f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.group_commit", description=__doc__.split("\n\n")[0])
    p.add_argument("--devices", type=int, default=100)
    p.add_argument("--inflight", type=int, default=16, help="saturation: unacknowledged PUBLISHes per device")
    p.add_argument("--rate", type=float, default=2000.0, help="paced phase, msg/s over all devices")
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--baseline", type=Path, help="a directory holding another build's nxg_mqtt package")
    p.add_argument("--json", type=Path, help="write every run's figures here")
    args = p.parse_args(argv)

    variants = [("group commit (this checkout)", ROOT)]
    if args.baseline is not None:
        variants.append((f"baseline ({args.baseline})", args.baseline.resolve()))
    results: list[dict[str, object]] = []
    print(
        f"{args.devices} devices, QoS 1, inflight {args.inflight}, paced {args.rate:g} msg/s,"
        f" {args.duration:g} s windows"
    )
    print(COLUMNS)
    for run in range(1, args.runs + 1):
        for name, source in variants:
            f = run_once(source, args)
            results.append({"variant": name, "run": run, **f.__dict__})
            print(
                f"{name} | {run} | {_fmt(f.accepted)} | {_fmt(f.stored)} | {_fmt(f.sat_p50)} / {_fmt(f.sat_p99)}"
                f" | {_fmt(f.paced_p50)} / {_fmt(f.paced_p99)} | {f.paced_acked:,}/{f.paced_sent:,}",
                flush=True,
            )
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
