"""What every seed 003 action shares: its table entry, its request body, its context.

    @action("devices_SetName", Scope.WRITE_DEVICES, fields=("deviceId", "name"), writes=True)
    async def set_name(ctx: Context, body: Body) -> dict[str, Any]: ...

`Body` reads the camelCase request fields with precise errors (`"deviceId" is required`,
`"limit" must be an integer …`); a field the action does not define is refused by name.
`Context.device(body)` is the one way an action reaches a device: 404 outside the caller's
device scope (as if absent), 404 `DEVICE_NOT_FOUND` when absent, and it names the audit target.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from bridge.access import Caller
from bridge.state import BridgeState
from nxg_mqtt.errors import DeviceNotFound, NotFoundError, ValidationError
from nxg_mqtt.models import Device
from nxg_mqtt.protocol import Scope


class Body:
    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def _get(self, name: str, required: bool) -> Any:
        value = self.values.get(name)
        if value is None and required:
            raise ValidationError(f'"{name}" is required', details=[{"field": name, "error": "required"}])
        return value

    def _bad(self, name: str, what: str) -> ValidationError:
        return ValidationError(f'"{name}" must be {what}', details=[{"field": name, "error": f"must be {what}"}])

    def string(self, name: str, *, required: bool = True, max_len: int = 256) -> str | None:
        value = self._get(name, required)
        if value is None:
            return None
        if not isinstance(value, str) or (required and not value) or len(value) > max_len:
            raise self._bad(name, f"a{' non-empty' if required else ''} string of at most {max_len} characters")
        return value

    def text(self, name: str, *, max_len: int = 256) -> str:
        value = self.string(name, required=True, max_len=max_len)
        assert value is not None
        return value

    def integer(self, name: str, *, low: int = 0, high: int = 2**63 - 1) -> int | None:
        value = self._get(name, False)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self._bad(name, f"an integer from {low} to {high}")
        return value

    def boolean(self, name: str) -> bool | None:
        value = self._get(name, False)
        if value is not None and not isinstance(value, bool):
            raise self._bad(name, "true or false")
        return value

    def present(self, name: str) -> bool:
        return name in self.values

    def raw(self, name: str, *, required: bool = True) -> Any:
        if required and name not in self.values:
            raise ValidationError(f'"{name}" is required', details=[{"field": name, "error": "required"}])
        return self.values.get(name)


@dataclass(slots=True)
class Context:
    request: Request
    state: BridgeState
    caller: Caller
    target: str | None = None  # the device the action concerns: the audit record's target
    detail: dict[str, Any] = field(default_factory=dict)  # extra audit data

    async def scoped(self, body: Body) -> str:
        """The `deviceId` of the body, checked against the caller's device scope only: for actions
        whose core service looks the device up itself (one store round trip fewer)."""
        serial = body.text("deviceId", max_len=64)
        self.target = serial
        await self.caller.check_device(serial)
        return serial

    async def device(self, body: Body) -> Device:
        return await self.device_named(body.text("deviceId", max_len=64))

    async def device_named(self, serial: str) -> Device:
        self.target = serial
        await self.caller.check_device(serial)
        device = await self.state.core.devices.get(serial)
        self.target = device.serial
        return device


Handler = Callable[[Context, Body], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class Action:
    name: str
    scope: Scope
    fields: tuple[str, ...]
    writes: bool
    handler: Handler


ACTIONS: dict[str, Action] = {}


def action(
    name: str, scope: Scope, *, fields: tuple[str, ...] = ("deviceId",), writes: bool = False
) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        assert name not in ACTIONS, name
        ACTIONS[name] = Action(name, scope, fields, writes, handler)
        return handler

    return register


async def resolve_project(ctx: Context, project_id: Any) -> str:
    """The tenant a seed 003 `projectId` names (its id or slug), if it is the caller's own;
    NotFoundError(`PROJECT_NOT_FOUND`) otherwise, as if another tenant's did not exist. The one
    place projects meet tenants (`TenantService.resolve`)."""
    if not isinstance(project_id, str) or not project_id:
        raise ValidationError('"projectId" is required', details=[{"field": "projectId", "error": "required"}])
    try:
        return await ctx.state.core.tenants.resolve(ctx.caller.tenant, project_id)
    except NotFoundError:
        raise NotFoundError(f"project not found: {project_id}", code="PROJECT_NOT_FOUND") from None


__all__ = ["ACTIONS", "Action", "Body", "Context", "DeviceNotFound", "action", "resolve_project"]
