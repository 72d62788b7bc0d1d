"""The app's route table: `/api/v1` is tried first (the REST command path), which changes no answer
only because no route shadows another; these tests keep it that way."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
from starlette.routing import BaseRoute, Match, Mount, Route

from tests.bridge.helpers import Stack


def http_routes(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, Route]]:
    for route in routes:
        if isinstance(route, Mount) and route.routes:
            yield from http_routes(list(route.routes), prefix + route.path)
        elif isinstance(route, Route):
            yield prefix + route.path, route


def resolve(routes: list[BaseRoute], scope: dict[str, Any]) -> BaseRoute | None:
    """The route Starlette's router hands `scope` to: the first full match (a Mount: its first full
    match inside), else None (a 404 or 405)."""
    for route in routes:
        match, child = route.matches(scope)
        if match is Match.FULL:
            if isinstance(route, Mount) and route.routes:
                inner = {**scope, **child}
                return resolve(list(route.routes), inner)
            return route
    return None


async def test_every_route_answers_its_own_paths_whatever_the_order(stack: Stack) -> None:
    app = stack.bridge.app
    routes = list(http_routes(app.routes))
    assert len(routes) > 50
    assert isinstance(app.routes[0], Mount) and app.routes[0].path == "/api/v1"
    for path, route in routes:
        sample = re.sub(r"{\w+(:path)?}", "x1", path)
        for method in route.methods or {"GET"}:
            scope = {"type": "http", "path": sample, "root_path": "", "method": method, "headers": []}
            assert resolve(app.routes, scope) is route, f"{method} {sample} reaches another route than {path}"


async def test_the_command_route_keeps_its_404_and_405(stack: Stack) -> None:
    wrong_method = await stack.http.get("/api/v1/device/nope/command")
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"
    assert wrong_method.headers["X-API-Version"] == "1"
    unknown = await stack.http.post("/api/v1/device/nope/commandz", json={"action": "x"})
    assert unknown.status_code == 404 and unknown.headers["X-API-Version"] == "1"
    async with httpx.AsyncClient(base_url=stack.base) as anonymous:
        assert (await anonymous.post("/api/v1/device/nope/command", json={"action": "x"})).status_code == 401
    missing = await stack.http.post("/api/v1/device/nope/command", json={"action": "x"})
    assert missing.status_code == 404 and missing.json()["code"] == "DEVICE_NOT_FOUND"


async def test_the_command_route_takes_the_fast_path_and_nothing_else_does(stack: Stack) -> None:
    fast = stack.bridge.fast_path
    serial = "FAST-1"
    await stack.create_device(serial)
    before = fast.served
    for path in (f"/api/v1/device/{serial}/command", f"/api/v1/devices/{serial}/command"):
        accepted = await stack.http.post(path, json={"action": "light_on"}, headers={"X-Request-ID": "r-1"})
        assert accepted.status_code == 202, accepted.text
        assert set(accepted.json()) == {"success", "command_id", "message_id"}
        assert accepted.headers["X-API-Version"] == "1" and accepted.headers["X-Request-ID"] == "r-1"
        assert accepted.headers["content-type"] == "application/json"
    refused = await stack.http.post(f"/api/v1/device/{serial}/command", content=b"{")
    assert refused.status_code == 400 and refused.json()["success"] is False
    assert refused.headers["X-API-Version"] == "1"
    async with httpx.AsyncClient(base_url=stack.base) as anonymous:
        assert (await anonymous.post(f"/api/v1/device/{serial}/command", json={"action": "x"})).status_code == 401
    assert fast.served == before + 4
    # everything else is Starlette's: another method, a trailing slash, a deeper path
    assert (await stack.http.get(f"/api/v1/device/{serial}/command")).status_code == 405
    slash = await stack.http.post(f"/api/v1/device/{serial}/command/", json={"action": "x"})
    assert slash.status_code in (307, 404)
    confirm = await stack.http.post(f"/api/v1/device/{serial}/command/confirm", json={"dry_run_token": "x"})
    assert confirm.json()["code"] == "DRY_RUN_TOKEN_INVALID"
    assert fast.served == before + 4
