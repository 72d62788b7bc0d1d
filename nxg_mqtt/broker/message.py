"""Application messages as the engine and its plugins see them."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass


@dataclass(slots=True)
class IncomingMessage:
    """A PUBLISH as received; handed to plugin hooks as `message=` (amqtt's attribute names).

    Not frozen, for two fields a validator (`validate_message`) may set: `data`, the payload the
    engine routes on (the ingest plugin appends the server's one `ts`), and `durable`, a future
    resolved once the message is committed — the connection holds the PUBACK/PUBREC until then (a
    QoS 1 acknowledgement is a promise). None = nothing to wait for, acknowledge at once.
    """

    topic: str
    data: bytes
    qos: int = 0
    retain: bool = False
    durable: asyncio.Future[None] | None = None


@dataclass(slots=True)
class OutgoingMessage:
    """A message on its way to one session: queued, or in flight awaiting acknowledgement."""

    topic: str
    data: bytes
    qos: int
    retain: bool = False
    topic_bytes: bytes | None = None  # the encoded topic, shared between subscribers
    packet: bytes | None = None  # the whole QoS 0 PUBLISH, shared between subscribers
