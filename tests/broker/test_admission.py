"""HandshakeGate: at most `per_pass` handshake steps run per event-loop pass, in arrival order."""

from __future__ import annotations

import asyncio

import pytest

from nxg_mqtt.broker.admission import HandshakeGate
from nxg_mqtt.broker.server import NxgBroker
from nxg_mqtt.mqtt.codec import PubAck, Publish, SubAck, encode_puback, encode_publish, encode_subscribe
from nxg_mqtt.settings import Settings
from tests.broker.broker_clients import RawClient


async def _passes_of(gate: HandshakeGate, count: int) -> list[int]:
    """`count` steps ask at once; the loop pass (counted by a callback chain) each got its turn in."""
    loop = asyncio.get_running_loop()
    current = [0]
    running = [True]

    def tick() -> None:
        current[0] += 1
        if running[0]:
            loop.call_soon(tick)

    loop.call_soon(tick)
    admitted: list[tuple[int, int]] = []

    async def one(index: int) -> None:
        await gate.turn()
        admitted.append((index, current[0]))

    await asyncio.gather(*(one(i) for i in range(count)))
    running[0] = False
    assert [index for index, _ in admitted] == list(range(count)), "admitted out of arrival order"
    return [pass_ for _, pass_ in admitted]


async def test_at_most_per_pass_steps_run_in_one_loop_pass() -> None:
    passes = await _passes_of(HandshakeGate(per_pass=3), 20)
    per_pass: dict[int, int] = {}
    for pass_ in passes:
        per_pass[pass_] = per_pass.get(pass_, 0) + 1
    assert max(per_pass.values()) <= 3
    assert len(per_pass) >= 7  # 20 steps need at least 7 passes of 3


async def test_a_quiet_loop_admits_at_once() -> None:
    gate = HandshakeGate(per_pass=2)
    await asyncio.wait_for(gate.turn(), 0.1)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    await asyncio.wait_for(gate.turn(), 0.1)
    assert gate.waiting == 0


async def test_a_cancelled_waiter_gives_its_place_to_the_next() -> None:
    gate = HandshakeGate(per_pass=1)
    first, second, third = (asyncio.ensure_future(gate.turn()) for _ in range(3))
    await asyncio.sleep(0)  # the first is in, the other two wait for the next pass
    assert first.done() and gate.waiting == 2
    second.cancel()  # its connection went away while waiting
    await asyncio.wait_for(third, 1.0)
    assert second.cancelled()
    assert gate.waiting == 0


def test_per_pass_must_be_positive() -> None:
    with pytest.raises(ValueError, match="per_pass"):
        HandshakeGate(per_pass=0)


async def test_a_connect_storm_is_served_while_an_established_client_publishes(engine_settings: Settings) -> None:
    """200 CONNECTs at once through a gate of 1 step per pass: every one is accepted, and an
    established client's QoS 1 round trips go on meanwhile."""
    async with NxgBroker(engine_settings) as broker:
        broker.admission = HandshakeGate(per_pass=1)
        steady = await RawClient.open(broker.mqtt_port)
        storm = [await RawClient.open(broker.mqtt_port) for _ in range(200)]
        try:
            await steady.connect("steady")
            steady.send(encode_subscribe(1, [("steady/t", 1)]))
            assert await steady.recv() == SubAck(1, (1,))
            tasks = [asyncio.ensure_future(client.connect(f"storm-{i}")) for i, client in enumerate(storm)]
            for packet_id in range(1, 21):
                steady.send(encode_publish("steady/t", b"x", 1, packet_id=packet_id))
                assert await steady.recv() == PubAck(packet_id)
                copy = await steady.recv()
                assert isinstance(copy, Publish) and copy.payload == b"x"
                if copy.packet_id is not None:
                    steady.send(encode_puback(copy.packet_id))
            assert [connack.return_code for connack in await asyncio.gather(*tasks)] == [0] * 200
            assert broker.connected_count == 201
            # the first packet after CONNACK takes its turn too, and is answered
            for i, client in enumerate(storm):
                client.send(encode_subscribe(1, [(f"storm/{i}", 1)]))
            assert [await client.recv() for client in storm] == [SubAck(1, (1,))] * 200
            assert broker.admission.waiting == 0
        finally:
            await steady.close()
            for client in storm:
                await client.close()


class CountingGate(HandshakeGate):
    __slots__ = ("turns",)

    def __init__(self) -> None:
        super().__init__(per_pass=1)
        self.turns = 0

    async def turn(self) -> None:
        self.turns += 1
        await super().turn()


async def test_each_handshake_step_takes_a_turn(engine_settings: Settings) -> None:
    """The CONNECT and the first packet after CONNACK each take a turn; later packets do not."""
    async with NxgBroker(engine_settings) as broker:
        gate = broker.admission = CountingGate()
        client = await RawClient.open(broker.mqtt_port)
        try:
            assert (await client.connect("c1")).return_code == 0
            assert gate.turns == 1
            client.send(encode_subscribe(1, [("c1/t", 1)]))
            assert await client.recv() == SubAck(1, (1,))
            client.send(encode_subscribe(2, [("c1/u", 1)]))
            assert await client.recv() == SubAck(2, (1,))
            assert gate.turns == 2  # CONNECT, the first SUBSCRIBE; not the second
        finally:
            await client.close()
