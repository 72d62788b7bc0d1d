"""MQTT 3.1.1 conformance, paho and raw clients, anonymous allowed — run twice: on the bare engine,
and as the standalone product broker (`nxg-mqtt broker --allow-anonymous`: the core and every NXG
plugin loaded), which testers point ordinary MQTT tools at."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from amqtt.plugins.base import BaseAuthPlugin
from paho.mqtt.enums import CallbackAPIVersion

from nxg_mqtt.broker.embedded import open_broker
from nxg_mqtt.broker.server import NxgBroker
from nxg_mqtt.broker.session import BrokerSession
from nxg_mqtt.core import open_core
from nxg_mqtt.errors import ConnectRefused
from nxg_mqtt.mqtt.codec import (
    PINGREQ_BYTES,
    Connack,
    Connect,
    PingResp,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    encode_connect,
    encode_puback,
    encode_pubcomp,
    encode_publish,
    encode_pubrec,
    encode_pubrel,
    encode_subscribe,
)
from nxg_mqtt.settings import Settings
from tests.broker.broker_clients import RawClient, wait_for
from tests.factories import BROKER_SETTINGS
from tests.mqtt_client import Clients, Received

# MQTT 5 CONNECT: clean start, keepalive 60, properties (session expiry 10, receive maximum 20), client
# id "v5"; a 3.1.1 parser reading on past the level would take the properties for the client id
MQTT5_CONNECT = b"\x10\x17\x00\x04MQTT\x05\x02\x00\x3c\x08\x11\x00\x00\x00\x0a\x21\x00\x14\x00\x02v5"


@pytest.fixture(params=["engine", "standalone"])
async def engine(request: pytest.FixtureRequest, engine_settings: Settings, tmp_path: Path) -> AsyncIterator[NxgBroker]:
    if request.param == "engine":
        async with NxgBroker(engine_settings) as running:
            yield running
        return
    settings = replace(engine_settings, data_dir=tmp_path, allow_anonymous=True)
    async with open_core(settings, serve=True) as core, open_broker(core) as running:
        yield running


@pytest.mark.parametrize("topic", ["TopicA", "TopicA/B", "/TopicA", "TopicA/"])
async def test_publish_subscribe_each_qos(engine: NxgBroker, paho: Clients, topic: str) -> None:
    sub, pub = paho("sub"), paho("pub")
    await sub.connect(engine.mqtt_port)
    assert await sub.subscribe(topic, 2) == [2]
    await pub.connect(engine.mqtt_port)
    for qos in (0, 1, 2):
        await pub.publish(topic, b"q%d" % qos, qos)
    received = await sub.wait_messages(3)
    assert sorted((m.payload, m.qos) for m in received) == [(b"q0", 0), (b"q1", 1), (b"q2", 2)]
    assert all(m.topic == topic and not m.retain for m in received)


async def test_wildcards_and_dollar_topics(engine: NxgBroker, paho: Clients) -> None:
    wild, sys = paho("wild"), paho("sys")
    await wild.connect(engine.mqtt_port)
    await wild.subscribe("+/+", 0)
    await wild.subscribe("#", 0)
    await sys.connect(engine.mqtt_port)
    # $SYS itself is the bridge's on the product broker (see the plugin ACL tests); the rule is
    # the same for every `$` topic
    await sys.subscribe("$demo/#", 0)
    assert await engine.publish("$demo/broker/load", b"1") == 1
    assert await engine.publish("TopicA/B", b"2") == 1  # one copy for the wildcard client
    assert [m.topic for m in await sys.wait_messages(1)] == ["$demo/broker/load"]
    assert [m.topic for m in await wild.quiet(0.3)] == ["TopicA/B"]


async def test_clients_may_not_publish_dollar_topics(engine: NxgBroker, paho: Clients) -> None:
    sys, pub = paho("sys"), paho("pub")
    await sys.connect(engine.mqtt_port)
    await sys.subscribe("$SYS/#", 1)
    await pub.connect(engine.mqtt_port)
    await pub.publish("$SYS/fake", b"x", 1)  # acknowledged, then dropped
    assert await sys.quiet(0.3) == []
    assert engine.stats["publish_denied"] == 1


async def test_will_on_abnormal_close_only(engine: NxgBroker, paho: Clients) -> None:
    watcher = paho("watcher")
    await watcher.connect(engine.mqtt_port)
    await watcher.subscribe("wills/#", 1)
    polite, rude = paho("polite"), paho("rude")
    await polite.connect(engine.mqtt_port, will=("wills/polite", b"gone", 1, False))
    await rude.connect(engine.mqtt_port, will=("wills/rude", b"gone", 1, True))
    await polite.disconnect()
    rude.drop()
    assert [(m.topic, m.payload, m.qos) for m in await watcher.wait_messages(1)] == [("wills/rude", b"gone", 1)]
    assert len(await watcher.quiet(0.3)) == 1
    late = paho("late")
    await late.connect(engine.mqtt_port)
    await late.subscribe("wills/#", 1)
    assert [(m.topic, m.retain) for m in await late.wait_messages(1)] == [("wills/rude", True)]


async def test_retained_set_delivered_and_cleared(engine: NxgBroker, paho: Clients) -> None:
    pub = paho("pub")
    await pub.connect(engine.mqtt_port)
    await pub.publish("ret/a", b"kept", 1, retain=True)
    first = paho("first")
    await first.connect(engine.mqtt_port)
    await first.subscribe("ret/+", 2)
    assert await first.wait_messages(1) == [Received("ret/a", b"kept", 1, True)]
    await pub.publish("ret/a", b"", 0, retain=True)  # clears; still reaches current subscribers
    assert (await first.wait_messages(2))[1] == Received("ret/a", b"", 0, False)
    second = paho("second")
    await second.connect(engine.mqtt_port)
    await second.subscribe("ret/+", 2)
    assert await second.quiet(0.3) == []
    assert engine.retained == {}


async def test_overlapping_subscriptions_one_copy_at_highest_qos(engine: NxgBroker, paho: Clients) -> None:
    sub, pub = paho("overlap"), paho("pub")
    await sub.connect(engine.mqtt_port)
    await sub.subscribe("ov/#", 0)
    await sub.subscribe("ov/+", 2)
    await sub.subscribe("ov/x", 1)
    await pub.connect(engine.mqtt_port)
    await pub.publish("ov/x", b"one", 2)
    await sub.wait_messages(1)
    assert [(m.payload, m.qos) for m in await sub.quiet(0.3)] == [(b"one", 2)]


async def test_unsubscribe(engine: NxgBroker, paho: Clients) -> None:
    sub, pub = paho("unsub"), paho("pub")
    await sub.connect(engine.mqtt_port)
    await sub.subscribe("u/t", 1)
    await pub.connect(engine.mqtt_port)
    await pub.publish("u/t", b"before", 1)
    await sub.wait_messages(1)
    await sub.unsubscribe("u/t")
    assert not engine.has_subscription("unsub", "u/t")
    await pub.publish("u/t", b"after", 1)
    assert [m.payload for m in await sub.quiet(0.3)] == [b"before"]


async def test_session_present_and_clean_discards(engine: NxgBroker, paho: Clients) -> None:
    client = paho("resume", clean_session=False)
    assert await client.connect(engine.mqtt_port) == 0
    assert client.session_present is False
    await client.subscribe("r/t", 1)
    await client.disconnect()
    again = paho("resume", clean_session=False)
    assert await again.connect(engine.mqtt_port) == 0
    assert again.session_present is True
    assert engine.has_subscription("resume", "r/t")
    await again.disconnect()
    clean = paho("resume", clean_session=True)
    assert await clean.connect(engine.mqtt_port) == 0
    assert clean.session_present is False
    assert not engine.has_subscription("resume", "r/t")


async def test_inflight_resent_with_dup_on_reconnect(engine: NxgBroker) -> None:
    raw = await RawClient.open(engine.mqtt_port)
    await raw.connect("forgetful", clean_session=False)
    raw.send(b"\x82\x06\x00\x01\x00\x01t\x01")  # SUBSCRIBE t QoS 1
    await raw.recv()
    await engine.publish("t", b"m", qos=1)
    first = await raw.recv()
    assert isinstance(first, Publish)
    assert not first.dup
    await raw.close()  # never acknowledged
    assert await wait_for(lambda: engine.connected_count == 0)
    raw = await RawClient.open(engine.mqtt_port)
    try:
        assert (await raw.connect("forgetful", clean_session=False)).session_present
        again = await raw.recv()
        assert isinstance(again, Publish)
        assert (again.dup, again.packet_id, again.payload) == (True, first.packet_id, b"m")
    finally:
        await raw.close()


async def test_empty_client_id(engine: NxgBroker) -> None:
    raw = await RawClient.open(engine.mqtt_port)
    try:
        assert (await raw.connect("", clean_session=False)).return_code == 0x02
        assert await raw.closed_by_peer(2.0)
    finally:
        await raw.close()
    raw = await RawClient.open(engine.mqtt_port)
    try:
        assert (await raw.connect("", clean_session=True)).return_code == 0
        assert engine.connected_count == 1
    finally:
        await raw.close()


async def test_takeover_keeps_persistent_session(engine: NxgBroker, paho: Clients) -> None:
    first = paho("dup", clean_session=False)
    await first.connect(engine.mqtt_port)
    await first.subscribe("dup/t", 1)
    second = paho("dup", clean_session=False)
    assert await second.connect(engine.mqtt_port) == 0
    assert second.session_present is True
    assert await wait_for(first.disconnected.is_set)
    await engine.publish("dup/t", b"x", qos=1)
    assert len(await second.wait_messages(1)) == 1
    assert first.received == []


async def test_keepalive_timeout_publishes_will(engine: NxgBroker, paho: Clients) -> None:
    watcher = paho("watcher")
    await watcher.connect(engine.mqtt_port)
    await watcher.subscribe("ka/will", 0)
    raw = await RawClient.open(engine.mqtt_port)
    try:
        started = time.monotonic()
        await raw.connect("sleepy", keep_alive=1, will_topic="ka/will", will_message=b"dead")
        assert await raw.closed_by_peer(3.0)
        assert time.monotonic() - started >= 1.4  # not before 1.5 × keepalive
        assert [m.payload for m in await watcher.wait_messages(1)] == [b"dead"]
    finally:
        await raw.close()


async def test_connect_timeout(engine: NxgBroker) -> None:
    raw = await RawClient.open(engine.mqtt_port)  # sends nothing
    try:
        assert await raw.closed_by_peer(engine.settings.connect_timeout_s + 1.5)
    finally:
        await raw.close()


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(encode_connect(Connect("x")), id="second-connect"),
        pytest.param(b"\x82\x06\x00\x01\x00\x01#\x03", id="subscribe-qos3"),
        pytest.param(b"\x20\x02\x00\x00", id="connack-from-client"),
        pytest.param(encode_publish("a/+", b"x"), id="wildcard-in-topic-name"),
        pytest.param(MQTT5_CONNECT, id="second-connect-mqtt5"),
        # MQTT-4.7.3-1: a topic filter is at least one character long
        pytest.param(b"\x82\x05\x00\x01\x00\x00\x01", id="subscribe-empty-filter"),
        pytest.param(b"\x82\x09\x00\x01\x00\x01a\x01\x00\x00\x00", id="subscribe-second-filter-empty"),
        pytest.param(b"\xa2\x04\x00\x01\x00\x00", id="unsubscribe-empty-filter"),
        # MQTT-2.3.1-1: packet ids are non-zero
        pytest.param(b"\x32\x05\x00\x01a\x00\x00", id="publish-qos1-id-0"),
        pytest.param(b"\x34\x05\x00\x01a\x00\x00", id="publish-qos2-id-0"),
        pytest.param(b"\x82\x06\x00\x00\x00\x01a\x01", id="subscribe-id-0"),
        pytest.param(b"\xa2\x05\x00\x00\x00\x01a", id="unsubscribe-id-0"),
        pytest.param(b"\x40\x02\x00\x00", id="puback-id-0"),
        pytest.param(b"\x50\x02\x00\x00", id="pubrec-id-0"),
        pytest.param(b"\x62\x02\x00\x00", id="pubrel-id-0"),
        pytest.param(b"\x70\x02\x00\x00", id="pubcomp-id-0"),
    ],
)
async def test_protocol_violations_close(engine: NxgBroker, data: bytes) -> None:
    raw = await RawClient.open(engine.mqtt_port)
    try:
        await raw.connect("violator")
        raw.send(data)
        assert await raw.closed_by_peer(2.0)
        assert engine.stats["protocol_errors"] == 1
    finally:
        await raw.close()


@pytest.mark.parametrize(
    "first",
    [
        pytest.param(encode_connect(Connect("odd", protocol_name="MQTX")), id="unknown-protocol-name"),
        pytest.param(b"\xc0\x00", id="not-connect-first"),
    ],
)
async def test_bad_first_packet_closes(engine: NxgBroker, first: bytes) -> None:
    raw = await RawClient.open(engine.mqtt_port)
    try:
        raw.send(first)
        assert await raw.closed_by_peer(2.0)
    finally:
        await raw.close()


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(MQTT5_CONNECT, id="mqtt5-with-properties"),
        # a client that does not wait for CONNACK: the rest is never read
        pytest.param(MQTT5_CONNECT + b"\x82\x07\x00\x01\x00\x00\x01a\x00", id="mqtt5-then-subscribe"),
        pytest.param(b"\x10\x0c\x00\x04MQTT\x05\xc2\x00\x3c\xff\xff", id="mqtt5-garbage-after-level"),
    ],
)
async def test_mqtt5_connect_refused_with_0x01_then_closed(
    engine: NxgBroker, data: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="nxg_mqtt")
    raw = await RawClient.open(engine.mqtt_port)
    try:
        raw.send(data)
        assert await raw.recv() == Connack(False, 0x01)
        assert await raw.closed_by_peer(2.0)
    finally:
        await raw.close()
    assert await wait_for(lambda: not engine.connections)
    assert (engine.stats["connect_refused"], engine.stats["protocol_errors"], engine.stats["connects"]) == (1, 0, 0)
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("nxg_mqtt")]
    assert len(logged) == 1, logged  # once, with the client's address
    assert "127.0.0.1" in logged[0] and "level 5" in logged[0]


async def test_paho_mqtt5_client_told_unsupported_protocol_version(engine: NxgBroker) -> None:
    refused: list[int] = []
    closed = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="v5", protocol=mqtt.MQTTv5)
    client.on_connect = lambda c, u, flags, reason, props: refused.append(int(reason.value))
    client.on_disconnect = lambda c, u, flags, reason, props: closed.set()
    await asyncio.to_thread(client.connect, "127.0.0.1", engine.mqtt_port, 30)
    client.loop_start()
    try:
        assert await wait_for(closed.is_set)
        assert refused == [0x84]  # MQTT 5's "Unsupported Protocol Version" (3.1.1: 0x01)
        assert engine.session("v5") is None
    finally:
        client._thread_terminate = True
        await asyncio.to_thread(client.loop_stop)


async def test_protocol_level_3_refused_then_closed(engine: NxgBroker) -> None:
    raw = await RawClient.open(engine.mqtt_port)
    try:
        connack = await raw.connect("old", protocol_name="MQIsdp", protocol_level=3)
        assert connack.return_code == 0x01
        assert await raw.closed_by_peer(2.0)
    finally:
        await raw.close()


async def test_oversized_packet_closes(paho: Clients) -> None:
    async with NxgBroker(replace(BROKER_SETTINGS, max_packet_bytes=1024)) as broker:
        raw = await RawClient.open(broker.mqtt_port)
        try:
            await raw.connect("big")
            raw.send(encode_publish("t", b"x" * 2000))
            assert await raw.closed_by_peer(2.0)
        finally:
            await raw.close()


async def test_no_anonymous_access_without_auth_plugin(paho: Clients) -> None:
    async with NxgBroker(replace(BROKER_SETTINGS, allow_anonymous=False)) as broker:
        client = paho("anon")
        assert await client.connect(broker.mqtt_port) == 0x05
        named = paho("named")
        assert await named.connect(broker.mqtt_port, username="u", password="p") == 0x05
        assert broker.connected_count == 0


async def test_engine_refusals_never_lock_out_good_credentials(paho: Clients) -> None:
    """The engine keeps no per-address lockout: refusals of any kind (bad credentials, stale ones,
    another protocol level) from one address never refuse the next good CONNECT from it. Brute-force
    limits belong to the role whose secret is guessed (the auth plugin, the core's pairing)."""

    class WrongPassword(BaseAuthPlugin):  # type: ignore[misc]
        async def authenticate(self, *, session: BrokerSession) -> bool | None:
            if session.username == "guess":
                raise ConnectRefused(ConnectRefused.BAD_CREDENTIALS, "wrong password")
            return None if session.username is None else session.username == "ok"

    settings: Settings = replace(BROKER_SETTINGS, allow_anonymous=False, connect_failures_per_minute=3)
    async with NxgBroker(settings, [WrongPassword]) as broker:

        async def attempt(client_id: str, username: str | None, level: int = 4) -> int:
            raw = await RawClient.open(broker.mqtt_port)
            try:
                name = "MQTT" if level != 3 else "MQIsdp"
                fields = {"protocol_name": name, "protocol_level": level}
                return (await raw.connect(client_id, username=username, password=b"pw", **fields)).return_code
            finally:
                await raw.close()

        assert [await attempt(f"stale{n}", "stale") for n in range(5)] == [5] * 5
        assert [await attempt(f"guess{n}", "guess") for n in range(5)] == [4] * 5
        assert [await attempt(f"v5-{n}", "ok", 5) for n in range(5)] == [1] * 5
        assert [await attempt(f"v3-{n}", "ok", 3) for n in range(5)] == [1] * 5
        assert await attempt("fine", "ok") == 0
        assert broker.stats["connect_refused"] == 20


async def test_offline_queue_bounded(paho: Clients) -> None:
    async with NxgBroker(replace(BROKER_SETTINGS, session_queue_limit=5)) as broker:
        client = paho("bounded", clean_session=False)
        await client.connect(broker.mqtt_port)
        await client.subscribe("b/t", 1)
        await client.disconnect()
        session = broker.session("bounded")
        # the DISCONNECT is on its way: publish only once the broker holds the session offline
        assert session is not None and await wait_for(lambda: not session.connected)
        for i in range(8):
            await broker.publish("b/t", b"%d" % i, qos=1)
        assert broker.stats["dropped_qos1"] == 3
        back = paho("bounded", clean_session=False)
        await back.connect(broker.mqtt_port)
        assert [m.payload for m in await back.wait_messages(5)] == [b"0", b"1", b"2", b"3", b"4"]


async def test_websocket_listener(paho: Clients) -> None:
    async with NxgBroker(replace(BROKER_SETTINGS, ws_port=0)) as broker:
        assert broker.ws_port
        ws, tcp = paho("ws", transport="websockets"), paho("tcp")
        assert await ws.connect(broker.ws_port) == 0
        await ws.subscribe("w/t", 2)
        await tcp.connect(broker.mqtt_port)
        await tcp.publish("w/t", b"over-ws", 2)
        assert await ws.wait_messages(1) == [Received("w/t", b"over-ws", 2, False)]
        await ws.publish("w/t", b"from-ws", 1)
        assert len(await ws.wait_messages(2)) == 2


async def test_publisher_acks_after_routing_qos1(engine: NxgBroker, paho: Clients) -> None:
    """PUBACK follows routing: by the time it is read, the subscriber's copy is on its way."""
    sub = paho("sub")
    await sub.connect(engine.mqtt_port)
    await sub.subscribe("order/t", 1)
    raw = await RawClient.open(engine.mqtt_port)
    try:
        await raw.connect("orderly")
        raw.send(encode_publish("order/t", b"x", 1, packet_id=9))
        assert await raw.recv() == PubAck(9)
        assert engine.stats["messages_out"] == 1
    finally:
        await raw.close()


async def test_delivery_not_starved_by_another_clients_flood(engine: NxgBroker, paho: Clients) -> None:
    sink, watcher = paho("sink"), paho("watcher")
    await sink.connect(engine.mqtt_port)
    await sink.subscribe("flood/#", 0)
    await watcher.connect(engine.mqtt_port)
    await watcher.subscribe("urgent", 0)
    urgent = paho("urgent-pub")
    await urgent.connect(engine.mqtt_port)
    flood = await RawClient.open(engine.mqtt_port)
    try:
        assert (await flood.connect("flooder")).return_code == 0
        flood.send(b"".join(encode_publish(f"flood/{i % 10}", b"f", 0) for i in range(20_000)))
        await wait_for(lambda: len(sink.received) > 100, 2.0)  # the flood is arriving
        started = time.monotonic()
        urgent.client.publish("urgent", b"now", 0)
        arrived = await wait_for(lambda: bool(watcher.received), 1.0)
        assert arrived, f"urgent message still undelivered after {time.monotonic() - started:.1f} s"
        assert len(sink.received) < 20_000  # it really overtook the flood
    finally:
        await flood.close()


async def test_slow_consumer_does_not_stall_publishers(paho: Clients) -> None:
    """A subscriber that stops reading: publishers wait briefly, then it is queued, bounded, dropped."""
    settings = replace(BROKER_SETTINGS, session_queue_limit=10)
    async with NxgBroker(settings, drain_timeout_s=0.3) as broker:
        stuck = await RawClient.open(broker.mqtt_port)
        try:
            await stuck.connect("stuck")
            stuck.send(b"\x82\x08\x00\x01\x00\x03big\x01")  # SUBSCRIBE big QoS 1, then never read again
            assert await wait_for(lambda: broker.has_subscription("stuck", "big"))
            pub = paho("pub")
            await pub.connect(broker.mqtt_port)
            payload = b"x" * 100_000
            for _ in range(100):  # 10 MB: far beyond socket buffers and the high-water mark
                await pub.publish("big", payload, 1)
            assert await wait_for(lambda: broker.session("stuck") is None, 3.0), "slow consumer not dropped"
            assert broker.stats["dropped_qos1"] > 0
            assert broker.session("pub") is not None
        finally:
            await stuck.close()


async def test_qos2_inbound_retransmission_routed_once(engine: NxgBroker, paho: Clients) -> None:
    sub = paho("sub")
    await sub.connect(engine.mqtt_port)
    await sub.subscribe("q2", 2)
    raw = await RawClient.open(engine.mqtt_port)
    try:
        await raw.connect("q2pub")
        raw.send(encode_publish("q2", b"once", 2, packet_id=5))
        assert await raw.recv() == PubRec(5)
        raw.send(encode_publish("q2", b"once", 2, dup=True, packet_id=5))  # PUBREC lost, say
        assert await raw.recv() == PubRec(5)
        raw.send(encode_pubrel(5))
        assert await raw.recv() == PubComp(5)
        await sub.wait_messages(1)
        assert [m.payload for m in await sub.quiet(0.3)] == [b"once"]
    finally:
        await raw.close()


async def test_qos2_outbound_flow(engine: NxgBroker) -> None:
    raw = await RawClient.open(engine.mqtt_port)
    try:
        await raw.connect("q2sub")
        raw.send(encode_subscribe(1, [("out", 2)]))
        assert await raw.recv() == SubAck(1, (2,))
        await engine.publish("out", b"x", qos=2)
        publish = await raw.recv()
        assert isinstance(publish, Publish)
        assert publish.qos == 2
        assert publish.packet_id is not None
        raw.send(encode_pubrec(publish.packet_id))
        assert await raw.recv() == PubRel(publish.packet_id)
        session = engine.session("q2sub")
        assert session is not None
        assert session.inflight == {publish.packet_id: None}
        raw.send(encode_pubcomp(publish.packet_id))
        assert await wait_for(lambda: not session.inflight)
    finally:
        await raw.close()


async def _flow(engine: NxgBroker, client_id: str, qos: int) -> tuple[RawClient, int]:
    """A raw subscriber with one message of `qos` in flight to it: the client and the packet id."""
    raw = await RawClient.open(engine.mqtt_port)
    await raw.connect(client_id)
    raw.send(encode_subscribe(1, [("flow", 2)]))
    assert await raw.recv() == SubAck(1, (2,))
    await engine.publish("flow", b"x", qos=qos)
    publish = await raw.recv()
    assert isinstance(publish, Publish) and publish.qos == qos and publish.packet_id
    return raw, publish.packet_id


@pytest.mark.parametrize(
    ("qos", "answers"),
    [
        pytest.param(1, [encode_pubrec], id="pubrec-for-qos1"),
        pytest.param(1, [encode_pubcomp], id="pubcomp-for-qos1"),
        pytest.param(2, [encode_puback], id="puback-for-qos2"),
        pytest.param(2, [encode_pubcomp], id="pubcomp-before-pubrec"),
        pytest.param(2, [encode_pubrec, encode_puback], id="puback-after-pubrec"),
    ],
)
async def test_acknowledgement_of_the_wrong_flow_closes(
    engine: NxgBroker, qos: int, answers: list[Callable[[int], bytes]]
) -> None:
    """MQTT-4.3: a flow is acknowledged by its own packets, in order; anything else is a violation."""
    raw, packet_id = await _flow(engine, "wrong-ack", qos)
    try:
        for answer in answers:
            raw.send(answer(packet_id))
        assert await raw.closed_by_peer(2.0)
        assert engine.stats["protocol_errors"] == 1
    finally:
        await raw.close()


async def test_acknowledgements_of_unknown_ids_are_tolerated(engine: NxgBroker) -> None:
    """Late duplicates (after a reconnect, say) are no violation: ignored, PUBREL still completed."""
    raw, packet_id = await _flow(engine, "late-acks", 2)
    try:
        raw.send(encode_pubrec(packet_id))
        assert await raw.recv() == PubRel(packet_id)
        raw.send(encode_pubrec(packet_id))  # PUBREL lost, say: answered again
        assert await raw.recv() == PubRel(packet_id)
        raw.send(encode_pubcomp(packet_id))
        raw.send(encode_puback(4242) + encode_pubcomp(4243) + encode_pubrec(4244))
        assert await raw.recv() == PubRel(4244)
        raw.send(encode_pubrel(4245))  # no inbound QoS 2 with that id: still completed
        assert await raw.recv() == PubComp(4245)
        raw.send(PINGREQ_BYTES)
        assert await raw.recv() == PingResp()
        session = engine.session("late-acks")
        assert session is not None and not session.inflight and engine.stats["protocol_errors"] == 0
    finally:
        await raw.close()


async def test_kick_publishes_will(engine: NxgBroker, paho: Clients) -> None:
    watcher, victim = paho("watcher"), paho("victim")
    await watcher.connect(engine.mqtt_port)
    await watcher.subscribe("kick/will", 0)
    await victim.connect(engine.mqtt_port, will=("kick/will", b"kicked", 0, False))
    assert await engine.kick("victim")
    assert await wait_for(victim.disconnected.is_set)
    assert [m.payload for m in await watcher.wait_messages(1)] == [b"kicked"]
    assert engine.session("victim") is None


# ---- cases from Mosquitto's packet-sequence suite (test/broker, 2.0.11) that the broker failed


@pytest.mark.parametrize("will_topic", ["", "will/+", "will/#"])
async def test_connect_with_an_invalid_will_topic_closes_without_connack(engine: NxgBroker, will_topic: str) -> None:
    """MQTT-3.1.2-9, 4.7.3-1: the will topic is a topic name (Mosquitto's 07-will-null-topic)."""
    raw = await RawClient.open(engine.mqtt_port)
    try:
        raw.send(encode_connect(Connect("bad-will", keep_alive=60, will_topic=will_topic, will_message=b"m")))
        with pytest.raises(ConnectionError):
            await raw.recv(2.0)  # closed, and no CONNACK before that
        assert engine.stats["protocol_errors"] == 1
        assert engine.session("bad-will") is None
    finally:
        await raw.close()


@pytest.mark.parametrize(("clean_first", "clean_second"), [(False, False), (False, True), (True, False), (True, True)])
async def test_takeover_publishes_the_will_only_when_the_session_ends(
    engine: NxgBroker, paho: Clients, clean_first: bool, clean_second: bool
) -> None:
    """A takeover that continues the session (both persistent) is the same client coming back: no
    will. A clean session on either side ends the old session, and its will goes out
    (Mosquitto's 07-will-takeover)."""
    watcher = paho("watcher")
    await watcher.connect(engine.mqtt_port)
    await watcher.subscribe("will/t", 0)
    first = await RawClient.open(engine.mqtt_port)
    second = await RawClient.open(engine.mqtt_port)
    try:
        fields = {"keep_alive": 60, "will_topic": "will/t", "will_message": b"LWT"}
        assert (await first.connect("will-taker", clean_session=clean_first, **fields)).return_code == 0
        connack = await second.connect("will-taker", clean_session=clean_second)
        assert connack.return_code == 0
        assert connack.session_present is (not clean_first and not clean_second)
        assert await first.closed_by_peer(2.0)
        second.send(encode_publish("will/t", b"ready", 0))
        expected = [b"LWT", b"ready"] if clean_first or clean_second else [b"ready"]
        await watcher.wait_messages(len(expected))
        assert [m.payload for m in await watcher.quiet(0.3)] == expected
    finally:
        await first.close()
        await second.close()


@pytest.mark.parametrize(("qos", "ack"), [(1, PubAck(7)), (2, PubRec(7))])
async def test_acknowledgement_precedes_the_copy_of_its_own_subscription(
    engine: NxgBroker, qos: int, ack: PubAck | PubRec
) -> None:
    """A client subscribed to what it publishes reads PUBACK/PUBREC first, then its copy
    (Mosquitto's 02-subpub-qos2 expects the PUBREC before the onward PUBLISH)."""
    raw = await RawClient.open(engine.mqtt_port)
    try:
        await raw.connect("self-sub")
        raw.send(encode_subscribe(1, [("self/t", qos)]))
        assert await raw.recv() == SubAck(1, (qos,))
        raw.send(encode_publish("self/t", b"m", qos, packet_id=7))
        assert await raw.recv() == ack
        copy = await raw.recv()
        assert isinstance(copy, Publish) and copy.topic == "self/t" and copy.qos == qos
        if qos == 2:
            raw.send(encode_pubrel(7))
            assert await raw.recv() == PubComp(7)
    finally:
        await raw.close()
