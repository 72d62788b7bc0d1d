"""Seed 000's REST API under `/api`: devices, codes, reset/regenerate/delete, history, protocol.

Every route needs a credential (`bridge.access`: the admin password or an API key) holding the
route's scope: reading devices `read:devices`, history `read:history`, codes, `config.h` and
every change `admin:devices`. A device outside a key's device scope is 404 on every route and
left out of lists and history. Errors are `{"error": "message"}`
with the status of the core's `NxgError` (400 invalid, 401, 404 unknown device, 409 taken).
Times are ms since the epoch.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from bridge import config_h
from bridge.access import Caller, caller_of
from bridge.auth import LoginThrottled, throttled_response
from bridge.openapi import AUTH, responds
from bridge.protocol_doc import protocol_document
from bridge.state import state_of
from nxg_mqtt import messages
from nxg_mqtt.errors import AuthError, NxgError, PayloadRejected
from nxg_mqtt.protocol import Scope
from nxg_mqtt.services import credentials
from nxg_mqtt.services.history import history_query
from nxg_mqtt.settings import Settings

Handler = Callable[[Request, Caller], Awaitable[Response]]


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def guarded(scope: str | None) -> Callable[[Handler], Callable[[Request], Awaitable[Response]]]:
    """The caller (admin password or API key) must hold `scope`; the core's errors become
    `{"error"}` responses. A device outside the caller's scope is 404 before any scope check."""

    def wrap(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        @wraps(handler)
        async def route(request: Request) -> Response:
            try:
                caller = await caller_of(request)
            except LoginThrottled as exc:
                return throttled_response(exc)
            except AuthError as exc:
                return JSONResponse({"error": exc.message}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
            try:
                serial = request.path_params.get("serial")
                if serial is not None:
                    await caller.check_device(str(serial))
                if scope is not None:
                    caller.require(scope)
                return await handler(request, caller)
            except NxgError as exc:
                return error(exc.status, exc.message)

        return route

    return wrap


def _serial(request: Request) -> str:
    return str(request.path_params["serial"])


def _code_body(serial: str, code: str) -> dict[str, str]:
    return {"serial": serial, "code": credentials.format_code(code)}


@responds(200, *AUTH)
@guarded(Scope.READ_DEVICES)
async def list_devices(request: Request, caller: Caller) -> Response:
    devices = await state_of(request).core.devices.list()
    return JSONResponse({"devices": [d.public() for d in devices if caller.sees_device(d)]})


@responds(201, 400, 409, *AUTH)
@guarded(Scope.ADMIN_DEVICES)
async def create_device(request: Request, caller: Caller) -> Response:
    if caller.devices is not None:
        return error(403, "a key limited to some devices cannot register devices")
    raw = await request.body()
    body: Any = {}
    if raw.strip():
        try:
            body = messages.load_json(raw, what="body")
        except PayloadRejected as exc:
            if exc.code in (messages.Reason.NOT_JSON, messages.Reason.NOT_UTF8):
                return error(400, "body must be a JSON object")
            return error(400, exc.message)  # too deep, a number out of range: say which
    if not isinstance(body, dict):
        return error(400, "body must be a JSON object")
    serial, name = body.get("serial"), body.get("name")
    if serial is not None and not isinstance(serial, str):
        return error(400, "serial must be a string")
    if name is not None and not isinstance(name, str):
        return error(400, "name must be a string")
    core = state_of(request).core
    device = await core.devices.create(serial, name, actor=caller.actor, tenant=caller.tenant)
    core.tenants.remember(device.serial, device.tenant)
    return JSONResponse({**device.public(), **_code_body(device.serial, device.code)}, status_code=201)


@responds(200, 404, *AUTH)
@guarded(Scope.READ_DEVICES)
async def get_device(request: Request, caller: Caller) -> Response:
    device = await state_of(request).core.devices.get(_serial(request))
    return JSONResponse(device.public())


@responds(200, 404, *AUTH)
@guarded(Scope.ADMIN_DEVICES)
async def delete_device(request: Request, caller: Caller) -> Response:
    await state_of(request).core.devices.delete(_serial(request), actor=caller.actor)
    return JSONResponse({"ok": True})


@responds(200, 404, *AUTH)
@guarded(Scope.ADMIN_DEVICES)
async def device_code(request: Request, caller: Caller) -> Response:
    device = await state_of(request).core.devices.get(_serial(request))
    return JSONResponse(_code_body(device.serial, device.code))


@responds(200, 404, *AUTH)
@guarded(Scope.ADMIN_DEVICES)
async def reset_device(request: Request, caller: Caller) -> Response:
    device = await state_of(request).core.devices.reset(_serial(request), actor=caller.actor)
    return JSONResponse(_code_body(device.serial, device.code))


@responds(200, 404, *AUTH)
@guarded(Scope.ADMIN_DEVICES)
async def regenerate_device(request: Request, caller: Caller) -> Response:
    device = await state_of(request).core.devices.regenerate(_serial(request), actor=caller.actor)
    return JSONResponse(_code_body(device.serial, device.code))


@responds(200, 400, 404, *AUTH)
@guarded(Scope.READ_HISTORY)
async def history(request: Request, caller: Caller) -> Response:
    state = state_of(request)
    params = request.query_params
    query = history_query(params.get("serial"), params.get("type"), params.get("limit"), params.get("before"))
    within = await state.core.tenants.serials(caller.tenant)  # another tenant's devices do not exist
    if caller.devices is not None:
        within = within & caller.devices
    page = await state.core.history.query(query, within)
    return JSONResponse(page.public())


@responds(200, 401, 429)
@guarded(None)
async def protocol(request: Request, caller: Caller) -> Response:
    return JSONResponse(protocol_document(state_of(request).settings))


@responds(200, 404, *AUTH)
@guarded(Scope.ADMIN_DEVICES)
async def device_config_h(request: Request, caller: Caller) -> Response:
    state = state_of(request)
    device = await state.core.devices.get(_serial(request))
    host = config_h.device_host(request.url.hostname, state.settings.public_host)
    text = config_h.render(
        device,
        host,
        state.ports.mqtt,
        state.ports.mqtt_ws,
        state.ports.http,
        state.settings.max_payload_bytes,
        _tls_endpoints(state.settings),
    )
    return PlainTextResponse(text, headers={"Content-Disposition": f'attachment; filename="config-{device.serial}.h"'})


def _tls_endpoints(settings: Settings) -> config_h.TlsEndpoints | None:
    """TLS listeners and CA for config.h, the CA read now (a renewed CA is served at once)."""
    if not settings.tls:
        return None
    ca = settings.tls_ca.read_text() if settings.tls_ca is not None else None
    return config_h.TlsEndpoints(settings.mqtts_port, settings.wss_port, ca)


def routes() -> list[BaseRoute]:
    return [
        Route("/api/devices", list_devices, methods=["GET"]),
        Route("/api/devices", create_device, methods=["POST"]),
        Route("/api/devices/{serial}", get_device, methods=["GET"]),
        Route("/api/devices/{serial}", delete_device, methods=["DELETE"]),
        Route("/api/devices/{serial}/code", device_code, methods=["GET"]),
        Route("/api/devices/{serial}/config.h", device_config_h, methods=["GET"]),
        Route("/api/devices/{serial}/reset", reset_device, methods=["POST"]),
        Route("/api/devices/{serial}/regenerate", regenerate_device, methods=["POST"]),
        Route("/api/history", history, methods=["GET"]),
        Route("/api/protocol", protocol, methods=["GET"]),
    ]
