"""Seed 002's devices (paths relative to `/api/v1`), each the caller's tenant's only.

    POST /device/register            {"device_type","home_id"?,"room_id"?} → 201 {"status":"registered",
                                     "device_id","tenant_id","api_base_url","device_secret","initial_sequence",
                                     "home_id","room_id","mqtt_username"}
    GET  /devices                    → {"devices":[{id,device_type,home_id,room_id,firmware,last_seen,revoked,…}],
                                        "count"}
    GET  /devices/{id}               → one such device
    POST /device/{id}/rotate-secret  → {"device_id","new_secret","key_version"}
    GET  /device/{id}/key-history    → {"device_id","keys":[{key_version,created_at,retired_at,active,reason}]}
    POST /device/{id}/revoke         → {"status":"revoked","device_id","revoked":true}

`device_id` is the serial; `device_secret` is its token (MQTT: client id = username = device_id,
password = the secret; `/ws/gateway`: `{"t":"auth","token":secret}`). Registering, rotating,
revoking and key history need `admin:devices` (seed 002: admin); listing `read:devices`. A
device of another tenant, or outside a key's device list, is 404 `DEVICE_NOT_FOUND`.
`last_seen` is ISO 8601 (null before the first message); `firmware` what the device last
reported in its status as `firmware` (else `fw_version`, `version`), `0.0.0` before that.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bridge.access import Caller, device_caller, tenant_caller
from bridge.openapi import AUTH, responds
from bridge.state import state_of
from bridge.v1.commands import iso
from bridge.v1.responses import json_body, v1_endpoint
from nxg_mqtt.errors import ForbiddenError
from nxg_mqtt.models import Device
from nxg_mqtt.protocol import Scope
from nxg_mqtt.services.registration import UNKNOWN_FIRMWARE


def device_body(device: Device, firmware: dict[str, str]) -> dict[str, Any]:
    return {
        "id": device.serial,
        "device_type": device.device_type,
        "home_id": device.home_id,
        "room_id": device.room_id,
        "firmware": firmware.get(device.serial, UNKNOWN_FIRMWARE),
        "last_seen": iso(device.last_seen) if device.last_seen is not None else None,
        "revoked": device.revoked,
        "online": device.online,
        "name": device.name,
        "key_version": device.key_version,
        "created_at": iso(device.created_at),
    }


@responds(201, 400, 404, *AUTH)
@v1_endpoint
async def register(request: Request) -> Response:
    caller = await tenant_caller(request, Scope.ADMIN_DEVICES)
    if caller.devices is not None:
        raise ForbiddenError("a key limited to some devices cannot register devices")
    body = await json_body(request)
    core = state_of(request).core
    device, secret = await core.registration.register(
        caller.tenant, body.get("device_type"), body.get("home_id"), body.get("room_id"), actor=caller.actor
    )
    reply = {
        "status": "registered",
        "device_id": device.serial,
        "tenant_id": device.tenant,
        "api_base_url": f"{request.url.scheme}://{request.url.netloc}/api/v1",
        "device_secret": secret,
        "initial_sequence": 0,
        "home_id": device.home_id,
        "room_id": device.room_id,
        "mqtt_username": device.serial,
    }
    return JSONResponse(reply, status_code=201)


@responds(200, *AUTH)
@v1_endpoint
async def list_devices(request: Request) -> Response:
    caller = await tenant_caller(request, Scope.READ_DEVICES)
    core = state_of(request).core
    devices = [d for d in await core.registration.of_tenant(caller.tenant) if caller.sees_device(d)]
    firmware = await core.registration.firmware(devices)
    return JSONResponse({"devices": [device_body(d, firmware) for d in devices], "count": len(devices)})


async def _device(request: Request, scope: str) -> tuple[Caller, Device]:
    caller, serial = await device_caller(request, scope)
    return caller, await state_of(request).core.registration.device(caller.tenant, serial)


@responds(200, 404, *AUTH)
@v1_endpoint
async def get_device(request: Request) -> Response:
    _, device = await _device(request, Scope.READ_DEVICES)
    firmware = await state_of(request).core.registration.firmware([device])
    return JSONResponse(device_body(device, firmware))


@responds(200, 404, 409, *AUTH)
@v1_endpoint
async def rotate_secret(request: Request) -> Response:
    caller, device = await _device(request, Scope.ADMIN_DEVICES)
    rotated, secret = await state_of(request).core.registration.rotate(caller.tenant, device.serial, actor=caller.actor)
    return JSONResponse({"device_id": rotated.serial, "new_secret": secret, "key_version": rotated.key_version})


@responds(200, 404, *AUTH)
@v1_endpoint
async def key_history(request: Request) -> Response:
    caller, device = await _device(request, Scope.ADMIN_DEVICES)
    keys = await state_of(request).core.registration.key_history(caller.tenant, device.serial)
    return JSONResponse({"device_id": device.serial, "keys": [k.public() for k in keys]})


@responds(200, 404, 409, *AUTH)
@v1_endpoint
async def revoke(request: Request) -> Response:
    caller, device = await _device(request, Scope.ADMIN_DEVICES)
    revoked = await state_of(request).core.registration.revoke(caller.tenant, device.serial, actor=caller.actor)
    return JSONResponse({"status": "revoked", "device_id": revoked.serial, "revoked": revoked.revoked})


def routes() -> list[BaseRoute]:
    return [
        Route("/device/register", register, methods=["POST"]),
        Route("/devices", list_devices, methods=["GET"]),
        Route("/devices/{device_id}", get_device, methods=["GET"]),
        Route("/device/{device_id}/rotate-secret", rotate_secret, methods=["POST"]),
        Route("/device/{device_id}/key-history", key_history, methods=["GET"]),
        Route("/device/{device_id}/revoke", revoke, methods=["POST"]),
    ]
