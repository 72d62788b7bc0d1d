"""`GET /openapi.json` lists every HTTP route of the running app with its status codes."""

from __future__ import annotations

import httpx
from starlette.routing import BaseRoute

from bridge.openapi import http_routes
from tests.bridge.helpers import Stack


async def test_every_route_is_in_openapi_with_its_status_codes(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.base, timeout=5) as anonymous:
        response = await anonymous.get("/openapi.json")
    assert response.status_code == 200
    doc = response.json()
    assert doc["openapi"].startswith("3.") and "telemetry" in doc["components"]["schemas"]
    routes: list[BaseRoute] = list(stack.bridge.app.routes)
    listed = list(http_routes(routes))
    assert len(listed) > 20
    for path, method, _ in listed:
        operation = doc["paths"][path][method.lower()]
        assert operation["responses"], (path, method)
    paths = doc["paths"]
    assert set(paths["/api/devices"]["post"]["responses"]) == {"201", "400", "401", "409", "429"}
    assert "404" in paths["/api/devices/{serial}"]["get"]["responses"]
    assert set(paths["/api/v1/health/ready"]["get"]["responses"]) == {"200", "503"}
    assert set(paths["/metrics"]["get"]["responses"]) == {"200"} and "security" not in paths["/metrics"]["get"]
    assert paths["/api/history"]["get"]["security"] == [{"adminPassword": []}]
