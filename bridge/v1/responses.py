"""Response bodies of `/api/v1` (PROTOCOL §6): `{"success":false,"code","error","details"}` on errors."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

from nxg_mqtt.errors import NxgError


def v1_error(
    status: int, code: str, message: str, details: list[Any] | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"success": False, "code": code, "error": message, "details": details or []}
    return JSONResponse(body, status_code=status, headers=headers)


def from_error(exc: NxgError) -> JSONResponse:
    """An NxgError as seed 002's error body, with the status its class carries."""
    details = exc.details if isinstance(exc.details, list) else None
    return v1_error(exc.status, exc.code, exc.message, details)
