"""Seed 003's connection actions over the connection log that MQTT and gateway sessions write:
devices_RegisterConnection, devices_UnregisterConnection, devices_QueryConnections.

A connection this node logged is named by its log row id and this node's id (`Core.node_id`,
stable per data directory); one another node registered keeps the `connectionId` and `nodeId`
it was registered with. `endReason` maps the broker's close reasons onto seed 003's four
(`protocol.end_reason`: a clean DISCONNECT is `Disconnected`, a shutdown `ServerShutdown`,
anything else `Unknown`). `endedAt`/`endReason` are null while the connection is open.
"""

from __future__ import annotations

from typing import Any

from bridge.v1.actions.base import Body, Context, action
from nxg_mqtt.errors import NotFoundError, ValidationError
from nxg_mqtt.models import now_ms
from nxg_mqtt.protocol import ConnectionEndReason, Scope, end_reason, iso_ts

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


async def connection_log(ctx: Context, serial: str, limit: int, active_only: bool, now: int) -> list[dict[str, Any]]:
    core = ctx.state.core
    entries = []
    for record in await core.connections.entries(serial, limit, active_only):
        ended = record.ended_at
        entries.append(
            {
                "connectionId": record.connection_id or str(record.id),
                "nodeId": record.node_id or core.node_id,
                "connectedAt": iso_ts(record.connected_at),
                "endedAt": None if ended is None else iso_ts(ended),
                "endReason": None if ended is None else end_reason(record.reason or "").value,
                "durationSecs": max(0, ((ended if ended is not None else now) - record.connected_at) // 1000),
            }
        )
    return entries


@action("devices_QueryConnections", Scope.READ_DEVICES, fields=("deviceId", "limit", "activeOnly"))
async def query_connections(ctx: Context, body: Body) -> dict[str, Any]:
    limit = body.integer("limit", low=1, high=MAX_LIMIT) or DEFAULT_LIMIT
    active_only = bool(body.boolean("activeOnly"))
    device = await ctx.device(body)
    return {"connections": await connection_log(ctx, device.serial, limit, active_only, now_ms())}


@action("devices_RegisterConnection", Scope.ADMIN_DEVICES, fields=("deviceId", "nodeId", "connectionId"), writes=True)
async def register_connection(ctx: Context, body: Body) -> dict[str, Any]:
    node_id = body.text("nodeId", max_len=128)
    connection_id = body.text("connectionId", max_len=128)
    device = await ctx.device(body)
    ctx.detail = {"connectionId": connection_id, "nodeId": node_id}
    await ctx.state.core.connections.register(device.serial, connection_id, node_id)
    return {"connectionId": connection_id}


@action("devices_UnregisterConnection", Scope.ADMIN_DEVICES, fields=("connectionId", "endReason"), writes=True)
async def unregister_connection(ctx: Context, body: Body) -> dict[str, Any]:
    connection_id = body.text("connectionId", max_len=128)
    raw_reason = body.raw("endReason")
    try:
        reason = ConnectionEndReason(raw_reason)
    except ValueError:
        allowed = ", ".join(r.value for r in ConnectionEndReason)
        raise ValidationError(
            f'"endReason" must be one of {allowed}', details=[{"field": "endReason", "error": "unknown value"}]
        ) from None
    connections = ctx.state.core.connections
    serial = await connections.owner(connection_id)
    if not await ctx.caller.may_see(serial):
        raise NotFoundError(f"connection not found: {connection_id}", code="CONNECTION_NOT_FOUND")
    ctx.target = serial
    ctx.detail = {"connectionId": connection_id, "endReason": reason.value}
    await connections.end(connection_id, reason)
    return {}
