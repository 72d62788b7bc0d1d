"""Device properties over MQTT (PROTOCOL §2, `schemas/prop_set.json`, `prop_res.json`, `prop.json`).

A device reports with `nxg/{S}/prop/set` `{"id","name","value","expectedVersion"?}`: the same
compare-and-swap as seed 003's `devices_SetProperty`, answered on `nxg/{S}/prop/res` (the core's
`PropertyService.device_report`). The request is consumed here, never routed on.

When the device subscribes to `nxg/{S}/prop` the snapshot is published again (retained): the
embedded broker keeps retained messages in memory only, so after a restart this is what restores
it. The device may therefore get the snapshot twice; `props` replaces, so that is harmless.
"""

from __future__ import annotations

from nxg_mqtt.broker.message import IncomingMessage
from nxg_mqtt.broker.plugins.base import NxgPlugin
from nxg_mqtt.broker.session import BrokerSession
from nxg_mqtt.protocol import Role
from nxg_mqtt.topics import Channel, device_topic, parse_device_topic


class PropertyPlugin(NxgPlugin):
    async def validate_message(self, *, session: BrokerSession, message: IncomingMessage) -> bool | None:
        parsed = parse_device_topic(message.topic)
        if parsed is None or parsed.channel is not Channel.PROP_SET:
            return None
        if session.role == Role.DEVICE and session.serial == parsed.serial:  # the ACL allows no one else
            await self.core.properties.device_report(parsed.serial, message.data)
        return False

    async def on_broker_client_subscribed(self, *, client_id: str, topic: str, qos: int) -> None:
        session = self.broker.session(client_id)
        if session is None or session.role != Role.DEVICE or not session.serial:
            return
        if topic == device_topic(session.serial, Channel.PROP):
            await self.core.properties.publish(session.serial)
