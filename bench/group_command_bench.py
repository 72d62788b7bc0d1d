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
import multiprocessing as mp
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from websockets.asyncio.client import connect

from bench.bridge_bench import HOST, PASSWORD, percentile
from bench.commands_bench import Acks, Http, devices, provision, start_server

BODY = {"action": "light_on", "params": {"brightness": 50}}


async def group_round(http: Http, acks: Acks) -> tuple[float, float, list[float]]:
    """(ms until all acked, ms until the group request answered, each command's send→ack ms)."""
    started = time.perf_counter()
    status, reply = await http.post("/api/v1/groups/bench/command", BODY)
    answered = time.perf_counter()
    if status != 200 or not all(r["success"] for r in reply["results"]):
        raise RuntimeError(f"group command failed: {status} {str(reply)[:300]}")
    ids = [r["command_id"] for r in reply["results"]]
    done = await asyncio.wait_for(asyncio.gather(*(acks.ack_of(i) for i in ids)), 30)
    for command_id in ids:
        acks.acked.pop(command_id, None)
    latencies = [(t - started) * 1000 for t in done]
    return max(latencies), (answered - started) * 1000, latencies


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
    done = await asyncio.wait_for(asyncio.gather(*(acks.ack_of(i) for i in ids)), 30)
    for command_id in ids:
        acks.acked.pop(command_id, None)
    latencies = [(t - started) * 1000 for t in done]
    return max(latencies), latencies


async def measure(http_port: int, serials: list[str], args: argparse.Namespace) -> None:
    async with connect(f"ws://{HOST}:{http_port}/ws/app?token={PASSWORD}", max_queue=None) as app:
        acks = Acks(app)
        reader = asyncio.create_task(acks.read())
        setup = await Http.open(http_port, 1)
        status, reply = await setup.post("/api/v1/groups", {"name": "bench", "device_ids": serials})
        if status != 201:
            raise RuntimeError(f"group not created: {status} {reply}")
        setup.close()
        group_all, group_answer, group_lat, single_all, single_lat = [], [], [], [], []
        for round_no in range(args.rounds):
            # a fresh connection per round: uvicorn closes connections idle for 5 s
            http = await Http.open(http_port, args.inflight)
            try:
                if round_no % 2 == 0:  # alternate, so drift on a shared machine hits both alike
                    g = await group_round(http, acks)
                    s = await single_round(http, acks, serials, args.inflight)
                else:
                    s = await single_round(http, acks, serials, args.inflight)
                    g = await group_round(http, acks)
            finally:
                http.close()
            group_all.append(g[0])
            group_answer.append(g[1])
            group_lat += g[2]
            single_all.append(s[0])
            single_lat += s[1]
            print(
                f"round {round_no + 1}: group all acked {g[0]:7.1f} ms (answered {g[1]:6.1f} ms); single {s[0]:7.1f} ms"
            )
        reader.cancel()

    def row(label: str, values: list[float]) -> str:
        p50, p99 = percentile(values, 50), percentile(values, 99)
        return f"{label:40} p50 {p50:7.1f}  p99 {p99:7.1f}  max {max(values):7.1f} ms"

    print(f"\n{len(serials)} devices, {args.rounds} rounds")
    print(row("group command: all acked", group_all))
    print(row("group command: request answered", group_answer))
    print(row("group command: each command send→ack", group_lat))
    print(row(f"baseline {args.inflight}-inflight singles: all acked", single_all))
    print(row("baseline: each command send→ack", single_lat))
    ratio = [g / s for g, s in zip(group_all, single_all, strict=True)]
    print(f"ratio group ÷ baseline (all acked, per round): {min(ratio):.2f}–{max(ratio):.2f}")
    verdict = "pass" if percentile(group_all, 99) <= 1000 else "fail"
    print(f"target p99 all acked ≤ 1000 ms: {verdict}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--inflight", type=int, default=32)
    args = parser.parse_args(argv)
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="nxg-group-bench-") as tmp:
        data = Path(tmp)
        creds = asyncio.run(provision(data, args.devices))
        proc, mqtt_port, http_port = start_server(data)
        ready, stop = ctx.Event(), ctx.Event()
        holder = ctx.Process(target=devices, args=(mqtt_port, creds, ready, stop))
        holder.start()
        try:
            if not ready.wait(120):
                raise RuntimeError("the devices did not connect")
            asyncio.run(measure(http_port, [s for s, _ in creds], args))
        finally:
            stop.set()
            holder.join(10)
            if holder.is_alive():
                holder.kill()
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
