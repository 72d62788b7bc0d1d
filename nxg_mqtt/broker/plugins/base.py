"""What every NXG plugin shares: amqtt's `BasePlugin` plus the core and the broker.

The hooks the NXG plugins implement, with amqtt's names and keyword arguments, typed as the
engine calls them (amqtt's `plugins/base.py` documents the same contract for its `Session`):

- `authenticate(*, session: BrokerSession) -> bool | None`: True accepts, False refuses (0x05),
  None has no opinion; raising `ConnectRefused` refuses with its return code. An accepting plugin
  sets `session.principal` (the role from `nxg_mqtt.protocol.Role`, and the identity).
- `topic_filtering(*, session: BrokerSession | None, topic: str | None, action: Action | None)
  -> bool | None`: False denies; None has no opinion.
- `validate_message(*, session: BrokerSession, message: IncomingMessage) -> bool | None`: False
  drops the message (still acknowledged); True or None lets it through.
- `on_broker_client_connected` / `on_broker_client_disconnected(*, client_id: str,
  client_session: BrokerSession) -> None`, and the other `on_broker_*` events.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amqtt.plugins.base import BasePlugin

from nxg_mqtt.core import Core

if TYPE_CHECKING:
    from nxg_mqtt.broker.server import BrokerContext, NxgBroker


class NxgPlugin(BasePlugin):  # type: ignore[misc]  # amqtt is untyped here
    def __init__(self, context: BrokerContext, core: Core) -> None:
        super().__init__(context)
        self.core = core
        self.broker: NxgBroker = context.broker
        self.settings = core.settings
