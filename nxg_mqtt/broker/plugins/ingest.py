"""Telemetry, status and events from devices (and from the bridge on behalf of WebSocket
devices) validated, stamped and stored; a bad payload is dropped and recorded as a Warning event.

The one `ts` (PROTOCOL §6): the message is stamped here, once, at receipt; the history entry
holds that ts, and the message is routed on with it appended as `server_ts` (`protocol.stamp`),
so the bridge and every other subscriber carry the same value.
"""

from __future__ import annotations

from typing import Any

from nxg_mqtt import messages
from nxg_mqtt.broker.plugins.base import NxgPlugin
from nxg_mqtt.errors import PayloadRejected
from nxg_mqtt.protocol import DEVICE_DATA, Role, Schema
from nxg_mqtt.topics import Channel, parse_device_topic


class IngestPlugin(NxgPlugin):
    async def validate_message(self, *, session: Any, message: Any) -> bool | None:
        if session.role not in (Role.DEVICE, Role.BRIDGE):
            return None
        parsed = parse_device_topic(message.topic)
        if parsed is None:
            return None
        if parsed.channel in DEVICE_DATA:
            try:
                entry = self.core.ingest.accept(parsed.serial, parsed.channel, message.data)
            except PayloadRejected:
                return False
            await self.route_stamped(session, message, entry.ts)
            return False  # routed above, stamped
        if parsed.channel is Channel.MANIFEST:
            if not message.data:
                return True  # clearing a retained manifest
            limit = self.settings.max_manifest_bytes
            try:
                self.core.ingest.validated(
                    parsed.serial,
                    parsed.channel,
                    lambda: messages.validate(Schema.MANIFEST, messages.decode_object(message.data, limit)),
                )
            except PayloadRejected:
                return False
            return True
        return None
