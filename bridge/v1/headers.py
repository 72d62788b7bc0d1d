"""The headers of every `/api/v1` response (seed 002): `X-API-Version: 1`, `X-Protocol-Version`,
and `X-Request-ID` — the caller's when it sent a sane one, else a new UUID — which is also logged
with the request's method, path and status, so a report quoting it finds its log line.

That `bridge.requests` line is the access log line of an `/api/v1` request: it carries the peer
and the path with its query (credentials redacted, as uvicorn's access log shows them), and
uvicorn's own access line for the same request is dropped (`OneAccessLine`). One record per
request instead of two: formatting and writing a log record is ~25 µs, about 1.5 % of a REST
command."""

from __future__ import annotations

import logging
import re

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bridge.v1 import PREFIX
from bridge.v1.ids import uuid4_text
from bridge.v1.system import PROTOCOL
from nxg_mqtt.logs import redact

log = logging.getLogger("bridge.requests")
ACCESS = "%s %s %s request_id=%s"
API_VERSION = "1"
_FIXED = [(b"x-api-version", API_VERSION.encode("latin-1")), (b"x-protocol-version", PROTOCOL.encode("latin-1"))]
_OURS = frozenset({b"x-api-version", b"x-protocol-version", b"x-request-id"})
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")  # echoed into a header and the log: nothing else


def under_api(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/") or path.startswith(PREFIX + "?")


class OneAccessLine(logging.Filter):
    """On `uvicorn.access`: drop the line of an `/api/v1` request (ApiHeaders logs it, with its
    request id); every other request keeps uvicorn's line."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        return not (isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str) and under_api(args[2]))


def request_id(given: str | None) -> str:
    return given if given is not None and _REQUEST_ID.match(given) else uuid4_text()


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
                raw = message.get("headers")
                if isinstance(raw, list) and not any(name in _OURS for name, _ in raw):
                    # what MutableHeaders' three assignments would leave, without its per-key scans
                    raw += [*_FIXED, (b"x-request-id", rid.encode("latin-1"))]
                else:
                    headers = MutableHeaders(scope=message)
                    headers["X-API-Version"] = API_VERSION
                    headers["X-Protocol-Version"] = PROTOCOL
                    headers["X-Request-ID"] = rid
                if log.isEnabledFor(logging.INFO):
                    query = scope.get("query_string", b"")
                    shown = redact(path + "?" + query.decode("latin-1")) if query else path
                    client = scope.get("client")
                    peer = f"{client[0]}:{client[1]}" if client else None
                    args = (scope["method"], shown, message["status"], rid)
                    # `log.info` would first walk the stack for the caller's file and line, which
                    # no format prints (a tenth of the line's cost); filters and handlers still run
                    extra = {"peer": peer}
                    log.handle(log.makeRecord(log.name, logging.INFO, __file__, 0, ACCESS, args, None, extra=extra))
            await send(message)

        await self.app(scope, receive, send_with_headers)
