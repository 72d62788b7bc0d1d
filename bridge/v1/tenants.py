"""Seed 002's tenant registration (paths relative to `/api/v1`).

    POST /tenant/register   {"tenant_name"} → 201 {"status":"created","tenant_id","user_id","tenant_slug",
                                                    "api_key":{"id","key","prefix","name","role"}}

Any valid credential may register a tenant (seed 002: auth required, no role). The new tenant's
first admin API key is in `api_key.key`, shown this once; `user_id` is that key's id, which is
what `GET /auth/me` names as `user.id` when called with it. The new tenant sees nothing of the
caller's, nor the caller anything of it.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bridge.access import caller_of
from bridge.openapi import AUTH, responds
from bridge.state import state_of
from bridge.v1.responses import json_body, v1_endpoint


@responds(201, 400, *AUTH)
@v1_endpoint
async def register(request: Request) -> Response:
    caller = await caller_of(request)
    body = await json_body(request)
    tenant, key, secret = await state_of(request).core.tenants.register(body.get("tenant_name"), actor=caller.actor)
    return JSONResponse(
        {
            "status": "created",
            "tenant_id": tenant.id,
            "user_id": key.id,
            "tenant_slug": tenant.slug,
            "tenant_name": tenant.name,
            "api_key": {"id": key.id, "key": secret, "prefix": key.prefix, "name": key.name, "role": key.role},
        },
        status_code=201,
    )


def routes() -> list[BaseRoute]:
    return [Route("/tenant/register", register, methods=["POST"])]
