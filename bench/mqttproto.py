"""A minimal, fast MQTT 3.1.1 client for load generation (asyncio protocol, raw packets).

Only what the benchmark needs: CONNECT/CONNACK, SUBSCRIBE/SUBACK, PUBLISH QoS 0/1 both ways,
PUBACK, PINGREQ and DISCONNECT. Packets are built as bytes up front so a publisher can push
hundreds of thousands of messages per second from one Python process.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import TypeVar, cast

CONNACK = 0x20
PUBLISH = 0x30
PUBACK = 0x40
SUBACK = 0x90
PINGRESP = 0xD0

DISCONNECT_PACKET = b"\xe0\x00"
PINGREQ_PACKET = b"\xc0\x00"

_PUBACK_HEAD = b"\x40\x02"


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n % 128
        n //= 128
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def mqtt_str(value: str | bytes) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    return struct.pack("!H", len(raw)) + raw


def connect_packet(
    client_id: str,
    username: str | None = None,
    password: str | None = None,
    keepalive: int = 0,
    clean: bool = True,
) -> bytes:
    flags = 0x02 if clean else 0
    payload = mqtt_str(client_id)
    if username is not None:
        flags |= 0x80
        payload += mqtt_str(username)
        if password is not None:
            flags |= 0x40
            payload += mqtt_str(password)
    variable = mqtt_str("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive)
    body = variable + payload
    return b"\x10" + varint(len(body)) + body


def subscribe_packet(packet_id: int, topic_filter: str, qos: int) -> bytes:
    body = struct.pack("!H", packet_id) + mqtt_str(topic_filter) + bytes([qos])
    return b"\x82" + varint(len(body)) + body


def publish_prefix(topic: str, qos: int, payload_len: int) -> bytes:
    """Fixed header + topic for a PUBLISH whose payload is exactly `payload_len` bytes.

    For QoS 1 the caller appends the 2-byte packet id, then the payload.
    """
    topic_part = mqtt_str(topic)
    remaining = len(topic_part) + (2 if qos else 0) + payload_len
    return bytes([0x30 | (qos << 1)]) + varint(remaining) + topic_part


def puback_packet(packet_id: int) -> bytes:
    return _PUBACK_HEAD + struct.pack("!H", packet_id)


T = TypeVar("T", bound="MqttConn")


class MqttConn(asyncio.Protocol):
    """One TCP connection. Subclasses override `on_packets` for the fast paths."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.connack: asyncio.Future[int] = loop.create_future()
        self.suback: asyncio.Future[int] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()
        self.paused = False
        self.resumed = asyncio.Event()
        self.resumed.set()
        self.on_puback: Callable[[int], None] | None = None
        self.on_pingresp: Callable[[int], None] | None = None

    # -- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        for fut in (self.connack, self.suback):
            if not fut.done():
                fut.set_exception(ConnectionError("connection lost"))
                fut.exception()  # mark retrieved: nobody may be waiting
        if not self.lost.done():
            self.lost.set_result(None)
        self.resumed.set()

    def pause_writing(self) -> None:
        self.paused = True
        self.resumed.clear()

    def resume_writing(self) -> None:
        self.paused = False
        self.resumed.set()

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        n = len(buf)
        pos = 0
        packets: list[tuple[int, bytes]] = []
        while pos + 2 <= n:
            first = buf[pos]
            # remaining length, up to 4 bytes
            mult = 1
            length = 0
            i = pos + 1
            while True:
                if i >= n:
                    length = -1
                    break
                byte = buf[i]
                length += (byte & 0x7F) * mult
                i += 1
                if not byte & 0x80:
                    break
                mult *= 128
            if length < 0 or i + length > n:
                break
            packets.append((first, bytes(buf[i : i + length])))
            pos = i + length
        if pos:
            del buf[:pos]
        if packets:
            self.on_packets(packets)

    # -- packet handling --------------------------------------------------------------------
    def on_packets(self, packets: list[tuple[int, bytes]]) -> None:
        acks = 0
        pongs = 0
        for first, body in packets:
            kind = first & 0xF0
            if kind == PUBACK:
                acks += 1
            elif kind == PINGRESP:
                pongs += 1
            elif kind == CONNACK:
                if not self.connack.done():
                    self.connack.set_result(body[1] if len(body) > 1 else 255)
            elif kind == SUBACK:
                if not self.suback.done():
                    self.suback.set_result(body[-1] if body else 0x80)
            elif kind == PUBLISH:
                self.on_publish(first, body)
        if acks and self.on_puback is not None:
            self.on_puback(acks)
        if pongs and self.on_pingresp is not None:
            self.on_pingresp(pongs)

    def on_publish(self, first: int, body: bytes) -> None:
        qos = (first >> 1) & 3
        if qos and self.transport is not None:
            tlen = (body[0] << 8) | body[1]
            self.transport.write(_PUBACK_HEAD + body[2 + tlen : 4 + tlen])

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self, graceful: bool = True) -> None:
        if self.transport is not None and not self.transport.is_closing():
            if graceful:
                self.transport.write(DISCONNECT_PACKET)
            self.transport.close()


async def open_conn(
    factory: Callable[[], T],
    host: str,
    port: int,
    client_id: str,
    username: str | None = None,
    password: str | None = None,
    keepalive: int = 0,
    timeout: float = 10.0,
    write_high_water: int = 32 * 1024,
) -> T:
    """TCP connect + CONNECT, wait for CONNACK; raises on refusal or timeout."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        _, proto = await loop.create_connection(factory, host, port)
        assert proto.transport is not None
        proto.transport.set_write_buffer_limits(high=write_high_water)
        proto.write(connect_packet(client_id, username, password, keepalive))
        try:
            code = await proto.connack
        except BaseException:
            proto.close(graceful=False)
            raise
    if code != 0:
        proto.close(graceful=False)
        raise ConnectionRefusedError(f"CONNACK return code {code}")
    return proto


async def subscribe(conn: MqttConn, topic_filter: str, qos: int, timeout: float = 10.0) -> int:
    conn.write(subscribe_packet(1, topic_filter, qos))
    async with asyncio.timeout(timeout):
        granted = await conn.suback
    if granted == 0x80:
        raise PermissionError(f"SUBSCRIBE {topic_filter} refused")
    return granted
