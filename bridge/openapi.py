"""`GET /openapi.json`: an OpenAPI 3.1 document generated from the app's routes and `schemas/`.

Every HTTP route of the app is listed (WebSocket routes are described in `/api/protocol`). Status
codes are derived from each route: the success code its handler returns (`status_code=` in its
source, else 200), 404 when the path names a resource, 400 for requests that carry input, 401 and
429 behind the admin password (`/api/…` except the protocol), 503 for the readiness probes.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from nxg_mqtt import __version__, messages

PUBLIC = re.compile(r"^(/api/v1)?/(health.*|metrics|status|version|changelog|openapi\.json)$|^/api/protocol$")
REASONS = {200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 400: "Bad request", 401: "Unauthorized"}
REASONS |= {404: "Not found", 409: "Conflict", 429: "Too many requests", 503: "Degraded"}


def http_routes(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str, Route]]:
    """(path, method, route) of every HTTP route, mounts flattened."""
    for route in routes:
        if isinstance(route, Mount):
            yield from http_routes(list(route.routes), prefix + route.path)
        elif isinstance(route, Route):
            for method in sorted((route.methods or set()) - {"HEAD"}):
                yield prefix + route.path, method, route


def status_codes(path: str, method: str, route: Route) -> list[int]:
    try:
        source = inspect.getsource(route.endpoint)
    except (OSError, TypeError):
        source = ""
    success = sorted({int(code) for code in re.findall(r"status_code=(2\d\d)\b", source)}) or [200]
    codes = set(success)
    if "{" in path:
        codes.add(404)
    if method in ("POST", "PUT", "PATCH") or "history" in path:
        codes.add(400)
    if not PUBLIC.match(path):
        codes |= {401, 429}
    if re.search(r"health(/ready)?$", path):
        codes.add(503)
    if re.search(r"status_code=409|ConflictError|CONFLICT", source) or (method == "POST" and path == "/api/devices"):
        codes.add(409)
    return sorted(codes)


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
            "responses": {
                str(code): {"description": REASONS.get(code, "")} for code in status_codes(path, method, route)
            },
        }
        if parameters:
            operation["parameters"] = parameters
        if not PUBLIC.match(path):
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


async def openapi(request: Request) -> Response:
    return JSONResponse(document(list(request.app.routes)))
