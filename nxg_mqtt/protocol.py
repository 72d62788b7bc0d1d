"""The protocol's vocabulary, in one place (PROTOCOL §2–§6): kinds, roles, reasons, the app message.

Every surface (broker plugins, bridge routes, CLI, store) names these values through the enums
here; no module keeps its own list of strings. `app_message()` is the one function that turns a
stored or received message into what apps receive (`/ws/app`, `/api/history`, the CLI).

The one `ts` (PROTOCOL §6): the broker's ingest stamps a device message once, when it receives
it, stores it with that `ts` and routes it on with the stamp appended as `"server_ts"`
(`stamp()`), so the bridge and every MQTT subscriber read the same value the history holds. The
device's own `"ts"` stays where the device put it (apps see it as `device_ts`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class Role(StrEnum):
    """Who a session authenticated as (PROTOCOL §2 "Who may connect")."""

    DEVICE = "device"
    PAIR = "pair"
    BRIDGE = "bridge"
    KEY = "key"
    ANONYMOUS = "anonymous"  # the standalone broker's --allow-anonymous, for conformance testing only


class MessageType(StrEnum):
    """The kinds of stored message: history's `type`, the app message's `t` (PROTOCOL §6)."""

    TELEMETRY = "telemetry"
    STATUS = "status"
    EVENT = "event"
    ACK = "ack"
    CMD = "cmd"
    PRESENCE = "presence"


# what a device sends as data, validated and stored by ingest (MQTT and `/ws/gateway` alike)
DEVICE_DATA: frozenset[str] = frozenset({MessageType.TELEMETRY, MessageType.STATUS, MessageType.EVENT})
# what only a device's own traffic produces: these, and nothing the server sends it, move `last_seen`
SENT_BY_DEVICE: frozenset[str] = DEVICE_DATA | {MessageType.ACK}


class Schema(StrEnum):
    """Every payload with a JSON Schema in `schemas/` (the file is `{value}.json`)."""

    TELEMETRY = MessageType.TELEMETRY.value
    STATUS = MessageType.STATUS.value
    EVENT = MessageType.EVENT.value
    ACK = MessageType.ACK.value
    CMD = MessageType.CMD.value
    COMMAND_REQUEST = "command_request"
    PAIR_REQUEST = "pair_request"
    PRESENCE = MessageType.PRESENCE.value
    MANIFEST = "manifest"
    PROP = "prop"
    PROP_SET = "prop_set"
    PROP_RES = "prop_res"
    HTTP_REQ = "http_req"
    HTTP_RES = "http_res"


class Severity(StrEnum):
    """Seed 003's `DeviceEventSeverity`, exactly (an event's optional `severity`, PROTOCOL §2)."""

    TRACE = "Trace"
    DEBUG = "Debug"
    INFO = "Info"
    WARNING = "Warning"
    ERROR = "Error"
    CRITICAL = "Critical"


class InternalAction(StrEnum):
    """Protocol-internal commands (PROTOCOL §4: actions starting `_`): only the server sends them;
    every command surface refuses them from apps and keys with RESTRICTED_ACTION."""

    OTA = "_ota"  # params {"url","checksum","version","size"}: download, verify SHA-256, apply


class OtaEvent(StrEnum):
    """The events a device reports while it applies an `_ota` (each carries `version`)."""

    STARTED = "ota_started"
    PROGRESS = "ota_progress"
    APPLIED = "ota_applied"
    FAILED = "ota_failed"


# the status key a device reports its running firmware version under (seed 002's `firmware`)
FIRMWARE_STATUS_KEY = "fw"


class RevokeReason(StrEnum):
    """Why a device's credentials stopped working (its live sessions end within 1 s)."""

    RESET = "reset"
    REGENERATE = "regenerate"
    DELETE = "delete"
    REPAIRED = "re-paired"
    ROTATED = "rotated"  # seed 002's rotate-secret: the old secret is refused at once
    REVOKED = "revoked"  # seed 002's revoke: the device may never log in again
    CERTIFICATE = "certificate"  # the certificate it logged in with was revoked or rejected


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
    PAIRING_EXPIRED = "pairing session expired"  # PROTOCOL §6: closed 60 s after CONNECT at the latest
    STORE_FAILED = "store failed"  # committing its messages failed: closed without PUBACK, so it resends
    KICKED = "kicked"


