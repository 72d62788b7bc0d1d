"""`/realtime` and API-key benchmark (issue 10).

    .venv/bin/python -m bench.realtime_bench [--devices 500] [--rate 1000] [--subscribers 1000]
                                             [--per-sub 10] [--duration 10] [--rest-seconds 5]

Runs `nxg-mqtt serve` as a subprocess (devices and API keys provisioned with the core API first),
then, each in its own process: the publishers (MQTT devices, QoS 0, paced to `--rate` msg/s in
total; `bench.bridge_bench.publisher`) and the subscribers (`--subscribers` `/realtime` sockets on
a minimal frame parser, split over `--sub-procs` processes, each subscribed to `--per-sub` devices
with an API key). Latency is wall clock from just before the device's PUBLISH to the arrival of
its `device_data` (`"sent"` in the payload). Expected deliveries: each message times the number of
subscribers of its device; anything short of that is reported as dropped.

Then REST: `--rest-conns` keep-alive connections doing `GET /api/devices/{serial}` for
`--rest-seconds`, alternately with the admin password and with an API key (A/B/A/B, to spread the
noise of a shared machine); requests/s of each and the key's cost relative to the password.

File descriptors: subscribers + devices on each side, plus a few; 1,000 + 500 stays far under a
20,000 limit.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import math
import multiprocessing as mp
import os
import sys
import tempfile
import time
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

from bench.bridge_bench import HOST, PASSWORD, Server, percentile, publisher, sent_of, start_server
from bench.common import FrameClient, start_serve

GRACE_S = 5.0  # subscribers keep reading this long after the publishers stop (the backlog)


async def _provision(data_dir: Path, count: int, keys: int) -> tuple[list[tuple[str, str]], list[str]]:
    from nxg_mqtt.core import open_core
    from nxg_mqtt.settings import Settings

    creds, secrets = [], []
    async with open_core(Settings(data_dir=data_dir)) as core:
        for i in range(count):
            device = await core.devices.create(f"bench{i:05d}", actor="bench")
            paired = await core.devices.pair(device.code, source=f"bench-{i}")
            creds.append((paired.serial, paired.token))
        for i in range(keys):
            _, secret = await core.keys.create(f"bench-{i}", "user", actor="bench")
            secrets.append(secret)
    return creds, secrets


def _masked_text(text: str) -> bytes:
    """A client→server text frame (clients must mask)."""
    payload = text.encode()
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    n = len(payload)
    head = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big"))
    return head + mask + body


class RealtimeClient(FrameClient):
    def __init__(self) -> None:
        super().__init__()
        self.latencies: list[float] = []
        self.sent: list[float] = []  # the send time (ms epoch) of each latency's message
        self.subscribed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_frame(self, opcode: int, payload: bytes, now: float) -> None:
        if opcode == 1 and payload.startswith(b'{"type":"device_data"'):
            sent = sent_of(payload)
            if sent is not None:
                self.latencies.append(now - sent)
                self.sent.append(sent)
        elif opcode == 1 and payload.startswith(b'{"type":"subscribed"') and not self.subscribed.done():
            self.subscribed.set_result(None)


def subscribers(port: int, jobs: list[tuple[str, list[str]]], ready: Event, stop: Event, out: Any) -> None:
    async def one(key: str, serials: list[str], gate: asyncio.Semaphore) -> RealtimeClient:
        async with gate:
            loop = asyncio.get_running_loop()
            transport, client = await loop.create_connection(RealtimeClient, HOST, port)
            nonce = base64.b64encode(os.urandom(16)).decode()
            transport.write(
                (
                    f"GET /realtime HTTP/1.1\r\nHost: {HOST}:{port}\r\nX-API-Key: {key}\r\nUpgrade: websocket\r\n"
                    f"Connection: Upgrade\r\nSec-WebSocket-Key: {nonce}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                ).encode()
            )
            await asyncio.wait_for(client.handshake, 30)
            ids = ",".join(f'"{s}"' for s in serials)
            transport.write(_masked_text(f'{{"type":"subscribe","hardwareIds":[{ids}]}}'))
            await asyncio.wait_for(client.subscribed, 30)
            return client

    async def run() -> None:
        gate = asyncio.Semaphore(50)
        clients = await asyncio.gather(*(one(key, serials, gate) for key, serials in jobs))
        ready.set()
        await asyncio.to_thread(stop.wait)
        await asyncio.sleep(GRACE_S)
        out.send([(c.latencies, c.sent, c.closed_code) for c in clients])

    asyncio.run(run())


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), in seconds."""
    return sum(cpu_split(pid))


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU time of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


