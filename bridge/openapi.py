"""`GET /openapi.json`: an OpenAPI 3.1 document generated from the app's routes and `schemas/`.

Every HTTP route of the app is listed (WebSocket routes are described in `/api/protocol`). Each
handler declares the status codes it answers with, next to its code:

    @responds(200, 404, *AUTH)
    @guarded(Scope.READ_DEVICES)
    async def get_device(...): ...

A route whose handler declares nothing is listed with no responses (tests/bridge/test_openapi.py
refuses that, and checks each declaration against the answers of the running app). A route
that declares 401 needs a credential (`security`).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from nxg_mqtt import __version__, messages

# behind a credential: none or a wrong one (401), a scope it lacks (403), too many wrong ones (429)
AUTH = (401, 403, 429)
REASONS = {200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 400: "Bad request", 401: "Unauthorized"}
REASONS |= {403: "Forbidden", 404: "Not found", 409: "Conflict", 429: "Too many requests"}
REASONS |= {206: "Partial content", 302: "Found", 413: "Too large", 416: "Range not satisfiable"}
REASONS |= {502: "Gateway error", 503: "Degraded", 504: "Gateway timeout"}
_ATTR = "openapi_responses"
E = TypeVar("E", bound=Callable[..., Any])


def responds(*codes: int) -> Callable[[E], E]:
    """Declare the status codes a handler answers with (its entry in /openapi.json)."""
    unknown = sorted(set(codes) - set(REASONS))
    if unknown:
        raise ValueError(f"no reason phrase for status {unknown}: add it to REASONS")

    def mark(endpoint: E) -> E:
        setattr(endpoint, _ATTR, tuple(sorted(set(codes))))
        return endpoint

    return mark


def http_routes(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str, Route]]:
    """(path, method, route) of every HTTP route, mounts flattened."""
    for route in routes:
        if isinstance(route, Mount):
            yield from http_routes(list(route.routes), prefix + route.path)
        elif isinstance(route, Route):
            for method in sorted((route.methods or set()) - {"HEAD"}):
                yield prefix + route.path, method, route


def status_codes(route: Route) -> tuple[int, ...]:
    """The codes `route`'s handler declared with `responds` (empty: none declared)."""
    codes: tuple[int, ...] = getattr(route.endpoint, _ATTR, ())
    return codes


def document(routes: list[BaseRoute]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for path, method, route in http_routes(routes):
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"{(\w+)}", path)
        ]
        operation: dict[str, Any] = {
            "operationId": f"{method.lower()}_{route.name}",
            "summary": (inspect.getdoc(route.endpoint) or route.name).splitlines()[0],
            "responses": {str(code): {"description": REASONS[code]} for code in status_codes(route)},
        }
        if parameters:
            operation["parameters"] = parameters
        if 401 in status_codes(route):
            operation["security"] = [{"adminPassword": []}]
        paths.setdefault(path, {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "NXG MQTT", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": messages.all_schemas(),
            "securitySchemes": {"adminPassword": {"type": "http", "scheme": "bearer"}},
        },
    }


@responds(200)
async def openapi(request: Request) -> Response:
    return JSONResponse(document(list(request.app.routes)))
