"""Test clients: paho-mqtt driven from asyncio, and a raw-socket client for exact packet control.

paho runs its network loop in its own thread; the async helpers poll its recorded state with
short sleeps, always with a deadline, so a missing message fails the test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from nxg_mqtt.broker.server import NxgBroker
from nxg_mqtt.mqtt.codec import (
    Connack,
    Connect,
    Packet,
    ProtocolError,
    decode,
    encode_connect,
)
from nxg_mqtt.settings import Settings

HOST = "127.0.0.1"
WAIT_S = 3.0

BASE_SETTINGS = Settings(
    host="127.0.0.1",
    mqtt_port=0,
    ws_port=None,
    allow_anonymous=True,
    connect_timeout_s=2.0,
)


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


async def wait_for(condition: Callable[[], bool], within: float = WAIT_S) -> bool:
    """Poll `condition` until true or `within` seconds passed; its final value."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return condition()
        await asyncio.sleep(0.01)
    return True


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    qos: int
    retain: bool


# paho 2 reports MQTT 3.1.1 CONNACK codes as MQTT 5 reason codes; the tests speak 3.1.1
_V311_CODES = {0: 0, 132: 1, 133: 2, 136: 3, 134: 4, 135: 5}


class PahoClient:
    """One paho client; `messages` collects everything received."""

    def __init__(self, client_id: str, *, clean_session: bool = True, transport: str = "tcp") -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session,
            transport=transport,  # type: ignore[arg-type]
        )
        self.messages: list[Received] = []
        self.connack: tuple[int, bool] | None = None
        self.subacks: dict[int, list[int]] = {}
        self.disconnected = threading.Event()
        self._lock = threading.Lock()
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self.connack = (_V311_CODES.get(int(reason.value), -1), bool(flags.session_present))

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with self._lock:
            self.messages.append(Received(message.topic, bytes(message.payload), message.qos, message.retain))

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, codes: Any, properties: Any) -> None:
        self.subacks[mid] = [int(code.value) for code in codes]

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self.client._thread_terminate = True  # paho would reconnect and take the session back
        self.disconnected.set()

    async def connect(
        self,
        port: int,
        *,
        keepalive: int = 60,
        will: tuple[str, bytes, int, bool] | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> tuple[int, bool]:
        """Connect and wait for CONNACK: (return code, session present)."""
        if will is not None:
            topic, payload, qos, retain = will
            self.client.will_set(topic, payload, qos, retain)
        if username is not None:
            self.client.username_pw_set(username, password)
        await asyncio.to_thread(self.client.connect, HOST, port, keepalive)  # blocking (WS handshake)
        self.client.loop_start()
        assert await wait_for(lambda: self.connack is not None or self.disconnected.is_set())
        assert self.connack is not None, "no CONNACK"
        return self.connack

    async def subscribe(self, topic_filter: str, qos: int = 0) -> int:
        result, mid = self.client.subscribe(topic_filter, qos)
        assert result == mqtt.MQTT_ERR_SUCCESS
        assert mid is not None
        assert await wait_for(lambda: mid in self.subacks), f"no SUBACK for {topic_filter}"
        return self.subacks[mid][0]

    async def unsubscribe(self, topic_filter: str) -> None:
        done = threading.Event()
        self.client.on_unsubscribe = lambda *args: done.set()
        self.client.unsubscribe(topic_filter)
        assert await wait_for(done.is_set)

    async def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos, retain)
        assert await wait_for(info.is_published), f"publish to {topic} not acknowledged"

    async def wait_messages(self, count: int, within: float = WAIT_S) -> list[Received]:
        await wait_for(lambda: len(self.messages) >= count, within)
        return list(self.messages)

    async def quiet(self, seconds: float = 0.3) -> list[Received]:
        """Wait `seconds` and return what arrived: for asserting that nothing (more) comes."""
        await asyncio.sleep(seconds)
        return list(self.messages)

    async def disconnect(self) -> None:
        """A clean DISCONNECT (no will)."""
        self.client.disconnect()
        await wait_for(self.disconnected.is_set)
        await asyncio.to_thread(self.client.loop_stop)

    async def drop(self) -> None:
        """Close the socket without DISCONNECT (an abnormal close: the will is published)."""
        self.client._thread_terminate = True  # no automatic reconnect from paho's loop
        sock = self.client.socket()
        if sock is not None:
            sock.close()
        await asyncio.to_thread(self.client.loop_stop)

    async def close(self) -> None:
        """Teardown, whatever state the client is in; never blocks the event loop."""
        if not self.disconnected.is_set():
            self.client.disconnect()
        await asyncio.to_thread(self.client.loop_stop)


async def close_all(*clients: PahoClient) -> None:
    await asyncio.gather(*(client.close() for client in clients))


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
