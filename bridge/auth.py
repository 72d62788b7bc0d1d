"""The admin credential (seed 000): `Authorization: Bearer <password>`, or `?token=` on WebSockets.

The check itself is the core's (`nxg_mqtt.services.admin.AdminCredentials`); this module only
finds the candidate in a request.
"""

from __future__ import annotations

from starlette.requests import HTTPConnection

from nxg_mqtt.services.admin import AdminCredentials


def credential_from(conn: HTTPConnection, *, allow_query: bool) -> str | None:
    """The candidate password of a request or WebSocket upgrade, if it carries one."""
    header = conn.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    if allow_query:
        token = conn.query_params.get("token")
        if token:
            return token
    return None


class AdminAuth:
    def __init__(self, admin: AdminCredentials) -> None:
        self._admin = admin

    async def check(self, candidate: str | None) -> bool:
        return await self._admin.check(candidate)

    async def allowed(self, conn: HTTPConnection, *, allow_query: bool = False) -> bool:
        return await self.check(credential_from(conn, allow_query=allow_query))
