"""Command benchmark: validated and dispatched end to end (request → device ack → requester).

    .venv/bin/python -m bench.commands_bench [--devices 1000] [--duration 5] [--inflight 32] [--rate 200]

Runs `nxg-mqtt serve` as a subprocess (rate limit off) on a temporary data directory whose
devices are provisioned and paired through the core API first; half of them get a manifest whose
`light_on` has a `paramSchema` (and an `outputSchema`), half have none. A separate process holds
every device on MQTT, subscribed to `nxg/{S}/cmd`, acknowledging each command at once.

Phases (each against the devices with, then without, a manifest):
- **REST**: `--inflight` requests at a time to `POST /api/v1/device/{S}/command`; a command is
  complete when its device's ack reaches the requester on a `/ws/app` socket (apps learn of acks there).
- **/ws/app**: `--inflight` `cmd` frames at a time on one socket; complete at the device's `ack`.
- **paced**: `--rate` commands/s over `/ws/app` spread across all `--devices` connected devices;
  p50/p99 of the round trip (frame sent → ack received).
Each phase starts when every device's SUBSCRIBE is answered and the server is idle (under 5 % of a
core over 0.5 s), so start-up work or the previous phase's tail is not billed to it; `--reverse`
and `--repeat N` show what the order and the first pass cost. Every device gets one command
before the phases (its manifest is loaded and compiled at the first; `--cold` skips that).
Each phase also reports the server's CPU time per command (user + system, all its threads, from
/proc): on a shared, loaded machine that is steadier than commands/s, and 1000 / (CPU ms per
command) is what one core would carry.

`--baseline DIR` runs the same phases against another build's tree, e.g. `/work/main` or
`git archive <rev> | tar -x -C DIR` (a build older than issue 9, without manifests, gets the
/ws/app phases only). `--rounds N` alternates baseline and this build N times in one run (the
machine's noise hits both) and prints every figure with the ratio this/baseline.
Targets (issue 9): ≥ 1,000 commands/s end to end; p99 ≤ 50 ms at 200 commands/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from bench.bridge_bench import HOST, PASSWORD, Mqtt, percentile
from bench.common import start_serve
from nxg_mqtt.mqtt import codec

MANIFEST = {
    "capabilities": [
        {
            "action": "light_on",
            "paramSchema": {
                "type": "object",
                "properties": {"brightness": {"type": "integer", "minimum": 0, "maximum": 100}},
                "required": ["brightness"],
            },
            "outputSchema": {"type": "object"},
        }
    ]
}


async def provision(data_dir: Path, count: int, manifests: bool = True) -> list[tuple[str, str]]:
    from nxg_mqtt.core import open_core
    from nxg_mqtt.settings import Settings

    creds = []
    async with open_core(Settings(data_dir=data_dir)) as core:
        for i in range(count):
            device = await core.devices.create(f"cb{i:05d}", actor="bench")
            paired = await core.devices.pair(device.code, source="bench")
            if manifests and i % 2 == 0:
                await core.manifests.put(paired.serial, MANIFEST)  # type: ignore[attr-defined,unused-ignore]
            creds.append((paired.serial, paired.token))
    return creds


def provision_with(code: Path, data_dir: Path, count: int) -> tuple[list[tuple[str, str]], bool]:
    """Provision with the code in `code`, in a subprocess: (credentials, whether that build has
    manifests; an older one gets none)."""
    script = """
import asyncio, json, sys
from pathlib import Path
from nxg_mqtt.core import open_core
from nxg_mqtt.settings import Settings

async def run():
    creds = []
    async with open_core(Settings(data_dir=Path(sys.argv[1]))) as core:
        manifests = getattr(core, "manifests", None)
        for i in range(int(sys.argv[2])):
            device = await core.devices.create(f"cb{i:05d}", actor="bench")
            paired = await core.devices.pair(device.code, source="bench")
            if manifests is not None and i % 2 == 0:
                await manifests.put(paired.serial, json.loads(sys.argv[3]))
            creds.append((paired.serial, paired.token))
    print(json.dumps({"creds": creds, "manifests": manifests is not None}))

