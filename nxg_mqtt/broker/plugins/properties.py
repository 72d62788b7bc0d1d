"""Device properties over MQTT (PROTOCOL §2, `schemas/prop_set.json`, `prop_res.json`, `prop.json`).

A device reports with `nxg/{S}/prop/set` `{"id","name","value","expectedVersion"?}`: the same
compare-and-swap as seed 003's `devices_SetProperty` (the core's `PropertyService`), except that a
protected property is `Refused`. The answer goes to `nxg/{S}/prop/res`
`{"id","result","version"?,"error"?}`: `version` is the new one after `Set`, the current one after
`VersionConflict`. A request that is not valid JSON or breaks the schema is `Refused` with the
reason (its `id` echoed when there is one). The request is consumed here, never routed on.

When the device subscribes to `nxg/{S}/prop` the snapshot is published again (retained): the
embedded broker keeps retained messages in memory only, so after a restart this is what restores
it. The device may therefore get the snapshot twice; `props` replaces, so that is harmless.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from nxg_mqtt import messages
from nxg_mqtt.broker.message import IncomingMessage
from nxg_mqtt.broker.plugins.base import NxgPlugin
from nxg_mqtt.broker.session import BrokerSession
from nxg_mqtt.errors import NxgError
from nxg_mqtt.protocol import Role, Schema
from nxg_mqtt.services.properties import SetResult
from nxg_mqtt.topics import Channel, device_topic, parse_device_topic

log = logging.getLogger(__name__)


class PropertyPlugin(NxgPlugin):
    async def validate_message(self, *, session: BrokerSession, message: IncomingMessage) -> bool | None:
        parsed = parse_device_topic(message.topic)
        if parsed is None or parsed.channel is not Channel.PROP_SET:
            return None
        if session.role != Role.DEVICE or session.serial != parsed.serial:
            return False  # the ACL lets only the device itself publish here
        request_id: Any = None
        reply: dict[str, Any]
        try:
            request = messages.decode_object(message.data, self.settings.max_payload_bytes)
            request_id = request.get("id")
            problem = messages.schema_errors(Schema.PROP_SET, request)
            if problem is not None:
                raise messages.reject("schema", f"prop/set does not match its schema: {problem}")
            outcome = await self.core.properties.set(
                parsed.serial,
                request["name"],
                request["value"],
                expected=request.get("expectedVersion"),
                by_device=True,
            )
            reply = {"id": request_id, "result": outcome.result.value}
            if outcome.version is not None:
                reply["version"] = outcome.version
            if outcome.error is not None:
                reply["error"] = outcome.error
        except NxgError as exc:
            reply = {"id": request_id, "result": SetResult.REFUSED.value, "error": exc.message}
        await self.broker.publish(device_topic(parsed.serial, Channel.PROP_RES), json.dumps(reply).encode(), qos=1)
        return False

    async def on_broker_client_subscribed(self, *, client_id: str, topic: str, qos: int) -> None:
        session = self.broker.session(client_id)
        if session is None or session.role != Role.DEVICE or not session.serial:
            return
        if topic == device_topic(session.serial, Channel.PROP):
            await self.core.properties.publish(session.serial)
