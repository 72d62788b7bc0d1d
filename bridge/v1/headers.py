"""The headers of every `/api/v1` response (seed 002): `X-API-Version: 1`, `X-Protocol-Version`,
and `X-Request-ID` — the caller's when it sent a sane one, else a new UUID — which is also logged
with the request's method, path and status, so a report quoting it finds its log line."""

from __future__ import annotations

import logging
import re
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bridge.v1 import PREFIX
from bridge.v1.system import PROTOCOL

log = logging.getLogger("bridge.requests")
API_VERSION = "1"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")  # echoed into a header and the log: nothing else


def request_id(given: str | None) -> str:
    return given if given is not None and _REQUEST_ID.match(given) else str(uuid.uuid4())


class ApiHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path == PREFIX or path.startswith(PREFIX + "/")):
            await self.app(scope, receive, send)
            return
        given = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), None)
        rid = request_id(given)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["X-API-Version"] = API_VERSION
                headers["X-Protocol-Version"] = PROTOCOL
                headers["X-Request-ID"] = rid
                log.info("%s %s %s request_id=%s", scope["method"], path, message["status"], rid)
            await send(message)

        await self.app(scope, receive, send_with_headers)
