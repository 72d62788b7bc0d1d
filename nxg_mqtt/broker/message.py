"""Application messages as the engine and its plugins see them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """A PUBLISH as received; handed to plugin hooks as `message=` (amqtt's attribute names)."""

    topic: str
    data: bytes
    qos: int = 0
    retain: bool = False


@dataclass(slots=True)
class OutgoingMessage:
    """A message on its way to one session: queued, or in flight awaiting acknowledgement."""

    topic: str
    data: bytes
    qos: int
    retain: bool = False
    topic_bytes: bytes | None = None  # the encoded topic, shared between subscribers
    packet: bytes | None = None  # the whole QoS 0 PUBLISH, shared between subscribers
