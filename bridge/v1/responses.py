"""Response bodies of `/api/v1` (PROTOCOL §6): `{"success":false,"code","error","details"}` on errors."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from nxg_mqtt.errors import DryRunRequired, NxgError, PayloadRejected, RateLimitedError, ValidationError
from nxg_mqtt.messages import load_json

log = logging.getLogger(__name__)

# Starlette's `JSONResponse.render` calls `json.dumps` with keywords, which builds an encoder per
# response; the same encoder, built once, writes the same bytes
_RENDER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode


class CompactJSONResponse(JSONResponse):
    """`JSONResponse`, byte for byte, for the hot routes (a command's 202)."""

    def render(self, content: Any) -> bytes:
        return _RENDER(content).encode("utf-8")


def v1_error(
    status: int, code: str, message: str, details: list[Any] | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"success": False, "code": code, "error": message, "details": details or []}
    return JSONResponse(body, status_code=status, headers=headers)


def from_error(exc: NxgError) -> JSONResponse:
    """An NxgError as seed 002's error body, with the status its class carries."""
    details = exc.details if isinstance(exc.details, list) else None
    return v1_error(exc.status, exc.code, exc.message, details)


Handler = Callable[[Request], Awaitable[Response]]


def dry_run_required(exc: DryRunRequired) -> JSONResponse:
    """Seed 002's 409 body, verbatim."""
    body = {"status": "dry_run_required", "reason": exc.message, "dry_run_token": exc.token}
    return JSONResponse(body, status_code=409)


def error_response(exc: NxgError) -> JSONResponse:
    """Any core error as `/api/v1` answers it: seed 002's 409 for a critical action, 429 with
    `Retry-After` for a rate limit, else `{"success":false,"code","error","details"}`."""
    if isinstance(exc, DryRunRequired):
        return dry_run_required(exc)
    if isinstance(exc, RateLimitedError):
        wait = exc.retry_after or 1
        details = exc.details if isinstance(exc.details, list) else None
        headers = {"Retry-After": str(max(1, math.ceil(wait)))}
        return v1_error(exc.status, exc.code, exc.message, details, headers)
    return from_error(exc)


def v1_endpoint(handler: Handler) -> Handler:
    """Turn the core's errors into `/api/v1` bodies; anything else unexpected is a 502
    `GATEWAY_ERROR` (logged), never a bare 500 page."""

    @wraps(handler)
    async def guarded(request: Request) -> Response:
        try:
            return await handler(request)
        except NxgError as exc:
            return error_response(exc)
        except Exception:
            log.exception("%s %s failed", request.method, request.url.path)
            return v1_error(502, "GATEWAY_ERROR", "internal gateway error")

    return guarded


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object, through the core's one decoder; ValidationError (400) otherwise."""
    raw = await request.body()
    try:
        value = load_json(raw, what="body")
    except PayloadRejected as exc:
        raise ValidationError(exc.message) from None
    if not isinstance(value, dict):
        raise ValidationError("the body must be a JSON object")
    return value
