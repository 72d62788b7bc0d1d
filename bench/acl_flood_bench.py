"""A paired device flooding foreign topics on the Mosquitto profile: what it costs everyone else.

    .venv/bin/python -m bench.acl_flood_bench [--flood 3000] [--rate 200] [--rounds 2]

Mosquitto 2.0 answers every topic check on its only thread; a check the plugin cannot answer
itself is a blocking `/mqtt/acl` call, and negative answers are not cached. A paired device's
rules are marked complete in the credential table (`nxg_mqtt/hooks/credentials.py`), so the plugin
denies its topics outside them without a call. This runs the real stack (`open_foreign_stack`:
Mosquitto, the plugin, the serving process's core and hooks in this process) and measures, per
round, a victim device's QoS 1 PUBLISH→PUBACK round trip at `--rate` msg/s while an attacker
device publishes `--flood` QoS 0 messages on other devices' topics as fast as it can, until
Mosquitto has checked them all (the attacker's PINGREQ, sent after them, is answered):
- **this**: as shipped (the attacker's checks denied from its rules);
- **baseline**: the same stack with the marker left off the table's entries (each check asked).
Rounds alternate (`--rounds`), so the machine's noise hits both; the figures are the victim's
p50/p99, how long Mosquitto took to get through the flood, and how many topic checks the core
was asked.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.bridge_bench import Mqtt, percentile
from nxg_mqtt.hooks import credentials
from nxg_mqtt.hooks.stack import ForeignStack, open_foreign_stack
from nxg_mqtt.mqtt import codec
from nxg_mqtt.settings import Settings

PASSWORD = "bench-admin-password"


@contextmanager
def marker(on: bool) -> Iterator[None]:
    """Off: the table's entries go out without the complete marker (as before it existed)."""
    entry = credentials.CredentialFeed._entry

    async def unmarked(self: credentials.CredentialFeed, serial: str, token_hash: str) -> str | None:
        line = await entry(self, serial, token_hash)
        suffix = ";" + credentials.COMPLETE
        return line[: -len(suffix)] if line is not None and line.endswith(suffix) else line

    if not on:
        credentials.CredentialFeed._entry = unmarked  # type: ignore[method-assign]
    try:
        yield
    finally:
        credentials.CredentialFeed._entry = entry  # type: ignore[method-assign]


async def paired(stack: ForeignStack, serial: str) -> str:
    device = await stack.core.devices.create(serial, actor="bench")
    token = (await stack.core.devices.pair(device.code, source="bench")).token
    await stack.core.devices.credentials_issued(serial)  # the plugin holds its hash now
    return token


async def one_round(data_dir: Path, flood: int, rate: float, marked: bool) -> tuple[float, float, int, float]:
    settings = Settings(
        host="127.0.0.1", mqtt_port=0, ws_port=None, http_port=0, admin_password=PASSWORD, data_dir=data_dir
    )
    with marker(marked):
        async with open_foreign_stack(settings) as stack:
            victim_token = await paired(stack, "victim")
            attacker_token = await paired(stack, "attacker")
            victim = await Mqtt.connect(stack.mqtt_port, "victim", "victim", victim_token)
            attacker = await Mqtt.connect(stack.mqtt_port, "attacker", "attacker", attacker_token)
            counters = stack.hooks.counters
            asked = counters["acl_allow"] + counters["acl_deny"]
            stop = asyncio.Event()

            async def flooding() -> None:
                for i in range(flood):
                    topic = f"nxg/victim-{i % 50}/telemetry"
                    attacker.writer.write(codec.encode_publish_topic(codec.encode_topic(topic), b"{}", 0, False))
                    if i % 50 == 49:
                        await attacker.writer.drain()
                        await asyncio.sleep(0)
                # Mosquitto handles a client's packets in order: the PINGRESP says all were checked
                attacker.writer.write(codec.PINGREQ_BYTES)
                while not any(isinstance(p, codec.PingResp) for p in await attacker.packets()):
                    pass
                drained.append(time.monotonic() - started)
                stop.set()

            drained: list[float] = []
            rtts: list[float] = []
            body = json.dumps({"temp": 1}).encode()
            topic = codec.encode_topic("nxg/victim/telemetry")
            flood_task = asyncio.create_task(flooding())
            packet_id = 0
            started = time.monotonic()
            while not stop.is_set():
                packet_id = packet_id % 65535 + 1
                sent = time.perf_counter()
                victim.writer.write(codec.encode_publish_topic(topic, body, 1, False, packet_id=packet_id))
                acked = False
                while not acked:
                    acked = any(isinstance(p, codec.PubAck) for p in await victim.packets())
                rtts.append((time.perf_counter() - sent) * 1000)
                await asyncio.sleep(max(0.0, 1 / rate - (time.perf_counter() - sent)))
            await flood_task
            asked_now = counters["acl_allow"] + counters["acl_deny"] - asked
            for conn in (victim, attacker):
                conn.writer.write(codec.DISCONNECT_BYTES)
                conn.writer.close()
            return percentile(rtts, 50), percentile(rtts, 99), asked_now, drained[0]


async def main(args: argparse.Namespace) -> None:
    results: dict[str, list[tuple[float, float, int, float]]] = {"this": [], "baseline": []}
    for n in range(args.rounds):
        for label, marked in (("baseline", False), ("this", True)):
            with tempfile.TemporaryDirectory(prefix="nxg-acl-flood-") as tmp:
                p50, p99, asked, drained = await one_round(Path(tmp), args.flood, args.rate, marked)
            results[label].append((p50, p99, asked, drained))
            print(
                f"round {n + 1} {label:8} flood checked in {drained:5.2f} s  victim PUBLISH→PUBACK p50 {p50:6.2f} ms"
                f"  p99 {p99:7.2f} ms  topic checks asked {asked}"
            )
    for (b50, b99, _, bd), (t50, t99, _, td) in zip(results["baseline"], results["this"], strict=True):
        print(f"this/baseline: flood took {td / bd:.2f}x the time, victim p50 {t50 / b50:.2f}x, p99 {t99 / b99:.2f}x")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flood", type=int, default=3000, help="attacker QoS 0 publishes on foreign topics")
    parser.add_argument("--rate", type=float, default=200.0, help="victim QoS 1 publishes per second")
    parser.add_argument("--rounds", type=int, default=2, help="baseline/this pairs, alternating")
    asyncio.run(main(parser.parse_args()))


if __name__ == "__main__":
    cli()
