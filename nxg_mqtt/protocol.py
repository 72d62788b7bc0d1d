"""The protocol's vocabulary, in one place (PROTOCOL §2–§6): roles, message kinds and reasons.

Every surface (broker plugins, bridge routes, CLI, store) names these values through the enums
here; no module keeps its own list of strings.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """Who a session authenticated as (PROTOCOL §2 "Who may connect")."""

    DEVICE = "device"
    PAIR = "pair"
    BRIDGE = "bridge"
    KEY = "key"
    ANONYMOUS = "anonymous"  # the standalone broker's --allow-anonymous, for conformance testing only


class RevokeReason(StrEnum):
    """Why a device's credentials stopped working (its live sessions end within 1 s)."""

    RESET = "reset"
    REGENERATE = "regenerate"
    DELETE = "delete"
    REPAIRED = "re-paired"


class CloseReason(StrEnum):
    """Why a session ended: the connection log's `reason` and the broker's close reasons."""

    DISCONNECTED = "disconnected"
    CONNECTION_LOST = "connection lost"
    PROTOCOL_ERROR = "protocol error"
    KEEPALIVE_TIMEOUT = "keepalive timeout"
    TAKEN_OVER = "taken over"
    SERVER_SHUTDOWN = "server shutdown"
    CONNECT_REFUSED = "connect refused"
    CONNECT_TIMEOUT = "connect timeout"
    SLOW_CONSUMER = "slow consumer"
    KICKED = "kicked"
