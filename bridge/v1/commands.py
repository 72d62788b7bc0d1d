"""Seed 002's command endpoints under `/api/v1`: one device, confirm, batch, history, intent.

    POST /device/{id}/command           {"action","params"?,"target"?,"dry_run"?} → 202 {success, command_id, …}
    POST /device/{id}/command/confirm   {"dry_run_token"} → 202 (the critical action, as dry-run validated it)
    POST /devices/command               {"device_ids":[…],"action","params"?,"target"?} → {"results":[…]} per device
    GET  /device/{id}/commands          ?limit=&before= → {"commands":[…],"next_before"} newest first
    POST /intent                        {"type":"device.control","payload":{device_id, action, params}}

Every command goes through the core's one check (`CommandService.check`): rejections carry the
PROTOCOL §4 code with seed 002's status and body (`responses.error_response`). `"dry_run": true`
validates only: 200 `{"success":true,"dry_run":true,"command_id":null,"dry_run_token"}` (the
token only for a critical action). `message_id` names the dispatch: a UUID derived from the
command id, so every surface that shows it agrees.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bridge.access import caller_of, device_caller
from bridge.openapi import AUTH, responds
from bridge.state import BridgeState, state_of
from bridge.v1.ids import uuid5_text
from bridge.v1.responses import CompactJSONResponse, error_response, json_body, v1_endpoint
from nxg_mqtt.errors import DryRunRequired, NxgError, ValidationError
from nxg_mqtt.models import Command

BATCH_MAX = 100
_MESSAGE_IDS = uuid.UUID("6d1f1c1e-6f0a-4b7e-9d8e-5e0c9a1b2c3d")


def message_id(command_id: str) -> str:
    return uuid5_text(_MESSAGE_IDS, command_id)


def iso(ms: int) -> str:
    """ISO 8601 UTC with milliseconds and `Z` (PROTOCOL §6)."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def accepted(command: Command) -> dict[str, Any]:
    return {"success": True, "command_id": command.id, "message_id": message_id(command.id)}


async def send(state: BridgeState, command: Command) -> Command:
    """After `submit(dispatch=state.embedded)`: a bridge against a separate broker dispatches
    itself only to devices on its own gateway (nobody else can); the broker takes the rest."""
    core = state.core
    if not state.embedded and core.presence.is_ready(command.serial):
        core.commands.note_queued(command.serial)
        await core.commands.dispatch_queued(command.serial)
    return command


def command_fields(body: dict[str, Any]) -> tuple[str, str | None, dict[str, Any] | None]:
    """(action, target, params) as sent; their types are the core's check to judge."""
    action = body.get("action")
    if not isinstance(action, str):
        raise ValidationError('"action" is required (a string)', code="INVALID_COMMAND")
    target, params = body.get("target"), body.get("params")
    if params is not None and not isinstance(params, dict):
        raise ValidationError('"params" must be a JSON object', code="INVALID_COMMAND")
    if target is not None and not isinstance(target, str):
        raise ValidationError('"target" must be a string', code="INVALID_COMMAND")
    return action, target, params


@responds(200, 202, 400, 404, 409, 502, *AUTH)
@v1_endpoint
async def command(request: Request) -> Response:
    state = state_of(request)
    caller, serial = await device_caller(request, "write:devices")
    body = await json_body(request)
    action, target, params = command_fields(body)
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise ValidationError('"dry_run" must be true or false', code="INVALID_COMMAND")
    commands = state.core.commands
    if dry_run:
        checked = await commands.dry_run(serial, action, target, params)
        reply = {"success": True, "dry_run": True, "command_id": None, "dry_run_token": checked.token}
        return JSONResponse(reply, status_code=200)
    submitted = await commands.submit(
        serial, action, target, params, source="api", dispatch=state.embedded, actor=caller.actor
    )
    return CompactJSONResponse(accepted(await send(state, submitted)), status_code=202)


@responds(202, 400, 404, 409, 502, *AUTH)
@v1_endpoint
async def confirm(request: Request) -> Response:
    state = state_of(request)
    caller, serial = await device_caller(request, "write:devices")
    token = (await json_body(request)).get("dry_run_token")
    if not isinstance(token, str) or not token:
        raise ValidationError('"dry_run_token" is required (from the dry run)', code="INVALID_COMMAND")
    submitted = await state.core.commands.confirm(
        serial, token, source="api", dispatch=state.embedded, actor=caller.actor
    )
    return JSONResponse(accepted(await send(state, submitted)), status_code=202)


def failure(serial: str, exc: NxgError) -> dict[str, Any]:
    result: dict[str, Any] = {"device_id": serial, "success": False, "error": exc.message, "code": exc.code}
    if isinstance(exc.details, list):
        result["details"] = exc.details
    if isinstance(exc, DryRunRequired):
        result["dry_run_token"] = exc.token
    return result


