"""`create_app(...)`: the bridge's Starlette app; its lifespan owns the MQTT link and the hub.

    app = create_app(settings, core, "127.0.0.1", 1883, embedded=True, ports=Ports(1883, None, 8080))

`embedded=True`: the broker runs in this process on the same core, so commands dispatch at once
and the core publishes through the broker. `embedded=False` (`nxg-mqtt bridge --mqtt ...`): the
core publishes presence and Warning events through the link, and commands are left to the broker
process (it picks them up through signals), except for devices on this bridge's own gateway.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute

from bridge import api, portal, proxy, v1
from bridge.auth import AdminAuth
from bridge.device_replies import DeviceReplies
from bridge.gateway_registry import GatewaySessions
from bridge.health import health
from bridge.hub import HUB_SUBSCRIPTIONS, Hub
from bridge.link import MqttLink
from bridge.metrics import bridge_metrics
from bridge.openapi import openapi
from bridge.state import BridgeState, Ports
from bridge.state_ws import state_socket
from bridge.v1.headers import ApiHeaders
from bridge.ws_app import app_socket
from bridge.ws_gateway import gateway_socket
from bridge.ws_realtime import realtime_socket
from nxg_mqtt.core import Core
from nxg_mqtt.settings import Settings

LINK_START_WAIT_S = 5.0


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def create_app(
    settings: Settings,
    core: Core,
    mqtt_host: str,
    mqtt_port: int,
    *,
    embedded: bool = True,
    ports: Ports | None = None,
) -> Starlette:
    ports = ports or Ports(mqtt_port, settings.ws_port, settings.http_port)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        hub = Hub(settings.ws_queue_limit, settings.max_payload_bytes, core.tenants)
        # on another broker, property reports and proxy answers reach the core through the link
        replies = DeviceReplies(core) if not embedded else None
        on_message = replies.wrap(hub.on_mqtt) if replies is not None else hub.on_mqtt
        # beside the embedded broker the hub hears the broker's routing directly (no encoding, no
        # loopback socket); the link then only publishes (gateway devices, events). The Mosquitto
        # profile's outbox is an MQTT link: there the hub's channels still come over this link.
        in_process = embedded and core.outbox.in_process
        if not embedded:
            subscriptions: tuple[tuple[str, int], ...] = (("nxg/#", 1),)
        else:
            subscriptions = () if in_process else HUB_SUBSCRIPTIONS
        link = MqttLink(
            mqtt_host,
            mqtt_port,
            password=settings.internal_secret,
            on_message=on_message,
            subscriptions=subscriptions,
        )
        unsubscribe = (
            core.outbox.subscribe([topic for topic, _ in HUB_SUBSCRIPTIONS], hub.on_mqtt) if in_process else None
        )
        gateway = GatewaySessions()
        core.devices.on_revoked(gateway.revoke)
        disconnect = core.outbox.connect(link) if not embedded else None
        state = BridgeState(settings, core, AdminAuth(core.admin), hub, link, gateway, ports, embedded)
        app.state.bridge = state
        core.keys.on_revoked(state.sockets.revoked)
        await link.start()
        # apps connecting right after start-up must not miss events; a broker that is down only
        # makes /health say "degraded" while the link keeps retrying
        await link.wait_connected(LINK_START_WAIT_S)
        unregister = core.metrics.add_source(lambda: bridge_metrics(state))
        lag = asyncio.get_running_loop().create_task(core.metrics.probe_loop_lag())
        try:
            yield {"bridge": state}
        finally:
            lag.cancel()
            unregister()
            if disconnect is not None:
                disconnect()
            if unsubscribe is not None:
                unsubscribe()
            await state.realtime.close()
            if replies is not None:
                await replies.close()
            await link.close()

    # Starlette tries the routes in order, one regex each: `/api/v1` (every REST command) comes
    # first. No route before it could match a path under /api/v1, so no answer changes.
    routes = [
        *v1.routes(),
        Route("/health", health, methods=["GET"]),
        *v1.system.root_routes(),
        Route("/openapi.json", openapi, methods=["GET"]),
        *api.routes(),
        *proxy.routes(),
        WebSocketRoute("/ws/app", app_socket),
        WebSocketRoute("/ws/gateway", gateway_socket),
        WebSocketRoute("/realtime", realtime_socket),
        WebSocketRoute("/ws/state", state_socket),
        *portal.routes(),
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error},
        middleware=[Middleware(ApiHeaders)],
    )
