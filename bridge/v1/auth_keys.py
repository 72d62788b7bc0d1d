"""Seed 002's authentication endpoints (paths relative to `/api/v1`), PROTOCOL §6 "API keys".

    GET  /auth/me                  → seed 002's user context; for a key its role, scopes, devices
    GET  /auth/api-keys            → {"keys":[{id,name,prefix,role,scopes,devices,created_at,last_used_at,revoked}]}
    POST /auth/api-keys            {"name","role"?,"scopes"?,"devices"?}
                                   → 201 {"status":"created","id","key","prefix","name"}
    POST /auth/api-keys/revoke     {"id"} → {"status":"revoked","id"}
    POST /auth/api-keys/rotate     {"id"} → {"status":"rotated","id","key","prefix","name"}

Managing keys needs `admin:keys` (the admin password, or an admin key); a key never creates one
with more scopes or devices than its own, and a key limited to some devices sees and manages only
keys limited to those devices. Errors are seed 002's bodies (`bridge.v1.responses`):
401 `UNAUTHORIZED`, 403 `FORBIDDEN`, 400 `INVALID`, 404 `KEY_NOT_FOUND`, 429 for a throttled address.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bridge.access import Caller, caller_of
from bridge.auth import LoginThrottled
from bridge.openapi import AUTH, responds
from bridge.state import state_of
from bridge.v1.responses import from_error, v1_error
from nxg_mqtt import messages
from nxg_mqtt.errors import NotFoundError, NxgError, PayloadRejected, ValidationError
from nxg_mqtt.models import ApiKey
from nxg_mqtt.protocol import Scope, TenantRole

Handler = Callable[[Request, Caller], Awaitable[Response]]


def authorized(scope: str | None) -> Callable[[Handler], Callable[[Request], Awaitable[Response]]]:
    def wrap(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        @wraps(handler)
        async def route(request: Request) -> Response:
            try:
                caller = await caller_of(request)
                if scope is not None:
                    caller.require(scope)
                return await handler(request, caller)
            except LoginThrottled as exc:
                return v1_error(429, exc.code, exc.message, headers={"Retry-After": str(exc.retry_after_s)})
            except NxgError as exc:
                return from_error(exc)

        return route

    return wrap


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = messages.load_json(await request.body(), what="body")
    except PayloadRejected:
        raise ValidationError("body must be a JSON object") from None
    if not isinstance(body, dict):
        raise ValidationError("body must be a JSON object")
    return body


@responds(200, 401, 429)
@authorized(None)
async def me(request: Request, caller: Caller) -> Response:
    """Seed 002's user context. The admin password is the default tenant's admin; a key's role
    is its own. A credential whose tenant does not exist has `has_tenant: false`, role `none`."""
    core = state_of(request).core
    key = await core.keys.get(caller.key_id) if caller.key_id else None
    tenant = await core.tenants.get(caller.tenant)
    user: dict[str, Any] = {
        "id": caller.key_id or "admin",
        "role": caller.role if tenant is not None else TenantRole.NONE.value,
        "tenant_id": tenant.id if tenant is not None else None,
        "tenant_slug": tenant.slug if tenant is not None else None,
        "scopes": sorted(caller.scopes),
        "devices": None if caller.devices is None else sorted(caller.devices),
        "auth": "api_key" if caller.key_id else "admin_password",
    }
    if key is not None:
        user["name"] = key.name
    return JSONResponse({"authenticated": True, "has_tenant": tenant is not None, "user": user})


def _visible(caller: Caller, key: ApiKey) -> bool:
    """A key limited to some devices manages only keys limited to (some of) those devices: any
    other key would name devices it may not know of."""
    if key.tenant != caller.tenant:
        return False  # another tenant's key does not exist
    if caller.devices is None:
        return True
    return key.devices is not None and all(s in caller.devices for s in key.devices)


async def _managed(request: Request, caller: Caller) -> ApiKey:
    body = await _body(request)
    key_id = body.get("id")
    if not isinstance(key_id, str) or not key_id:
        raise ValidationError("id must be a non-empty string")
    key = await state_of(request).core.keys.get(key_id)
    if not _visible(caller, key):
        raise NotFoundError(f"API key not found: {key_id}", code="KEY_NOT_FOUND")
    return key


@responds(200, *AUTH)
@authorized(Scope.ADMIN_KEYS)
async def list_keys(request: Request, caller: Caller) -> Response:
    keys = await state_of(request).core.keys.list(caller.tenant)
    return JSONResponse({"keys": [k.public() for k in keys if _visible(caller, k)]})


@responds(201, 400, *AUTH)
@authorized(Scope.ADMIN_KEYS)
async def create_key(request: Request, caller: Caller) -> Response:
    body = await _body(request)
    service = state_of(request).core.keys
    within = await service.get(caller.key_id) if caller.key_id else None
    key, secret = await service.create(
        body.get("name"),
        body.get("role", "user"),
        body.get("scopes"),
        body.get("devices"),
        actor=caller.actor,
        within=within,
        tenant=caller.tenant,
    )
    return JSONResponse(
        {"status": "created", "id": key.id, "key": secret, "prefix": key.prefix, "name": key.name}, status_code=201
    )


@responds(200, 400, 404, *AUTH)
@authorized(Scope.ADMIN_KEYS)
async def revoke_key(request: Request, caller: Caller) -> Response:
    target = await _managed(request, caller)
    key = await state_of(request).core.keys.revoke(target.id, actor=caller.actor)
    return JSONResponse({"status": "revoked", "id": key.id})


@responds(200, 400, 404, *AUTH)
@authorized(Scope.ADMIN_KEYS)
async def rotate_key(request: Request, caller: Caller) -> Response:
    target = await _managed(request, caller)
    key, secret = await state_of(request).core.keys.rotate(target.id, actor=caller.actor)
    return JSONResponse({"status": "rotated", "id": key.id, "key": secret, "prefix": key.prefix, "name": key.name})


def routes() -> list[BaseRoute]:
    return [
        Route("/auth/me", me, methods=["GET"]),
        Route("/auth/api-keys", list_keys, methods=["GET"]),
        Route("/auth/api-keys", create_key, methods=["POST"]),
        Route("/auth/api-keys/revoke", revoke_key, methods=["POST"]),
        Route("/auth/api-keys/rotate", rotate_key, methods=["POST"]),
    ]
