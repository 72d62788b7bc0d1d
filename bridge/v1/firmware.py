"""Seed 002's firmware endpoints under `/api/v1`, and the download they point devices at.

    POST /firmware/release        admin: a binary, as multipart/form-data (fields `device_type`,
                                  `version`, one file part) or as the raw body with
                                  `?device_type=&version=` → 201 {"status":"created","id",…}
    GET  /firmware/{id}           the release and its per-device rollout state
    POST /firmware/{id}/release   admin: {} (every device of its type), {"device_ids":[…]}
                                  (alias "devices"), {"group":slug} or {"room_id":id} → sends `_ota`
    POST /firmware/check          {"device_type","current_version"} → {"update_available",
                                  "target_version","url","checksum","size"}
    GET  /firmware/{id}/download  the binary; HTTP Range (one range: 206 + Content-Range, 416
                                  outside the file); device token or a key / the admin password

Who may call: a device with its token (`Authorization: Bearer nxgt_…` or `?token=`) may check
and download what is released to it; apps use their key or the admin password as everywhere
(uploading and releasing need the admin role). The binary is streamed from disk in both
directions, never held in memory. `checksum` is the SHA-256 of the binary in lowercase hex.

Tenants: a release is the uploading caller's tenant's; another tenant's is 404
`FIRMWARE_NOT_FOUND` on every route (a device's tenant is its owner's). `firmware/check` answers
from the asking device's own tenant's releases. A release to a whole type goes to the tenant's
devices registered with that `device_type`; a device with no type gets only what names it
(`device_ids`, `group`, `room_id`; an unknown group or room is 404 `GROUP_NOT_FOUND` /
`ROOM_NOT_FOUND`, a device of another tenant 404 `DEVICE_NOT_FOUND`).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from bridge import config_h
from bridge.access import Caller, caller_of
from bridge.auth import credential_from
from bridge.openapi import AUTH, responds
from bridge.state import BridgeState, state_of
from bridge.v1.commands import iso, send
from bridge.v1.responses import json_body, v1_endpoint, v1_error
from nxg_mqtt.errors import AuthError, TooLargeError, ValidationError
from nxg_mqtt.protocol import Scope
from nxg_mqtt.services.credentials import TOKEN_PREFIX
from nxg_mqtt.services.firmware import CheckAnswer, RolloutState, RolloutTarget
from nxg_mqtt.store.firmware import FirmwareRelease

READ_CHUNK = 64 * 1024
FORM_SLACK = 64 * 1024  # multipart framing and the two text fields, over the binary's limit
_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


# ---- who is calling --------------------------------------------------------------------------------


async def device_or_caller(request: Request) -> tuple[str | None, Caller | None]:
    """(serial, None) for a device token, (None, caller) for a key or the admin password; 401
    otherwise. A device token is never tried as the admin password (it would count as a guess)."""
    candidate = credential_from(request, allow_query=True)
    if candidate is not None and candidate.startswith(TOKEN_PREFIX):
        serial = await state_of(request).core.devices.authenticate_token(candidate)
        if serial is None:
            raise AuthError("unauthorized: the device token is not valid (re-pair the device)")
        return serial, None
    return None, await caller_of(request, allow_query=True)


def _base_url(request: Request, state: BridgeState, *, for_devices: bool) -> str:
    """Where devices fetch from. A device's own request names a host it reaches us by; an admin's
    may say localhost, so it gets config.h's rule (`--public-host`, else this machine's address)."""
    if not for_devices:
        return str(request.base_url).rstrip("/")
    host = config_h.device_host(request.url.hostname, state.settings.public_host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    scheme = "https" if state.settings.tls else "http"
    return f"{scheme}://{host}:{state.ports.http}"


def download_url(base: str, release: FirmwareRelease) -> str:
    return f"{base}/api/v1/firmware/{release.id}/download"


# ---- upload ----------------------------------------------------------------------------------------


async def _chunks_of(upload: UploadFile) -> AsyncIterator[bytes]:
    while chunk := await upload.read(READ_CHUNK):
        yield chunk


@responds(201, 400, 409, 413, *AUTH)
@v1_endpoint
async def create(request: Request) -> Response:
    state = state_of(request)
    caller = await caller_of(request)
    caller.require(Scope.ADMIN_DEVICES)
    firmware = state.core.firmware
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        limit = state.settings.firmware_max_bytes + FORM_SLACK
        length = request.headers.get("content-length", "")
        if not length.isdigit():
            raise ValidationError("a multipart upload needs a Content-Length", code="INVALID_FIRMWARE")
        if int(length) > limit:
            raise TooLargeError(f"the upload is larger than {limit} bytes (firmware_max_bytes)")
        try:
            async with request.form(max_files=1, max_fields=8) as form:
                files = [v for v in form.values() if isinstance(v, UploadFile)]
                if not files:
                    raise ValidationError("the form has no file part (the firmware binary)", code="INVALID_FIRMWARE")
                release = await firmware.create(
                    caller.tenant,
                    form.get("device_type"),
                    form.get("version"),
                    _chunks_of(files[0]),
                    files[0].filename,
                    actor=caller.actor,
                )
        except HTTPException as exc:  # Starlette's answer to a malformed form (else a 502 here)
            raise ValidationError(f"malformed multipart body: {exc.detail}", code="INVALID_FIRMWARE") from None
    else:
        query = request.query_params
        release = await firmware.create(
            caller.tenant,
            query.get("device_type"),
            query.get("version"),
            request.stream(),
            query.get("filename"),
            actor=caller.actor,
        )
    body = {"status": "created", **_release_body(release, _base_url(request, state, for_devices=True))}
    return JSONResponse(body, status_code=201)


def _release_body(release: FirmwareRelease, base: str) -> dict[str, Any]:
    return {
        "id": release.id,
        "device_type": release.device_type,
        "version": release.version,
        "checksum": release.checksum,
        "size": release.size,
        "filename": release.filename,
        "created_at": iso(release.created_at),
        "released": release.released_at is not None,
        "released_at": iso(release.released_at) if release.released_at is not None else None,
        "target_all": release.target_all,
        "url": download_url(base, release),
    }


# ---- details and release ---------------------------------------------------------------------------


@responds(200, 404, *AUTH)
@v1_endpoint
async def details(request: Request) -> Response:
    state = state_of(request)
    caller = await caller_of(request)
    caller.require(Scope.READ_DEVICES)
    release = await state.core.firmware.get(request.path_params["release_id"], caller.tenant)
    rows = [r for r in await state.core.firmware.rollout(release.id) if caller.sees(r.serial)]
    counts = {s.value: 0 for s in RolloutState}
    for row in rows:
        counts[row.state] += 1
    devices = [
        {
            "device_id": r.serial,
            "state": r.state,
            "progress": r.progress,
            "error": r.error,
            "command_id": r.command_id,
            "updated_at": iso(r.updated_at),
        }
        for r in rows
    ]
    body = _release_body(release, _base_url(request, state, for_devices=True))
    return JSONResponse({**body, "rollout": {"devices": devices, "counts": counts}})


def _target_fields(body: dict[str, Any]) -> tuple[list[str] | None, str | None, str | None]:
    if "device_ids" in body and "devices" in body:
        raise ValidationError('give "device_ids" or "devices", not both', code="INVALID_TARGET")
    ids = body.get("device_ids", body.get("devices"))
    if ids is not None and (
        not isinstance(ids, list) or not ids or len(ids) > 1000 or not all(isinstance(i, str) and i for i in ids)
    ):
        raise ValidationError('"device_ids" must be a list of 1 to 1000 device ids', code="INVALID_TARGET")
    group, room = body.get("group"), body.get("room_id")
    if group is not None and not isinstance(group, str):
        raise ValidationError('"group" must be a group slug', code="INVALID_TARGET")
    if room is not None and not isinstance(room, str):
        raise ValidationError('"room_id" must be a room id', code="INVALID_TARGET")
    if sum(x is not None for x in (ids, group, room)) > 1:
        raise ValidationError('name one target: "device_ids", "group" or "room_id"', code="INVALID_TARGET")
    return ids, group, room


@responds(200, 400, 404, 409, *AUTH)
@v1_endpoint
async def release(request: Request) -> Response:
    state = state_of(request)
    caller = await caller_of(request)
    caller.require(Scope.ADMIN_DEVICES)
    firmware = state.core.firmware
    found = await firmware.get(request.path_params["release_id"], caller.tenant)
    body = await json_body(request) if (await request.body()).strip() else {}
    ids, group, room = _target_fields(body)
    for serial in ids or ():
        await caller.check_device(serial)  # outside the key's scope a device does not exist
    target = await firmware.resolve_rollout_target(found, device_ids=ids, group=group, room_id=room)
    if caller.devices is not None:
        target = RolloutTarget(tuple(s for s in target.serials if caller.sees(s)), target.all_of_type)
    url = download_url(_base_url(request, state, for_devices=True), found)
    results: list[dict[str, Any]] = []
    sent_now = await firmware.release(found.id, caller.tenant, target, url, actor=caller.actor, dispatch=state.embedded)
    for entry, command in sent_now:
        if command is not None:
            await send(state, command)
        sent = command is not None
        results.append(
            {
                "device_id": entry.serial,
                "state": entry.state,
                "command_id": entry.command_id,
                "sent": sent,
                "error": entry.error,
            }
        )
    released = await firmware.get(found.id, caller.tenant)
    reply = {
        "status": "released",
        **_release_body(released, _base_url(request, state, for_devices=True)),
        "results": results,
    }
    return JSONResponse(reply)


# ---- devices asking --------------------------------------------------------------------------------


@responds(200, 400, 404, *AUTH)
@v1_endpoint
async def check(request: Request) -> Response:
    state = state_of(request)
    serial, caller = await device_or_caller(request)
    is_device = caller is None
    body = await json_body(request)
    if caller is not None:
        caller.require(Scope.READ_DEVICES)
        tenant = caller.tenant
        asked = body.get("device_id")
        if asked is not None:
            if not isinstance(asked, str):
                raise ValidationError('"device_id" must be a device id')
            await caller.check_device(asked)
            serial = (await state.core.devices.get(asked)).serial
    else:
        assert serial is not None
        tenant = (await state.core.devices.get(serial)).tenant  # a device asks its own tenant's releases
    answer: CheckAnswer = await state.core.firmware.check(
        tenant, body.get("device_type"), body.get("current_version"), serial
    )
    latest = answer.latest
    reply: dict[str, Any] = {
        "update_available": answer.update_available,
        "target_version": latest.version if latest is not None else None,
        "url": None,
        "checksum": None,
        "size": None,
    }
    if latest is not None and answer.update_available:
        reply["url"] = download_url(_base_url(request, state, for_devices=not is_device), latest)
        reply["checksum"] = latest.checksum
        reply["size"] = latest.size
    return JSONResponse(reply)


def byte_range(header: str, size: int) -> tuple[int, int] | None:
    """(first, last) of a `Range: bytes=…` request within `size` bytes; None when it cannot be
    served (several ranges, another unit, malformed, or starting past the end)."""
    match = _RANGE_RE.match(header.strip())
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first, last = match.group(1), match.group(2)
    if first == "":  # the last N bytes
        suffix = int(last)
        return (max(0, size - suffix), size - 1) if suffix > 0 and size > 0 else None
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    return (start, end) if start <= end and start < size else None


async def _stream(path: Path, start: int, end: int, cut_at: int) -> AsyncIterator[bytes]:
    """The bytes [start, end] of the file, read a chunk at a time on a worker thread; with
    `cut_at`, the response ends (short of its Content-Length) after that many bytes."""
    remaining = end - start + 1
    if cut_at:
        remaining = min(remaining, cut_at)
    async with await anyio.open_file(path, "rb") as file:
        await file.seek(start)
        while remaining > 0:
            chunk = await file.read(min(READ_CHUNK, remaining))
            if not chunk:
                return
            remaining -= len(chunk)
            yield chunk
    if cut_at:
        # the testing aid (`firmware_cut_at_bytes`): the connection drops mid-body, as a flaky link would
        raise ConnectionAbortedError("firmware download cut on purpose (firmware_cut_at_bytes)")


@responds(200, 206, 404, 416, *AUTH)
@v1_endpoint
async def download(request: Request) -> Response:
    state = state_of(request)
    serial, caller = await device_or_caller(request)
    firmware = state.core.firmware
    if caller is not None:
        found = await firmware.get(request.path_params["release_id"], caller.tenant)
        caller.require(Scope.READ_DEVICES)
    else:
        assert serial is not None
        found = await firmware.get(request.path_params["release_id"], (await state.core.devices.get(serial)).tenant)
    if caller is None and not await firmware.meant_for(found, serial):
        # a device sees only what is released to it; anything else does not exist for it
        return v1_error(404, "FIRMWARE_NOT_FOUND", f"firmware release not found: {found.id}")
    etag = f'"{found.checksum}"'
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": etag,
        "Content-Type": "application/octet-stream",
        "Content-Disposition": f'attachment; filename="{found.device_type}-{found.version}.bin"',
    }
    start, end, status = 0, found.size - 1, 200
    requested = request.headers.get("range")
    if_range = request.headers.get("if-range")
    if requested is not None and (if_range is None or if_range == etag):
        span = byte_range(requested, found.size)
        if span is None:
            return v1_error(
                416,
                "RANGE_NOT_SATISFIABLE",
                f"Range must be one byte range (bytes=first-last, bytes=first- or bytes=-suffix) starting"
                f" within the {found.size} bytes of the file; got {requested!r}",
                headers={"Content-Range": f"bytes */{found.size}"},
            )
        start, end, status = span[0], span[1], 206
        headers["Content-Range"] = f"bytes {start}-{end}/{found.size}"
    headers["Content-Length"] = str(end - start + 1)
    cut = state.settings.firmware_cut_at_bytes if status == 200 else 0
    stream = _stream(firmware.path_of(found), start, end, cut)
    return StreamingResponse(stream, status_code=status, headers=headers)


def routes() -> list[BaseRoute]:
    return [
        Route("/firmware/release", create, methods=["POST"]),
        Route("/firmware/check", check, methods=["POST"]),
        Route("/firmware/{release_id}", details, methods=["GET"]),
        Route("/firmware/{release_id}/release", release, methods=["POST"]),
        Route("/firmware/{release_id}/download", download, methods=["GET"]),
    ]
