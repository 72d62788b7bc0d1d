"""Seed 002's homes and rooms (paths relative to `/api/v1`), each the caller's tenant's only.

    POST   /homes                          {"home_name","timezone"?("UTC")} → 201 {"status":"created","id"}
    GET    /homes                          → {"homes":[{id,home_name,timezone,created_at}]}
    PATCH  /homes/{home_id}                {"home_name"?,"timezone"?} → {"status":"updated","home":{…}}
    DELETE /homes/{home_id}                → {"status":"deleted","id"}; 409 HOME_NOT_EMPTY while devices are in it
    POST   /homes/{home_id}/rooms          {"name"} → 201 {"status":"created","id"}
    GET    /homes/{home_id}/rooms          → {"rooms":[{id,home_id,name,created_at}]}
    DELETE /homes/{home_id}/rooms/{room_id} → {"status":"deleted","id"} (its devices leave the room, stay in the home)
    POST   /rooms/{room_id}/command        → `bridge.v1.fanout`

Changes need `admin:devices` (seed 002: admin), reading `read:devices`, a room command
`write:devices`. `timezone` is an IANA name (400 otherwise). Another tenant's home or room is
404 `HOME_NOT_FOUND` / `ROOM_NOT_FOUND`.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bridge.access import tenant_caller
from bridge.openapi import AUTH, responds
from bridge.state import state_of
from bridge.v1.fanout import command_all
from bridge.v1.responses import json_body, v1_endpoint
from nxg_mqtt.protocol import Scope


def _id(request: Request, name: str) -> str:
    return str(request.path_params[name])


@responds(201, 400, *AUTH)
@v1_endpoint
async def create_home(request: Request) -> Response:
    caller = await tenant_caller(request, Scope.ADMIN_DEVICES)
    body = await json_body(request)
    home = await state_of(request).core.homes.create(caller.tenant, body.get("home_name"), body.get("timezone", "UTC"))
    return JSONResponse({"status": "created", "id": home.id}, status_code=201)


@responds(200, *AUTH)
@v1_endpoint
async def list_homes(request: Request) -> Response:
    caller = await tenant_caller(request, Scope.READ_DEVICES)
    homes = await state_of(request).core.homes.of_tenant(caller.tenant)
    return JSONResponse({"homes": [h.public() for h in homes]})


@responds(200, 400, 404, *AUTH)
@v1_endpoint
async def update_home(request: Request) -> Response:
    caller = await tenant_caller(request, Scope.ADMIN_DEVICES)
    body = await json_body(request)
    home = await state_of(request).core.homes.update(caller.tenant, _id(request, "home_id"), body)
    return JSONResponse({"status": "updated", "home": home.public()})


@responds(200, 404, 409, *AUTH)
@v1_endpoint
async def delete_home(request: Request) -> Response:
    caller = await tenant_caller(request, Scope.ADMIN_DEVICES)
    home_id = _id(request, "home_id")
    await state_of(request).core.homes.delete(caller.tenant, home_id)
    return JSONResponse({"status": "deleted", "id": home_id})


@responds(201, 400, 404, 409, *AUTH)
@v1_endpoint
async def add_room(request: Request) -> Response:
    caller = await tenant_caller(request, Scope.ADMIN_DEVICES)
    body = await json_body(request)
    room = await state_of(request).core.homes.add_room(caller.tenant, _id(request, "home_id"), body.get("name"))
    return JSONResponse({"status": "created", "id": room.id}, status_code=201)


@responds(200, 404, *AUTH)
@v1_endpoint
async def list_rooms(request: Request) -> Response:
    caller = await tenant_caller(request, Scope.READ_DEVICES)
    rooms = await state_of(request).core.homes.rooms(caller.tenant, _id(request, "home_id"))
    return JSONResponse({"rooms": [r.public() for r in rooms]})


@responds(200, 404, 409, *AUTH)
@v1_endpoint
async def delete_room(request: Request) -> Response:
    caller = await tenant_caller(request, Scope.ADMIN_DEVICES)
    room_id = _id(request, "room_id")
    await state_of(request).core.homes.delete_room(caller.tenant, _id(request, "home_id"), room_id)
    return JSONResponse({"status": "deleted", "id": room_id})


@responds(200, 400, 404, *AUTH)
@v1_endpoint
async def room_command(request: Request) -> Response:
    caller = await tenant_caller(request, Scope.WRITE_DEVICES)
    serials = await state_of(request).core.homes.devices_in_room(caller.tenant, _id(request, "room_id"))
    return await command_all(request, caller, serials, "room")


def routes() -> list[BaseRoute]:
    return [
        Route("/homes", create_home, methods=["POST"]),
        Route("/homes", list_homes, methods=["GET"]),
        Route("/homes/{home_id}", update_home, methods=["PATCH"]),
        Route("/homes/{home_id}", delete_home, methods=["DELETE"]),
        Route("/homes/{home_id}/rooms", add_room, methods=["POST"]),
        Route("/homes/{home_id}/rooms", list_rooms, methods=["GET"]),
        Route("/homes/{home_id}/rooms/{room_id}", delete_room, methods=["DELETE"]),
        Route("/rooms/{room_id}/command", room_command, methods=["POST"]),
    ]