@responds(200, 400, *AUTH)
@v1_endpoint
async def batch(request: Request) -> Response:
    """One command to many devices; each device succeeds or fails on its own (200 either way)."""
    state = state_of(request)
    caller = await caller_of(request)
    caller.require("write:devices")
    body = await json_body(request)
    ids = body.get("device_ids")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids) or len(ids) > BATCH_MAX:
        raise ValidationError(f'"device_ids" must be a list of 1 to {BATCH_MAX} device ids', code="INVALID_COMMAND")
    action, target, params = command_fields(body)
    # outside the caller's scope or tenant: not found, as for one device; the rest go together
    # (CommandService.submit_many: the same checks per device, one transaction, one dispatch pass)
    outcomes: list[Command | NxgError | None] = [None] * len(ids)
    chosen: list[int] = []
    for i, serial in enumerate(ids):
        try:
            await caller.check_device(serial)
        except NxgError as exc:
            outcomes[i] = exc
            continue
        chosen.append(i)
    submitted = await state.core.commands.submit_many(
        [ids[i] for i in chosen], action, target, params, source="batch", dispatch=state.embedded, actor=caller.actor
    )
    for i, done in zip(chosen, submitted, strict=True):
        outcomes[i] = done
    results: list[dict[str, Any]] = []
    for serial, outcome in zip(ids, outcomes, strict=True):
        if isinstance(outcome, Command):
            results.append({"device_id": serial, **accepted(await send(state, outcome))})
        else:
            assert outcome is not None
            results.append(failure(serial, outcome))
    return JSONResponse({"results": results})


@responds(200, 400, 404, *AUTH)
@v1_endpoint
async def history(request: Request) -> Response:
    state = state_of(request)
    _, serial = await device_caller(request, "read:devices")
    try:
        limit = int(request.query_params.get("limit", "50"))
        before_text = request.query_params.get("before")
        before = int(before_text) if before_text else None
    except ValueError:
        raise ValidationError("limit and before must be integers") from None
    page, cursor = await state.core.commands.page(serial, limit, before)
    return JSONResponse({"commands": [_entry(c) for c in page], "next_before": cursor})


def _entry(command: Command) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": command.id,
        "action": command.action,
        "params": command.params,
        "timestamp": iso(command.created_at),
        "status": command.status.value,
    }
    if command.target is not None:
        entry["target"] = command.target
    if command.error is not None:
        entry["error"] = command.error
    if command.result is not None:
        entry["result"] = command.result
    for name, ms in (("dispatched_at", command.dispatched_at), ("finished_at", command.finished_at)):
        if ms is not None:
            entry[name] = iso(ms)
    return entry


INTENT_TYPES = ("device.control",)


@responds(200, 400, 404, 409, 502, *AUTH)
@v1_endpoint
async def intent(request: Request) -> Response:
    """Seed 002's intent: only `device.control` (one command); a rejected command answers with
    the same body and status as `POST /device/{id}/command` would."""
    state = state_of(request)
    caller = await caller_of(request)
    body = await json_body(request)
    kind = body.get("type")
    if kind not in INTENT_TYPES:
        raise ValidationError(f"unsupported intent type {kind!r}: only device.control", code="INVALID_INTENT")
    payload = body.get("payload")
    if not isinstance(payload, dict) or not isinstance(payload.get("device_id"), str):
        raise ValidationError('"payload" must be an object with "device_id"', code="INVALID_INTENT")
    serial = payload["device_id"]
    await caller.check_device(serial)
    caller.require("write:devices")
    action, target, params = command_fields(payload)
    try:
        submitted = await state.core.commands.submit(
            serial, action, target, params, source="intent", dispatch=state.embedded, actor=caller.actor
        )
    except NxgError as exc:
        return error_response(exc)
    submitted = await send(state, submitted)
    result = {"device_id": serial, "action": action, "status": submitted.status.value, "command_id": submitted.id}
    reply = {
        "status": "SUCCESS",
        "mode": "CLOUD_ENHANCED",
        "commands_executed": 1,
        "commands_rejected": 0,
        "results": [result],
    }
    return JSONResponse(reply)


def routes() -> list[BaseRoute]:
    return [
        Route("/device/{device_id}/command", command, methods=["POST"]),
        Route("/devices/{device_id}/command", command, methods=["POST"]),  # seed 002's HX47 spelling
        Route("/device/{device_id}/command/confirm", confirm, methods=["POST"]),
        Route("/devices/command", batch, methods=["POST"]),
        Route("/device/{device_id}/commands", history, methods=["GET"]),
        Route("/intent", intent, methods=["POST"]),
    ]
