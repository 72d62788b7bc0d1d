"""Group command benchmark (issue 13): one `POST /api/v1/groups/{slug}/command` to N devices,
time until every device's ack has reached an app.

    .venv/bin/python -m bench.group_command_bench [--devices 1000] [--rounds 10]

Runs `nxg-mqtt serve` as a subprocess (rate limit off) on a temporary data directory with
`--devices` devices paired through the core (half with a manifest whose `light_on` has a
`paramSchema`); a separate process holds every device on MQTT, subscribed to `nxg/{S}/cmd`,
acknowledging each command at once. A group of all devices is made through the API.

Each round: the group command is sent; "all acked" is when the last of the N acks reached the
requester's `/ws/app` socket (apps learn of acks there). Baseline, in the same run and on the
same devices: the same N commands as N single `POST /api/v1/device/{S}/command` requests,
`--inflight` at a time. Reported: time until all acked (p50 / p99 / max over rounds), the group
request's own response time, each command's send→ack latency, and the ratio group ÷ baseline.
Target (issue 13): all 1,000 acked with p99 ≤ 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import multiprocessing as mp
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from multiprocessing.context import SpawnContext
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event
from pathlib import Path

from websockets.asyncio.client import connect

from bench.bridge_bench import HOST, PASSWORD, percentile
from bench.commands_bench import Acks, Http, devices, provision, provision_with, start_server

BODY = {"action": "light_on", "params": {"brightness": 50}}


async def group_round(http: Http, acks: Acks) -> tuple[float, float, list[float], int]:
    """(ms until all acked, ms until the group request answered, each command's send→ack ms,
    acks that never reached the app). A round with lost acks never completes: infinite."""
    started = time.perf_counter()
    status, reply = await http.post("/api/v1/groups/bench/command", BODY)
    answered = time.perf_counter()
    if status != 200 or not all(r["success"] for r in reply["results"]):
        raise RuntimeError(f"group command failed: {status} {str(reply)[:300]}")
    ids = [r["command_id"] for r in reply["results"]]
    waits = [acks.ack_of(i) for i in ids]
    try:
        done = await asyncio.wait_for(asyncio.gather(*waits), 30)
    except TimeoutError:
        # the broker dropped some on the way to the app (a session queue overflowed): say how many
        arrived = sum(1 for w in waits if w.done() and not w.cancelled())
        for command_id in ids:
            acks.acked.pop(command_id, None)
        return math.inf, (answered - started) * 1000, [], len(ids) - arrived
    for command_id in ids:
        acks.acked.pop(command_id, None)
    latencies = [(t - started) * 1000 for t in done]
    return max(latencies), (answered - started) * 1000, latencies, 0


async def single_round(http: Http, acks: Acks, serials: list[str], inflight: int) -> tuple[float, list[float]]:
    """The baseline: N single-device requests, `inflight` at a time; (ms until all acked, latencies)."""
    started = time.perf_counter()
    queue = iter(serials)
    ids: list[str] = []

    async def worker() -> None:
        for serial in queue:
            status, reply = await http.post(f"/api/v1/device/{serial}/command", BODY)
            if status != 202:
                raise RuntimeError(f"command failed: {status} {reply}")
            ids.append(reply["command_id"])

    await asyncio.gather(*(worker() for _ in range(inflight)))
    try:
        done = await asyncio.wait_for(asyncio.gather(*(acks.ack_of(i) for i in ids)), 30)
    except TimeoutError:
        print("singles: not every ack reached /ws/app within 30 s", flush=True)
        return math.inf, []
    finally:
        for command_id in ids:
            acks.acked.pop(command_id, None)
    latencies = [(t - started) * 1000 for t in done]
    return max(latencies), latencies


@dataclass
class Build:
    """One server under test: its tree (None: this one), ports, devices and figures."""

    name: str
    code: Path | None
    proc: subprocess.Popen[str] | None = None
    holder: BaseProcess | None = None
    stop: Event | None = None  # tells the device holder to let go
    http_port: int = 0
    serials: list[str] = field(default_factory=list)
    all_acked: list[float] = field(default_factory=list)
    answered: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    lost: int = 0  # acks that never reached the app (their rounds count as never completed)


async def measure(builds: list[Build], args: argparse.Namespace) -> None:
    async with contextlib.AsyncExitStack() as stack:
        acks: dict[str, Acks] = {}
        for build in builds:
            app = await stack.enter_async_context(
                connect(f"ws://{HOST}:{build.http_port}/ws/app?token={PASSWORD}", max_queue=None)
            )
            acks[build.name] = Acks(app)
            reader = asyncio.create_task(acks[build.name].read())
            stack.callback(reader.cancel)
            setup = await Http.open(build.http_port, 1)
            status, reply = await setup.post("/api/v1/groups", {"name": "bench", "device_ids": build.serials})
            setup.close()
            if status != 201:
                raise RuntimeError(f"{build.name}: group not created: {status} {reply}")
        this = builds[0]
        single_all: list[float] = []
        single_lat: list[float] = []
        for round_no in range(args.rounds):
            # alternate the order, so drift on a shared machine hits every build alike
            order = builds if round_no % 2 == 0 else builds[::-1]
            line = [f"round {round_no + 1}:"]
            for build in order:
                # a fresh connection per round: uvicorn closes connections idle for 5 s
                http = await Http.open(build.http_port, args.inflight)
                try:
                    g = await group_round(http, acks[build.name])
                    build.all_acked.append(g[0])
                    build.answered.append(g[1])
                    build.latencies += g[2]
                    build.lost += g[3]
                    lost = f", {g[3]} acks lost" if g[3] else ""
                    line.append(f"{build.name} group all acked {g[0]:7.1f} ms (answered {g[1]:6.1f} ms{lost});")
                    if build is this and args.singles:
                        s = await single_round(http, acks[build.name], build.serials, args.inflight)
                        single_all.append(s[0])
                        single_lat += s[1]
                        line.append(f"singles {s[0]:7.1f} ms;")
                finally:
                    http.close()
            print(" ".join(line), flush=True)

    def row(label: str, values: list[float]) -> str:
        p50, p99 = percentile(values, 50), percentile(values, 99)
        return f"{label:44} p50 {p50:7.1f}  p99 {p99:7.1f}  max {max(values, default=math.nan):7.1f} ms"

    print(f"\n{len(this.serials)} devices, {args.rounds} rounds")
    for build in builds:
        print(row(f"{build.name}: group command: all acked", build.all_acked))
        print(row(f"{build.name}: group command: request answered", build.answered))
        print(row(f"{build.name}: group command: each send→ack", build.latencies))
        if build.lost:
            print(f"{build.name}: {build.lost} acks lost in {build.all_acked.count(math.inf)} rounds")
    if single_all:
        print(row(f"{this.name}: {args.inflight}-inflight singles: all acked", single_all))
        print(row(f"{this.name}: singles: each send→ack", single_lat))
        ratio = [g / s for g, s in zip(this.all_acked, single_all, strict=True)]
        print(f"ratio group ÷ singles (all acked, per round): {min(ratio):.2f}–{max(ratio):.2f}")
    for build in builds[1:]:
        ratio = [g / b for g, b in zip(this.all_acked, build.all_acked, strict=True)]
        print(f"ratio {this.name} ÷ {build.name} (group all acked, per round): {min(ratio):.2f}–{max(ratio):.2f}")
    verdict = "pass" if percentile(this.all_acked, 99) <= 1000 else "fail"
    print(f"target p99 all acked ≤ 1000 ms ({this.name}): {verdict}")


def start(build: Build, root: Path, count: int, ctx: SpawnContext) -> None:
    data = root / build.name
    data.mkdir()
    if build.code is None:
        creds = asyncio.run(provision(data, count))
    else:
        creds, _ = provision_with(build.code, data, count)
    build.serials = [s for s, _ in creds]
    build.proc, mqtt_port, build.http_port = start_server(data, build.code)
    ready, build.stop = ctx.Event(), ctx.Event()
    build.holder = ctx.Process(target=devices, args=(mqtt_port, creds, ready, build.stop))
    build.holder.start()
    if not ready.wait(120):
        raise RuntimeError(f"{build.name}: the devices did not connect")
    print(f"{build.name}: server pid {build.proc.pid}, {count} devices connected", flush=True)


def shut_down(build: Build) -> None:
    if build.stop is not None:
        build.stop.set()
    if build.holder is not None:
        build.holder.join(10)
        if build.holder.is_alive():
            build.holder.kill()
    if build.proc is not None:
        build.proc.send_signal(signal.SIGINT)
        try:
            build.proc.wait(15)
        except subprocess.TimeoutExpired:
            build.proc.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--inflight", type=int, default=32)
    parser.add_argument("--baseline", type=Path, help="another build's tree (e.g. /work/main), run alongside")
    parser.add_argument(
        "--singles", action=argparse.BooleanOptionalAction, default=True, help="the N-singles baseline (this build)"
    )
    args = parser.parse_args(argv)
    ctx = mp.get_context("spawn")
    builds = [Build("this", None)]
    if args.baseline is not None:
        builds.append(Build("baseline", args.baseline.resolve()))
    with tempfile.TemporaryDirectory(prefix="nxg-group-bench-") as tmp:
        try:
            for build in builds:
                start(build, Path(tmp), args.devices, ctx)
            asyncio.run(measure(builds, args))
        finally:
            for build in builds:
                shut_down(build)
    return 0


if __name__ == "__main__":
    sys.exit(main())