asyncio.run(run())
"""
    env = {**os.environ, "PYTHONPATH": str(code)}
    args = [sys.executable, "-c", script, str(data_dir), str(count), json.dumps(MANIFEST)]
    out = json.loads(subprocess.run(args, env=env, cwd=code, capture_output=True, text=True, check=True).stdout)
    return [(s, t) for s, t in out["creds"]], bool(out["manifests"])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(data_dir: Path, code: Path | None = None) -> tuple[subprocess.Popen[str], int, int]:
    """`nxg-mqtt serve` (this build, or the one in `code`) on free ports."""
    args = ["--host", HOST, "--mqtt-port", "0", "--http-port", "0", "--ws-port", "0", "--admin-password", PASSWORD]
    proc, ports = start_serve(data_dir, code, [*args, "--command-rate-limit", "0"], r"(mqtt|http)://[^:]+:(\d+)")
    return proc, ports["mqtt"], ports["http"]


def devices(port: int, creds: list[tuple[str, str]], ready: Event, stop: Event) -> None:
    """Every device on MQTT, acknowledging each command at once (result `{}`). `ready` is set
    when the broker has answered every device's SUBSCRIBE (a fixed sleep used to stand in for
    that, and under load the first phase began while devices were still connecting)."""

    async def run() -> None:
        gate = asyncio.Semaphore(50)
        subscribed = 0
        all_subscribed = asyncio.Event()

        async def one(serial: str, token: str) -> None:
            nonlocal subscribed
            async with gate:
                conn = await Mqtt.connect(port, serial, serial, token)
                conn.writer.write(codec.encode_subscribe(1, [(f"nxg/{serial}/cmd", 1)]))
            topic = f"nxg/{serial}/ack"
            while True:
                for packet in await conn.packets():
                    if isinstance(packet, codec.Publish):
                        if packet.packet_id is not None:
                            conn.writer.write(codec.encode_puback(packet.packet_id))
                        command_id = json.loads(packet.payload)["id"]
                        ack = b'{"t":"ack","id":"%s","ok":true,"result":{}}' % command_id.encode()
                        conn.writer.write(codec.encode_publish(topic, ack, 0))
                    elif isinstance(packet, codec.SubAck):
                        subscribed += 1
                        if subscribed == len(creds):
                            all_subscribed.set()

        tasks = [asyncio.create_task(one(s, t)) for s, t in creds]
        await all_subscribed.wait()
        ready.set()
        await asyncio.to_thread(stop.wait)
        for task in tasks:
            task.cancel()

    asyncio.run(run())


def settle(pid: int, idle: float = 0.05, window: float = 0.5, limit: float = 60.0) -> tuple[float, float]:
    """Wait until process `pid` uses under `idle` of a core over `window` s (at most `limit` s):
    (seconds waited, CPU seconds it spent meanwhile). Each phase starts on an idle server, so the
    work left over from start-up or from the previous phase (device presence, history writes,
    WAL checkpoints) is not billed to the phase."""
    started, cpu0 = time.perf_counter(), cpu_seconds(pid)
    last = cpu0
    while time.perf_counter() - started < limit:
        time.sleep(window)
        now = cpu_seconds(pid)
        if now - last < idle * window:
            break
        last = now
    return time.perf_counter() - started, cpu_seconds(pid) - cpu0


class Acks:
    """The acks seen on one `/ws/app` socket, by command id; `cmd_accepted` by ref."""

    def __init__(self, app: ClientConnection) -> None:
        self.app = app
        self.acked: dict[str, asyncio.Future[float]] = {}
        self.accepted: dict[str, asyncio.Future[str]] = {}

    def ack_of(self, command_id: str) -> asyncio.Future[float]:
        return self.acked.setdefault(command_id, asyncio.get_running_loop().create_future())

    async def read(self) -> None:
        async for text in self.app:
            message = json.loads(text)
            t = message.get("t")
            if t == "ack":
                future = self.ack_of(message["id"])
                if not future.done():
                    future.set_result(time.perf_counter())
            elif t in ("cmd_accepted", "error") and message.get("ref") in self.accepted:
                waiter = self.accepted.pop(message["ref"])
                if t == "error":
                    waiter.set_exception(RuntimeError(message["error"]))
                else:
                    waiter.set_result(message["id"])

    async def ws_command(self, serial: str, body: dict[str, Any], ref: str) -> float:
        started = time.perf_counter()
        waiter: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.accepted[ref] = waiter
        await self.app.send(json.dumps({"t": "cmd", "serial": serial, "ref": ref, **body}))
        command_id = await waiter
        done = await asyncio.wait_for(self.ack_of(command_id), 10)
        self.acked.pop(command_id, None)
        return (done - started) * 1000


class Http:
    """Kept-alive HTTP/1.1 connections, one request at a time each: a client cheap enough that
    the server, not the load generator, is measured (httpx's pool cost more CPU than the server)."""

    def __init__(self, conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]) -> None:
        self.idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
        self.conns = conns
        for conn in conns:
            self.idle.put_nowait(conn)

    @classmethod
    async def open(cls, port: int, count: int) -> Http:
        return cls([await asyncio.open_connection(HOST, port) for _ in range(count)])

    async def post(self, path: str, body: dict[str, Any] | None, method: str = "POST") -> tuple[int, Any]:
        payload = b"" if body is None else json.dumps(body).encode()
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {PASSWORD}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        reader, writer = await self.idle.get()
        try:
            writer.write(head.encode() + payload)
            header = await reader.readuntil(b"\r\n\r\n")
            status = int(header.split(b" ", 2)[1])
            length = int(re.search(rb"(?i)content-length: *(\d+)", header).group(1))  # type: ignore[union-attr]
            return status, json.loads(await reader.readexactly(length))
        finally:
            self.idle.put_nowait((reader, writer))

    def close(self) -> None:
        for _, writer in self.conns:
            writer.close()


