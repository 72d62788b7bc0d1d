"""Integrators command over MQTT (PROTOCOL §2): a key with `write:devices` publishes a request on
`nxg/{S}/cmd/req` (the ACL has checked the key may write S), and the core's command path takes it.

    nxg/{S}/cmd/req  {"action","target"?,"params"?,"ref"?}
    nxg/{S}/cmd/res  the lifecycle the command service publishes (`queued`, `dispatched`, `acked`, …),
                     or {"id":null,"ref"?,"status":"rejected","code","error"} when it was refused

The request is validated, stored and dispatched (or queued) exactly as `/ws/app` and REST do it,
and audited under the key (`key:<id>`).
"""

from __future__ import annotations

import json
from typing import Any

from nxg_mqtt import messages
from nxg_mqtt.broker.message import IncomingMessage
from nxg_mqtt.broker.plugins.base import NxgPlugin
from nxg_mqtt.broker.session import BrokerSession
from nxg_mqtt.errors import NxgError
from nxg_mqtt.protocol import Role
from nxg_mqtt.topics import Channel, device_topic, parse_device_topic


class CommandRequestPlugin(NxgPlugin):
    async def validate_message(self, *, session: BrokerSession, message: IncomingMessage) -> bool | None:
        if session.role != Role.KEY or session.api_key is None:
            return None
        parsed = parse_device_topic(message.topic)
        if parsed is None or parsed.channel is not Channel.CMD_REQ:
            return None
        ref: Any = None
        try:
            value = messages.decode_object(message.data, self.settings.max_payload_bytes)
            ref = value.get("ref")
            await self.core.commands.submit(
                parsed.serial,
                value.get("action"),  # type: ignore[arg-type]  # validated by submit
                value.get("target"),
                value.get("params"),
                ref=None if ref is None else str(ref),
                source="mqtt",
                actor=f"key:{session.api_key.id}",
            )
        except NxgError as exc:
            result: dict[str, Any] = {"id": None, "status": "rejected", "code": exc.code, "error": exc.message}
            if ref is not None:
                result["ref"] = ref
            await self.broker.publish(device_topic(parsed.serial, Channel.CMD_RES), json.dumps(result).encode(), qos=1)
        return True
