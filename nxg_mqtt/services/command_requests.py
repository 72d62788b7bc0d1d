"""Command requests on `nxg/{S}/cmd/req` (PROTOCOL §2), whichever broker carried them: an
integrator's command, validated like every other path (and audited under `actor`), then
dispatched on `nxg/{S}/cmd`; its fate is published on `nxg/{S}/cmd/res` with the request's `ref`
echoed. `"dry_run": true` validates only: `{"id":null,"ref","status":"validated","dry_run_token"}`
(a token only for a critical action).

Accepted: the command's lifecycle (`queued`, `dispatched`, `acked`, …) follows on `cmd/res` from
the command service. Refused: one `{"id":null,"ref","status":"rejected","code","error"}` (plus
`details` for PARAMS_INVALID and `dry_run_token` for DRY_RUN_REQUIRED); nothing is stored.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from nxg_mqtt import messages
from nxg_mqtt.errors import DryRunRequired, NxgError
from nxg_mqtt.models import CommandStatus
from nxg_mqtt.services import Publisher
from nxg_mqtt.services.commands import CommandService
from nxg_mqtt.topics import Channel, device_topic

log = logging.getLogger(__name__)


async def handle_command_request(
    commands: CommandService, publisher: Publisher, max_payload: int, serial: str, data: bytes, actor: str
) -> None:
    ref: Any = None
    try:
        request = messages.decode_object(data, max_payload)
        ref = request.get("ref")
        messages.check_command_request(request)
        if request.get("dry_run") is True:
            checked = await commands.dry_run(serial, request["action"], request.get("target"), request.get("params"))
            reply: dict[str, Any] = {"id": None, "status": "validated", "dry_run_token": checked.token}
            if "ref" in request:
                reply["ref"] = request["ref"]
            await publisher.publish(device_topic(serial, Channel.CMD_RES), json.dumps(reply).encode(), qos=1)
            return
        await commands.submit(
            serial,
            request["action"],
            request.get("target"),
            request.get("params"),
            ref=None if ref is None else str(ref),
            source="mqtt",
            actor=actor,
        )
    except NxgError as exc:
        await _rejected(publisher, serial, ref, exc)


async def _rejected(publisher: Publisher, serial: str, ref: Any, exc: NxgError) -> None:
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
        await publisher.publish(device_topic(serial, Channel.CMD_RES), json.dumps(reply).encode(), qos=1)
    except Exception:
        log.exception("publishing the rejection of a command request for %s failed", serial)
