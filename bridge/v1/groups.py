"""Seed 002's device groups (paths relative to `/api/v1`), each the caller's tenant's only.

    GET  /groups                 → {"groups":[{slug,name,description,device_ids,created_at}]}
    POST /groups                 {"name","description"?,"device_ids"?} → 201 {"status":"created","slug"}
    POST /groups/{slug}/join     {"device_ids":[…]} (or {"device_id"}) → {"status":"joined","slug","device_ids"}
    POST /groups/{slug}/command  → `bridge.v1.fanout`

The slug is made from the name (`Living Room Lights` → `living-room-lights`) and is unique per
tenant (409 `GROUP_EXISTS`). Creating needs `admin:devices` (seed 002: admin), listing
`read:devices`, joining and commanding `write:devices` (seed 002: user). Every device named must
be the caller's to see (404 `DEVICE_NOT_FOUND` otherwise); a key limited to some devices sees
only those among a group's `device_ids`. Another tenant's group is 404 `GROUP_NOT_FOUND`.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bridge.access import Caller, tenant_caller
from bridge.openapi import AUTH, responds
from bridge.state import state_of
from bridge.v1.fanout import command_all
from bridge.v1.responses import json_body, v1_endpoint
from nxg_mqtt.models import Group
from nxg_mqtt.protocol import Scope
from nxg_mqtt.services.groups import device_ids


def _public(group: Group, caller: Caller) -> dict[str, Any]:
    return {**group.public(), "device_ids": [s for s in group.device_ids if caller.sees(s)]}


async def _checked(caller: Caller, serials: list[str]) -> list[str]:
    for serial in serials:
        await caller.check_device(serial)
    return serials


@responds(200, *AUTH)
@v1_endpoint
async def list_groups(request: Request) -> Response:
    caller = await tenant_caller(request, Scope.READ_DEVICES)
    groups = await state_of(request).core.groups.of_tenant(caller.tenant)
    return JSONResponse({"groups": [_public(g, caller) for g in groups]})


@responds(201, 400, 404, 409, *AUTH)
@v1_endpoint
async def create_group(request: Request) -> Response:
    caller = await tenant_caller(request, Scope.ADMIN_DEVICES)
    body = await json_body(request)
    serials = await _checked(caller, device_ids(body.get("device_ids"), required=False))
    group = await state_of(request).core.groups.create(
        caller.tenant, body.get("name"), body.get("description"), serials
    )
    return JSONResponse({"status": "created", "slug": group.slug}, status_code=201)


@responds(200, 400, 404, *AUTH)
@v1_endpoint
async def join(request: Request) -> Response:
    caller = await tenant_caller(request, Scope.WRITE_DEVICES)
    body = await json_body(request)
    given = body.get("device_ids", [body["device_id"]] if "device_id" in body else None)
    serials = await _checked(caller, device_ids(given, required=True))
    group = await state_of(request).core.groups.join(caller.tenant, str(request.path_params["slug"]), serials)
    return JSONResponse({"status": "joined", "slug": group.slug, "device_ids": _public(group, caller)["device_ids"]})


@responds(200, 400, 404, *AUTH)
@v1_endpoint
async def group_command(request: Request) -> Response:
    caller = await tenant_caller(request, Scope.WRITE_DEVICES)
    serials = await state_of(request).core.groups.devices_in_group(caller.tenant, str(request.path_params["slug"]))
    return await command_all(request, caller, serials, "group")


def routes() -> list[BaseRoute]:
    return [
        Route("/groups", list_groups, methods=["GET"]),
        Route("/groups", create_group, methods=["POST"]),
        Route("/groups/{slug}/join", join, methods=["POST"]),
        Route("/groups/{slug}/command", group_command, methods=["POST"]),
    ]
