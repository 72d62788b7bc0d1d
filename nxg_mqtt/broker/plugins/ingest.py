"""Telemetry, status and events from devices (and from the bridge on behalf of WebSocket
devices) validated and stored; a bad payload is dropped and recorded as a Warning event.

A stored QoS 1/2 message gets `message.durable`, the future of the history batch holding it: the
connection sends its PUBACK/PUBREC once that batch has committed (group commit), never before.
A clean shutdown commits the batch before the connections close, so their acknowledgements go out.
"""

from __future__ import annotations

import asyncio
from typing import Any

from nxg_mqtt import messages
from nxg_mqtt.broker.plugins.base import ROLE_BRIDGE, ROLE_DEVICE, NxgPlugin
from nxg_mqtt.errors import PayloadRejected
from nxg_mqtt.topics import Channel, parse_device_topic

_STORED = frozenset({Channel.TELEMETRY, Channel.STATUS, Channel.EVENT})


class IngestPlugin(NxgPlugin):
    async def validate_message(self, *, session: Any, message: Any) -> bool | None:
        if session.role not in (ROLE_DEVICE, ROLE_BRIDGE):
            return None
        parsed = parse_device_topic(message.topic)
        if parsed is None:
            return None
        if parsed.channel in _STORED:
            ingest = self.core.ingest
            try:
                ingest.accept(parsed.serial, parsed.channel, message.data)
            except PayloadRejected:
                return False
            if message.qos:
                message.durable = ingest.committed()
            return True
        if parsed.channel is Channel.MANIFEST:
            if not message.data:
                return True  # clearing a retained manifest
            try:
                value = messages.decode_object(message.data, self.settings.max_manifest_bytes)
                messages.validate("manifest", value)
            except PayloadRejected as exc:
                self.core.ingest.reject(parsed.serial, exc, parsed.channel.value)
                return False
            return True
        return None

    async def on_broker_pre_shutdown(self) -> None:
        # commit what is pending while the connections are still open: the acknowledgements
        # waiting for this batch are written (two loop passes: the futures' callbacks, then the
        # transports' corked writes) before the broker aborts the connections
        try:
            await self.core.ingest.flush()
        finally:
            await asyncio.sleep(0)
            await asyncio.sleep(0)
