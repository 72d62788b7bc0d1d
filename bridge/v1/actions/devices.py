"""Seed 003's device actions: devices_Query, devices_GetDetails, devices_Create, devices_Delete,
devices_SetName, devices_QueryCommands.

`isConnected` is the broker's live presence, or an open connection another node registered
(devices_RegisterConnection). `fingerprintId` is the identity fingerprint a device was created
with (devices_Create), "" for a device registered by connection code. QueryCommands: `input` /
`output` are the capability's `paramSchema` / `outputSchema`; a device without a manifest answers
an empty `commands` list (it accepts any command unless `require_manifest` is set).
"""

from __future__ import annotations

from typing import Any

from bridge.v1.actions.base import Body, Context, action, resolve_project
from bridge.v1.actions.connections import connection_log
from nxg_mqtt.errors import NotFoundError
from nxg_mqtt.models import now_ms
from nxg_mqtt.protocol import Scope, iso_ts


def descriptor(capability: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": capability["action"]}
    for ours, theirs in (("description", "description"), ("category", "category")):
        if ours in capability:
            entry[theirs] = capability[ours]
    if "paramSchema" in capability:
        entry["input"] = capability["paramSchema"]
    if "outputSchema" in capability:
        entry["output"] = capability["outputSchema"]
    return entry


@action("devices_Query", Scope.READ_DEVICES, fields=())
async def query(ctx: Context, body: Body) -> dict[str, Any]:
    core = ctx.state.core
    summary = await core.connections.summary()
    now = now_ms()
    devices = []
    for device in await core.devices.list():
        if not ctx.caller.sees_device(device):
            continue
        last, open_since, elsewhere = summary.get(device.serial.lower(), (None, None, False))
        connected = device.online or elsewhere
        item: dict[str, Any] = {
            "deviceId": device.serial,
            "projectId": device.tenant,
            "isConnected": connected,
        }
        if last is not None:
            item["lastConnectedAt"] = iso_ts(last)
        since = open_since if connected else None
        item["currentConnectionDurationSecs"] = None if since is None else max(0, (now - since) // 1000)
        devices.append(item)
    return {"devices": devices}


@action("devices_GetDetails", Scope.READ_DEVICES)
async def get_details(ctx: Context, body: Body) -> dict[str, Any]:
    device = await ctx.device(body)
    core = ctx.state.core
    details: dict[str, Any] = {
        "deviceId": device.serial,
        "projectId": device.tenant,
        "fingerprintId": await core.devices.fingerprint(device.serial) or "",
    }
    if device.name is not None:
        details["name"] = device.name
    details["isConnected"] = device.online or await core.connections.connected_elsewhere(device.serial)
    details["certificates"] = [
        {"certificateId": c.id, "status": c.status, "fingerprint": c.fingerprint, "firstSeen": iso_ts(c.first_seen)}
        for c in await core.certificates.for_device(device.serial)
    ]
    now = now_ms()
    details["connections"] = [
        {
            "connectionId": entry["connectionId"],
            "nodeId": entry["nodeId"],
            "connectedAt": entry["connectedAt"],
            "connectedForSecs": entry["durationSecs"],
        }
        for entry in await connection_log(ctx, device.serial, 100, True, now)
    ]
    return details


@action("devices_Create", Scope.ADMIN_DEVICES, fields=("projectId", "fingerprint"), writes=True)
async def create(ctx: Context, body: Body) -> dict[str, Any]:
    tenant = await resolve_project(ctx, body.raw("projectId"))
    fingerprint = body.text("fingerprint")
    if ctx.caller.devices is not None:
        # a key limited to listed devices could never see the device it creates
        raise NotFoundError("project not found for this credential", code="PROJECT_NOT_FOUND")
    device = await ctx.state.core.devices.create_with_fingerprint(fingerprint, actor=ctx.caller.actor, tenant=tenant)
    ctx.target = device.serial
    return {"deviceId": device.serial}


@action("devices_Delete", Scope.ADMIN_DEVICES, writes=True)
async def delete(ctx: Context, body: Body) -> dict[str, Any]:
    device = await ctx.device(body)
    await ctx.state.core.devices.delete(device.serial, actor=ctx.caller.actor)
    return {}


@action("devices_SetName", Scope.WRITE_DEVICES, fields=("deviceId", "name"), writes=True)
async def set_name(ctx: Context, body: Body) -> dict[str, Any]:
    name = body.string("name", required=False, max_len=200)
    device = await ctx.device(body)
    await ctx.state.core.devices.set_name(device.serial, name, actor=ctx.caller.actor)
    return {}


@action("devices_QueryCommands", Scope.READ_DEVICES)
async def query_commands(ctx: Context, body: Body) -> dict[str, Any]:
    device = await ctx.device(body)
    try:
        record = await ctx.state.core.manifests.get(device.serial)
    except NotFoundError as exc:
        if exc.code != "MANIFEST_NOT_FOUND":
            raise
        return {"manifest": {"commands": []}}
    return {"manifest": {"commands": [descriptor(c) for c in record.capabilities]}}
