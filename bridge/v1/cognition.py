"""Seed 002's cognition observation (path relative to `/api/v1`).

    POST /cognition/observation   {"device_id","data":{…},"context"?}
                                  → 202 {"status":"OBSERVATION_RECEIVED","proposal_id"}

Stored as an event of category `observation` in the device's history (and shown live); nothing
acts on it (`nxg_mqtt.services.observations`). Needs `write:devices`; another tenant's device,
or one outside a key's list, is 404 `DEVICE_NOT_FOUND`.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bridge.access import caller_of
from bridge.openapi import AUTH, responds
from bridge.state import state_of
from bridge.v1.responses import json_body, v1_endpoint
from nxg_mqtt.errors import ValidationError
from nxg_mqtt.protocol import Scope


@responds(202, 400, 404, *AUTH)
@v1_endpoint
async def observation(request: Request) -> Response:
    caller = await caller_of(request)
    body = await json_body(request)
    serial = body.get("device_id")
    if not isinstance(serial, str) or not serial:
        raise ValidationError('"device_id" is required (a string)')
    await caller.check_device(serial)
    caller.require(Scope.WRITE_DEVICES)
    core = state_of(request).core
    device = await core.devices.get(serial)
    proposal_id = await core.observations.observe(
        device.serial, body.get("data"), body.get("context"), actor=caller.actor
    )
    return JSONResponse({"status": "OBSERVATION_RECEIVED", "proposal_id": proposal_id}, status_code=202)


def routes() -> list[BaseRoute]:
    return [Route("/cognition/observation", observation, methods=["POST"])]
