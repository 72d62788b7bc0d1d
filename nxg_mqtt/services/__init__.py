"""Core services: plain async Python that knows nothing of amqtt or Starlette."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class Publisher(Protocol):
    """Where the core publishes server messages (presence, commands, pairing replies).

    The embedded broker (`NxgBroker.publish`) and the bridge's MQTT link both fit.
    """

    async def publish(self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False) -> int: ...


class NullPublisher:
    """Used by processes without a broker (the CLI): changes reach servers through signals."""

    async def publish(self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False) -> int:
        return 0


class Outbox:
    """The core's one Publisher, given to every service when the core is built.

    Where its messages go is the transport's business: the embedded broker, or a bridge's MQTT
    link against a separate broker, connects itself for as long as it runs (`connect` returns
    the disconnect). With nothing connected (the CLI, or between a broker's stop and start)
    messages go nowhere, and other processes learn of changes through signals.
    """

    def __init__(self) -> None:
        self._target: Publisher = NullPublisher()

    def connect(self, target: Publisher) -> Callable[[], None]:
        self._target = target

        def disconnect() -> None:
            if self._target is target:
                self._target = NullPublisher()

        return disconnect

    async def publish(self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False) -> int:
        return await self._target.publish(topic, payload, qos=qos, retain=retain)
