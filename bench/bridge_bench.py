"""Bridge benchmark: device → broker → bridge → N app sockets, beside the broker-only figure.

    .venv/bin/python -m bench.bridge_bench [--devices 1000] [--rate 2000] [--apps 10] [--duration 10]

Runs `nxg-mqtt serve` as a subprocess on a temporary data directory (devices provisioned with the
core API first), then, each in its own process: the publishers (M MQTT devices, QoS 0, paced to
`--rate` msg/s in total), the app sockets (N `/ws/app` clients on a minimal frame parser, so the
measuring side stays cheap), and a raw MQTT subscriber with the bridge's credentials on
`nxg/+/telemetry` (what the broker alone delivers). Latency is wall clock from just before the
device's PUBLISH to the arrival at the subscriber (`"sent"` in the payload, ms since the epoch).
Then, at idle: app `cmd` → device (MQTT, acks at once) → `ack` back on the app socket, `--commands` times.
Targets: p99 device→app ≤ 100 ms at 1,000 devices / 2,000 msg/s / 10 apps; command round trip p99 ≤ 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import json
import math
import multiprocessing as mp
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

from bench.common import FrameClient
from nxg_mqtt.mqtt import codec

PASSWORD = "pw"
HOST = "127.0.0.1"


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def sent_of(raw: bytes) -> float | None:
    i = raw.find(b'"sent":')
    if i < 0:
        return None
    j = i + 7
    k = j
    while k < len(raw) and raw[k] in b"0123456789.":
        k += 1
    return float(raw[j:k])


# ---- provisioning and the server ------------------------------------------------------------------


async def _provision(data_dir: Path, count: int) -> list[tuple[str, str]]:
    from nxg_mqtt.core import open_core
    from nxg_mqtt.settings import Settings

    creds = []
    async with open_core(Settings(data_dir=data_dir)) as core:
        for i in range(count):
            device = await core.devices.create(f"bench{i:05d}", actor="bench")
            paired = await core.devices.pair(device.code, source=f"bench-{i}")
            creds.append((paired.serial, paired.token))
    return creds


@dataclass
class Server:
    proc: subprocess.Popen[str]
    mqtt_port: int
    http_port: int
    secret: str

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start_server(data_dir: Path) -> Server:
    exe = Path(sys.executable).parent / "nxg-mqtt"
    cmd = [str(exe), "serve", "--data", str(data_dir), "--host", HOST, "--mqtt-port", "0", "--http-port", "0"]
    cmd += ["--no-ws", "--admin-password", PASSWORD, "--command-rate-limit", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    mqtt = http = None
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    while (mqtt is None or http is None) and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("nxg-mqtt serve exited during start-up")
        if found := re.search(r"MQTT\s+mqtt://[^:]+:(\d+)", line):
            mqtt = int(found.group(1))
        if found := re.search(r"HTTP\s+http://[^:]+:(\d+)", line):
            http = int(found.group(1))
    if mqtt is None or http is None:
        proc.kill()
        raise RuntimeError("nxg-mqtt serve printed no ports")
    return Server(proc, mqtt, http, (data_dir / "internal_secret").read_text().strip())


# ---- a minimal MQTT client (the broker's codec over asyncio streams) ---------------------------------


class Mqtt:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer, self.buffer = reader, writer, bytearray()

    @classmethod
    async def connect(cls, port: int, client_id: str, username: str, password: str) -> Mqtt:
        reader, writer = await asyncio.open_connection(HOST, port)
        conn = cls(reader, writer)
        packet = codec.Connect(client_id, keep_alive=120, username=username, password=password.encode())
        writer.write(codec.encode_connect(packet))
        connack = (await conn.packets())[0]
        if not isinstance(connack, codec.Connack) or connack.return_code:
            raise RuntimeError(f"CONNACK {connack!r} for {client_id}")
        return conn

    async def packets(self) -> list[codec.Packet]:
        while True:
            chunk = await self.reader.read(256 * 1024)
            if not chunk:
                raise EOFError("broker closed the connection")
            self.buffer += chunk
            packets, used = codec.decode(self.buffer)
            del self.buffer[:used]
            if packets:
                return packets


def publisher(port: int, creds: list[tuple[str, str]], rate: float, duration: float, go: Event) -> None:
    async def run() -> None:
        gate = asyncio.Semaphore(50)

        async def one(serial: str, token: str) -> Mqtt:
            async with gate:
                return await Mqtt.connect(port, serial, serial, token)

        conns = await asyncio.gather(*(one(s, t) for s, t in creds))
        topics = [codec.encode_topic(f"nxg/{s}/telemetry") for s, _ in creds]
        await asyncio.to_thread(go.wait)
        start = time.monotonic()
        sent, tick, total = 0, 0.005, int(rate * duration)
        while sent < total:
            due = min(total, int((time.monotonic() - start) * rate))
            while sent < due:
                i = sent % len(conns)
                body = b'{"seq":%d,"sent":%.3f,"temp":21.5}' % (sent, time.time() * 1000)
                conns[i].writer.write(codec.encode_publish_topic(topics[i], body, 0, False))
                sent += 1
            await asyncio.sleep(tick)
        await asyncio.sleep(0.5)
        for conn in conns:
            conn.writer.write(codec.DISCONNECT_BYTES)
            conn.writer.close()

    asyncio.run(run())


def raw_subscriber(port: int, secret: str, ready: Event, stop: Event, out: Any) -> None:
    async def run() -> None:
        conn = await Mqtt.connect(port, "bench-raw-" + secrets.token_hex(3), "bridge", secret)
        conn.writer.write(codec.encode_subscribe(1, [("nxg/+/telemetry", 0)]))
        ready.set()
        latencies: list[float] = []

        async def read() -> None:
            while True:
                for packet in await conn.packets():
                    if isinstance(packet, codec.Publish):
                        sent = sent_of(packet.payload)
                        if sent is not None:
                            latencies.append(time.time() * 1000 - sent)

        task = asyncio.create_task(read())
        await asyncio.to_thread(stop.wait)
        await asyncio.sleep(1.0)
        task.cancel()
        out.send(latencies)

    asyncio.run(run())


# ---- app sockets on a minimal WebSocket frame parser -----------------------------------------------


class AppClient(FrameClient):
    def __init__(self, latencies: list[float]) -> None:
        super().__init__()
        self.latencies = latencies

    def on_frame(self, opcode: int, payload: bytes, now: float) -> None:
        if opcode == 1 and payload.startswith(b'{"t":"telemetry"'):
            sent = sent_of(payload)
            if sent is not None:
                self.latencies.append(now - sent)


def app_sockets(port: int, count: int, ready: Event, stop: Event, out: Any) -> None:
    async def run() -> None:
        loop = asyncio.get_running_loop()
        clients = []
        for _ in range(count):
            latencies: list[float] = []
            _transport, client = await loop.create_connection(functools.partial(AppClient, latencies), HOST, port)
            key = base64.b64encode(os.urandom(16)).decode()
            request = (
                f"GET /ws/app?token={PASSWORD} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            _transport.write(request.encode())
            await asyncio.wait_for(client.handshake, 10)
            clients.append(client)
        ready.set()
        await asyncio.to_thread(stop.wait)
        await asyncio.sleep(1.0)
        out.send([(c.latencies, c.closed_code) for c in clients])

    asyncio.run(run())


# ---- commands at idle ------------------------------------------------------------------------------


async def command_round_trips(server: Server, serial: str, token: str, count: int) -> list[float]:
    from websockets.asyncio.client import connect

    device = await Mqtt.connect(server.mqtt_port, serial, serial, token)
    device.writer.write(codec.encode_subscribe(1, [(f"nxg/{serial}/cmd", 1)]))

    async def acker() -> None:
        while True:
            for packet in await device.packets():
                if isinstance(packet, codec.Publish):
                    if packet.packet_id is not None:
                        device.writer.write(codec.encode_puback(packet.packet_id))
                    command = json.loads(packet.payload)
                    ack = json.dumps({"t": "ack", "id": command["id"], "ok": True}).encode()
                    device.writer.write(codec.encode_publish(f"nxg/{serial}/ack", ack, 0))

    task = asyncio.create_task(acker())
    await asyncio.sleep(0.5)
    rtts: list[float] = []
    async with connect(f"ws://{HOST}:{server.http_port}/ws/app?token={PASSWORD}") as app:
        for i in range(count):
            started = time.perf_counter()
            await app.send(json.dumps({"t": "cmd", "serial": serial, "action": "ping", "ref": str(i)}))
            command_id = None
            while True:
                message = json.loads(await asyncio.wait_for(app.recv(), 5))
                if message.get("t") == "cmd_accepted" and message.get("ref") == str(i):
                    command_id = message["id"]
                elif message.get("t") == "ack" and command_id is not None and message.get("id") == command_id:
                    break
            rtts.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.01)
    task.cancel()
    device.writer.close()
    return rtts


# ---- the run ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.bridge_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=2000.0, help="telemetry msg/s, all devices together")
    parser.add_argument("--apps", type=int, default=10)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--commands", type=int, default=200)
    parser.add_argument("--publishers", type=int, default=1, help="publisher processes")
    args = parser.parse_args(argv)
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="nxg-bridge-bench-") as tmp:
        data_dir = Path(tmp)
        print(f"provisioning {args.devices} devices…", flush=True)
        creds = asyncio.run(_provision(data_dir, args.devices))
        server = start_server(data_dir)
        try:
            return run(args, ctx, server, creds)
        finally:
            server.stop()


def run(args: argparse.Namespace, ctx: Any, server: Server, creds: list[tuple[str, str]]) -> int:
    ready_raw, ready_apps, go, stop = ctx.Event(), ctx.Event(), ctx.Event(), ctx.Event()
    raw_out, raw_in = ctx.Pipe(duplex=False)
    apps_out, apps_in = ctx.Pipe(duplex=False)
    procs = [
        ctx.Process(target=raw_subscriber, args=(server.mqtt_port, server.secret, ready_raw, stop, raw_in)),
        ctx.Process(target=app_sockets, args=(server.http_port, args.apps, ready_apps, stop, apps_in)),
    ]
    shares = [creds[i :: args.publishers] for i in range(args.publishers)]
    rate = args.rate / args.publishers
    procs += [
        ctx.Process(target=publisher, args=(server.mqtt_port, share, rate, args.duration, go)) for share in shares
    ]
    for proc in procs:
        proc.start()
    ready_raw.wait(30)
    ready_apps.wait(30)
    print(f"connecting {args.devices} devices, then {args.duration:.0f}s at {args.rate:.0f} msg/s…", flush=True)
    time.sleep(max(5.0, args.devices / 150))  # every device connected (their presence settles)
    go.set()
    for proc in procs[2:]:
        proc.join()
    stop.set()
    raw_latencies: list[float] = raw_out.recv()
    apps: list[tuple[list[float], int | None]] = apps_out.recv()
    for proc in procs[:2]:
        proc.join(10)
    rtts = asyncio.run(command_round_trips(server, *creds[0], args.commands)) if args.commands else []

    expected = args.rate * args.duration
    app_latencies = [x for lat, _ in apps for x in lat]
    app_rows = [
        ("broker only (raw MQTT)", len(raw_latencies), expected, raw_latencies),
        (f"bridge, {args.apps} app sockets", len(app_latencies), expected * args.apps, app_latencies),
    ]
    print()
    print(f"{args.devices} devices, {args.rate:.0f} msg/s for {args.duration:.0f}s, {args.apps} app sockets")
    print(f"{'path':<28}{'delivered':>12}{'of':>10}{'msg/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    for name, got, want, lat in app_rows:
        print(
            f"{name:<28}{got:>12}{int(want):>10}{got / args.duration:>10.0f}"
            f"{percentile(lat, 50):>9.1f}{percentile(lat, 99):>9.1f}{max(lat, default=math.nan):>9.1f}"
        )
    closed = [code for _, code in apps if code is not None]
    if closed:
        print(f"app sockets closed by the server: {closed}")
    p99_app = percentile(app_latencies, 99)
    ok = p99_app <= 100 and len(app_latencies) >= 0.99 * expected * args.apps
    print(f"device→app p99 {p99_app:.1f} ms (target ≤ 100 ms): {'PASS' if ok else 'FAIL'}")
    if rtts:
        p99_cmd = percentile(rtts, 99)
        print(
            f"command app→device→ack→app, {len(rtts)} at idle: p50 {percentile(rtts, 50):.1f} ms, "
            f"p99 {p99_cmd:.1f} ms (target ≤ 50 ms): {'PASS' if p99_cmd <= 50 else 'FAIL'}"
        )
        ok = ok and p99_cmd <= 50
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