class ConnectionEndReason(StrEnum):
    """Seed 003's `ConnectionEndReason`: why a connection in the log ended, as the actions API
    names it. The broker's own `CloseReason`s map onto it (`end_reason()`)."""

    UNKNOWN = "Unknown"
    DISCONNECTED = "Disconnected"
    NODE_CRASHED = "NodeCrashed"
    SERVER_SHUTDOWN = "ServerShutdown"


def end_reason(reason: str) -> ConnectionEndReason:
    """A stored reason (a CloseReason, or a seed 003 value a node registered) in seed 003's terms."""
    try:
        return ConnectionEndReason(reason)
    except ValueError:
        pass
    if reason == CloseReason.DISCONNECTED:
        return ConnectionEndReason.DISCONNECTED
    if reason == CloseReason.SERVER_SHUTDOWN:
        return ConnectionEndReason.SERVER_SHUTDOWN
    return ConnectionEndReason.UNKNOWN


class RejectReason(StrEnum):
    """Why a device payload was dropped: the metrics counter and the Warning event's `reason`."""

    TOO_LARGE = "too_large"
    NOT_UTF8 = "not_utf8"
    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"
    TOO_DEEP = "too_deep"
    NUMBER_RANGE = "number_range"
    SCHEMA = "schema"


class SignalKind(StrEnum):
    """What another process (the CLI) changed that live sessions must see."""

    REVOKED = "revoked"  # with a RevokeReason
    COMMAND = "command"  # a command was queued for the device
    KEY_REVOKED = "key_revoked"  # an API key was revoked or rotated; the signal's target is the key id
    ADMIN_PASSWORD = "admin_password"  # the admin password changed (no target): drop the remembered hash


class KeyRole(StrEnum):
    """An API key's role (PROTOCOL §5): what its scopes may be."""

    ADMIN = "admin"
    USER = "user"
    VIEWER = "viewer"


class Scope(StrEnum):
    """What a credential may do (seed 002's scopes)."""

    READ_DEVICES = "read:devices"
    WRITE_DEVICES = "write:devices"
    ADMIN_DEVICES = "admin:devices"
    READ_HISTORY = "read:history"
    ADMIN_KEYS = "admin:keys"


# the scopes each role may hold; a key created without scopes gets all of its role's
ROLE_SCOPES: dict[KeyRole, frozenset[Scope]] = {
    KeyRole.ADMIN: frozenset(Scope),
    KeyRole.USER: frozenset({Scope.READ_DEVICES, Scope.WRITE_DEVICES, Scope.READ_HISTORY}),
    KeyRole.VIEWER: frozenset({Scope.READ_DEVICES, Scope.READ_HISTORY}),
}


# ---- tenants (seed 002) -------------------------------------------------------------------------


class TenantError(StrEnum):
    """The machine codes of tenant decisions (`/api/v1` bodies)."""

    TENANT_REQUIRED = "TENANT_REQUIRED"  # 403: the credential carries no (existing) tenant context
    TENANT_NOT_FOUND = "TENANT_NOT_FOUND"  # 404: another tenant's id, or none at all


class TenantRole(StrEnum):
    """`GET /api/v1/auth/me`'s `user.role` (seed 002's list): a key's role, `admin` for the admin
    password (the default tenant's admin), `none` without a tenant; `owner` is not used."""

    OWNER = "owner"
    ADMIN = "admin"
    USER = "user"
    VIEWER = "viewer"
    NONE = "none"


DEFAULT_TENANT_SLUG = "default"  # the default tenant (`settings.tenant_id`) has no row; this is its slug
OBSERVATION_CATEGORY = "observation"  # the event category of `POST /api/v1/cognition/observation`
STATE_UPDATE = "state_update"  # `/ws/state`'s one message type


class AppKind(StrEnum):
    """App-message kinds that are not stored message types."""

    DEVICE_ONLINE = "device_online"
    DEVICE_OFFLINE = "device_offline"


