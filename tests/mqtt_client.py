"""A paho-mqtt client for async tests: real sockets, every wait bounded."""

from __future__ import annotations

import asyncio
import queue
import threading
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

WAIT_S = 5.0
# paho 2 reports MQTT 3.1.1 CONNACK codes as MQTT 5 reason codes; tests speak 3.1.1
_CONNACK_311 = {0: 0, 132: 1, 133: 2, 136: 3, 134: 4, 135: 5}


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    qos: int
    retain: bool


class TestClient:
    """One paho client on its own network thread; results are handed over through queues."""

    __test__ = False  # not a pytest class

    def __init__(self, client_id: str, *, clean_session: bool = True) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session,
            protocol=mqtt.MQTTv311,
        )
        self.messages: queue.Queue[Received] = queue.Queue()
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
        self._connack.put(_CONNACK_311.get(code, code))

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        self.messages.put(Received(msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain)))

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        with self._lock:
            box = self._subacks.setdefault(mid, queue.Queue())
        box.put([r.value if hasattr(r, "value") else int(r) for r in reasons])

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.disconnected.set()

    async def connect(
        self, port: int, username: str | None = None, password: str | None = None, keepalive: int = 30
    ) -> int:
        """The CONNACK return code (0 = accepted; 4 bad credentials; 5 not authorized)."""
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.reconnect_delay_set(60, 120)  # never reconnect on its own during a test
        self.disconnected.clear()
        await asyncio.to_thread(self.client.connect, "127.0.0.1", port, keepalive)
        self.client.loop_start()
        code = await asyncio.to_thread(self._connack.get, True, WAIT_S)
        if code != 0:
            self.client.loop_stop()
        return code

    async def subscribe(self, topic: str, qos: int = 1) -> list[int]:
        result, mid = self.client.subscribe(topic, qos)
        assert result == mqtt.MQTT_ERR_SUCCESS
        assert mid is not None
        with self._lock:
            box = self._subacks.setdefault(mid, queue.Queue())
        return await asyncio.to_thread(box.get, True, WAIT_S)

    async def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if qos:
            await asyncio.to_thread(info.wait_for_publish, WAIT_S)
            assert info.is_published(), f"no PUBACK for {topic}"

    async def next_message(self, timeout: float = WAIT_S) -> Received:
        return await asyncio.to_thread(self.messages.get, True, timeout)

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

    async def wait_disconnected(self, timeout: float = WAIT_S) -> bool:
        return await asyncio.to_thread(self.disconnected.wait, timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def drop(self) -> None:
        """Vanish without DISCONNECT (an unplugged device)."""
        self.client.loop_stop()
        sock = self.client.socket()
        if sock is not None:
            sock.close()
