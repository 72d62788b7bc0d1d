"""The admin credential (seed 000): set, generated on first start, checked.

The stored hash is PBKDF2 (about 0.1 s per check), so a check runs in a thread and a successful
one is remembered in memory, keyed by SHA-256 of (stored hash, candidate): changing the password
(`serve --admin-password`) changes the stored hash and so forgets every remembered success.
Failures are never cached, so a wrong password costs the caller a full PBKDF2 every time.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets

from nxg_mqtt.services import credentials
from nxg_mqtt.store import Store

ADMIN_PASSWORD_KEY = "admin_password_hash"
_CACHE_LIMIT = 1024


class AdminCredentials:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._good: set[str] = set()

    async def ensure(self, wanted: str | None) -> str | None:
        """Replace the stored hash with `wanted` if given; generate a password on first start.

        Returns the password when it was generated here (to print once), else None.
        """
        if wanted:
            await self.set(wanted)
            return None
        if await self.configured():
            return None
        generated = secrets.token_urlsafe(12)
        await self.set(generated)
        return generated

    async def set(self, password: str) -> None:
        stored = await asyncio.to_thread(credentials.hash_password, password)
        await self._store.kv.set(ADMIN_PASSWORD_KEY, stored)

    async def configured(self) -> bool:
        """Whether a password is stored (also the health check's round trip to the store)."""
        return await self._store.kv.get(ADMIN_PASSWORD_KEY) is not None

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
