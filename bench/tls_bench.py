"""TLS and metrics cost, one run, plain beside TLS on the same `nxg-mqtt serve` process.

    .venv/bin/python -m bench.tls_bench [--devices 200] [--seconds 5] [--storm 400]

Phases (each plain, then TLS): CONNECT+SUBSCRIBE/s (a storm of `--storm` clients, 50 at a time,
each a new TCP — or TCP+TLS — handshake); saturation (`--devices` publishers, QoS 1, 8 in flight
each: PUBACKed msg/s); paced (`--devices` × 10 msg/s: accepted msg/s against the 2,000 offered).
Then plain saturation twice more, without and with `GET /metrics` scraped every 0.5 s (the
metrics cost: nothing is added to the message path, so this is the scrape's own CPU). The broker
runs with `--allow-anonymous` (the load generator needs no pairing); the load generator shares the
machine's cores, so figures are per-machine and relative (TLS ÷ plain) matters most.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.mqttproto import MqttConn, publish_prefix, subscribe

PAYLOAD = json.dumps({"temp": 21.5, "hum": 40, "seq": 0}).encode()


async def open_client(port: int, client_id: str, context: ssl.SSLContext | None) -> MqttConn:
    from bench.mqttproto import connect_packet

    loop = asyncio.get_running_loop()
    async with asyncio.timeout(20):
        _, proto = await loop.create_connection(
            MqttConn, "127.0.0.1", port, ssl=context, server_hostname="127.0.0.1" if context else None
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
    port: int, devices: int, seconds: float, context: ssl.SSLContext | None, tag: str, pace_hz: float | None
) -> float:
    conns = [await open_client(port, f"pub-{tag}-{i}", context) for i in range(devices)]
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

    start = time.perf_counter()
    await asyncio.gather(*(run(i, c) for i, c in enumerate(conns)))
    rate = acked / (time.perf_counter() - start)
    for conn in conns:
        conn.close()
    await asyncio.sleep(0.5)
    return rate


async def scraper(url: str, context: ssl.SSLContext, stop: asyncio.Event) -> int:
    scrapes = 0
    while not stop.is_set():
        await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5, context=context).read())
        scrapes += 1
        await asyncio.sleep(0.5)
    return scrapes


async def main_async(args: argparse.Namespace) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="nxg-tls-bench-"))
    cert_dev = [sys.executable, "-m", "nxg_mqtt", "cert", "dev", "--out", str(work / "certs")]
    done = await asyncio.to_thread(subprocess.run, cert_dev, capture_output=True, text=True, check=True)
    certs = json.loads(done.stdout)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "nxg_mqtt",
        "serve",
        *("--host", "127.0.0.1", "--mqtt-port", "0", "--no-ws", "--no-wss", "--http-port", "0"),
        *("--mqtts-port", "0", "--allow-anonymous", "--data", str(work / "data"), "--log-level", "warning"),
        *("--tls-cert", certs["cert"], "--tls-key", certs["key"], "--tls-ca", certs["ca"]),
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    banner = ""
    while "Data" not in banner:
        banner += (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
    plain = int(re.search(r"mqtt://[^:]+:(\d+)", banner).group(1))  # type: ignore[union-attr]
    tls = int(re.search(r"mqtts://[^:]+:(\d+)", banner).group(1))  # type: ignore[union-attr]
    http = re.search(r"HTTP +(\S+)", banner).group(1)  # type: ignore[union-attr]
    context = ssl.create_default_context(cafile=certs["ca"])
    results: dict[str, float] = {}
    try:
        for name, port, ctx in (("plain", plain, None), ("tls", tls, context)):
            results[f"{name}_connect_subscribe_per_s"] = await storm(port, args.storm, ctx, name)
            results[f"{name}_saturation_msg_s"] = await publish_load(port, args.devices, args.seconds, ctx, name, None)
            results[f"{name}_paced_msg_s"] = await publish_load(port, args.devices, args.seconds, ctx, name, 10.0)
        # the metrics cost: plain saturation without, then with, a scrape every 0.5 s (back to back)
        results["plain_saturation_again_msg_s"] = await publish_load(
            plain, args.devices, args.seconds, None, "again", None
        )
        stop = asyncio.Event()
        scraping = asyncio.create_task(scraper(http + "metrics", context, stop))
        results["plain_saturation_with_scrapes_msg_s"] = await publish_load(
            plain, args.devices, args.seconds, None, "scraped", None
        )
        stop.set()
        results["scrapes"] = await scraping
    finally:
        proc.send_signal(signal.SIGTERM)
        await proc.wait()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--storm", type=int, default=400)
    results = asyncio.run(main_async(parser.parse_args()))
    results["tls_over_plain_saturation"] = results["tls_saturation_msg_s"] / results["plain_saturation_msg_s"]
    results["tls_over_plain_paced"] = results["tls_paced_msg_s"] / results["plain_paced_msg_s"]
    results["metrics_cost_pct"] = 100 * (
        1 - results["plain_saturation_with_scrapes_msg_s"] / results["plain_saturation_again_msg_s"]
    )
    print(json.dumps({k: round(v, 3) for k, v in results.items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
