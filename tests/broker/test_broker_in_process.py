"""In-process subscribers (`NxgBroker.attach`): what a SUBSCRIBE would give, without a socket."""

from __future__ import annotations

import asyncio
import logging

import pytest

from nxg_mqtt.broker.server import NxgBroker
from tests.mqtt_client import Clients, wait_for

Heard = list[tuple[str, bytes, bool]]


async def test_retained_first_then_live_in_publish_order_until_detached(engine: NxgBroker, paho: Clients) -> None:
    await engine.publish("nxg/A/presence", b"on", qos=1, retain=True)
    await engine.publish("other/x", b"kept", qos=1, retain=True)
    heard: Heard = []
    detach = engine.attach(["nxg/+/presence", "nxg/+/telemetry"], lambda t, p, r: heard.append((t, p, r)))
    assert heard == [("nxg/A/presence", b"on", True)]  # the retained one its filters match, flagged

    pub = paho("pub")
    await pub.connect(engine.mqtt_port)
    for i in range(200):  # more than paho's in-flight window: the broker's pace, one publisher's order
        pub.publish_nowait("nxg/A/telemetry", b"%d" % i, qos=1)
    assert await wait_for(lambda: len(heard) == 201)
    assert [p for _, p, _ in heard[1:]] == [b"%d" % i for i in range(200)]
    assert not any(r for _, _, r in heard[1:])  # live messages carry retain 0, as on a subscription
    assert engine.stats["messages_out"] >= 200

    detach()
    detach()  # twice is harmless
    await engine.publish("nxg/A/telemetry", b"late", qos=1)
    assert len(heard) == 201
    assert engine._locals == 0


async def test_a_failing_subscriber_does_not_stop_routing(
    engine: NxgBroker, paho: Clients, caplog: pytest.LogCaptureFixture
) -> None:
    heard: Heard = []

    def broken(topic: str, payload: bytes, retain: bool) -> None:
        raise RuntimeError("boom")

    engine.attach(["t/#"], broken)
    engine.attach(["t/#"], lambda t, p, r: heard.append((t, p, r)))
    sub = paho("sub")
    await sub.connect(engine.mqtt_port)
    await sub.subscribe("t/#", 1)
    with caplog.at_level(logging.ERROR, logger="nxg_mqtt.broker"):
        assert await engine.publish("t/1", b"x", qos=1) == 3
    assert heard == [("t/1", b"x", False)]
    assert [m.payload for m in await sub.wait_messages(1)] == [b"x"]
    assert "in-process subscriber failed" in caplog.text


async def test_the_same_handler_attached_twice_is_two_subscribers(engine: NxgBroker) -> None:
    heard: Heard = []

    def handler(topic: str, payload: bytes, retain: bool) -> None:
        heard.append((topic, payload, retain))

    first = engine.attach(["a"], handler)
    engine.attach(["a", "a"], handler)
    first()
    assert await engine.publish("a", b"1") == 1
    await asyncio.sleep(0)
    assert heard == [("a", b"1", False)]


async def test_an_invalid_filter_is_refused(engine: NxgBroker) -> None:
    with pytest.raises(ValueError, match="invalid topic filter"):
        engine.attach(["a/#/b"], lambda t, p, r: None)
    assert engine._locals == 0


async def test_wanted_says_whether_anyone_would_receive(engine: NxgBroker, paho: Clients) -> None:
    assert not engine.wanted("nxg/W/cmd/res")
    detach = engine.attach(["nxg/+/cmd/res"], lambda t, p, r: None)
    assert engine.wanted("nxg/W/cmd/res")
    detach()
    assert not engine.wanted("nxg/W/cmd/res")
    sub = paho("sub")
    await sub.connect(engine.mqtt_port)
    await sub.subscribe("nxg/W/cmd/res", 1)
    assert engine.wanted("nxg/W/cmd/res")
    assert not engine.wanted("nxg/V/cmd/res")
