"""Command requests on `nxg/{S}/cmd/req` as an amqtt validator: the broker-neutral
`nxg_mqtt.services.command_requests.handle_command_request` (also called by the MQTT worker behind
Mosquitto/EMQX), with the requesting key named in the audit log. The request itself is consumed
here (never routed on: nobody else subscribes to it).
"""

from __future__ import annotations

from nxg_mqtt.broker.message import IncomingMessage
from nxg_mqtt.broker.plugins.base import NxgPlugin
from nxg_mqtt.broker.session import BrokerSession
from nxg_mqtt.protocol import Role
from nxg_mqtt.services.command_requests import handle_command_request
from nxg_mqtt.topics import Channel, parse_device_topic

# who may send command requests: the ACL has already decided which devices a key may write
REQUESTERS = frozenset({Role.BRIDGE, Role.KEY})


def _actor(session: BrokerSession) -> str:
    """How the audit log names the requester: the key, or the bridge on an integrator's behalf."""
    return f"key:{session.api_key.id}" if session.api_key is not None else str(session.role)


class CommandRequestPlugin(NxgPlugin):
    async def validate_message(self, *, session: BrokerSession, message: IncomingMessage) -> bool | None:
        parsed = parse_device_topic(message.topic)
        if parsed is None or parsed.channel is not Channel.CMD_REQ:
            return None
        if session.role not in REQUESTERS:
            return False
        await handle_command_request(
            self.core.commands,
            self.broker,
            self.settings.max_payload_bytes,
            parsed.serial,
            message.data,
            _actor(session),
        )
        return False
