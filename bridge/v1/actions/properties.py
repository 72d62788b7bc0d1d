"""Seed 003's property actions (the core's `PropertyService`: compare-and-swap versions):
devices_SetProperty, devices_GetProperty, devices_RemoveProperty, devices_QueryProperties.

SetProperty answers seed 003's variants exactly: `{"result":"Set"}`,
`{"result":"VersionConflict","currentVersion"}`, `{"result":"Deleted"}`. An `expectedVersion` of 0
creates the property only if it does not exist (else VersionConflict). `protected` omitted keeps
the property's flag (false for a new one).
"""

from __future__ import annotations

from typing import Any

from bridge.v1.actions.base import Body, Context, action
from nxg_mqtt.protocol import Scope, iso_ts
from nxg_mqtt.services.properties import SetResult
from nxg_mqtt.store.properties import Property


def wire(prop: Property) -> dict[str, Any]:
    return {
        "name": prop.name,
        "value": prop.value,
        "protected": prop.protected,
        "version": prop.version,
        "lastUpdated": iso_ts(prop.updated_at),
    }


@action(
    "devices_SetProperty",
    Scope.WRITE_DEVICES,
    fields=("deviceId", "name", "value", "protected", "expectedVersion"),
    writes=True,
)
async def set_property(ctx: Context, body: Body) -> dict[str, Any]:
    name = body.text("name", max_len=128)
    value = body.raw("value")
    protected = body.boolean("protected")
    expected = body.integer("expectedVersion")
    serial = await ctx.scoped(body)
    outcome = await ctx.state.core.properties.set(serial, name, value, protected=protected, expected=expected)
    ctx.detail = {"name": name, "result": outcome.result.value}
    if outcome.result is SetResult.VERSION_CONFLICT:
        return {"result": outcome.result.value, "currentVersion": outcome.version}
    return {"result": outcome.result.value}


@action("devices_GetProperty", Scope.READ_DEVICES, fields=("deviceId", "name"))
async def get_property(ctx: Context, body: Body) -> dict[str, Any]:
    name = body.text("name", max_len=128)
    prop = await ctx.state.core.properties.get(await ctx.scoped(body), name)
    return {"result": "NotFound"} if prop is None else {"result": "Found", **wire(prop)}


@action("devices_RemoveProperty", Scope.WRITE_DEVICES, fields=("deviceId", "name"), writes=True)
async def remove_property(ctx: Context, body: Body) -> dict[str, Any]:
    name = body.text("name", max_len=128)
    serial = await ctx.scoped(body)
    ctx.detail = {"name": name}
    removed = await ctx.state.core.properties.remove(serial, name)
    return {"result": "Removed" if removed else "NotFound"}


@action("devices_QueryProperties", Scope.READ_DEVICES)
async def query_properties(ctx: Context, body: Body) -> dict[str, Any]:
    return {"properties": {p.name: wire(p) for p in await ctx.state.core.properties.all(await ctx.scoped(body))}}
