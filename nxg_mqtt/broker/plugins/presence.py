"""Presence of MQTT devices: online at CONNECT, offline when the session ends (any reason but a
takeover), and command readiness when the device subscribes to its command topic."""

from __future__ import annotations

from nxg_mqtt.broker.plugins.base import NxgPlugin
from nxg_mqtt.broker.session import BrokerSession
from nxg_mqtt.protocol import CloseReason, Role
from nxg_mqtt.topics import Channel, device_topic


class PresencePlugin(NxgPlugin):
    async def on_broker_client_connected(self, *, client_id: str, client_session: BrokerSession) -> None:
        if client_session.role == Role.DEVICE and client_session.serial:
            await self.core.presence.connected(client_session.serial, "mqtt", client_session.remote_address)

    async def on_broker_client_disconnected(self, *, client_id: str, client_session: BrokerSession) -> None:
        if client_session.role == Role.DEVICE and client_session.serial:
            await self.core.presence.disconnected(
                client_session.serial, client_session.disconnect_reason or CloseReason.DISCONNECTED, "mqtt"
            )

    async def on_broker_client_subscribed(self, *, client_id: str, topic: str, qos: int) -> None:
        session = self.broker.session(client_id)
        if (
            session is not None
            and session.role == Role.DEVICE
            and topic == device_topic(session.serial or "", Channel.CMD)
        ):
            await self.core.presence.subscribed_commands(session.serial or "")

    async def on_broker_client_unsubscribed(self, *, client_id: str, topic: str) -> None:
        session = self.broker.session(client_id)
        if (
            session is not None
            and session.role == Role.DEVICE
            and topic == device_topic(session.serial or "", Channel.CMD)
        ):
            self.core.presence.unsubscribed_commands(session.serial or "")
