"""What the lifespan owns and every route reaches through `request.state.bridge`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

from starlette.requests import HTTPConnection

from bridge.auth import AdminAuth
from bridge.gateway_registry import GatewaySessions
from bridge.hub import Hub
from bridge.link import MqttLink
from bridge.live import LiveSockets
from bridge.realtime_writer import RealtimeWriter
from nxg_mqtt.core import Core
from nxg_mqtt.settings import Settings


@dataclass(frozen=True, slots=True)
class Ports:
    """Where devices reach this installation (written into config.h)."""

    mqtt: int
    mqtt_ws: int | None
    http: int


@dataclass(slots=True)
class BridgeState:
    settings: Settings
    core: Core
    auth: AdminAuth
    hub: Hub
    link: MqttLink
    gateway: GatewaySessions
    ports: Ports
    embedded: bool
    sockets: LiveSockets = field(default_factory=LiveSockets)  # API keys' open WebSockets
    realtime: RealtimeWriter = field(default_factory=RealtimeWriter)  # writes to every /realtime socket


def state_of(conn: HTTPConnection) -> BridgeState:
    return cast(BridgeState, conn.state.bridge)