async def closed_loop(duration: float, inflight: int, one: Any) -> tuple[float, list[float]]:
    """`inflight` workers calling `one(i)` back to back for `duration` s: (commands/s, round trips ms)."""
    rtts: list[float] = []
    deadline = time.perf_counter() + duration
    counter = iter(range(10**9))

    async def worker() -> None:
        while time.perf_counter() < deadline:
            rtts.append(await one(next(counter)))

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(inflight)))
    return len(rtts) / (time.perf_counter() - started), rtts


async def measure(
    http_port: int, serials: list[str], args: argparse.Namespace, pids: tuple[int, int], manifests: bool, label: str
) -> dict[str, tuple[float, float, float, float]]:
    """{phase: (commands/s, p50 ms, p99 ms, server CPU ms per command)}; `pids`: the server's and
    the device holder's (their CPU, and this load generator's, is reported per command)."""
    server_pid, holder_pid = pids

    def cpu_now() -> tuple[float, float, float]:
        return cpu_seconds(server_pid), cpu_seconds(holder_pid), time.process_time()

    def cpu_per_command(before: tuple[float, float, float], count: int) -> tuple[float, str]:
        spent = [(after - start) * 1000 / max(1, count) for start, after in zip(before, cpu_now(), strict=True)]
        return spent[0], f"CPU ms/command: server {spent[0]:4.2f}, devices {spent[1]:4.2f}, generator {spent[2]:4.2f}"

    results: dict[str, tuple[float, float, float, float]] = {}
    async with connect(f"ws://{HOST}:{http_port}/ws/app?token={PASSWORD}", max_queue=None) as app:
        pool: list[Http] = []  # opened per REST phase: uvicorn closes connections idle for 5 s
        acks = Acks(app)
        reader = asyncio.create_task(acks.read())
        if not args.cold:
            # one command to every device first: the server loads (and compiles) a device's
            # manifest, or learns it has none, at its first command; without this the first phase
            # of each group pays that once-per-device cost (`--cold --repeat 2` shows it)
            warm = {"action": "light_on", "params": {"brightness": 1}}
            queue = iter(serials)

            async def warmer() -> None:
                for serial in queue:
                    await acks.ws_command(serial, warm, f"warm-{serial}")

            await asyncio.gather(*(warmer() for _ in range(args.inflight)))
        with_schema, without = serials[0::2], serials[1::2]
        groups = [("with paramSchema", with_schema), ("without manifest", without)]
        if not manifests:
            groups = [("no manifests", serials)]
        if args.reverse:
            groups.reverse()
        # --repeat: the same phases again on the same server (a second pass shows what the first
        # paid for warming up: each device's manifest loaded on its first command, and so on)
        passes = [(f"{g} #{n + 1}" if n else g, members) for n in range(args.repeat) for g, members in groups]
        for group_label, group in [] if args.paced_only else passes:
            body = {"action": "light_on", "params": {"brightness": 50}}

            async def rest(i: int, group: list[str] = group, body: dict[str, Any] = body) -> float:
                started = time.perf_counter()
                status, reply = await pool[-1].post(f"/api/v1/device/{group[i % len(group)]}/command", body)
                if status != 202:
                    raise RuntimeError(reply)
                done = await asyncio.wait_for(acks.ack_of(reply["command_id"]), 10)
                acks.acked.pop(reply["command_id"], None)
                return (done - started) * 1000

            async def ws(
                i: int, group: list[str] = group, body: dict[str, Any] = body, tag: str = group_label
            ) -> float:
                return await acks.ws_command(group[i % len(group)], body, f"w{tag}{i}")

            surfaces = [("/ws/app", ws)] if not manifests else [("REST", rest), ("/ws/app", ws)]
            surfaces = [
                (name, one) for name, one in surfaces if name.strip("/").split("/")[-1].lower() in args.surfaces
            ]
            if args.reverse:
                surfaces.reverse()
            for surface, one in surfaces:
                if surface == "REST":
                    pool.append(await Http.open(http_port, args.inflight))
                waited, burned = await asyncio.to_thread(settle, server_pid)
                if args.verbose:
                    print(f"{label:9} server idle after {waited:.1f} s ({burned * 1000:.0f} ms CPU meanwhile)")
                cpu0 = cpu_now()
                rate, rtts = await closed_loop(args.duration, args.inflight, one)
                cpu, spent = cpu_per_command(cpu0, len(rtts))
                p50, p99 = percentile(rtts, 50), percentile(rtts, 99)
                results[f"{surface} {group_label}"] = (rate, p50, p99, cpu)
                print(
                    f"{label:9} {surface:8} {group_label:20} {rate:7.0f} commands/s  p50 {p50:6.1f} ms"
                    f"  p99 {p99:6.1f} ms  {spent}"
                )

        if "overhead" in args.surfaces.split(","):
            # REST's own cost: the same request to a device that does not exist (404 before the
            # command path), so what is measured is HTTP, routing, auth, the body, the error
            # body, the headers and the access line
            pool.append(await Http.open(http_port, args.inflight))
            command = {"action": "light_on", "params": {"brightness": 50}}

            async def unknown(i: int) -> float:
                started = time.perf_counter()
                status, reply = await pool[-1].post("/api/v1/device/no-such-device/command", command)
                if status != 404:
                    raise RuntimeError(reply)
                return (time.perf_counter() - started) * 1000

            await asyncio.to_thread(settle, server_pid)
            cpu0 = cpu_now()
            rate, rtts = await closed_loop(args.duration, args.inflight, unknown)
            cpu, spent = cpu_per_command(cpu0, len(rtts))
            results["REST overhead (404)"] = (rate, percentile(rtts, 50), percentile(rtts, 99), cpu)
            print(f"{label:9} REST overhead, a 404 each {rate:7.0f} requests/s  {spent.replace('command', 'request')}")

        # paced: --rate commands/s over /ws/app, spread over every connected device
        paced: list[asyncio.Task[float]] = []
        total = int(args.rate * args.duration)
        await asyncio.to_thread(settle, server_pid)
        cpu0 = cpu_now()
        started = time.perf_counter()
        for i in range(total):
            await asyncio.sleep(max(0.0, started + i / args.rate - time.perf_counter()))
            body = {"action": "light_on", "params": {"brightness": i % 100}}
            paced.append(asyncio.create_task(acks.ws_command(serials[i % len(serials)], body, f"p{i}")))
        rtts = list(await asyncio.gather(*paced))
        cpu, spent = cpu_per_command(cpu0, len(rtts))
        p50, p99 = percentile(rtts, 50), percentile(rtts, 99)
        results["paced"] = (args.rate, p50, p99, cpu)
        print(
            f"{label:9} paced    {args.rate:.0f} commands/s over {len(serials)} devices: p50 {p50:.1f} ms"
            f"  p99 {p99:.1f} ms  {spent}"
        )
        reader.cancel()
        for http in pool:
            http.close()
    return results


