"""MQTT 3.1.1 packets: frozen value types, a pure decoder over a byte buffer, and encoders.

`decode(buffer, max_packet_bytes)` parses every whole packet at the front of `buffer` and returns
them with the number of bytes consumed; a partial packet at the end is left for the next read.
Anything malformed raises `ProtocolError` — the connection closes, it never guesses. A CONNECT
for another protocol level (MQTT 5, MQTT 3.1) raises `UnsupportedProtocol` as soon as its name
and level are read: the rest of such a packet (MQTT 5 properties) is not 3.1.1 and is not parsed.
Both directions are decoded and encoded so tests can speak raw MQTT with the same code.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from nxg_mqtt.errors import NxgError

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14

SUBACK_FAILURE = 0x80
_MAX_REMAINING = 268_435_455


class ProtocolError(NxgError):
    """The peer broke MQTT 3.1.1 framing or packet rules; the connection must be closed."""

    code = "PROTOCOL_ERROR"
    status = 400


class UnsupportedProtocol(ProtocolError):
    """A CONNECT for MQTT but not 3.1.1 (level 5, or 3.1's `MQIsdp`): a server answers CONNACK 0x01."""

    def __init__(self, protocol_name: str, protocol_level: int) -> None:
        super().__init__(f"unsupported protocol {protocol_name!r} level {protocol_level}")
        self.protocol_name = protocol_name
        self.protocol_level = protocol_level


@dataclass(frozen=True, slots=True)
class Connect:
    client_id: str
    clean_session: bool = True
    keep_alive: int = 0
    username: str | None = None
    password: bytes | None = None
    will_topic: str | None = None
    will_message: bytes = b""
    will_qos: int = 0
    will_retain: bool = False
    protocol_name: str = "MQTT"
    protocol_level: int = 4


@dataclass(frozen=True, slots=True)
class Connack:
    session_present: bool
    return_code: int


@dataclass(frozen=True, slots=True)
class Publish:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int | None = None


@dataclass(frozen=True, slots=True)
class PubAck:
    packet_id: int


@dataclass(frozen=True, slots=True)
class PubRec:
    packet_id: int


@dataclass(frozen=True, slots=True)
class PubRel:
    packet_id: int


@dataclass(frozen=True, slots=True)
class PubComp:
    packet_id: int


@dataclass(frozen=True, slots=True)
class Subscribe:
    packet_id: int
    topics: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class SubAck:
    packet_id: int
    return_codes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    packet_id: int
    topics: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class UnsubAck:
    packet_id: int


@dataclass(frozen=True, slots=True)
class PingReq:
    pass


@dataclass(frozen=True, slots=True)
class PingResp:
    pass


@dataclass(frozen=True, slots=True)
class Disconnect:
    pass


Packet = (
    Connect
    | Connack
    | Publish
    | PubAck
    | PubRec
    | PubRel
    | PubComp
    | Subscribe
    | SubAck
    | Unsubscribe
    | UnsubAck
    | PingReq
    | PingResp
    | Disconnect
)

# ---------------------------------------------------------------------------------------- decoding


def decode(buffer: bytes | bytearray, max_packet_bytes: int = _MAX_REMAINING) -> tuple[list[Packet], int]:
    """Parse the whole packets at the front of `buffer`; return them and the bytes consumed."""
    packets: list[Packet] = []
    pos = 0
    size = len(buffer)
    with memoryview(buffer) as view:
        while size - pos >= 2:
            index = pos + 1
            length = 0
            shift = 0
            while True:
                if index >= size:
                    return packets, pos
                byte = buffer[index]
                index += 1
                length |= (byte & 0x7F) << shift
                if not byte & 0x80:
                    break
                shift += 7
                if shift >= 28:
                    raise ProtocolError("malformed remaining length")
            end = index + length
            if end - pos > max_packet_bytes:
                raise ProtocolError(f"packet of {end - pos} bytes exceeds {max_packet_bytes}")
            if end > size:
                return packets, pos
            packets.append(_parse(buffer[pos], view, index, end))
            pos = end
    return packets, pos


def _parse(first: int, view: memoryview, start: int, end: int) -> Packet:
    kind = first >> 4
    flags = first & 0x0F
    if kind == PUBLISH:
        return _parse_publish(flags, view, start, end)
    if flags != (2 if kind in (PUBREL, SUBSCRIBE, UNSUBSCRIBE) else 0):
        raise ProtocolError(f"reserved flags {flags:#x} on packet type {kind}")
    length = end - start
    if kind in (PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK):
        if length != 2:
            raise ProtocolError(f"packet type {kind} must have length 2")
        return _ACK_TYPES[kind](_packet_id(view, start, end))
    if kind in (PINGREQ, PINGRESP, DISCONNECT):
        if length != 0:
            raise ProtocolError(f"packet type {kind} must have length 0")
        return _EMPTY[kind]
    if kind == CONNECT:
        return _parse_connect(view, start, end)
    if kind == SUBSCRIBE:
        return _parse_subscribe(view, start, end)
    if kind == UNSUBSCRIBE:
        return _parse_unsubscribe(view, start, end)
    if kind == CONNACK:
        if length != 2 or view[start] & 0xFE:
            raise ProtocolError("malformed CONNACK")
        return Connack(bool(view[start]), view[start + 1])
    if kind == SUBACK:
        if length < 3:
            raise ProtocolError("malformed SUBACK")
        return SubAck(_packet_id(view, start, end), tuple(view[start + 2 : end]))
    raise ProtocolError(f"reserved packet type {kind}")


def _parse_publish(flags: int, view: memoryview, pos: int, end: int) -> Publish:
    qos = (flags >> 1) & 3
    if qos == 3:
        raise ProtocolError("PUBLISH with QoS 3")
    dup = bool(flags & 8)
    if dup and not qos:
        raise ProtocolError("DUP set on a QoS 0 PUBLISH")
    topic, pos = _string(view, pos, end)
    packet_id = None
    if qos:
        if pos + 2 > end:
            raise ProtocolError("PUBLISH truncated before packet id")
        packet_id = (view[pos] << 8) | view[pos + 1]
        if not packet_id:
            raise ProtocolError("packet id 0")
        pos += 2
    return Publish(topic, bytes(view[pos:end]), qos, bool(flags & 1), dup, packet_id)


def _string(view: memoryview, pos: int, end: int) -> tuple[str, int]:
    if pos + 2 > end:
        raise ProtocolError("string length beyond packet end")
    stop = pos + 2 + ((view[pos] << 8) | view[pos + 1])
    if stop > end:
        raise ProtocolError("string beyond packet end")
    try:
        text = str(view[pos + 2 : stop], "utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError("string is not valid UTF-8") from exc
    if "\x00" in text:
        raise ProtocolError("string contains U+0000")
    return text, stop


def _binary(view: memoryview, pos: int, end: int) -> tuple[bytes, int]:
    if pos + 2 > end:
        raise ProtocolError("field length beyond packet end")
    stop = pos + 2 + ((view[pos] << 8) | view[pos + 1])
    if stop > end:
        raise ProtocolError("field beyond packet end")
    return bytes(view[pos + 2 : stop]), stop


def _parse_connect(view: memoryview, pos: int, end: int) -> Connect:
    name, pos = _string(view, pos, end)
    if pos >= end:
        raise ProtocolError("CONNECT variable header truncated")
    level = view[pos]
    if (name, level) != ("MQTT", 4):
        if name in ("MQTT", "MQIsdp"):
            raise UnsupportedProtocol(name, level)
        raise ProtocolError(f"unknown protocol name {name!r}")
    if pos + 4 > end:
        raise ProtocolError("CONNECT variable header truncated")
    flags = view[pos + 1]
    keep_alive = (view[pos + 2] << 8) | view[pos + 3]
    pos += 4
    if flags & 0x01:
        raise ProtocolError("CONNECT reserved flag set")
    will_flag, will_qos, will_retain = bool(flags & 0x04), (flags >> 3) & 3, bool(flags & 0x20)
    if will_qos == 3 or (not will_flag and (will_qos or will_retain)):
        raise ProtocolError("invalid will flags")
    has_user, has_password = bool(flags & 0x80), bool(flags & 0x40)
    if has_password and not has_user:
        raise ProtocolError("password flag without user name flag")
    client_id, pos = _string(view, pos, end)
    will_topic: str | None = None
    will_message = b""
    if will_flag:
        will_topic, pos = _string(view, pos, end)
        will_message, pos = _binary(view, pos, end)
    username: str | None = None
    password: bytes | None = None
    if has_user:
        username, pos = _string(view, pos, end)
    if has_password:
        password, pos = _binary(view, pos, end)
    if pos != end:
        raise ProtocolError("trailing bytes after CONNECT payload")
    return Connect(
        client_id,
        bool(flags & 0x02),
        keep_alive,
        username,
        password,
        will_topic,
        will_message,
        will_qos,
        will_retain,
        name,
        level,
    )


def _packet_id(view: memoryview, pos: int, end: int) -> int:
    if pos + 2 > end:
        raise ProtocolError("packet id missing")
    packet_id = (view[pos] << 8) | view[pos + 1]
    if not packet_id:
        raise ProtocolError("packet id 0")
    return packet_id


def _filter(view: memoryview, pos: int, end: int) -> tuple[str, int]:
    topic_filter, pos = _string(view, pos, end)
    if not topic_filter:
        raise ProtocolError("empty topic filter")  # MQTT-4.7.3-1: at least one character
    return topic_filter, pos


def _parse_subscribe(view: memoryview, pos: int, end: int) -> Subscribe:
    packet_id = _packet_id(view, pos, end)
    pos += 2
    topics: list[tuple[str, int]] = []
    while pos < end:
        topic, pos = _filter(view, pos, end)
        if pos >= end or view[pos] > 2:
            raise ProtocolError("invalid requested QoS in SUBSCRIBE")
        topics.append((topic, view[pos]))
        pos += 1
    if not topics:
        raise ProtocolError("SUBSCRIBE without topic filters")
    return Subscribe(packet_id, tuple(topics))


def _parse_unsubscribe(view: memoryview, pos: int, end: int) -> Unsubscribe:
    packet_id = _packet_id(view, pos, end)
    pos += 2
    topics: list[str] = []
    while pos < end:
        topic, pos = _filter(view, pos, end)
        topics.append(topic)
    if not topics:
        raise ProtocolError("UNSUBSCRIBE without topic filters")
    return Unsubscribe(packet_id, tuple(topics))


_ACK_TYPES: dict[int, type[PubAck | PubRec | PubRel | PubComp | UnsubAck]] = {
    PUBACK: PubAck,
    PUBREC: PubRec,
    PUBREL: PubRel,
    PUBCOMP: PubComp,
    UNSUBACK: UnsubAck,
}
_EMPTY: dict[int, PingReq | PingResp | Disconnect] = {
    PINGREQ: PingReq(),
    PINGRESP: PingResp(),
    DISCONNECT: Disconnect(),
}

# ---------------------------------------------------------------------------------------- encoding


def _length(length: int) -> bytes:
    if length > _MAX_REMAINING:
        raise ValueError("packet too large for MQTT")
    if length < 128:
        return bytes((length,))
    out = bytearray()
    while True:
        byte = length & 0x7F
        length >>= 7
        if length:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _str(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">H", len(raw)) + raw


def _bin(data: bytes) -> bytes:
    return struct.pack(">H", len(data)) + data


PINGREQ_BYTES = b"\xc0\x00"
PINGRESP_BYTES = b"\xd0\x00"
DISCONNECT_BYTES = b"\xe0\x00"


def encode_connack(session_present: bool, return_code: int) -> bytes:
    return bytes((0x20, 2, 1 if session_present else 0, return_code))


def encode_publish_topic(
    topic_bytes: bytes, payload: bytes, qos: int, retain: bool, dup: bool = False, packet_id: int = 0
) -> bytes:
    """PUBLISH from a pre-encoded topic (`_str(topic)`): the fan-out path encodes the topic once."""
    first = 0x30 | (qos << 1) | (1 if retain else 0) | (8 if dup else 0)
    if qos:
        body_length = len(topic_bytes) + 2 + len(payload)
        return b"".join((bytes((first,)), _length(body_length), topic_bytes, packet_id.to_bytes(2, "big"), payload))
    return b"".join((bytes((first,)), _length(len(topic_bytes) + len(payload)), topic_bytes, payload))


def encode_topic(topic: str) -> bytes:
    return _str(topic)


def encode_publish(
    topic: str, payload: bytes, qos: int = 0, retain: bool = False, dup: bool = False, packet_id: int = 0
) -> bytes:
    return encode_publish_topic(_str(topic), payload, qos, retain, dup, packet_id)


def _ack(first: int, packet_id: int) -> bytes:
    return struct.pack(">BBH", first, 2, packet_id)


def encode_puback(packet_id: int) -> bytes:
    return _ack(0x40, packet_id)


def encode_pubrec(packet_id: int) -> bytes:
    return _ack(0x50, packet_id)


def encode_pubrel(packet_id: int) -> bytes:
    return _ack(0x62, packet_id)


def encode_pubcomp(packet_id: int) -> bytes:
    return _ack(0x70, packet_id)


def encode_unsuback(packet_id: int) -> bytes:
    return _ack(0xB0, packet_id)


def encode_suback(packet_id: int, return_codes: tuple[int, ...] | list[int]) -> bytes:
    return bytes((0x90,)) + _length(2 + len(return_codes)) + struct.pack(">H", packet_id) + bytes(return_codes)


def encode_connect(packet: Connect) -> bytes:
    flags = 0x02 if packet.clean_session else 0
    payload = [_str(packet.client_id)]
    if packet.will_topic is not None:
        flags |= 0x04 | (packet.will_qos << 3) | (0x20 if packet.will_retain else 0)
        payload += [_str(packet.will_topic), _bin(packet.will_message)]
    if packet.username is not None:
        flags |= 0x80
        payload.append(_str(packet.username))
    if packet.password is not None:
        flags |= 0x40
        payload.append(_bin(packet.password))
    body = (
        _str(packet.protocol_name)
        + bytes((packet.protocol_level, flags))
        + struct.pack(">H", packet.keep_alive)
        + b"".join(payload)
    )
    return b"\x10" + _length(len(body)) + body


def encode_subscribe(packet_id: int, topics: tuple[tuple[str, int], ...] | list[tuple[str, int]]) -> bytes:
    body = struct.pack(">H", packet_id) + b"".join(_str(topic) + bytes((qos,)) for topic, qos in topics)
    return b"\x82" + _length(len(body)) + body


def encode_unsubscribe(packet_id: int, topics: tuple[str, ...] | list[str]) -> bytes:
    body = struct.pack(">H", packet_id) + b"".join(_str(topic) for topic in topics)
    return b"\xa2" + _length(len(body)) + body


def encode(packet: Packet) -> bytes:
    """Encode any packet (both directions); the broker's hot paths call the specific encoders."""
    match packet:
        case Connect():
            return encode_connect(packet)
        case Connack(session_present, return_code):
            return encode_connack(session_present, return_code)
        case Publish(topic, payload, qos, retain, dup, packet_id):
            return encode_publish(topic, payload, qos, retain, dup, packet_id or 0)
        case PubAck(packet_id):
            return encode_puback(packet_id)
        case PubRec(packet_id):
            return encode_pubrec(packet_id)
        case PubRel(packet_id):
            return encode_pubrel(packet_id)
        case PubComp(packet_id):
            return encode_pubcomp(packet_id)
        case Subscribe(packet_id, topics):
            return encode_subscribe(packet_id, topics)
        case SubAck(packet_id, return_codes):
            return encode_suback(packet_id, return_codes)
        case Unsubscribe(packet_id, topics):
            return encode_unsubscribe(packet_id, topics)
        case UnsubAck(packet_id):
            return encode_unsuback(packet_id)
        case PingReq():
            return PINGREQ_BYTES
        case PingResp():
            return PINGRESP_BYTES
        case Disconnect():
            return DISCONNECT_BYTES
    raise TypeError(f"not an MQTT packet: {packet!r}")
