"""Seed 002's manifest endpoints under `/api/v1`, and the capability registry.

    GET  /devices/{id}/manifest   ?version=N → {"deviceId","tenantId","version","capabilities":[{"id",…}],"versions"}
    POST /devices/{id}/manifest   the first manifest → 201 (409 if one exists)
    PUT  /devices/{id}/manifest   a new version → 200 (404 MANIFEST_NOT_FOUND if none yet)
    GET  /manifest/capabilities   {"capabilities":[{"id","action","description","category","safetyClass"}]}
    GET  /manifest/types          {"categories":{category:[action,…]}}

The server assigns `version` (a `version` in the body is ignored); every version is kept and
`?version=N` reads an old one. A manifest that breaks `schemas/manifest.json`, or whose
`paramSchema`/`outputSchema` is not a valid JSON Schema, is 400 `MANIFEST_INVALID` with every
problem (`{"path","message"}`) in `details`.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bridge.access import caller_of, device_caller
from bridge.openapi import AUTH, responds
from bridge.state import state_of
from bridge.v1.responses import json_body, v1_endpoint
from nxg_mqtt.errors import ValidationError
from nxg_mqtt.models import ManifestRecord


def manifest_body(record: ManifestRecord, tenant_id: str, versions: list[int]) -> dict[str, Any]:
    return {
        "deviceId": record.serial,
        "tenantId": tenant_id,
        "version": record.version,
        "capabilities": [{"id": i, **c} for i, c in enumerate(record.capabilities, start=1)],
        "versions": versions,
    }


@responds(200, 400, 404, *AUTH)
@v1_endpoint
async def get_manifest(request: Request) -> Response:
    state = state_of(request)
    _, serial = await device_caller(request, "read:devices")
    text = request.query_params.get("version")
    try:
        version = int(text) if text else None
    except ValueError:
        raise ValidationError("version must be an integer") from None
    manifests = state.core.manifests
    record = await manifests.get(serial, version)
    return JSONResponse(manifest_body(record, state.settings.tenant_id, await manifests.versions(serial)))


async def _put(request: Request, create: bool) -> Response:
    state = state_of(request)
    _, serial = await device_caller(request, "write:devices")
    manifests = state.core.manifests
    record = await manifests.put(serial, await json_body(request), source="api", create=create)
    body = manifest_body(record, state.settings.tenant_id, await manifests.versions(serial))
    return JSONResponse(body, status_code=201 if create else 200)


@responds(201, 400, 404, *AUTH)
@v1_endpoint
async def post_manifest(request: Request) -> Response:
    return await _put(request, create=True)


@responds(200, 400, 404, *AUTH)
@v1_endpoint
async def put_manifest(request: Request) -> Response:
    return await _put(request, create=False)


@responds(200, *AUTH)
@v1_endpoint
async def capabilities(request: Request) -> Response:
    caller = await caller_of(request)
    caller.require("read:devices")
    core = state_of(request).core
    within = await core.tenants.serials(caller.tenant)  # another tenant's manifests are not listed
    return JSONResponse({"capabilities": await core.manifests.registry(within)})


@responds(200, *AUTH)
@v1_endpoint
async def types(request: Request) -> Response:
    caller = await caller_of(request)
    caller.require("read:devices")
    core = state_of(request).core
    within = await core.tenants.serials(caller.tenant)
    return JSONResponse({"categories": await core.manifests.types(within)})


def routes() -> list[BaseRoute]:
    return [
        Route("/devices/{device_id}/manifest", get_manifest, methods=["GET"]),
        Route("/devices/{device_id}/manifest", post_manifest, methods=["POST"]),
        Route("/devices/{device_id}/manifest", put_manifest, methods=["PUT"]),
        Route("/manifest/capabilities", capabilities, methods=["GET"]),
        Route("/manifest/types", types, methods=["GET"]),
    ]
