"""The topic ACL of PROTOCOL §2 as an amqtt `topic_filtering` hook: a thin adapter over the
broker-neutral decision `nxg_mqtt.services.access.topic_allowed`, which the HTTP hooks for
Mosquitto, EMQX and VerneMQ call too (one decision, two adapters)."""

from __future__ import annotations

from amqtt.contexts import Action

from nxg_mqtt.broker.plugins.base import NxgPlugin
from nxg_mqtt.broker.session import BrokerSession
from nxg_mqtt.services.access import KEY_READS, AclAction, key_allows, topic_allowed

__all__ = ["KEY_READS", "AclPlugin", "key_allows"]


class AclPlugin(NxgPlugin):
    async def topic_filtering(
        self, *, session: BrokerSession | None = None, topic: str | None = None, action: Action | None = None
    ) -> bool:
        if session is None or topic is None or action is None:
            return False
        return await topic_allowed(session, topic, AclAction(action.value), self.core.tenants.owner)
