"""Who is calling, and what they may do: the one credential check every HTTP surface uses.

    caller = await caller_of(request)          # AuthError (401) / LoginThrottled (429)
    caller.require("write:devices")            # ForbiddenError (403)
    caller.check_device(serial)                # DeviceNotFound (404): outside the scope a device does not exist

The credential (`bridge.auth.credential_from`: Bearer, X-API-Key, `?api_key=`/`?token=` on
upgrades) is an API key when it starts with `nxg_` (the core's `ApiKeyService`, cached: no store
round trip once seen), else the admin password (role admin, every scope, every device). A key
that is not valid is also tried as the admin password, so a password that happens to start with
`nxg_` still works; its failures count towards the address's throttle like any wrong password.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import HTTPConnection

from bridge.auth import credential_from
from bridge.state import state_of
from nxg_mqtt.errors import AuthError, DeviceNotFound, ForbiddenError
from nxg_mqtt.models import ApiKey
from nxg_mqtt.protocol import Scope

SCOPES = tuple(s.value for s in Scope)


@dataclass(frozen=True, slots=True)
class Caller:
    role: str  # admin | user | viewer
    scopes: frozenset[str]
    devices: frozenset[str] | None  # None: every device
    key_id: str | None = None  # None: the admin password

    @property
    def actor(self) -> str:
        """How the audit log names this caller."""
        return f"key:{self.key_id}" if self.key_id else "admin"

    def sees(self, serial: str) -> bool:
        return self.devices is None or serial in self.devices

    def check_device(self, serial: str) -> None:
        """Outside the device scope a device does not exist (PROTOCOL §6: 404 before any role check)."""
        if not self.sees(serial):
            raise DeviceNotFound(serial)

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise ForbiddenError(f"this credential lacks the scope {scope}")

    @classmethod
    def of_key(cls, key: ApiKey) -> Caller:
        devices = None if key.devices is None else frozenset(key.devices)
        return cls(key.role, frozenset(key.scopes), devices, key.id)


ADMIN = Caller("admin", frozenset(SCOPES), None)


async def caller_of(conn: HTTPConnection, *, allow_query: bool = False) -> Caller:
    """The caller of a request or WebSocket upgrade; AuthError (401) without a valid credential."""
    state = state_of(conn)
    candidate = credential_from(conn, allow_query=allow_query)
    if candidate is None:
        raise AuthError("unauthorized: send Authorization: Bearer <admin password or API key>")
    key = await state.core.keys.check(candidate)
    if key is not None:
        return Caller.of_key(key)
    source = conn.client.host if conn.client else ""
    if await state.auth.check(candidate, source):
        return ADMIN
    raise AuthError("unauthorized: send Authorization: Bearer <admin password or API key>")


async def device_caller(conn: HTTPConnection, scope: str, *, param: str = "device_id") -> tuple[Caller, str]:
    """The caller of a request about the one device its path names, and that device's id: 401 without
    a credential, 404 for a device outside the caller's scope, then 403 without `scope`."""
    caller = await caller_of(conn)
    serial = str(conn.path_params[param])
    caller.check_device(serial)
    caller.require(scope)
    return caller, serial
