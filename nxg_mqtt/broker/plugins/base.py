"""What every NXG plugin shares: amqtt's `BasePlugin` plus the core and the broker."""

from __future__ import annotations

from typing import TYPE_CHECKING

from amqtt.plugins.base import BasePlugin

from nxg_mqtt.core import Core
from nxg_mqtt.protocol import Role

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
