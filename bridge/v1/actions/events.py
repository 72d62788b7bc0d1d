"""Seed 003's event and audit actions: devices_PublishEvents, devices_QueryEvents,
devices_QueryAuditLog.

PublishEvents takes the way a device's own events take: each event is published on
`nxg/{S}/event` through the bridge's MQTT link (as `/ws/gateway` devices' messages are), so the
broker's ingest validates, stamps and stores it, and apps see it on `/ws/app`, `/realtime` and MQTT
like any device event. The link's QoS 1 publish returns once the broker committed it, so the
answer comes after the events are in the history. On the wire an event is
`{"type":<category or "event">,"eventId","severity","category"?,"body","attributes","ts":<emittedAt
in ms>}`. QueryEvents lists every event of the device, newest first (device-sent ones too: their
`severity` defaults to `Info`, their `body` to the event's other fields, `eventId` to `evt_<row>`).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from bridge.v1.actions.base import Body, Context, action
from nxg_mqtt import messages
from nxg_mqtt.errors import ValidationError
from nxg_mqtt.models import HistoryEntry, MessageType
from nxg_mqtt.protocol import Schema, Scope, Severity, iso_ts
from nxg_mqtt.topics import Channel, device_topic

MAX_EVENTS = 1000
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
_EVENT_KEYS = ("t", "type", "eventId", "severity", "category", "body", "attributes", "ts", "server_ts")


def _bad(index: int, name: str, what: str) -> ValidationError:
    where = f"events[{index}].{name}"
    return ValidationError(f'"{where}" {what}', details=[{"field": where, "error": what}])


def parse_timestamp(value: Any) -> int | None:
    """An ISO 8601 timestamp (seed 003's `Timestamp`) in ms since the epoch; None if it is not one."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return int(parsed.timestamp() * 1000)


def wire_event(index: int, event: Any) -> dict[str, Any]:
    """One DeviceEvent of the request as the device event it becomes; ValidationError naming the field."""
    if not isinstance(event, dict):
        raise ValidationError(f'"events[{index}]" must be an object', details=[{"field": f"events[{index}]"}])
    event_id = event.get("eventId")
    if not isinstance(event_id, str) or not 1 <= len(event_id) <= 128:
        raise _bad(index, "eventId", "must be a string of 1 to 128 characters")
    severity = event.get("severity")
    if severity not in Severity.__members__.values():
        raise _bad(index, "severity", "must be one of " + ", ".join(Severity))
    category = event.get("category")
    if category is not None and (not isinstance(category, str) or len(category) > 128):
        raise _bad(index, "category", "must be a string of at most 128 characters")
    if "body" not in event:
        raise _bad(index, "body", "is required")
    attributes = event.get("attributes")
    if not isinstance(attributes, dict):
        raise _bad(index, "attributes", "must be an object")
    emitted = parse_timestamp(event.get("emittedAt"))
    if emitted is None or emitted < 0:
        raise _bad(index, "emittedAt", "must be an ISO 8601 timestamp with a time zone")
    unknown = sorted(set(event) - {"eventId", "category", "severity", "body", "attributes", "emittedAt", "receivedAt"})
    if unknown:
        raise _bad(index, unknown[0], "is not a field of DeviceEvent")
    wire: dict[str, Any] = {"type": category or "event", "eventId": event_id, "severity": severity}
    if category is not None:
        wire["category"] = category
    wire.update(body=event["body"], attributes=attributes, ts=emitted)
    return wire


@action("devices_PublishEvents", Scope.WRITE_DEVICES, fields=("deviceId", "events"), writes=True)
async def publish_events(ctx: Context, body: Body) -> dict[str, Any]:
    events = body.raw("events")
    if not isinstance(events, list) or len(events) > MAX_EVENTS:
        raise ValidationError(
            f'"events" must be an array of at most {MAX_EVENTS} events', details=[{"field": "events"}]
        )
    wires = [wire_event(i, e) for i, e in enumerate(events)]
    device = await ctx.device(body)
    limit = ctx.state.settings.max_payload_bytes
    payloads = []
    for index, wire in enumerate(wires):
        raw = json.dumps(wire).encode()
        if len(raw) > limit:
            raise ValidationError(f'"events[{index}]" is larger than {limit} bytes encoded')
        problem = messages.schema_errors(Schema.EVENT, wire)
        if problem is not None:
            raise ValidationError(f'"events[{index}]": {problem}')
        payloads.append(raw)
    topic = device_topic(device.serial, Channel.EVENT)
    for raw in payloads:
        await ctx.state.link.publish(topic, raw, qos=1)
    ctx.detail = {"events": len(payloads)}
    return {}


def device_event(entry: HistoryEntry) -> dict[str, Any]:
    body = entry.body
    event_id = body.get("eventId")
    out: dict[str, Any] = {"eventId": event_id if isinstance(event_id, str) else f"evt_{entry.id}"}
    if isinstance(body.get("category"), str):
        out["category"] = body["category"]
    severity = body.get("severity")
    out["severity"] = severity if severity in Severity.__members__.values() else Severity.INFO.value
    out["body"] = body["body"] if "body" in body else {k: v for k, v in body.items() if k not in _EVENT_KEYS}
    attributes = body.get("attributes")
    out["attributes"] = attributes if isinstance(attributes, dict) else {}
    out["emittedAt"] = iso_ts(entry.device_ts if entry.device_ts is not None else entry.ts)
    out["receivedAt"] = iso_ts(entry.ts)
    return out


@action("devices_QueryEvents", Scope.READ_DEVICES, fields=("deviceId", "limit"))
async def query_events(ctx: Context, body: Body) -> dict[str, Any]:
    limit = body.integer("limit", low=1, high=MAX_LIMIT) or DEFAULT_LIMIT
    device = await ctx.device(body)
    entries = await ctx.state.core.history.entries(device.serial, MessageType.EVENT, limit)
    return {"events": [device_event(e) for e in entries]}


def actor(name: str, tenant: str) -> dict[str, Any]:
    """An audit record's actor in seed 003's `Actor` shapes."""
    if name == "admin":
        return {"actor": "User", "userId": "admin"}
    if name.startswith("key:"):
        return {"actor": "OrganizationApiToken", "organizationId": tenant, "tokenId": name[4:]}
    if name.startswith("device:"):
        # devices log in with the token their connection code paired them to: named after the device
        return {"actor": "Device", "deviceId": name[7:], "tokenId": "pairing-token"}
    return {"actor": "System"}


@action("devices_QueryAuditLog", Scope.READ_DEVICES)
async def query_audit_log(ctx: Context, body: Body) -> dict[str, Any]:
    device = await ctx.device(body)
    tenant = device.tenant
    records = await ctx.state.core.audit.for_device(device.serial)
    return {
        "events": [
            {
                "eventId": str(r["id"]),
                "actor": actor(str(r["actor"]), tenant),
                "event": r["action"],
                "data": {"outcome": r["outcome"] or "ok", "detail": r["detail"]},
                "createdAt": iso_ts(int(r["ts"])),
            }
            for r in records
        ]
    }
