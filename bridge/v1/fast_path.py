"""`CommandFastPath(app)`: `POST /api/v1/device/{id}/command` straight to its endpoint.

Through Starlette, every request passes `ServerErrorMiddleware`, `ApiHeaders`,
`ExceptionMiddleware`, the app's router, the `/api/v1` mount, its router, the route and
`request_response`, each an async call with its own `send` wrapper: about 20-40 µs of a REST
command's ~1 ms. This hot route needs none of them but `ApiHeaders`: the endpoint is
`v1_endpoint`-guarded (every exception becomes seed 002's body, so the error middlewares never
see one) and its path names exactly one route (`tests/bridge/test_app.py` keeps it so). Here a
POST whose path is exactly the command route's goes to `ApiHeaders(endpoint)` with the scope
keys the router would have added (`app`, `router`, `endpoint`, `path_params`); every other
request (another method, a trailing slash, a `root_path`, a WebSocket) goes to the app as before.
"""

from __future__ import annotations

import re

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from bridge.v1 import PREFIX
from bridge.v1.commands import command
from bridge.v1.headers import ApiHeaders

# the two spellings `bridge.v1.commands.routes` gives the endpoint; Starlette's `{device_id}` is `[^/]+`
_ROUTE = re.compile("^" + re.escape(PREFIX) + r"/devices?/(?P<device_id>[^/]+)/command$")


async def _endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    response = await command(Request(scope, receive, send))
    await response(scope, receive, send)


class CommandFastPath:
    def __init__(self, app: Starlette) -> None:
        self.app = app
        self._endpoint = ApiHeaders(_endpoint)
        self.served = 0  # requests answered here (observable: the route is really taken)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            match = _ROUTE.match(scope["path"])
            if match is not None:
                scope["app"] = self.app
                scope["router"] = self.app.router
                scope["endpoint"] = command
                scope["path_params"] = match.groupdict()
                self.served += 1
                await self._endpoint(scope, receive, send)
                return
        await self.app(scope, receive, send)
