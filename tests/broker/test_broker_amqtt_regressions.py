"""One test per amqtt 0.12.1 defect we replaced its engine for: passes on ours, fails on plain amqtt."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from amqtt.broker import Broker

from nxg_mqtt import topics
from nxg_mqtt.broker import server as nxg_server
from nxg_mqtt.mqtt.codec import PubAck, encode_publish
from tests.broker.broker_clients import BrokerUnderTest, RawClient, both, wait_for
from tests.mqtt_client import Clients


@both("amqtt does not enforce keepalive")
async def test_keepalive_enforced_at_one_and_a_half_times(any_broker: BrokerUnderTest) -> None:
    raw = await RawClient.open(any_broker.port)
    try:
        assert (await raw.connect("silent", keep_alive=1)).return_code == 0
        assert await raw.closed_by_peer(within=3.0), "a silent client with keepalive 1 s was not dropped"
    finally:
        await raw.close()


@both("amqtt does not take over a duplicate client id")
async def test_duplicate_client_id_takes_over(any_broker: BrokerUnderTest, paho: Clients) -> None:
    first, second = paho("twin"), paho("twin")
    assert await first.connect(any_broker.port) == 0
    assert await second.connect(any_broker.port) == 0
    assert await wait_for(first.disconnected.is_set, 2.0), "the first connection was not closed"
    assert await second.subscribe("twin/t", 1) == [1]  # the survivor is the new connection, and it works
    await second.publish("twin/t", b"x", 1)
    assert len(await second.wait_messages(1, 2.0)) == 1


@both("amqtt compares every message with every subscription filter")
async def test_routing_does_not_scan_exact_subscriptions(
    any_broker: BrokerUnderTest, paho: Clients, monkeypatch: pytest.MonkeyPatch
) -> None:
    comparisons = 0

    def counting(original: Callable[..., bool]) -> Callable[..., bool]:
        def wrapper(*args: object) -> bool:
            nonlocal comparisons
            comparisons += 1
            return original(*args)

        return wrapper

    # each engine's filter matcher; ours routes exact topics by dict lookup and never calls it
    monkeypatch.setattr(nxg_server, "matches", counting(topics.matches))
    monkeypatch.setattr(Broker, "_matches", counting(Broker._matches))
    sub, pub = paho("many"), paho("pub")
    await sub.connect(any_broker.port)
    _, mid = sub.client.subscribe([(f"dev/{i}/telemetry", 0) for i in range(500)])
    assert mid is not None
    assert await wait_for(lambda: mid in sub.subacks)
    await pub.connect(any_broker.port)
    comparisons = 0
    await pub.publish("dev/7/telemetry", b"t", 1)
    assert len(await sub.wait_messages(1)) == 1
    assert comparisons < 50, f"{comparisons} filter comparisons for one message"


@both("amqtt sends retained messages matching other clients' subscriptions to every new client")
async def test_retained_messages_do_not_leak(any_broker: BrokerUnderTest, paho: Clients) -> None:
    owner, bystander = paho("owner"), paho("bystander")
    await owner.connect(any_broker.port)
    await owner.subscribe("leak/#", 1)
    await owner.publish("leak/secret", b"s", 1, retain=True)
    await owner.wait_messages(1)
    await bystander.connect(any_broker.port)  # subscribes to nothing
    assert await bystander.quiet(0.8) == []


@both("amqtt delivers at the subscription's QoS instead of min(publish, subscription)")
async def test_qos_is_min_of_publish_and_subscription(any_broker: BrokerUnderTest, paho: Clients) -> None:
    sub, pub = paho("qos-sub"), paho("qos-pub")
    await sub.connect(any_broker.port)
    assert await sub.subscribe("q/+", 1) == [1]
    await pub.connect(any_broker.port)
    await pub.publish("q/zero", b"a", 0)
    await pub.publish("q/two", b"b", 2)
    received = {m.topic: m.qos for m in await sub.wait_messages(2)}
    assert received == {"q/zero": 0, "q/two": 1}


@both("amqtt acknowledges before routing and loses messages when the publisher disconnects")
async def test_nothing_acknowledged_is_lost(any_broker: BrokerUnderTest, paho: Clients) -> None:
    sub = paho("keeper")
    await sub.connect(any_broker.port)
    await sub.subscribe("burst/t", 1)
    raw = await RawClient.open(any_broker.port)
    count = 500
    try:
        assert (await raw.connect("burster")).return_code == 0
        raw.send(b"".join(encode_publish("burst/t", b"%d" % i, 1, packet_id=i + 1) for i in range(count)))
        acked = 0
        while acked < count:
            if isinstance(await raw.recv(), PubAck):
                acked += 1
        raw.writer.transport.abort()  # vanish right after the last PUBACK
        await sub.wait_messages(count, 3.0)
        assert len({m.payload for m in sub.received}) == count
    finally:
        await raw.close()


@both("amqtt does not queue QoS 1/2 for an offline (anonymous) clean-session-0 client")
async def test_offline_queue_at_subscription_qos(any_broker: BrokerUnderTest, paho: Clients) -> None:
    client, pub = paho("offline", clean_session=False), paho("feeder")
    await client.connect(any_broker.port)
    await client.subscribe("off/+", 1)
    await client.disconnect()
    await pub.connect(any_broker.port)
    await pub.publish("off/a", b"two", 2)
    await pub.publish("off/b", b"one", 1)
    back = paho("offline", clean_session=False)
    assert await back.connect(any_broker.port) == 0
    assert back.session_present is True
    received = await back.wait_messages(2, 2.0)
    assert sorted((m.topic, m.qos, m.retain) for m in received) == [("off/a", 1, False), ("off/b", 1, False)]


@both("amqtt keeps a client id's first clean-session flag")
async def test_clean_then_persistent_session(any_broker: BrokerUnderTest, paho: Clients) -> None:
    first = paho("flip", clean_session=True)
    assert await first.connect(any_broker.port) == 0
    assert first.session_present is False
    await first.disconnect()
    second = paho("flip", clean_session=False)
    assert await second.connect(any_broker.port) == 0
    assert second.session_present is False
    await second.subscribe("flip/t", 1)
    await second.disconnect()
    third = paho("flip", clean_session=False)
    assert await third.connect(any_broker.port) == 0
    assert third.session_present is True


@pytest.mark.parametrize(
    ("violation", "data"),
    [("QoS 3", b"\x36\x07\x00\x01a\x00\x01hi"), ("malformed remaining length", b"\x30\xff\xff\xff\xff\x7f")],
    ids=["qos3", "remaining-length"],
)
@both("amqtt leaves the connection half-open after a malformed packet")
async def test_malformed_packet_closes_connection(any_broker: BrokerUnderTest, violation: str, data: bytes) -> None:
    raw = await RawClient.open(any_broker.port)
    try:
        assert (await raw.connect("violator")).return_code == 0
        raw.send(data)
        assert await raw.closed_by_peer(2.0), f"connection still open after {violation}"
    finally:
        await raw.close()
