"""Broker test helpers: a raw-socket client for exact packet control, and the two-broker marker.

paho clients are `tests.mqtt_client.TestClient` (the `paho` fixture); `wait_for` lives there too.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

import pytest

from nxg_mqtt.broker.server import NxgBroker
from nxg_mqtt.mqtt.codec import (
    Connack,
    Connect,
    Packet,
    ProtocolError,
    decode,
    encode_connect,
)
from tests.mqtt_client import HOST, wait_for

__all__ = ["BrokerUnderTest", "RawClient", "both", "wait_for"]

WAIT_S = 3.0


@dataclass
class BrokerUnderTest:
    kind: str  # "nxg" or "amqtt"
    port: int
    nxg: NxgBroker | None = None


def both(reason: str) -> pytest.MarkDecorator:
    """Parametrize `any_broker` over ours and plain amqtt (where the test must fail)."""
    return pytest.mark.parametrize(
        "any_broker",
        [
            pytest.param("nxg", id="nxg"),
            pytest.param(
                "amqtt",
                id="plain_amqtt",
                marks=[pytest.mark.plain_amqtt, pytest.mark.xfail(strict=True, reason=reason)],
            ),
        ],
        indirect=True,
    )


class RawClient:
    """MQTT bytes over a plain socket: for malformed packets and exact flows."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.buffer = b""
        self.packets: list[Packet] = []

    @classmethod
    async def open(cls, port: int) -> RawClient:
        reader, writer = await asyncio.open_connection(HOST, port)
        return cls(reader, writer)

    @classmethod
    async def open_from(cls, port: int, source: str) -> RawClient:
        """Connect from local address `source` (any 127.x.y.z): another client address for the broker."""
        reader, writer = await asyncio.open_connection(HOST, port, local_addr=(source, 0))
        return cls(reader, writer)

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def connect(self, client_id: str, **fields: Any) -> Connack:
        self.send(encode_connect(Connect(client_id, **fields)))
        packet = await self.recv()
        assert isinstance(packet, Connack), packet
        return packet

    async def recv(self, within: float = WAIT_S) -> Packet:
        deadline = time.monotonic() + within
        while not self.packets:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no packet")
            data = await asyncio.wait_for(self.reader.read(65536), remaining)
            if not data:
                raise ConnectionError("closed by broker")
            packets, used = decode(self.buffer + data)
            self.buffer = (self.buffer + data)[used:]
            self.packets.extend(packets)
        return self.packets.pop(0)

    async def closed_by_peer(self, within: float = WAIT_S) -> bool:
        """True if the broker closes the connection within `within` s (packets are discarded)."""
        deadline = time.monotonic() + within
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                data = await asyncio.wait_for(self.reader.read(65536), remaining)
                if not data:
                    return True
        except TimeoutError:
            return False
        except (ConnectionError, ProtocolError):
            return True

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(TimeoutError, ConnectionError):
            await asyncio.wait_for(self.writer.wait_closed(), 1.0)