# ---- REST: the admin password vs an API key ---------------------------------------------------------


async def rest_rate(port: int, header: str, path: str, conns: int, seconds: float) -> float:
    request = f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n{header}\r\n\r\n".encode()
    done = 0

    async def worker() -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection(HOST, port)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head.split(b"\r\n", 1)[0].decode())
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
            await reader.readexactly(length)
            done += 1
        writer.close()

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(conns)))
    return done / (time.monotonic() - started)


def rest_compare(server: Server, key: str, conns: int, seconds: float, rounds: int) -> dict[str, list[float]]:
    path = "/api/devices/bench00000"
    headers = {"admin password": f"Authorization: Bearer {PASSWORD}", "API key": f"X-API-Key: {key}"}
    figures: dict[str, list[float]] = {name: [] for name in headers}
    for header in headers.values():  # warm-up: both credentials remembered (PBKDF2 once, the key cache)
        asyncio.run(rest_rate(server.http_port, header, path, 1, 0.5))
        asyncio.run(rest_rate(server.http_port, header, path, conns, 1.0))
    names = list(headers)
    for i in range(rounds):  # A B, B A, A B, …: neither always runs second
        for name in names if i % 2 == 0 else reversed(names):
            figures[name].append(asyncio.run(rest_rate(server.http_port, headers[name], path, conns, seconds)))
    return figures


async def check_costs(data_dir: Path, key: str, count: int = 20_000) -> dict[str, float]:
    """µs per credential check in this process, through the core's own services (warm): the
    API key (cached) and the admin password (remembered success: a store read + SHA-256)."""
    from nxg_mqtt.core import open_core
    from nxg_mqtt.settings import Settings

    costs = {}
    async with open_core(Settings(data_dir=data_dir)) as core:
        assert await core.keys.check(key) is not None and await core.admin.check(PASSWORD)
        for name, check in (("API key", core.keys.check), ("admin password", core.admin.check)):
            candidate = key if name == "API key" else PASSWORD
            started = time.perf_counter()
            for _ in range(count):
                await check(candidate)
            costs[name] = (time.perf_counter() - started) / count * 1e6
    return costs


# ---- the run ---------------------------------------------------------------------------------------


