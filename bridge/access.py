"""Who is calling, and what they may do: the one credential check every HTTP surface uses.

    caller = await caller_of(request)          # AuthError (401) / LoginThrottled (429)
    caller.require("write:devices")            # ForbiddenError (403)
    caller.check_device(serial)                # DeviceNotFound (404): outside the scope a device does not exist

Today the only credential is the admin password (role admin, every scope, every device); API keys
(issue 10) are resolved here too, so routes written against `Caller` need no change when they land.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import HTTPConnection

from bridge.auth import credential_from
from bridge.state import state_of
from nxg_mqtt.errors import AuthError, DeviceNotFound, ForbiddenError

SCOPES = ("read:devices", "write:devices", "admin:devices", "read:history", "admin:keys")


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


ADMIN = Caller("admin", frozenset(SCOPES), None)


async def caller_of(conn: HTTPConnection, *, allow_query: bool = False) -> Caller:
    """The caller of a request or WebSocket upgrade; AuthError (401) without a valid credential."""
    state = state_of(conn)
    candidate = credential_from(conn, allow_query=allow_query)
    source = conn.client.host if conn.client else ""
    if await state.auth.check(candidate, source):
        return ADMIN
    raise AuthError("unauthorized: send Authorization: Bearer <admin password or API key>")