def run_once(args: argparse.Namespace, code: Path | None, label: str) -> dict[str, tuple[float, float, float, float]]:
    """One fresh data directory, server and device holder; the build in `code` (None: this one)."""
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="nxg-cmd-bench-") as tmp:
        data = Path(tmp)
        if code is not None:
            creds, manifests = provision_with(code, data, args.devices)
        else:
            creds, manifests = asyncio.run(provision(data, args.devices)), True
        proc, mqtt_port, http_port = start_server(data, code)
        ready, stop = ctx.Event(), ctx.Event()
        holder = ctx.Process(target=devices, args=(mqtt_port, creds, ready, stop))
        holder.start()
        try:
            started = time.perf_counter()
            if not ready.wait(120):
                raise RuntimeError("the devices did not connect")
            if args.verbose:
                print(f"{label:9} {args.devices} devices subscribed after {time.perf_counter() - started:.1f} s")
            serials = [s for s, _ in creds]
            assert holder.pid is not None
            return asyncio.run(measure(http_port, serials, args, (proc.pid, holder.pid), manifests, label))
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--inflight", type=int, default=32)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--paced-only", action="store_true", help="only the paced phase")
    parser.add_argument(
        "--surfaces",
        default="rest,app",
        help="closed-loop phases: rest, app (/ws/app), overhead (REST answering 404: HTTP's own cost)",
    )
    parser.add_argument("--cold", action="store_true", help="no warm-up command per device before the phases")
    parser.add_argument("--repeat", type=int, default=1, help="run the closed-loop phases this often per server")
    parser.add_argument("--reverse", action="store_true", help="closed-loop phases in the reverse order")
    parser.add_argument("-v", "--verbose", action="store_true", help="say how long start-up and each settle took")
    parser.add_argument("--baseline", type=Path, help="another build's tree (git archive, or /work/main)")
    parser.add_argument("--rounds", type=int, default=1, help="with --baseline: alternate the builds this often")
    args = parser.parse_args(argv)
    baseline = args.baseline.resolve() if args.baseline else None
    runs: dict[str, list[dict[str, tuple[float, float, float, float]]]] = {"baseline": [], "this": []}
    for _ in range(args.rounds if baseline else 1):
        if baseline is not None:
            runs["baseline"].append(run_once(args, baseline, "baseline"))
        runs["this"].append(run_once(args, None, "this"))
    if baseline is not None:
        print("\nphase: this / baseline, per round (commands/s, p99, server CPU per command)")
        for phase in runs["this"][0]:
            cells = []
            for new, old in zip(runs["this"], runs["baseline"], strict=True):
                if phase in old:
                    n, o = new[phase], old[phase]
                    cells.append(f"{n[0] / o[0]:.2f}x rate, {n[2] / o[2]:.2f}x p99, {n[3] / o[3]:.2f}x CPU")
            print(f"{phase:28} " + " | ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
