"""Answers of the HTTP proxy (PROTOCOL §2): a device's `nxg/{S}/http/res` handed to the core's
`ProxyService`, which matches it by `id` to the request waiting for it. Consumed here, never
routed on (a response may carry a session cookie: nobody else reads it)."""

from __future__ import annotations

from nxg_mqtt.broker.message import IncomingMessage
from nxg_mqtt.broker.plugins.base import NxgPlugin
from nxg_mqtt.broker.session import BrokerSession
from nxg_mqtt.protocol import Role
from nxg_mqtt.topics import Channel, parse_device_topic


class HttpProxyPlugin(NxgPlugin):
    async def validate_message(self, *, session: BrokerSession, message: IncomingMessage) -> bool | None:
        parsed = parse_device_topic(message.topic)
        if parsed is None or parsed.channel is not Channel.HTTP_RES:
            return None
        if session.role == Role.DEVICE and session.serial == parsed.serial:
            self.core.proxy.answer(parsed.serial, message.data)
        return False
