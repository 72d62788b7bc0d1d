"""Seed 003's actions API under `/api/v1/actions/invoke/devices_<Action>` (camelCase bodies).

    POST /actions/invoke/devices_QueryCommands  {"deviceId"} → {"manifest":{"commands":[
        {"name","description"?,"category"?,"input"?,"output"?}]}}

`input`/`output` are the capability's `paramSchema`/`outputSchema`. A device without a manifest
answers an empty `commands` list (it accepts any command unless `require_manifest` is set).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bridge.access import caller_of
from bridge.openapi import AUTH, responds
from bridge.state import state_of
from bridge.v1.responses import json_body, v1_endpoint
from nxg_mqtt.errors import NotFoundError, ValidationError

PREFIX = "/actions/invoke/"


def descriptor(capability: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": capability["action"]}
    for ours, theirs in (("description", "description"), ("category", "category")):
        if ours in capability:
            entry[theirs] = capability[ours]
    if "paramSchema" in capability:
        entry["input"] = capability["paramSchema"]
    if "outputSchema" in capability:
        entry["output"] = capability["outputSchema"]
    return entry


@responds(200, 400, 404, *AUTH)
@v1_endpoint
async def query_commands(request: Request) -> Response:
    state = state_of(request)
    caller = await caller_of(request)
    body = await json_body(request)
    serial = body.get("deviceId", body.get("device_id"))
    if not isinstance(serial, str) or not serial:
        raise ValidationError('"deviceId" is required')
    await caller.check_device(serial)
    caller.require("read:devices")
    try:
        record = await state.core.manifests.get(serial)
    except NotFoundError as exc:
        if exc.code != "MANIFEST_NOT_FOUND":
            raise
        return JSONResponse({"manifest": {"commands": []}})
    return JSONResponse({"manifest": {"commands": [descriptor(c) for c in record.capabilities]}})


def routes() -> list[BaseRoute]:
    return [Route(PREFIX + "devices_QueryCommands", query_commands, methods=["POST"])]
