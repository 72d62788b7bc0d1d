"""One command to every device of a room or a group (seed 002), through the one validated path.

    POST /rooms/{room_id}/command       {"action","params"?,"target"?,"capability"?} → {"results":[…]}
    POST /groups/{slug}/command         the same

The devices are submitted together (`CommandService.submit_many`: the checks of
`POST /device/{id}/command` — manifest, params, rate limit, queue bound, a queue for an offline
device — per device, the writes in one transaction, then one dispatch pass). Each result is
`{"device_id","success":true,"command_id","message_id"}` or
`{"device_id","success":false,"error","code","details"?,"dry_run_token"?}`, and one device's
rejection never stops the others (200 either way). `capability` keeps only the devices whose
manifest declares a capability of that category (or that action); the others are not commanded
and not listed. Devices outside a key's device list are not listed either: for that
key they do not exist.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bridge.access import Caller
from bridge.state import state_of
from bridge.v1.commands import accepted, command_fields, failure, send
from bridge.v1.responses import json_body
from nxg_mqtt.errors import NxgError, ValidationError


async def command_all(request: Request, caller: Caller, serials: Sequence[str], source: str) -> Response:
    state = state_of(request)
    core = state.core
    body = await json_body(request)
    action, target, params = command_fields(body)
    capability = body.get("capability")
    if capability is not None and (not isinstance(capability, str) or not capability):
        raise ValidationError('"capability" must be a non-empty string', code="INVALID_COMMAND")
    if body.get("dry_run") is True:
        raise ValidationError("dry_run is for one device: POST /device/{id}/command", code="INVALID_COMMAND")
    chosen = [s for s in serials if caller.sees(s)]
    if capability is not None:
        chosen = await core.groups.with_capability(chosen, capability)

    outcomes = await core.commands.submit_many(
        chosen, action, target, params, source=source, dispatch=state.embedded, actor=caller.actor
    )
    results: list[dict[str, Any]] = []
    for serial, outcome in zip(chosen, outcomes, strict=True):
        if isinstance(outcome, NxgError):
            results.append(failure(serial, outcome))
        else:
            results.append({"device_id": serial, **accepted(await send(state, outcome))})
    return JSONResponse({"results": results})
