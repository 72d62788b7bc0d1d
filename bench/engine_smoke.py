"""Smoke benchmark of the broker engine alone (no NXG plugins): not a test, prints figures.

    .venv/bin/python -m bench.engine_smoke [--uvloop] [--publishers 200] [--messages 100]

1. telemetry: N publishers send QoS 1 to `nxg/{i}/telemetry`, one subscriber on
   `nxg/+/telemetry` (QoS 1, acks everything); delivered / accepted and rates.
2. the same with 5,000 extra sessions each subscribed to its own exact topic, to show that
   exact subscriptions do not slow routing; plus an in-process `Router.match` timing.
The broker runs in this process, the clients in a child process (raw sockets, the engine codec).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import time
from dataclasses import dataclass

from nxg_mqtt.broker.router import Router
from nxg_mqtt.mqtt.codec import (
    Connect,
    PubAck,
    Publish,
    decode,
    encode_connect,
    encode_puback,
    encode_publish,
    encode_subscribe,
)

HOST = "127.0.0.1"


@dataclass
class Result:
    accepted: int
    delivered: int
    publish_s: float
    deliver_s: float


async def _open(port: int, client_id: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(encode_connect(Connect(client_id, keep_alive=120)))
    await reader.readexactly(4)
    return reader, writer


async def _publisher(port: int, index: int, count: int, window: int, acked: list[int]) -> None:
    reader, writer = await _open(port, f"pub{index}")
    topic = f"nxg/{index}/telemetry"
    payload = b'{"temp":22.5,"hum":41}'
    sent = 0
    done = 0
    buffer = b""
    while done < count:
        while sent < count and sent - done < window:
            sent += 1
            writer.write(encode_publish(topic, payload, 1, packet_id=sent))
        data = await reader.read(65536)
        if not data:
            break
        packets, used = decode(buffer + data)
        buffer = (buffer + data)[used:]
        done += sum(1 for p in packets if isinstance(p, PubAck))
    acked[0] += done
    writer.close()


async def _subscriber(port: int, ready: asyncio.Event, received: list[int], stop: asyncio.Event) -> None:
    reader, writer = await _open(port, "sink")
    writer.write(encode_subscribe(1, [("nxg/+/telemetry", 1)]))
    buffer = b""
    first = True
    while not stop.is_set():
        try:
            data = await asyncio.wait_for(reader.read(262144), 0.2)
        except TimeoutError:
            continue
        if first:
            ready.set()  # the SUBACK
            first = False
        if not data:
            break
        packets, used = decode(buffer + data)
        buffer = (buffer + data)[used:]
        acks = []
        for packet in packets:
            if isinstance(packet, Publish):
                received[0] += 1
                if packet.packet_id:
                    acks.append(encode_puback(packet.packet_id))
        if acks:
            writer.write(b"".join(acks))
    writer.close()


async def _idle_sessions(port: int, count: int) -> list[asyncio.StreamWriter]:
    writers: list[asyncio.StreamWriter] = []
    for start in range(0, count, 200):
        batch = await asyncio.gather(*(_open(port, f"idle{i}") for i in range(start, min(count, start + 200))))
        for offset, (_reader, writer) in enumerate(batch):
            writer.write(encode_subscribe(1, [(f"dev/{start + offset}/cmd", 1)]))
            writers.append(writer)
        await asyncio.gather(*(reader.readexactly(5) for reader, _ in batch))
    return writers


async def _load(port: int, publishers: int, messages: int, idle: int) -> Result:
    idle_writers = await _idle_sessions(port, idle) if idle else []
    ready, stop = asyncio.Event(), asyncio.Event()
    received, acked = [0], [0]
    sink = asyncio.create_task(_subscriber(port, ready, received, stop))
    await asyncio.wait_for(ready.wait(), 10)
    started = time.perf_counter()
    await asyncio.gather(*(_publisher(port, i, messages, 20, acked) for i in range(publishers)))
    published = time.perf_counter()
    deadline = published + 10
    while received[0] < acked[0] and time.perf_counter() < deadline:  # noqa: ASYNC110 - polls a counter
        await asyncio.sleep(0.01)
    delivered_at = time.perf_counter()
    stop.set()
    await sink
    for writer in idle_writers:
        writer.close()
    return Result(acked[0], received[0], published - started, delivered_at - started)


def _client_process(port: int, publishers: int, messages: int, idle: int, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    out.put(asyncio.run(_load(port, publishers, messages, idle)))


async def _run(args: argparse.Namespace) -> None:
    from nxg_mqtt.broker.server import NxgBroker
    from nxg_mqtt.settings import Settings

    settings = Settings(host=HOST, mqtt_port=0, ws_port=None, allow_anonymous=True, session_queue_limit=10_000)
    for idle in (0, 5000):
        async with NxgBroker(settings) as broker:
            queue: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
            proc = multiprocessing.Process(
                target=_client_process, args=(broker.mqtt_port, args.publishers, args.messages, idle, queue)
            )
            proc.start()
            loop = asyncio.get_running_loop()
            result: Result = await loop.run_in_executor(None, queue.get)
            await loop.run_in_executor(None, proc.join)
            ratio = result.delivered / max(1, result.accepted)
            print(
                f"{args.publishers} publishers x {args.messages} QoS1, {idle} idle exact-topic sessions: "
                f"accepted {result.accepted} in {result.publish_s:.2f}s "
                f"({result.accepted / result.publish_s:,.0f} msg/s), delivered {result.delivered} "
                f"({ratio:.3f} of accepted) by {result.deliver_s:.2f}s; stats {broker.stats}"
            )


def _router_timing() -> None:
    for exact in (0, 5_000, 50_000):
        router: Router[int] = Router()
        for i in range(exact):
            router.add(f"dev/{i}/cmd", i, 1)
        router.add("nxg/+/telemetry", -1, 1)
        rounds = 200_000
        started = time.perf_counter()
        for _ in range(rounds):
            router.match("nxg/S1/telemetry")
        per = (time.perf_counter() - started) / rounds * 1e6
        print(f"Router.match with {exact:>6} exact subscriptions + 1 wildcard: {per:.2f} µs per topic")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--publishers", type=int, default=200)
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args()
    _router_timing()
    if args.uvloop:
        import uvloop

        uvloop.run(_run(args))
    else:
        asyncio.run(_run(args))


if __name__ == "__main__":
    main()
