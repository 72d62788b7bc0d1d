"""Core services: plain async Python that knows nothing of amqtt or Starlette."""

from __future__ import annotations

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