def presence_kind(online: bool) -> AppKind:
    return AppKind.DEVICE_ONLINE if online else AppKind.DEVICE_OFFLINE


# ---- the one ts ---------------------------------------------------------------------------------

SERVER_TS = "server_ts"  # the key the broker appends to a device payload it stamped
DEVICE_TS = "device_ts"  # the app message's name for the device's own `ts`
_RESERVED = ("t", "serial", "ts", SERVER_TS)  # a device-sent `server_ts` is never shown as ours


def stamp(payload: bytes, ts: int) -> bytes:
    """A validated JSON object with `"server_ts": ts` appended (last, so it wins over any copy).

    Bytes are spliced, not re-encoded: the device's payload reaches subscribers as it was sent,
    plus the stamp.
    """
    body = payload.rstrip()
    inner = body[:-1].rstrip()
    separator = b"" if inner.endswith(b"{") else b","
    return b'%s%s"%s":%d}' % (inner, separator, SERVER_TS.encode(), ts)


def core_stamp(payload: bytes, ts: int) -> bytes:
    """A message the core publishes itself (a Warning event), stamped twice with the same ts: the
    Mosquitto plugin keeps a stamp the core published rather than adding its own (one ts on every
    surface), and a serving process's worker still finds a stamp after taking the last one off,
    which is how it knows the event is the core's own, already stored (`hooks.worker`)."""
    return stamp(stamp(payload, ts), ts)


def app_message(
    serial: str, kind: str, ts: int, fields: dict[str, Any], device_ts: int | None = None
) -> dict[str, Any]:
    """The flat object apps receive: `{"t", "serial", "ts", <fields>, "device_ts"?}`.

    `ts` is the server's receive time; `fields` may carry a `t` of their own (presence and
    commands do), which names the message; `serial` and `ts` in `fields` never override.
    """
    message: dict[str, Any] = {"t": fields.get("t", kind), "serial": serial, "ts": ts}
    message.update((k, v) for k, v in fields.items() if k not in _RESERVED)
    if device_ts is not None:
        message[DEVICE_TS] = device_ts
    return message


# ---- the realtime form (seed 001) ---------------------------------------------------------------

REALTIME_EVENTS = frozenset({"device_unlocked", "device_locked"})


def iso_ts(ts: int) -> str:
    """A ms timestamp as seed 001 writes it: ISO 8601 UTC with milliseconds and `Z`."""
    return datetime.fromtimestamp(ts / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts % 1000:03d}Z"


def realtime_message(message: dict[str, Any]) -> dict[str, Any] | None:
    """The `/realtime` object (seed 001) for an app message, None for what it does not carry.

    Telemetry and status become `device_data` with only that update's fields (the device's own
    `ts` and the server's stamp left out); presence becomes `device_status`; events of type
    `device_unlocked` / `device_locked` become those messages with `eventId` (the device's
    `eventId`, else the server's `evt_<ts>`), `source` and `code` when given. `timestamp` is the
    one server receive time.
    """
    t, serial, ts = message.get("t"), message.get("serial"), message.get("ts")
    if not isinstance(serial, str) or not isinstance(ts, int):
        return None
    timestamp = iso_ts(ts)
    if t in (MessageType.TELEMETRY, MessageType.STATUS):
        payload = {k: v for k, v in message.items() if k not in ("t", "serial", "ts", DEVICE_TS)}
        return {"type": "device_data", "hardwareId": serial, "payload": payload, "timestamp": timestamp}
    if t in (AppKind.DEVICE_ONLINE, AppKind.DEVICE_OFFLINE):
        online = t == AppKind.DEVICE_ONLINE
        return {"type": "device_status", "hardwareId": serial, "payload": {"is_online": online}, "timestamp": timestamp}
    if t == MessageType.EVENT and message.get("type") in REALTIME_EVENTS:
        event_id = message.get("eventId")
        out: dict[str, Any] = {
            "type": message["type"],
            "hardwareId": serial,
            "eventId": event_id if isinstance(event_id, str) and event_id else f"evt_{ts}",
        }
        if "source" in message:
            out["source"] = message["source"]
        if "code" in message:
            out["code"] = message["code"]
        out["timestamp"] = timestamp
        return out
    return None
