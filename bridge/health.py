"""`GET /health` (no auth): `{"status":"ok"|"degraded","broker":bool,"store":bool}`, 200 or 503.

`broker` is the MQTT link's state (connected and subscribed), `store` a round trip to SQLite.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bridge.openapi import responds
from bridge.state import state_of

log = logging.getLogger(__name__)


@responds(200, 503)
async def health(request: Request) -> Response:
    state = state_of(request)
    broker = state.link.connected
    try:
        await state.core.admin.configured()
        store = True
    except Exception:
        log.exception("health: the store failed")
        store = False
    ok = broker and store
    return JSONResponse(
        {"status": "ok" if ok else "degraded", "broker": broker, "store": store},
        status_code=200 if ok else 503,
    )
