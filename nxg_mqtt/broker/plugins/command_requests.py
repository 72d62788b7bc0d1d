"""Command requests on `nxg/{S}/cmd/req` (PROTOCOL §2): an integrator's command, validated like
every other path (and audited under the key that sent it), then dispatched on `nxg/{S}/cmd`; its
fate is published on `nxg/{S}/cmd/res` with the request's `ref` echoed. `"dry_run": true`
validates only: `{"id":null,"ref","status":"validated","dry_run_token"}` (a token only for a
critical action).

Accepted: the command's lifecycle (`queued`, `dispatched`, `acked`, …) follows on `cmd/res` from
the command service. Refused: one `{"id":null,"ref","status":"rejected","code","error"}` (plus
`details` for PARAMS_INVALID and `dry_run_token` for DRY_RUN_REQUIRED); nothing is stored.
The request itself is consumed here (never routed on: nobody else subscribes to it).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from nxg_mqtt import messages
from nxg_mqtt.broker.message import IncomingMessage
from nxg_mqtt.broker.plugins.base import NxgPlugin
from nxg_mqtt.broker.session import BrokerSession
from nxg_mqtt.errors import DryRunRequired, NxgError
from nxg_mqtt.models import CommandStatus
from nxg_mqtt.protocol import Role
from nxg_mqtt.topics import Channel, device_topic, parse_device_topic

log = logging.getLogger(__name__)

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
        ref: Any = None
        try:
            request = messages.decode_object(message.data, self.settings.max_payload_bytes)
            ref = request.get("ref")
            messages.check_command_request(request)
            if request.get("dry_run") is True:
                await self._validated(parsed.serial, request)
                return False
            await self.core.commands.submit(
                parsed.serial,
                request["action"],
                request.get("target"),
                request.get("params"),
                ref=None if ref is None else str(ref),
                source="mqtt",
                actor=_actor(session),
            )
        except NxgError as exc:
            await self._rejected(parsed.serial, ref, exc)
        return False

    async def _validated(self, serial: str, request: dict[str, Any]) -> None:
        checked = await self.core.commands.dry_run(
            serial, request["action"], request.get("target"), request.get("params")
        )
        reply: dict[str, Any] = {"id": None, "status": "validated", "dry_run_token": checked.token}
        if "ref" in request:
            reply["ref"] = request["ref"]
        await self.broker.publish(device_topic(serial, Channel.CMD_RES), json.dumps(reply).encode(), qos=1)

    async def _rejected(self, serial: str, ref: Any, exc: NxgError) -> None:
        reply: dict[str, Any] = {
            "id": None,
            "status": CommandStatus.REJECTED.value,
            "code": exc.code,
            "error": exc.message,
        }
        if ref is not None:
            reply["ref"] = ref
        if isinstance(exc.details, list):
            reply["details"] = exc.details
        if isinstance(exc, DryRunRequired):
            reply["dry_run_token"] = exc.token
        try:
            await self.broker.publish(device_topic(serial, Channel.CMD_RES), json.dumps(reply).encode(), qos=1)
        except Exception:
            log.exception("publishing the rejection of a command request for %s failed", serial)
