"""TLS and metrics cost, one run: plain beside TLS on the same `nxg-mqtt serve` process, and
metrics on beside off on two processes, in alternation.

    .venv/bin/python -m bench.tls_bench [--devices 200] [--seconds 5] [--storm 400] [--rounds 3]

Phases: CONNECT+SUBSCRIBE/s, plain then TLS (a storm of `--storm` clients, 50 at a time, each a
new TCP — or TCP+TLS — handshake); saturation (`--devices` publishers, QoS 1, 8 in flight each:
PUBACKed msg/s), plain and TLS alternating `--rounds` times; paced (`--devices` × 10 msg/s:
accepted msg/s against the 2,000 offered). Then the metrics cost: plain saturation against the
server above (metrics on, `GET /metrics` scraped every second) and against a second one started
with `--no-metrics` (no per-message counting, not scraped), alternating `--rounds` times.

Every saturation phase also reports the CPU the server process and this load generator used
(seconds of CPU per wall second, from /proc and `time.process_time`): on 2 cores the two share,
so a load generator near 1.0 bounds the figure, not the server. The load generator runs on uvloop
(`--loop asyncio` for the standard loop, whose TLS is pure Python) and corks its writes per loop
pass; each round also runs plain and TLS with a load generator that writes every PUBLISH on its
own (`*_uncorked`, how this benchmark used to load the server) to show what the client costs. The broker runs with
`--allow-anonymous` (the load generator needs no pairing); figures are per-machine and relative
(TLS ÷ plain, off ÷ on) matters most.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
import urllib.request
from pathlib import Path

from bench.mqttproto import MqttConn, publish_prefix, subscribe

PAYLOAD = json.dumps({"temp": 21.5, "hum": 40, "seq": 0}).encode()


class CorkedConn(MqttConn):
    """Writes gathered until the end of the loop pass, then one transport write (as the server
    does): the PUBLISHes a batch of PUBACKs releases leave in one TLS record and one send(),
    not one each. Plain and TLS phases both use it."""

    def __init__(self) -> None:
        super().__init__()
        self._corked: list[bytes] | None = None

    def write(self, data: bytes) -> None:
        if self._corked is None:
            self._corked = [data]
            asyncio.get_running_loop().call_soon(self._uncork)
        else:
            self._corked.append(data)

    def _uncork(self) -> None:
        corked, self._corked = self._corked, None
        if corked:
            super().write(b"".join(corked))


async def open_client(port: int, client_id: str, context: ssl.SSLContext | None, corked: bool = True) -> MqttConn:
    from bench.mqttproto import connect_packet

    loop = asyncio.get_running_loop()
    async with asyncio.timeout(20):
        _, proto = await loop.create_connection(
            CorkedConn if corked else MqttConn,
            "127.0.0.1",
            port,
            ssl=context,
            server_hostname="127.0.0.1" if context else None,
        )
        proto.write(connect_packet(client_id, None, None, 0))
        code = await proto.connack
    if code != 0:
        raise ConnectionRefusedError(code)
    return proto


async def storm(port: int, count: int, context: ssl.SSLContext | None, tag: str) -> float:
    start = time.perf_counter()
    conns: list[MqttConn] = []
    for base in range(0, count, 50):

        async def one(i: int) -> MqttConn:
            conn = await open_client(port, f"storm-{tag}-{i}", context)
            await subscribe(conn, f"bench/{tag}/{i}/cmd", 1)
            return conn

        conns += await asyncio.gather(*(one(i) for i in range(base, min(count, base + 50))))
    rate = count / (time.perf_counter() - start)
    for conn in conns:
        conn.close()
    return rate


async def publish_load(
    port: int,
    devices: int,
    seconds: float,
    context: ssl.SSLContext | None,
    tag: str,
    pace_hz: float | None,
    pid: int | None = None,
    corked: bool = True,
) -> tuple[float, float, float]:
    """(PUBACKed msg/s, server CPU/s, load generator CPU/s) over the publishing window only
    (connection set-up and close excluded); the CPU figures are 0 without the server's `pid`."""
    conns = [await open_client(port, f"pub-{tag}-{i}", context, corked) for i in range(devices)]
    acked = 0
    stop = time.perf_counter() + seconds

    async def run(i: int, conn: MqttConn) -> None:
        nonlocal acked
        packet_ids = iter(range(1, 1 << 30))
        prefix = publish_prefix(f"bench/{tag}/{i}/telemetry", 1, len(PAYLOAD))
        window = asyncio.Semaphore(8 if pace_hz is None else 1)

        def on_puback(n: int) -> None:
            nonlocal acked
            acked += n
            for _ in range(n):
                window.release()

        conn.on_puback = on_puback
        next_at = time.perf_counter()
        while time.perf_counter() < stop:
            await window.acquire()
            pid = next(packet_ids) & 0xFFFF or 1
            conn.write(prefix + pid.to_bytes(2, "big") + PAYLOAD)
            if pace_hz is not None:
                next_at += 1 / pace_hz
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))

    server_cpu, client_cpu = cpu_seconds(pid) if pid else 0.0, time.process_time()
    start = time.perf_counter()
    await asyncio.gather(*(run(i, c) for i, c in enumerate(conns)))
    wall = time.perf_counter() - start
    server_cpu = (cpu_seconds(pid) - server_cpu) / wall if pid else 0.0
    client_cpu = (time.process_time() - client_cpu) / wall
    for conn in conns:
        conn.close()
    await asyncio.sleep(0.5)
    return acked / wall, server_cpu, client_cpu


