"""The suite's one paho-mqtt client for async tests: real sockets, every wait bounded.

paho runs its network loop in its own thread; results are handed over through queues (for
`next_message`) and recorded in plain lists (for `received`, `wait_messages`, `quiet`), so a missing
message fails the test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

HOST = "127.0.0.1"
WAIT_S = 5.0
# paho 2 reports MQTT 3.1.1 CONNACK codes as MQTT 5 reason codes; tests speak 3.1.1
_CONNACK_311 = {0: 0, 132: 1, 133: 2, 136: 3, 134: 4, 135: 5}


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    qos: int
    retain: bool


async def wait_for(condition: Callable[[], bool], within: float = WAIT_S) -> bool:
    """Poll `condition` until true or `within` seconds passed; its final value."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return condition()
        await asyncio.sleep(0.01)
    return True


class TestClient:
    """One paho client (MQTT 3.1.1) on its own network thread.

    Every message received is both queued in `messages` (consumed by `next_message`, `no_message`,
    `drain`) and appended to `received` (never consumed: `wait_messages`, `quiet`).
    """

    __test__ = False  # not a pytest class

    def __init__(
        self,
        client_id: str,
        *,
        clean_session: bool = True,
        transport: Literal["tcp", "websockets"] = "tcp",
        tls_ca: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
    ) -> None:
        """`tls_ca`: connect over TLS (MQTT/TLS or wss://), verifying the server with this CA file;
        `tls_cert`/`tls_key`: present this client certificate (a device certificate, seed 003)."""
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session,
            protocol=mqtt.MQTTv311,
            transport=transport,
        )
        if tls_ca is not None:
            self.client.tls_set(ca_certs=tls_ca, certfile=tls_cert, keyfile=tls_key)
        self.messages: queue.Queue[Received] = queue.Queue()
        self.received: list[Received] = []
        self.session_present: bool | None = None  # from the last CONNACK
        self.subacks: dict[int, list[int]] = {}  # SUBACK codes by packet id
        self._connack: queue.Queue[int] = queue.Queue()
        self._subacks: dict[int, queue.Queue[list[int]]] = {}
        self._lock = threading.Lock()
        self.disconnected = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        code = reason.value if hasattr(reason, "value") else int(reason)
        self.session_present = bool(flags.session_present)
        self._connack.put(_CONNACK_311.get(code, code))

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        message = Received(msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain))
        with self._lock:
            self.received.append(message)
        self.messages.put(message)

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        codes = [r.value if hasattr(r, "value") else int(r) for r in reasons]
        with self._lock:
            self.subacks[mid] = codes
            box = self._subacks.setdefault(mid, queue.Queue())
        box.put(codes)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.client._thread_terminate = True  # paho would reconnect and take the session back
        self.disconnected.set()

    async def connect(
        self,
        port: int,
        username: str | None = None,
        password: str | None = None,
        keepalive: int = 30,
        *,
        will: tuple[str, bytes, int, bool] | None = None,
        source: str = "",
    ) -> int:
        """The CONNACK return code (0 = accepted; 4 bad credentials; 5 not authorized).

        `session_present` holds the CONNACK's flag; `will` is (topic, payload, qos, retain);
        `source`: the local address to connect from (e.g. `127.0.0.2`, another client address).
        """
        if will is not None:
            topic, payload, qos, retain = will
            self.client.will_set(topic, payload, qos, retain)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.reconnect_delay_set(60, 120)  # never reconnect on its own during a test
        self.disconnected.clear()
        await asyncio.to_thread(self.client.connect, HOST, port, keepalive, source)  # blocking (WS handshake)
        self.client.loop_start()
        code = await asyncio.to_thread(self._connack.get, True, WAIT_S)
        if code != 0:
            self.client.loop_stop()
        return code

    async def subscribe(self, topic: str, qos: int = 1) -> list[int]:
        """The SUBACK's return codes (the granted QoS, or 0x80 refused)."""
        result, mid = self.client.subscribe(topic, qos)
        assert result == mqtt.MQTT_ERR_SUCCESS
        assert mid is not None
        with self._lock:
            box = self._subacks.setdefault(mid, queue.Queue())
        return await asyncio.to_thread(box.get, True, WAIT_S)

    async def unsubscribe(self, topic: str) -> None:
        done = threading.Event()
        self.client.on_unsubscribe = lambda *args: done.set()
        self.client.unsubscribe(topic)
        assert await wait_for(done.is_set), f"no UNSUBACK for {topic}"

    async def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> None:
        """Returns once acknowledged (QoS 1/2) or written to the socket (QoS 0)."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if qos:
            await asyncio.to_thread(info.wait_for_publish, WAIT_S)
        else:
            await wait_for(info.is_published)
        assert info.is_published(), f"publish to {topic} not acknowledged"

    def publish_nowait(self, topic: str, payload: bytes | str, qos: int = 1) -> mqtt.MQTTMessageInfo:
        """Hand a message to paho and go on; `is_published()` on the result turns true at its PUBACK."""
        return self.client.publish(topic, payload, qos=qos)

    async def next_message(self, timeout: float = WAIT_S) -> Received:
        return await asyncio.to_thread(self.messages.get, True, timeout)

    async def next_json(self, topic: str) -> dict[str, Any]:
        """The JSON object of the next message on `topic` (messages on other topics are skipped)."""
        while True:
            message = await self.next_message()
            if message.topic == topic:
                value = json.loads(message.payload)
                assert isinstance(value, dict)
                return value

    async def no_message(self, within: float = 0.5) -> bool:
        try:
            await asyncio.to_thread(self.messages.get, True, within)
        except queue.Empty:
            return True
        return False

    async def drain(self, quiet: float = 0.3) -> list[Received]:
        """Everything that arrives until `quiet` seconds pass with nothing (retained messages, say)."""
        drained: list[Received] = []
        while True:
            try:
                drained.append(await asyncio.to_thread(self.messages.get, True, quiet))
            except queue.Empty:
                return drained

    async def wait_messages(self, count: int, within: float = WAIT_S) -> list[Received]:
        """Everything received so far, once there are `count` messages (or `within` s passed)."""
        await wait_for(lambda: len(self.received) >= count, within)
        return list(self.received)

    async def quiet(self, seconds: float = 0.3) -> list[Received]:
        """Wait `seconds` and return everything received: for asserting that nothing (more) comes."""
        await asyncio.sleep(seconds)
        return list(self.received)

    async def wait_disconnected(self, timeout: float = WAIT_S) -> bool:
        return await asyncio.to_thread(self.disconnected.wait, timeout)

    async def disconnect(self) -> None:
        """A clean DISCONNECT (no will), waiting until paho has seen the connection close."""
        self.client.disconnect()
        await wait_for(self.disconnected.is_set)
        await asyncio.to_thread(self.client.loop_stop)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def drop(self) -> None:
        """Vanish without DISCONNECT (an unplugged device: the will is published)."""
        self.client.loop_stop()
        sock = self.client.socket()
        if sock is not None:
            sock.close()


async def pair_over_mqtt(port: int, code: str, client_id: str, request: str = "{}") -> dict[str, Any]:
    """Pair exactly as firmware does (PROTOCOL §2): log in as `pair` with the connection code,
    ask on `nxg/pair/<client id>/req`, read the reply; returns the reply object."""
    pairing = TestClient(client_id)
    try:
        assert await pairing.connect(port, "pair", code) == 0
        assert await pairing.subscribe(f"nxg/pair/{client_id}") == [1]
        await pairing.publish(f"nxg/pair/{client_id}/req", request)
        reply = await pairing.next_message()
    finally:
        pairing.close()
    assert reply.topic == f"nxg/pair/{client_id}"
    value = json.loads(reply.payload)
    assert isinstance(value, dict)
    return value


class Clients:
    """Makes `TestClient`s and closes them all at once (the `paho` fixture)."""

    def __init__(self) -> None:
        self.made: list[TestClient] = []

    def __call__(
        self, client_id: str, *, clean_session: bool = True, transport: Literal["tcp", "websockets"] = "tcp"
    ) -> TestClient:
        client = TestClient(client_id, clean_session=clean_session, transport=transport)
        self.made.append(client)
        return client

    async def close_all(self) -> None:
        # paho's network thread notices a stop only once a second: stop them all at once, off the loop
        await asyncio.gather(*(asyncio.to_thread(client.close) for client in self.made))