def start_build(data_dir: Path, code: Path | None) -> Server:
    """`nxg-mqtt serve` of this build, or of the tree in `code` (an older build: `--baseline`)."""
    if code is None:
        return start_server(data_dir)
    args = ["--host", HOST, "--mqtt-port", "0", "--http-port", "0", "--no-ws", "--admin-password", PASSWORD]
    proc, ports = start_serve(
        data_dir, code, [*args, "--command-rate-limit", "0"], r"^\s*(MQTT|HTTP)\s+\w+://[^:]+:(\d+)"
    )
    return Server(proc, ports["MQTT"], ports["HTTP"], (data_dir / "internal_secret").read_text().strip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.realtime_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--rate", type=float, default=1000.0, help="telemetry msg/s, all devices together")
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--per-sub", type=int, default=10, help="devices each subscriber watches")
    parser.add_argument("--keys", type=int, default=10, help="API keys the subscribers share")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--sub-procs", type=int, default=2)
    parser.add_argument("--rest-conns", type=int, default=8)
    parser.add_argument("--rest-seconds", type=float, default=3.0)
    parser.add_argument("--rest-rounds", type=int, default=3, help="0: skip the REST comparison")
    parser.add_argument(
        "--baseline", type=Path, help="an older build's tree (git archive): /realtime runs alternate with it, no REST"
    )
    parser.add_argument("--runs", type=int, default=1, help="/realtime runs (of each build, with --baseline)")
    args = parser.parse_args(argv)
    ctx = mp.get_context("spawn")
    builds: list[tuple[str, Path | None]] = [("this build", None)]
    if args.baseline is not None:
        builds = [("baseline", args.baseline.resolve()), ("this build", None)]
    summary: dict[str, list[dict[str, float]]] = {name: [] for name, _ in builds}
    passed = True
    for i in range(args.runs):
        for name, code in builds if i % 2 == 0 else list(reversed(builds)):  # neither always runs first
            with tempfile.TemporaryDirectory(prefix="nxg-realtime-bench-") as tmp:
                data_dir = Path(tmp)
                print(f"[{name}, run {i + 1}] provisioning {args.devices} devices and {args.keys} keys…", flush=True)
                creds, keys = asyncio.run(_provision(data_dir, args.devices, args.keys))
                server = start_build(data_dir, code)
                try:
                    figures = realtime(args, ctx, server, creds, keys)
                    summary[name].append(figures)
                    last = args.rest_rounds > 0 and code is None and args.baseline is None and i == args.runs - 1
                    if last:
                        passed = rest(args, server, data_dir, keys[0]) and passed
                finally:
                    server.stop()
            passed = passed and figures["p99"] <= 100 and figures["missing"] == 0
    if args.runs > 1 or args.baseline is not None:
        print()
        print("summary (one figure per run):")
        for name, runs in summary.items():
            for label, key, unit in (
                ("p50", "p50", "ms"),
                ("p99", "p99", "ms"),
                ("CPU / 1,000 deliveries", "cpu_per_k", "ms"),
                ("server CPU in window", "cpu_share", "% of a core"),
                ("of which in the kernel", "sys_share", "%"),
                ("missing", "missing", ""),
            ):
                values = " ".join(f"{r[key]:.1f}" for r in runs)
                print(f"  {name:<11} {label:<24} {values} {unit}")
    return 0 if passed else 1


def realtime(
    args: argparse.Namespace, ctx: Any, server: Server, creds: list[tuple[str, str]], keys: list[str]
) -> dict[str, float]:
    serials = [s for s, _ in creds]
    watchers: dict[str, int] = dict.fromkeys(serials, 0)
    jobs = []
    for i in range(args.subscribers):
        chosen = [serials[(i * args.per_sub + j) % len(serials)] for j in range(args.per_sub)]
        for s in set(chosen):
            watchers[s] += 1
        jobs.append((keys[i % len(keys)], chosen))
    ready = [ctx.Event() for _ in range(args.sub_procs)]
    go, stop = ctx.Event(), ctx.Event()
    pipes = [ctx.Pipe(duplex=False) for _ in range(args.sub_procs)]
    procs = [
        ctx.Process(target=subscribers, args=(server.http_port, jobs[i :: args.sub_procs], ready[i], stop, pipes[i][1]))
        for i in range(args.sub_procs)
    ]
    procs.append(ctx.Process(target=publisher, args=(server.mqtt_port, creds, args.rate, args.duration, go)))
    for proc in procs:
        proc.start()
    for event in ready:
        if not event.wait(120):
            raise RuntimeError("subscribers did not connect within 120 s")
    print(
        f"{args.subscribers} subscribers ready; connecting devices, then {args.duration:.0f}s at {args.rate:.0f} msg/s…"
    )
    time.sleep(max(5.0, args.devices / 150))
    helpers = {f"subscribers {i + 1}": proc for i, proc in enumerate(procs[:-1])} | {"publisher": procs[-1]}
    helper_cpu = {name: cpu_seconds(proc.pid or 0) for name, proc in helpers.items()}
    split_before = cpu_split(server.proc.pid)
    cpu_before, wall_before = sum(split_before), time.monotonic()
    go.set()
    while procs[-1].is_alive() and time.monotonic() - wall_before < args.duration:
        time.sleep(0.05)
    window_wall = time.monotonic() - wall_before
    split_after = cpu_split(server.proc.pid)
    window_cpu = sum(split_after) - cpu_before
    window_sys = split_after[1] - split_before[1]
    helper_cpu = {name: cpu_seconds(proc.pid or 0) - helper_cpu[name] for name, proc in helpers.items()}
    procs[-1].join()
    stop.set()
    results: list[tuple[list[float], list[float], int | None]] = [x for out, _ in pipes for x in out.recv()]
    server_cpu = cpu_seconds(server.proc.pid) - cpu_before
    server_wall = time.monotonic() - wall_before
    for proc in procs[:-1]:
        proc.join(10)

    # the publisher sends message n to device n % devices
    total = int(args.rate * args.duration)
    expected = sum(watchers[serials[n % len(serials)]] for n in range(total))
    latencies = [x for lat, _, _ in results for x in lat]
    sent = [x for _, at, _ in results for x in at]
    delivered = len(latencies)
    closed = [code for _, _, code in results if code is not None]
    print()
    print(
        f"{args.devices} devices at {args.rate:.0f} msg/s for {args.duration:.0f}s → {args.subscribers} /realtime"
        f" subscribers × {args.per_sub} devices"
    )
    print(
        f"delivered {delivered} of {expected} ({delivered / args.duration:.0f} msg/s), missing {expected - delivered}"
        f" {GRACE_S:.0f} s after the end;"
        f" p50 {percentile(latencies, 50):.1f} ms, p99 {percentile(latencies, 99):.1f} ms,"
        f" max {max(latencies, default=math.nan):.1f} ms"
    )
    if closed:
        print(f"sockets closed by the server: {len(closed)} ({sorted(set(closed))})")
    per_k = server_cpu / max(1, delivered) * 1000 * 1000
    print(
        f"server CPU {server_cpu:.1f} s over {server_wall:.1f} s ({server_cpu / server_wall * 100:.0f} % of one core);"
        f" {per_k:.1f} ms CPU per 1,000 deliveries → one free core ≈ {1e6 / per_k:.0f} deliveries/s"
    )
    print(
        f"in the {window_wall:.1f} s window: server {window_cpu / window_wall * 100:.0f} % of a core"
        f" ({window_sys / max(window_cpu, 1e-9) * 100:.0f} % of it in the kernel), "
        + ", ".join(f"{name} {cpu / window_wall * 100:.0f} %" for name, cpu in helper_cpu.items())
        + f"; machine load average {os.getloadavg()[0]:.1f} (2 cores)"
    )
    if sent:
        start = min(sent)
        buckets: dict[int, list[float]] = {}
        for at, lat in zip(sent, latencies, strict=True):
            buckets.setdefault(int((at - start) // 1000), []).append(lat)
        print("p99 by second of sending: " + " ".join(f"{percentile(v, 99):.0f}" for _, v in sorted(buckets.items())))
    p99 = percentile(latencies, 99)
    ok = p99 <= 100 and delivered == expected
    print(f"device→subscriber p99 {p99:.1f} ms (target ≤ 100 ms, nothing dropped): {'PASS' if ok else 'FAIL'}")
    return {
        "p50": percentile(latencies, 50),
        "p99": p99,
        "cpu_per_k": per_k,
        "cpu_share": window_cpu / window_wall * 100,
        "sys_share": window_sys / max(window_cpu, 1e-9) * 100,
        "missing": expected - delivered,
    }


def rest(args: argparse.Namespace, server: Server, data_dir: Path, api_key: str) -> bool:
    figures = rest_compare(server, api_key, args.rest_conns, args.rest_seconds, args.rest_rounds)
    print()
    rounds = f"{args.rest_rounds} × {args.rest_seconds:.0f}s each, alternating"
    print(f"REST GET /api/devices/{{serial}}, {args.rest_conns} keep-alive connections, {rounds}:")
    for name, values in figures.items():
        runs = " ".join(f"{v:7.0f}" for v in values)
        print(f"  {name:<16} {runs} req/s (median {sorted(values)[len(values) // 2]:.0f})")
    password = sorted(figures["admin password"])[len(figures["admin password"]) // 2]
    key = sorted(figures["API key"])[len(figures["API key"]) // 2]
    cost = (password - key) / password * 100
    print(f"  API key cost vs the admin password: {cost:+.1f} % (target < 10 %): {'PASS' if cost < 10 else 'FAIL'}")
    costs = asyncio.run(check_costs(data_dir, api_key))
    print("  one check in-process: " + ", ".join(f"{name} {us:.1f} µs" for name, us in costs.items()))
    return cost < 10


if __name__ == "__main__":
    sys.exit(main())