def cpu_seconds(pid: int) -> float:
    """User + system CPU of process `pid` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def scraper(url: str, context: ssl.SSLContext, stop: asyncio.Event) -> int:
    scrapes = 0
    while not stop.is_set():
        await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5, context=context).read())
        scrapes += 1
        await asyncio.sleep(1.0)
    return scrapes


def hot_path_us() -> float:
    """Microseconds the metrics add per routed message: one `ChannelCounts.add` on receipt (the
    ingest plugin) and one on delivery (`NxgBroker.route`); the best of 7 timings."""
    from nxg_mqtt.metrics import ChannelCounts

    received, sent = ChannelCounts(), ChannelCounts()
    topics = [f"nxg/dev-{i}/telemetry" for i in range(200)]

    def one_pass() -> None:
        for topic in topics:
            received.add(topic)
            sent.add(topic, 1)

    # CPU time, not wall time: on a shared machine the wall clock counts other processes' turns
    best = min(timeit.repeat(one_pass, number=200, repeat=7, timer=time.process_time))
    return 1e6 * best / (200 * len(topics))


async def start_server(work: Path, certs: dict[str, str], *extra: str) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "nxg_mqtt",
        "serve",
        *("--host", "127.0.0.1", "--mqtt-port", "0", "--no-ws", "--no-wss", "--http-port", "0"),
        *("--mqtts-port", "0", "--allow-anonymous", "--data", str(work), "--log-level", "warning"),
        *("--tls-cert", certs["cert"], "--tls-key", certs["key"], "--tls-ca", certs["ca"]),
        *extra,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    banner = ""
    while "Data" not in banner:
        banner += (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
    return proc, banner


def spread(values: list[float]) -> list[float]:
    return [round(min(values), 3), round(max(values), 3)]


async def main_async(args: argparse.Namespace) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="nxg-tls-bench-"))
    cert_dev = [sys.executable, "-m", "nxg_mqtt", "cert", "dev", "--out", str(work / "certs")]
    done = await asyncio.to_thread(subprocess.run, cert_dev, capture_output=True, text=True, check=True)
    certs = json.loads(done.stdout)
    proc, banner = await start_server(work / "data", certs)
    plain = int(re.search(r"mqtt://[^:]+:(\d+)", banner).group(1))  # type: ignore[union-attr]
    tls = int(re.search(r"mqtts://[^:]+:(\d+)", banner).group(1))  # type: ignore[union-attr]
    context = ssl.create_default_context(cafile=certs["ca"])
    results: dict[str, object] = {}
    runs: dict[str, list[tuple[float, float, float]]] = {
        "plain": [],
        "tls": [],
        "plain_uncorked": [],
        "tls_uncorked": [],
        "metrics_on": [],
        "metrics_off": [],
    }
    n, secs = args.devices, args.seconds
    try:
        for name, port, ctx in (("plain", plain, None), ("tls", tls, context)):
            results[f"{name}_connect_subscribe_per_s"] = round(await storm(port, args.storm, ctx, name), 1)
        for r in range(args.rounds):
            for name, port, ctx, corked in (
                ("plain", plain, None, True),
                ("tls", tls, context, True),
                ("plain_uncorked", plain, None, False),
                ("tls_uncorked", tls, context, False),
            ):
                load = publish_load(port, n, secs, ctx, f"{name}{r}", None, proc.pid, corked)
                runs[name].append(await load)
        for name, port, ctx in (("plain", plain, None), ("tls", tls, context)):
            paced, _, _ = await publish_load(port, n, secs, ctx, f"paced-{name}", 10.0)
            results[f"{name}_paced_msg_s"] = round(paced, 1)
    finally:
        proc.send_signal(signal.SIGTERM)
        await proc.wait()
    # metrics: two fresh servers (same history size), the order swapped every round
    on, on_banner = await start_server(work / "data-metrics", certs)
    off, off_banner = await start_server(work / "data-no-metrics", certs, "--no-metrics")
    on_port = int(re.search(r"mqtt://[^:]+:(\d+)", on_banner).group(1))  # type: ignore[union-attr]
    off_port = int(re.search(r"mqtt://[^:]+:(\d+)", off_banner).group(1))  # type: ignore[union-attr]
    http = re.search(r"HTTP +(\S+)", on_banner).group(1)  # type: ignore[union-attr]
    scrapes = 0
    try:
        for r in range(args.rounds):

            async def with_metrics(r: int = r) -> None:
                nonlocal scrapes
                stop = asyncio.Event()
                scraping = asyncio.create_task(scraper(http + "metrics", context, stop))
                runs["metrics_on"].append(await publish_load(on_port, n, secs, None, f"on{r}", None, on.pid))
                stop.set()
                scrapes += await scraping

            async def without(r: int = r) -> None:
                runs["metrics_off"].append(await publish_load(off_port, n, secs, None, f"off{r}", None, off.pid))

            for phase in (with_metrics, without) if r % 2 == 0 else (without, with_metrics):
                await phase()
        results["scrapes"] = scrapes
    finally:
        for server in (on, off):
            server.send_signal(signal.SIGTERM)
            await server.wait()
    for name, measures in runs.items():
        results[f"{name}_saturation_msg_s"] = [round(m[0]) for m in measures]
        results[f"{name}_server_cpu"] = [round(m[1], 2) for m in measures]
        results[f"{name}_loadgen_cpu"] = [round(m[2], 2) for m in measures]
    ratios = [t[0] / p[0] for p, t in zip(runs["plain"], runs["tls"], strict=True)]
    results["tls_over_plain_saturation"] = spread(ratios)
    # the load generator writing each PUBLISH on its own (one TLS record and send() each), as before
    ratios = [t[0] / p[0] for p, t in zip(runs["plain_uncorked"], runs["tls_uncorked"], strict=True)]
    results["tls_over_plain_saturation_uncorked_client"] = spread(ratios)
    # the server's CPU per message: what TLS costs the server, whoever bounds the rate
    per_msg = [(t[1] / t[0]) / (p[1] / p[0]) for p, t in zip(runs["plain"], runs["tls"], strict=True)]
    results["tls_over_plain_server_cpu_per_msg"] = spread(per_msg)
    per_msg = [(t[2] / t[0]) / (p[2] / p[0]) for p, t in zip(runs["plain"], runs["tls"], strict=True)]
    results["tls_over_plain_loadgen_cpu_per_msg"] = spread(per_msg)
    costs = [100 * (1 - on[0] / off[0]) for on, off in zip(runs["metrics_on"], runs["metrics_off"], strict=True)]
    results["metrics_cost_pct"] = spread(costs)
    # the same as server CPU per message (on a shared machine a process's CPU share varies more
    # than what it spends per message)
    costs = [
        100 * ((on[1] / on[0]) / (off[1] / off[0]) - 1)
        for on, off in zip(runs["metrics_on"], runs["metrics_off"], strict=True)
    ]
    results["metrics_cost_server_cpu_per_msg_pct"] = spread(costs)
    # the hot path's own addition, measured here: two ChannelCounts.add per message (in, out),
    # as a share of the server CPU one message costs (plain phases)
    results["metrics_hot_path_us_per_msg"] = round(hot_path_us(), 3)
    server_us = statistics.median(1e6 * p[1] / p[0] for p in runs["plain"])
    results["server_cpu_us_per_msg"] = round(server_us, 1)
    results["metrics_hot_path_pct"] = round(100 * hot_path_us() / server_us, 2)
    results["metrics_cost_pct_median"] = round(
        statistics.median(
            100 * (1 - on[0] / off[0]) for on, off in zip(runs["metrics_on"], runs["metrics_off"], strict=True)
        ),
        2,
    )
    results["tls_over_plain_paced"] = round(float(results["tls_paced_msg_s"]) / float(results["plain_paced_msg_s"]), 3)  # type: ignore[arg-type]
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--storm", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    args = parser.parse_args()
    if args.loop == "uvloop":
        import uvloop

        results = uvloop.run(main_async(args))
    else:
        results = asyncio.run(main_async(args))
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
