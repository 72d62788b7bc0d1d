"""What every NXG plugin shares: amqtt's `BasePlugin` plus the core and the broker."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from amqtt.plugins.base import BasePlugin

from nxg_mqtt.core import Core
from nxg_mqtt.protocol import Role, stamp

if TYPE_CHECKING:
    from nxg_mqtt.broker.server import BrokerContext, NxgBroker

# roles a session gets from the auth plugin: the names auth and acl still import (protocol.Role)
ROLE_DEVICE = Role.DEVICE
ROLE_PAIR = Role.PAIR
ROLE_BRIDGE = Role.BRIDGE
ROLE_ANONYMOUS = Role.ANONYMOUS


class NxgPlugin(BasePlugin):  # type: ignore[misc]  # amqtt is untyped here
    def __init__(self, context: BrokerContext, core: Core) -> None:
        super().__init__(context)
        self.core = core
        self.broker: NxgBroker = context.broker
        self.settings = core.settings

    async def route_stamped(self, session: Any, message: Any, ts: int) -> None:
        """Route a validated device message on with the server's receive time appended.

        The plugin then answers `validate_message` with False so the engine does not route the
        unstamped original too (so the engine's `publish_invalid` counts these as well, until the
        engine lets a validator hand back the payload to route).
        The publisher's connection is passed as `pressure`, as the engine does for its own
        routing, so a slow subscriber still slows the publisher down.
        """
        await self.broker.route(
            message.topic, stamp(message.data, ts), message.qos, message.retain, pressure=session.conn
        )
