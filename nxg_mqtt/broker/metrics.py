"""The broker's Prometheus families, read at scrape time from what it already counts."""

from __future__ import annotations

from collections import Counter

from nxg_mqtt.broker.server import NxgBroker
from nxg_mqtt.broker.transport import TcpTransport
from nxg_mqtt.metrics import Family, channel_counter, counter, gauge, total


def transport_of(conn: object) -> str:
    transport = getattr(conn, "transport", None)
    name = "tcp" if isinstance(transport, TcpTransport) else "websocket"
    return name + ("+tls" if getattr(transport, "tls", False) else "")


def broker_source(broker: NxgBroker) -> list[Family]:
    stats = broker.stats
    live: Counter[tuple[str, ...]] = Counter()
    for conn in list(broker.connections):
        session = conn.session
        role = session.role.value if session is not None and session.role is not None else "none"
        live[(role, transport_of(conn))] += 1
    return [
        gauge("nxg_mqtt_connections", "Open MQTT connections, by role and transport", ["role", "transport"], live),
        total("nxg_mqtt_connects_accepted", "CONNECTs accepted", stats["connects"]),
        counter(
            "nxg_mqtt_connects_refused",
            "CONNECTs refused, by CONNACK return code",
            "code",
            {str(code): n for code, n in broker.refused_by_code.items()},
        ),
        total("nxg_mqtt_messages_received", "PUBLISH packets received from clients", stats["messages_in"]),
        total("nxg_mqtt_messages_sent", "PUBLISH packets delivered to clients", stats["messages_out"]),
        *(
            []
            if broker.by_channel_in is None or broker.by_channel_out is None
            else [
                channel_counter(
                    "nxg_mqtt_channel_messages_received",
                    "PUBLISH packets received past the ACL and pairing, by channel (Channel values, pair, other)",
                    broker.by_channel_in,
                ),
                channel_counter(
                    "nxg_mqtt_channel_messages_sent",
                    "PUBLISH packets delivered to clients by routing, by channel",
                    broker.by_channel_out,
                ),
            ]
        ),
        counter(
            "nxg_mqtt_events",
            "Other broker events (drops, denials, protocol and plugin errors)",
            "event",
            {k: v for k, v in stats.items() if k not in ("connects", "connect_refused", "messages_in", "messages_out")},
        ),
    ]
