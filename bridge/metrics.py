"""The bridge's Prometheus families: WebSocket clients per surface and the broker link's state."""

from __future__ import annotations

from bridge.state import BridgeState
from nxg_mqtt.metrics import Family, gauge


def bridge_metrics(state: BridgeState) -> list[Family]:
    clients: dict[tuple[str, ...], float] = {("app",): state.hub.app_count, ("gateway",): len(state.gateway)}
    link: dict[tuple[str, ...], float] = {(): float(state.link.connected)}
    return [
        gauge("nxg_websocket_clients", "Open bridge WebSocket connections, by surface", ["surface"], clients),
        gauge("nxg_broker_link_up", "1 when the bridge's MQTT link to the broker is connected", [], link),
    ]
