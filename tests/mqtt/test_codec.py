"""The packet codec: round trips (hypothesis), streaming, and every malformed case we refuse."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nxg_mqtt.errors import NxgError
from nxg_mqtt.mqtt.codec import (
    Connack,
    Connect,
    Disconnect,
    Packet,
    PingReq,
    PingResp,
    ProtocolError,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    UnsubAck,
    Unsubscribe,
    UnsupportedProtocol,
    decode,
    encode,
    encode_publish,
)

text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=40)
topic = text.filter(bool)
packet_id = st.integers(1, 65535)
payload = st.binary(max_size=300)


@st.composite
def publishes(draw: st.DrawFn) -> Publish:
    qos = draw(st.integers(0, 2))
    return Publish(
        draw(topic),
        draw(st.binary(max_size=20_000)),
        qos,
        draw(st.booleans()),
        draw(st.booleans()) if qos else False,
        draw(packet_id) if qos else None,
    )


@st.composite
def connects(draw: st.DrawFn) -> Connect:
    will = draw(st.booleans())
    user = draw(st.none() | text)
    return Connect(
        draw(text),
        draw(st.booleans()),
        draw(st.integers(0, 65535)),
        user,
        draw(st.none() | payload) if user is not None else None,
        draw(topic) if will else None,
        draw(payload) if will else b"",
        draw(st.integers(0, 2)) if will else 0,
        draw(st.booleans()) if will else False,
    )


packets: st.SearchStrategy[Packet] = st.one_of(
    publishes(),
    connects(),
    st.builds(Connack, st.booleans(), st.integers(0, 5)),
    st.builds(PubAck, packet_id),
    st.builds(PubRec, packet_id),
    st.builds(PubRel, packet_id),
    st.builds(PubComp, packet_id),
    st.builds(UnsubAck, packet_id),
    st.builds(Subscribe, packet_id, st.lists(st.tuples(topic, st.integers(0, 2)), min_size=1, max_size=5).map(tuple)),
    st.builds(SubAck, packet_id, st.lists(st.sampled_from([0, 1, 2, 0x80]), min_size=1).map(tuple)),
    st.builds(Unsubscribe, packet_id, st.lists(topic, min_size=1, max_size=5).map(tuple)),
    st.just(PingReq()),
    st.just(PingResp()),
    st.just(Disconnect()),
)


@given(packets)
def test_round_trip(packet: Packet) -> None:
    data = encode(packet)
    decoded, used = decode(bytearray(data))
    assert decoded == [packet]
    assert used == len(data)


@given(st.lists(packets, min_size=1, max_size=8), st.integers(1, 50))
def test_stream_split_anywhere(sequence: list[Packet], step: int) -> None:
    """Feeding the bytes in arbitrary chunks yields the same packets, none twice, none lost."""
    data = b"".join(encode(p) for p in sequence)
    buffer = bytearray()
    out: list[Packet] = []
    for start in range(0, len(data), step):
        buffer += data[start : start + step]
        found, used = decode(buffer)
        del buffer[:used]
        out.extend(found)
    assert out == sequence
    assert not buffer


def test_protocol_error_is_an_nxg_error() -> None:
    assert issubclass(ProtocolError, NxgError)
    assert ProtocolError("x").code == "PROTOCOL_ERROR"


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\x30\xff\xff\xff\xff\x01", "malformed remaining length"),
        (b"\x36\x05\x00\x01a\x00\x01", "QoS 3"),
        (b"\x38\x03\x00\x01a", "DUP on QoS 0"),
        (b"\x80\x05\x00\x01\x00\x01a", "SUBSCRIBE reserved flags"),
        (b"\x60\x02\x00\x01", "PUBREL reserved flags"),
        (b"\xc1\x00", "PINGREQ reserved flags"),
        (b"\x00\x00", "reserved type 0"),
        (b"\xf0\x00", "reserved type 15"),
        (b"\x30\x04\x00\x02\xc3\x28", "topic not UTF-8"),
        (b"\x30\x04\x00\x02a\x00", "topic with NUL"),
        (b"\x32\x05\x00\x01a\x00\x00", "packet id 0"),
        (b"\x82\x06\x00\x01\x00\x01a\x03", "SUBSCRIBE QoS 3"),
        (b"\x82\x02\x00\x01", "SUBSCRIBE without filters"),
        (b"\x40\x03\x00\x01\x00", "PUBACK length"),
        (b"\x30\x05\x00\x09abc", "topic beyond packet end"),
        # MQTT-2.3.1-1: every packet id is non-zero
        (b"\x34\x05\x00\x01a\x00\x00", "QoS 2 packet id 0"),
        (b"\x40\x02\x00\x00", "PUBACK packet id 0"),
        (b"\x50\x02\x00\x00", "PUBREC packet id 0"),
        (b"\x62\x02\x00\x00", "PUBREL packet id 0"),
        (b"\x70\x02\x00\x00", "PUBCOMP packet id 0"),
        (b"\xb0\x02\x00\x00", "UNSUBACK packet id 0"),
        (b"\x90\x03\x00\x00\x01", "SUBACK packet id 0"),
        (b"\x82\x06\x00\x00\x00\x01a\x01", "SUBSCRIBE packet id 0"),
        (b"\xa2\x05\x00\x00\x00\x01a", "UNSUBSCRIBE packet id 0"),
        # MQTT-4.7.3-1: topic filters are at least one character long
        (b"\x82\x05\x00\x01\x00\x00\x01", "SUBSCRIBE empty filter"),
        (b"\x82\x09\x00\x01\x00\x01a\x01\x00\x00\x00", "SUBSCRIBE empty second filter"),
        (b"\xa2\x04\x00\x01\x00\x00", "UNSUBSCRIBE empty filter"),
    ],
)
def test_malformed(data: bytes, why: str) -> None:
    with pytest.raises(ProtocolError):
        decode(bytearray(data))


@pytest.mark.parametrize(
    "connect",
    [
        # reserved flag, will QoS 3, will flags without will, password without user name
        b"\x10\x0c\x00\x04MQTT\x04\x03\x00\x3c\x00\x00",
        b"\x10\x0c\x00\x04MQTT\x04\x1e\x00\x3c\x00\x00",
        b"\x10\x0c\x00\x04MQTT\x04\x22\x00\x3c\x00\x00",
        b"\x10\x0e\x00\x04MQTT\x04\x42\x00\x3c\x00\x00\x00\x00",
    ],
)
def test_malformed_connect(connect: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode(connect)


# MQTT 5 CONNECT: clean start, keepalive 60, properties (session expiry 10, receive maximum 20),
# client id "v5"; a 3.1.1 parser reading on past the level would take the properties for the client id
MQTT5_CONNECT = b"\x10\x17\x00\x04MQTT\x05\x02\x00\x3c\x08\x11\x00\x00\x00\x0a\x21\x00\x14\x00\x02v5"


@pytest.mark.parametrize(
    ("data", "name", "level"),
    [
        pytest.param(MQTT5_CONNECT, "MQTT", 5, id="mqtt5-with-properties"),
        pytest.param(b"\x10\x08\x00\x04MQTT\x05\xff\xff", "MQTT", 5, id="mqtt5-garbage-after-level"),
        pytest.param(encode(Connect("old", protocol_name="MQIsdp", protocol_level=3)), "MQIsdp", 3, id="mqtt31"),
        pytest.param(b"\x10\x07\x00\x04MQTT\x03", "MQTT", 3, id="level-3-nothing-after"),
    ],
)
def test_other_protocol_levels_are_recognised_before_the_rest(data: bytes, name: str, level: int) -> None:
    with pytest.raises(UnsupportedProtocol) as refused:
        decode(data)
    assert (refused.value.protocol_name, refused.value.protocol_level) == (name, level)
    assert isinstance(refused.value, ProtocolError)


def test_unknown_protocol_name_is_a_plain_protocol_error() -> None:
    with pytest.raises(ProtocolError) as refused:
        decode(encode(Connect("x", protocol_name="MQTX")))
    assert not isinstance(refused.value, UnsupportedProtocol)


def test_oversized_packet_refused_before_it_arrives() -> None:
    header = b"\x30\xff\xff\x03"  # announces ~64 KiB; only the header is here
    with pytest.raises(ProtocolError):
        decode(header, max_packet_bytes=1024)


def test_partial_packet_waits() -> None:
    data = encode_publish("a/b", b"x" * 200, 1, packet_id=7)
    assert decode(data[:1]) == ([], 0)
    assert decode(data[:3]) == ([], 0)
    assert decode(data[:-1]) == ([], 0)
    assert decode(data) == ([Publish("a/b", b"x" * 200, 1, False, False, 7)], len(data))
