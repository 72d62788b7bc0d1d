"""`GET /api/protocol`: the wire contract as JSON, generated from `schemas/` (the one source of truth)."""

from __future__ import annotations

from typing import Any

from nxg_mqtt import messages
from nxg_mqtt.protocol import FIRMWARE_STATUS_KEY, InternalAction, MessageType, OtaEvent
from nxg_mqtt.settings import Settings


def protocol_document(settings: Settings) -> dict[str, Any]:
    return {
        "name": "NXG MQTT",
        "gateway": {
            "path": "/ws/gateway",
            "ping_interval_s": settings.ws_ping_interval_s,
            "pong_timeout_s": settings.ws_pong_timeout_s,
            "max_frame_bytes": settings.ws_max_frame_bytes,
            "send": [
                {"t": "pair", "code": "XXXX-XXXX"},
                {"t": "auth", "token": "nxgt_..."},
                {"t": "telemetry", "temp": 22.5},
                {"t": "status", "door1": "closed"},
                {"t": "event", "type": "device_unlocked", "source": "rfid"},
                {"t": "ack", "id": "c_...", "ok": True},
                {"t": "pong"},
            ],
            "receive": [
                {"t": "pair_ok", "serial": "NXG-...", "token": "nxgt_..."},
                {"t": "pair_error", "error": "invalid connection code"},
                {"t": "auth_ok", "serial": "NXG-..."},
                {"t": "auth_reset_required"},
                {"t": "cmd", "id": "c_...", "target": "turn1", "action": "open", "params": {}},
                {"t": "ping"},
                {"t": "error", "error": "what is wrong"},
            ],
        },
        "app": {
            "path": "/ws/app",
            "auth": "?token=<admin password> or Authorization: Bearer <admin password>",
            "receive": [
                {"t": "device_online", "serial": "NXG-...", "ts": 1700000000000},
                {"t": "device_offline", "serial": "NXG-...", "ts": 1700000000000},
                {"t": "telemetry", "serial": "NXG-...", "ts": 1700000000000, "temp": 22.5},
                {"t": "status", "serial": "NXG-...", "ts": 1700000000000, "door1": "closed"},
                {"t": "event", "serial": "NXG-...", "ts": 1700000000000, "type": "device_unlocked"},
                {"t": "ack", "serial": "NXG-...", "ts": 1700000000000, "id": "c_...", "ok": True},
                {"t": "cmd_accepted", "id": "c_...", "ref": "r1"},
                {"t": "error", "error": "message", "code": "DEVICE_NOT_FOUND", "ref": "r1"},
            ],
            "send": [{"t": "cmd", "serial": "NXG-...", "target": "turn1", "action": "open", "params": {}, "ref": "r1"}],
        },
        "state": {
            "path": "/ws/state",
            "auth": "?token=<admin password or API key> (read:devices)",
            "receive": [
                {"type": "state_update", "device_id": "NXG-...", "state": {"light": "on"}, "timestamp": 1700000000000},
                "pong",
            ],
            "send": ["ping"],
        },
        "mqtt": {
            "version": "3.1.1",
            "topics": [
                {"topic": "nxg/pair/{C}/req", "publisher": "pairing session", "schema": "pair_request"},
                {"topic": "nxg/pair/{C}", "publisher": "server"},
                {"topic": "nxg/{S}/telemetry", "publisher": "device", "schema": "telemetry"},
                {"topic": "nxg/{S}/status", "publisher": "device", "schema": "status"},
                {"topic": "nxg/{S}/event", "publisher": "device", "schema": "event"},
                {"topic": "nxg/{S}/manifest", "publisher": "device", "schema": "manifest"},
                {"topic": "nxg/{S}/ack", "publisher": "device", "schema": "ack"},
                {"topic": "nxg/{S}/cmd", "publisher": "server", "schema": "cmd"},
                {"topic": "nxg/{S}/cmd/req", "publisher": "API key", "schema": "command_request"},
                {"topic": "nxg/{S}/cmd/res", "publisher": "server"},
                {"topic": "nxg/{S}/presence", "publisher": "server (retained)", "schema": "presence"},
            ],
            "max_payload_bytes": settings.max_payload_bytes,
        },
        "rest": [
            "GET /api/devices",
            "POST /api/devices",
            "GET /api/devices/{serial}",
            "DELETE /api/devices/{serial}",
            "GET /api/devices/{serial}/code",
            "GET /api/devices/{serial}/config.h",
            "POST /api/devices/{serial}/reset",
            "POST /api/devices/{serial}/regenerate",
            "GET /api/history?serial=&type=&limit=&before=",
            "GET /api/protocol",
        ],
        "ota": {
            "command": {
                "t": "cmd",
                "id": "c_...",
                "action": InternalAction.OTA.value,
                "params": {
                    "url": "http://HOST:PORT/api/v1/firmware/fw_.../download",
                    "checksum": "<SHA-256, 64 lowercase hex digits>",
                    "version": "1.4.0",
                    "size": 1048576,
                },
            },
            "download": "GET url with Authorization: Bearer <device token> (or ?token=); Range: bytes=N- resumes",
            "events": [{"type": e.value, "version": "1.4.0"} for e in OtaEvent],
            "status_key": FIRMWARE_STATUS_KEY,
        },
        "history_types": [t.value for t in MessageType],
        "schemas": messages.all_schemas(),
    }
