"""Telemetry, status and events from devices (and from the bridge on behalf of WebSocket
devices) validated and stored; a bad payload is dropped and recorded as a Warning event."""

from __future__ import annotations

from nxg_mqtt import messages
from nxg_mqtt.broker.message import IncomingMessage
from nxg_mqtt.broker.plugins.base import NxgPlugin
from nxg_mqtt.broker.session import BrokerSession
from nxg_mqtt.errors import PayloadRejected
from nxg_mqtt.protocol import Role
from nxg_mqtt.topics import Channel, parse_device_topic

_STORED = frozenset({Channel.TELEMETRY, Channel.STATUS, Channel.EVENT})


class IngestPlugin(NxgPlugin):
    async def validate_message(self, *, session: BrokerSession, message: IncomingMessage) -> bool | None:
        if session.role not in (Role.DEVICE, Role.BRIDGE):
            return None
        parsed = parse_device_topic(message.topic)
        if parsed is None:
            return None
        if parsed.channel in _STORED:
            try:
                self.core.ingest.accept(parsed.serial, parsed.channel, message.data)
            except PayloadRejected:
                return False
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
