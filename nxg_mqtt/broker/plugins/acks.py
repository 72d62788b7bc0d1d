"""Command acknowledgements on `nxg/{S}/ack` close the command they name; stamped once, like
ingest's messages, so apps, history and subscribers carry one `ts`."""

from __future__ import annotations

from nxg_mqtt.broker.message import IncomingMessage
from nxg_mqtt.broker.plugins.base import NxgPlugin
from nxg_mqtt.broker.session import BrokerSession
from nxg_mqtt.errors import PayloadRejected
from nxg_mqtt.models import history_ts
from nxg_mqtt.protocol import Role, stamp
from nxg_mqtt.topics import Channel, parse_device_topic


class AckPlugin(NxgPlugin):
    async def validate_message(self, *, session: BrokerSession, message: IncomingMessage) -> bool | None:
        if session.role not in (Role.DEVICE, Role.BRIDGE):
            return None
        parsed = parse_device_topic(message.topic)
        if parsed is None or parsed.channel is not Channel.ACK:
            return None
        ts = history_ts(parsed.serial)
        try:
            await self.core.commands.on_ack(parsed.serial, message.data, ts)
        except PayloadRejected:
            return False
        message.data = stamp(message.data, ts)  # the engine routes it with the one ts
        return True
