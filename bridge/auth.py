"""Finding a credential in a request; the admin password's check (seed 000).

The check itself is the core's (`nxg_mqtt.services.admin.AdminCredentials`); this module only
finds the candidate in a request and turns a throttled address into its 429.
"""

from __future__ import annotations

from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse

from nxg_mqtt.services.admin import AdminCredentials, LoginThrottled

__all__ = ["AdminAuth", "LoginThrottled", "credential_from", "throttled_response"]


def throttled_response(exc: LoginThrottled) -> JSONResponse:
    return JSONResponse({"error": exc.message}, status_code=429, headers={"Retry-After": str(exc.retry_after_s)})


def credential_from(conn: HTTPConnection, *, allow_query: bool) -> str | None:
    """The candidate credential (admin password or API key) of a request or WebSocket upgrade:
    `Authorization: Bearer`, `X-API-Key`, and on upgrades `?api_key=` / `?token=`."""
    header = conn.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    api_key = conn.headers.get("x-api-key")
    if api_key and api_key.strip():
        return api_key.strip()
    if allow_query:
        for name in ("api_key", "token"):
            given = conn.query_params.get(name)
            if given:
                return given
    return None


class AdminAuth:
    def __init__(self, admin: AdminCredentials) -> None:
        self._admin = admin

    @property
    def hashes(self) -> int:
        return self._admin.hashes

    async def check(self, candidate: str | None, source: str = "") -> bool:
        return await self._admin.check(candidate, source)

    async def allowed(self, conn: HTTPConnection, *, allow_query: bool = False) -> bool:
        """Whether the request carries the admin password; LoginThrottled (429) for a throttled address."""
        source = conn.client.host if conn.client else ""
        return await self.check(credential_from(conn, allow_query=allow_query), source)
