"""Seed 003's actions API: `POST /api/v1/actions/invoke/devices_<Action>`, camelCase JSON bodies.

One route and one table (`base.ACTIONS`, filled by the modules below, one per concept): the
dispatcher authenticates the caller (`bridge.access.caller_of`: 401), finds the action (404
`ACTION_NOT_FOUND`), reads the body (a JSON object; empty = `{}`; a field the action does not
define is 400 naming it), checks the scope the action needs (403: a viewer cannot write), and
runs it. A device outside the caller's device scope is 404 `DEVICE_NOT_FOUND`, as if absent.

Errors have `/api/v1`'s one shape: `{"success":false,"code","error","details":[…]}` with 400
(`INVALID`; `details` names the field), 401, 403 (`FORBIDDEN`), 404 (`ACTION_NOT_FOUND`,
`DEVICE_NOT_FOUND`, `CERTIFICATE_NOT_FOUND`, `CONNECTION_NOT_FOUND`, `PROJECT_NOT_FOUND`), 409
(`CONFLICT`). Results that seed 003 defines as variants (`NotFound`, `VersionConflict`,
`Invalid`, …) are 200 answers with their `result`.

Audit: every action that writes is recorded under the caller with its outcome (`ok`, or the
error's code), its target device and what it changed; so is any action refused with 403. A
refused attempt on a device of another tenant is recorded with no target device, so it never
shows in that device's `devices_QueryAuditLog`.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bridge.access import caller_of
from bridge.openapi import AUTH, responds
from bridge.state import state_of
from bridge.v1.actions import certificates, connections, devices, events, properties, tokens
from bridge.v1.actions.base import ACTIONS, Body, Context, resolve_project
from bridge.v1.responses import json_body, v1_endpoint
from nxg_mqtt.errors import ForbiddenError, NotFoundError, NxgError, ValidationError

PREFIX = "/actions/invoke/"
_MODULES = (certificates, connections, devices, events, properties, tokens)  # each fills ACTIONS


@responds(200, 400, 404, 409, *AUTH)
@v1_endpoint
async def invoke(request: Request) -> Response:
    state = state_of(request)
    caller = await caller_of(request)
    name = str(request.path_params.get("action") or request.url.path.rsplit("/", 1)[-1])
    action = ACTIONS.get(name)
    if action is None:
        raise NotFoundError(f"unknown action: {name}", code="ACTION_NOT_FOUND")
    raw = await request.body()
    values = await json_body(request) if raw.strip() else {}
    unknown = sorted(set(values) - set(action.fields))
    if unknown:
        raise ValidationError(
            f'"{unknown[0]}" is not a field of {name}',
            details=[{"field": f, "error": "unknown field"} for f in unknown],
        )
    ctx = Context(request, state, caller)
    audit = state.core.audit
    try:
        if action.writes or action.scope not in caller.scopes:
            # 404 before 403 (PROTOCOL §6): a device outside the scope does not exist
            serial = values.get("deviceId")
            if isinstance(serial, str):
                await caller.check_device(serial)
        caller.require(action.scope)
        result = await action.handler(ctx, Body(values))
    except NxgError as exc:
        if action.writes or isinstance(exc, ForbiddenError):
            detail = {**ctx.detail, "error": exc.message}
            target = ctx.target or _serial(values)
            if target is not None and await caller.owner_of(target) != caller.tenant:
                # recorded, but not on another tenant's device: its log would show this caller
                # (and its tenant) to that tenant, and anyone could write into it
                target = None
            await audit.record(caller.actor, name, target, detail, exc.code)
        raise
    if action.writes:
        await audit.record(caller.actor, name, ctx.target, ctx.detail or None)
    return JSONResponse(result)


def _serial(values: dict[str, object]) -> str | None:
    serial = values.get("deviceId")
    return serial if isinstance(serial, str) else None


def routes() -> list[BaseRoute]:
    # one route per action (so /openapi.json lists each), then the rest: ACTION_NOT_FOUND
    named: list[BaseRoute] = [Route(PREFIX + name, invoke, methods=["POST"]) for name in sorted(ACTIONS)]
    return [*named, Route(PREFIX + "{action}", invoke, methods=["POST"])]


__all__ = ["ACTIONS", "_MODULES", "resolve_project", "routes"]
