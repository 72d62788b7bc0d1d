"""The admin credential (seed 000): `Authorization: Bearer <password>`, or `?token=` on WebSockets.

The stored hash is PBKDF2 (about 0.1 s per check), so a check runs in a thread and a successful
one is remembered in memory, keyed by SHA-256 of (stored hash, candidate): changing the password
(`serve --admin-password`) changes the stored hash and so forgets every remembered success.
Failures are never cached, so a wrong password costs the caller a full PBKDF2 every time.
"""

from __future__ import annotations

import asyncio
import hashlib

from starlette.requests import HTTPConnection

from nxg_mqtt.services import credentials
from nxg_mqtt.store import Store

ADMIN_PASSWORD_KEY = "admin_password_hash"  # the key nxg_mqtt.cli writes
_CACHE_LIMIT = 1024


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
    def __init__(self, store: Store) -> None:
        self._store = store
        self._good: set[str] = set()

    async def check(self, candidate: str | None) -> bool:
        if not candidate:
            return False
        stored = await self._store.kv.get(ADMIN_PASSWORD_KEY)
        if not stored:
            return False
        key = hashlib.sha256(f"{stored}\x00{candidate}".encode("utf-8", "surrogateescape")).hexdigest()
        if key in self._good:
            return True
        if not await asyncio.to_thread(credentials.verify_password, stored, candidate):
            return False
        if len(self._good) >= _CACHE_LIMIT:
            self._good.clear()
        self._good.add(key)
        return True

    async def allowed(self, conn: HTTPConnection, *, allow_query: bool = False) -> bool:
        return await self.check(credential_from(conn, allow_query=allow_query))
