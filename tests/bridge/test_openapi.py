"""`GET /openapi.json` lists every HTTP route of the running app with the status codes its handler
declares (`bridge.openapi.responds`), and each declaration holds: the running app, probed with
the requests that reach each kind of answer, never answers with a code its route did not declare."""

from __future__ import annotations

import re
from typing import Any

import httpx
from starlette.routing import BaseRoute

from bridge.openapi import http_routes, status_codes
from tests.bridge.helpers import PASSWORD, Stack


async def test_every_route_declares_its_status_codes_and_is_in_openapi(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.base, timeout=5) as anonymous:
        response = await anonymous.get("/openapi.json")
    assert response.status_code == 200
    doc = response.json()
    assert doc["openapi"].startswith("3.") and "telemetry" in doc["components"]["schemas"]
    routes: list[BaseRoute] = list(stack.bridge.app.routes)
    listed = list(http_routes(routes))
    assert len(listed) > 20
    for path, method, route in listed:
        declared = status_codes(route)
        assert declared, f"{method} {path}: its handler declares no status codes (@responds)"
        operation = doc["paths"][path][method.lower()]
        assert sorted(int(code) for code in operation["responses"]) == list(declared), (path, method)
        assert ("security" in operation) == (401 in declared), (path, method)
    paths = doc["paths"]
    assert set(paths["/api/devices"]["post"]["responses"]) == {"201", "400", "401", "403", "409", "429"}
    assert set(paths["/api/v1/health/ready"]["get"]["responses"]) == {"200", "503"}
    assert set(paths["/metrics"]["get"]["responses"]) == {"200"} and "security" not in paths["/metrics"]["get"]


def _url(path: str, device: str) -> str:
    return re.sub(r"{\w+}", device, path)


async def test_the_running_app_answers_only_with_declared_codes(stack: Stack) -> None:
    """Every route, probed: without a credential, with a key lacking every write scope, as admin
    about an unknown and a known device with an empty, a wrong and a malformed body."""
    await stack.create_device("oa-1")
    key = await stack.http.post(
        "/api/v1/auth/api-keys", json={"name": "reader", "role": "viewer", "scopes": ["read:devices"]}
    )
    assert key.status_code == 201, key.text
    reader = {"Authorization": f"Bearer {key.json()['key']}"}
    admin = {"Authorization": f"Bearer {PASSWORD}"}
    bodies: list[dict[str, Any]] = [{"json": {}}, {"content": b"not json"}, {"json": {"action": 7, "device_ids": []}}]
    bodies.append({"json": {"action": "reboot", "device_ids": ["nope"], "id": "nope", "deviceId": "nope"}})
    seen: dict[tuple[str, str], set[int]] = {}
    routes = sorted(http_routes(list(stack.bridge.app.routes)), key=lambda r: r[1] == "DELETE")  # deletes last
    async with httpx.AsyncClient(base_url=stack.base, timeout=10) as http:
        for path, method, route in routes:
            answers = seen.setdefault((method, path), set())
            declared = set(status_codes(route))
            for headers, device in (({}, "oa-1"), (reader, "oa-1"), (admin, "nope"), (admin, "oa-1")):
                for body in bodies if method in ("POST", "PUT") else [{}]:
                    response = await http.request(method, _url(path, device), headers=headers, **body)
                    answers.add(response.status_code)
                    assert response.status_code in declared, (method, path, device, body, response.text)
    # the probes reached the codes that matter, so the check above was not vacuous
    assert {200, 401, 404} <= seen[("GET", "/api/devices/{serial}")]
    assert {403} <= seen[("DELETE", "/api/devices/{serial}")]
    assert {400, 401, 403, 404} <= seen[("POST", "/api/v1/device/{device_id}/command")]
