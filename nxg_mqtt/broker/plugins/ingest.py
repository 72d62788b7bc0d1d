"""Telemetry, status and events from devices (and from the bridge on behalf of WebSocket
devices) validated, stamped and stored; a bad payload is dropped and recorded as a Warning event.

The one `ts` (PROTOCOL §6): the message is stamped here, once, at receipt; the history entry
holds that ts, and the engine routes the payload with it appended as `server_ts` (`protocol.stamp`,
handed back in `message.data`), so the bridge and every other subscriber carry the same value.

A stored QoS 1/2 message gets `message.durable`, the future of the history batch holding it: the
connection sends its PUBACK/PUBREC once that batch has committed (group commit), never before.
A clean shutdown commits the batch before the connections close, so their acknowledgements go out.
"""

from __future__ import annotations

import asyncio

from nxg_mqtt.broker.message import IncomingMessage
from nxg_mqtt.broker.plugins.base import NxgPlugin
from nxg_mqtt.broker.session import BrokerSession
from nxg_mqtt.errors import NxgError, PayloadRejected
from nxg_mqtt.protocol import DEVICE_DATA, Role, stamp
from nxg_mqtt.topics import Channel, parse_device_topic


class IngestPlugin(NxgPlugin):
    async def validate_message(self, *, session: BrokerSession, message: IncomingMessage) -> bool | None:
        if self.broker.by_channel_in is not None:  # every PUBLISH past the ACL and pairing: GET /metrics
            self.broker.by_channel_in.add(message.topic)
        if session.role not in (Role.DEVICE, Role.BRIDGE):
            return None
        parsed = parse_device_topic(message.topic)
        if parsed is None:
            return None
        if parsed.channel in DEVICE_DATA:
            ingest = self.core.ingest
            try:
                entry = ingest.accept(parsed.serial, parsed.channel, message.data)
            except PayloadRejected:
                return False
            message.data = stamp(message.data, entry.ts)
            if message.qos:
                message.durable = ingest.committed()
            return True
        if parsed.channel is Channel.MANIFEST:
            if not message.data:
                return True  # clearing a retained manifest
            try:
                # validated (a bad one: Warning event), stored as a new version when it changed
                await self.core.manifests.from_device(parsed.serial, message.data)
            except NxgError:
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
