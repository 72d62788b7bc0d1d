"""The developer portal at `/` (seed 000): one static page, its assets, and what it renders.

Everything is served from `bridge/static/` (no CDN, no build step). The page's JavaScript reads
`/portal/meta.json` for what must not drift from the server: the REST table is generated from the
app's own routes and the example messages come from `schemas/`. The page is public; everything
live needs the admin password or an API key, which the page keeps in `sessionStorage`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from bridge.openapi import responds
from nxg_mqtt import messages

STATIC_DIR = Path(__file__).resolve().parent / "static"

# 'self' only: no inline script, no inline event handlers, nothing fetched from another host
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

# what each REST path does, for the table; a route missing here still appears, without a note
NOTES = {
    ("GET", "/api/devices"): "List all registered devices",
    ("GET", "/api/devices/:serial"): "Get single device details",
    ("GET", "/api/devices/:serial/code"): "Get connection code for device",
    ("GET", "/api/devices/:serial/config.h"): "Download the device's config.h",
    ("GET", "/api/history"): "Query stored messages (?serial=...&type=...&limit=100)",
    ("GET", "/api/protocol"): "Protocol docs as JSON",
    ("POST", "/api/devices"): "Create device → { serial, code }",
    ("POST", "/api/devices/:serial/reset"): "Reset device (invalidates token, re-pair required)",
    ("POST", "/api/devices/:serial/regenerate"): "Regenerate connectionCode (invalidates token)",
    ("DELETE", "/api/devices/:serial"): "Delete a device permanently",
}
METHOD_ORDER = {"GET": 0, "POST": 1, "PUT": 2, "DELETE": 3}


def rest_routes(routes: list[BaseRoute], prefix: str = "") -> list[dict[str, str]]:
    """Every `/api/...` route of the app as `{method, path, description}`, seed 000's order."""
    found: list[dict[str, str]] = []
    for route in routes:
        if isinstance(route, Mount):
            found += rest_routes(list(route.routes), prefix + route.path)
        elif isinstance(route, Route) and (prefix + route.path).startswith("/api/"):
            path = (prefix + route.path).replace("{", ":").replace("}", "")
            for method in sorted((route.methods or set()) - {"HEAD"}):
                found.append({"method": method, "path": path, "description": NOTES.get((method, path), "")})
    found.sort(key=lambda r: (r["path"].startswith("/api/v1"), METHOD_ORDER.get(r["method"], 9), r["path"]))
    return found


def examples() -> dict[str, Any]:
    """The first example of every schema that has one, keyed by kind."""
    return {kind: doc["examples"][0] for kind, doc in messages.all_schemas().items() if doc.get("examples")}


@responds(200)
async def index(request: Request) -> Response:
    return FileResponse(STATIC_DIR / "index.html", headers=SECURITY_HEADERS)


@responds(200)
async def favicon(request: Request) -> Response:
    return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml")


@responds(200)
async def meta(request: Request) -> Response:
    body = {"routes": rest_routes(list(request.app.routes)), "examples": examples()}
    return JSONResponse(body, headers={"Cache-Control": "no-cache"})


def routes() -> list[BaseRoute]:
    return [
        Route("/", index, methods=["GET"]),
        Route("/favicon.ico", favicon, methods=["GET"]),
        Route("/portal/meta.json", meta, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
    ]
