"""Seed 002's Health and System endpoints (no auth): `/health`, `/health/live`, `/health/ready`,
`/status`, `/version`, `/changelog` under `/api/v1`, and `/metrics` (Prometheus text format).

`/metrics`, `/health/live` and `/health/ready` are also mounted at the root (`root_routes`),
where Prometheus and orchestrators look; the root `/health` keeps its own shape (bridge/health.py).
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

import nxg_mqtt
from bridge.openapi import responds
from bridge.state import state_of
from nxg_mqtt import __version__
from nxg_mqtt.metrics import CONTENT_TYPE

log = logging.getLogger(__name__)
SYSTEM = "NXG MQTT"
PROTOCOL = "MQTT/3.1.1"
# installed from a wheel: inside the package (pyproject's package-dir); in a checkout: at the top
_PACKAGED = Path(nxg_mqtt.__file__).resolve().parent / "about" / "CHANGELOG.md"
CHANGELOG = _PACKAGED if _PACKAGED.is_file() else Path(__file__).resolve().parents[2] / "CHANGELOG.md"


async def _checks(request: Request) -> dict[str, bool]:
    state = state_of(request)
    try:
        await state.core.admin.configured()
        database = True
    except Exception:
        log.exception("health: the store failed")
        database = False
    return {"api": True, "database": database, "mqtt": state.link.connected}


@responds(200, 503)
async def health(request: Request) -> Response:
    checks = await _checks(request)
    if not all(checks.values()):
        return JSONResponse({"status": "degraded", "checks": checks}, status_code=503)
    body = {
        "status": "ok",
        "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "services": {name: {"status": "operational"} for name in checks},
        "metrics": {"active_devices": state_of(request).core.presence.online_count()},
    }
    return JSONResponse(body)


@responds(200)
async def live(request: Request) -> Response:
    """The process answers: nothing else is checked (a restart would not fix a broker outage)."""
    return JSONResponse({"status": "ok"})


@responds(200, 503)
async def ready(request: Request) -> Response:
    """Ready for traffic: the store answers and the broker link is up; else 503 with the checks."""
    checks = await _checks(request)
    ok = all(checks.values())
    return JSONResponse({"status": "ok" if ok else "degraded", "checks": checks}, status_code=200 if ok else 503)


@responds(200)
async def status(request: Request) -> Response:
    return JSONResponse(
        {"system": SYSTEM, "status": "operational", "beta": True, "version": __version__, "protocol": PROTOCOL}
    )


@responds(200)
async def version(request: Request) -> Response:
    return JSONResponse({"version": __version__, "protocol": PROTOCOL})


def changelog_entries(text: str) -> list[dict[str, Any]]:
    """CHANGELOG.md's `## ` sections: [{"version", "changes": [first line of each item]}]."""
    entries: list[dict[str, Any]] = []
    for line in text.splitlines():
        if line.startswith("## "):
            entries.append({"version": line[3:].strip(), "changes": []})
        elif entries and (item := re.match(r"^- (.*)", line)):
            entries[-1]["changes"].append(item.group(1))
    return entries


@responds(200)
async def changelog(request: Request) -> Response:
    text = CHANGELOG.read_text(encoding="utf-8") if CHANGELOG.is_file() else ""
    return JSONResponse({"version": __version__, "changelog": changelog_entries(text)})


@responds(200)
async def metrics(request: Request) -> Response:
    return Response(state_of(request).core.metrics.render(), media_type=CONTENT_TYPE)


def routes() -> list[BaseRoute]:
    return [
        Route("/health", health, methods=["GET"]),
        Route("/health/live", live, methods=["GET"]),
        Route("/health/ready", ready, methods=["GET"]),
        Route("/status", status, methods=["GET"]),
        Route("/version", version, methods=["GET"]),
        Route("/changelog", changelog, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]


def root_routes() -> list[BaseRoute]:
    return [
        Route("/health/live", live, methods=["GET"]),
        Route("/health/ready", ready, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
