"""The portal's page, assets and metadata (issue 11), without a browser: headers, seed 000's
headings in order, no inline script, the REST table from the app's own routes."""

from __future__ import annotations

import json
import re
from pathlib import Path

from bridge import portal
from tests.bridge.helpers import Stack

ROOT = Path(__file__).resolve().parents[2]
SEED_HEADINGS = [
    "NXG Developer Portal",
    "For Embedded Developers",
    "Connection Flow",
    "What You Send",
    "What You Receive",
    "Live: What Your Devices Are Sending",
    "Device Setup",
    "Code: ESP-IDF / C",
    "For Web Developers",
    "Connection Flow",
    "What You Receive",
    "What You Send",
    "REST API",
    "Live: What Your App Receives",
    "Try It: Gateway Simulator",
    "Try It: Send a Command",
    "Code: TypeScript / Node.js",
]


async def test_page_has_a_csp_without_inline_script_and_seed_000s_headings_in_order(stack: Stack) -> None:
    response = await stack.http.get("/", headers={"Authorization": ""})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    html = response.text
    assert "<title>NXG Developer Portal</title>" in html
    headings = [re.sub(r"<[^>]+>", "", h) for h in re.findall(r"<h[123][^>]*>(.*?)</h[123]>", html)]
    assert headings == SEED_HEADINGS
    assert "Connecting…" in html and "Waiting for device data…" in html and "Waiting for messages…" in html
    assert not re.search(r"\son[a-z]+\s*=", html), "inline event handler"
    assert all("src=" in tag for tag in re.findall(r"<script[^>]*>", html)), "inline script"
    assert not re.search(r"(src|href)=\"(https?:)?//", html), "a request would leave the host"


async def test_assets_and_favicon_are_served_by_the_bridge(stack: Stack) -> None:
    for path in ("/static/portal.js", "/static/live.js", "/static/simulator.js", "/static/portal.css"):
        response = await stack.http.get(path)
        assert response.status_code == 200, path
        assert "http://" not in response.text and "https://" not in response.text, f"{path} names another host"
    favicon = await stack.http.get("/favicon.ico")
    assert favicon.status_code == 200 and favicon.headers["content-type"].startswith("image/svg+xml")


async def test_rest_table_lists_every_api_route_of_the_app(stack: Stack) -> None:
    meta = (await stack.http.get("/portal/meta.json")).json()
    table = {(r["method"], r["path"]) for r in meta["routes"]}
    for seed_route in [
        ("GET", "/api/devices"),
        ("GET", "/api/devices/:serial"),
        ("GET", "/api/devices/:serial/code"),
        ("GET", "/api/history"),
        ("GET", "/api/protocol"),
        ("POST", "/api/devices"),
        ("POST", "/api/devices/:serial/reset"),
        ("POST", "/api/devices/:serial/regenerate"),
        ("DELETE", "/api/devices/:serial"),
    ]:
        assert seed_route in table, seed_route
    assert ("POST", "/api/v1/device/:device_id/command") in table  # the v1 mount is walked too
    assert all(path.startswith("/api/") for _, path in table)
    assert meta["routes"][0] == {"method": "GET", "path": "/api/devices", "description": "List all registered devices"}


async def test_examples_come_from_schemas(stack: Stack) -> None:
    meta = (await stack.http.get("/portal/meta.json")).json()
    for kind in ("telemetry", "status", "ack", "cmd", "pair_request"):
        schema = json.loads((ROOT / "schemas" / f"{kind}.json").read_text())
        assert meta["examples"][kind] == schema["examples"][0]


def test_the_esp_idf_example_is_the_firmwares_app_main() -> None:
    shown = (portal.STATIC_DIR / "examples" / "app_main.c").read_text()
    assert shown == (ROOT / "firmware" / "esp32" / "main" / "app_main.c").read_text(), (
        "copy firmware/esp32/main/app_main.c to bridge/static/examples/"
    )


def test_wheel_carries_the_static_files() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'bridge = ["static/*", "static/examples/*"]' in pyproject
    assert all(p.parent.name in ("static", "examples") for p in portal.STATIC_DIR.rglob("*") if p.is_file())
