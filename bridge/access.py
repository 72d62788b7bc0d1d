"""Who is calling, and what they may do: the one credential check every HTTP surface uses.

    caller = await caller_of(request)          # AuthError (401) / LoginThrottled (429)
    caller.require("write:devices")            # ForbiddenError (403)
    await caller.check_device(serial)          # DeviceNotFound (404): outside the scope a device does not exist

The credential (`bridge.auth.credential_from`: Bearer, X-API-Key, `?api_key=`/`?token=` on
upgrades) is an API key when it starts with `nxg_` (the core's `ApiKeyService`, cached: no store
round trip once seen), else the admin password (role admin, every scope, every device of the
default tenant). A key that is not valid is also tried as the admin password, so a password that
happens to start with `nxg_` still works; its failures count towards the address's throttle like
any wrong password.

Tenants (seed 002): every caller carries its tenant (a key's owner; the admin password's is the
default tenant). A device of another tenant is outside every scope: `check_device` and `sees`
answer as for a device that does not exist, on every REST route and WebSocket that uses them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from starlette.requests import HTTPConnection

from bridge.auth import credential_from
from bridge.state import state_of
from nxg_mqtt.errors import AuthError, DeviceNotFound, ForbiddenError
from nxg_mqtt.models import ApiKey, Device
from nxg_mqtt.protocol import Scope

SCOPES = tuple(s.value for s in Scope)

OwnerLookup = Callable[[str], Awaitable[str | None]]  # serial → owning tenant, None: no such device


async def _nobody(serial: str) -> str | None:
    return None


@dataclass(frozen=True, slots=True)
class Caller:
    role: str  # admin | user | viewer
    scopes: frozenset[str]
    devices: frozenset[str] | None  # None: every device of its tenant
    key_id: str | None = None  # None: the admin password
    tenant: str = ""
    owner_of: OwnerLookup = field(default=_nobody, compare=False, repr=False)

    @property
    def actor(self) -> str:
        """How the audit log names this caller."""
        return f"key:{self.key_id}" if self.key_id else "admin"

    def sees(self, serial: str) -> bool:
        """Within the key's device list (the tenant is `check_device`'s and `sees_device`'s to check)."""
        return self.devices is None or serial in self.devices

    def sees_device(self, device: Device) -> bool:
        """A listed device: its tenant's and within the device scope."""
        return device.tenant == self.tenant and self.sees(device.serial)

    async def may_see(self, serial: str) -> bool:
        return self.sees(serial) and await self.owner_of(serial) == self.tenant

    async def check_device(self, serial: str) -> None:
        """Outside the device scope or the tenant a device does not exist (PROTOCOL §6: 404
        before any role check)."""
        if not await self.may_see(serial):
            raise DeviceNotFound(serial)

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise ForbiddenError(f"this credential lacks the scope {scope}")

    @classmethod
    def of_key(cls, key: ApiKey, owner_of: OwnerLookup = _nobody) -> Caller:
        devices = None if key.devices is None else frozenset(key.devices)
        return cls(key.role, frozenset(key.scopes), devices, key.id, key.tenant, owner_of)


async def caller_of(conn: HTTPConnection, *, allow_query: bool = False) -> Caller:
    """The caller of a request or WebSocket upgrade; AuthError (401) without a valid credential."""
    state = state_of(conn)
    candidate = credential_from(conn, allow_query=allow_query)
    if candidate is None:
        raise AuthError("unauthorized: send Authorization: Bearer <admin password or API key>")
    owner_of = state.core.tenants.owner
    key = await state.core.keys.check(candidate)
    if key is not None:
        return Caller.of_key(key, owner_of)
    source = conn.client.host if conn.client else ""
    if await state.auth.check(candidate, source):
        return Caller("admin", frozenset(SCOPES), None, None, state.core.tenants.default_id, owner_of)
    raise AuthError("unauthorized: send Authorization: Bearer <admin password or API key>")


async def device_caller(conn: HTTPConnection, scope: str, *, param: str = "device_id") -> tuple[Caller, str]:
    """The caller of a request about the one device its path names, and that device's id: 401 without
    a credential, 404 for a device outside the caller's scope or tenant, then 403 without `scope`."""
    caller = await caller_of(conn)
    serial = str(conn.path_params[param])
    await caller.check_device(serial)
    caller.require(scope)
    return caller, serial


async def tenant_caller(conn: HTTPConnection, scope: str | None = None) -> Caller:
    """The caller of a tenant-scoped request (homes, groups, registration): 401 without a
    credential, 403 `TENANT_REQUIRED` when its tenant does not exist (seed 002's "missing tenant
    context"), then 403 without `scope`."""
    caller = await caller_of(conn)
    await state_of(conn).core.tenants.require(caller.tenant)
    if scope is not None:
        caller.require(scope)
    return caller
