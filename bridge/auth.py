"""The admin credential (seed 000): `Authorization: Bearer <password>`, or `?token=` on WebSockets.

The stored hash is PBKDF2 (about 0.1 s per check), so a check runs in a thread and a successful
one is remembered in memory, keyed by SHA-256 of (stored hash, candidate): changing the password
(`serve --admin-password`) changes the stored hash and so forgets every remembered success.
Failures are never cached, so a wrong password costs a full PBKDF2 every time; that is why wrong
passwords are limited per source address (`admin_failures_per_minute`, default 10):

- Each wrong password from an address counts. An address with that many failures within the last
  minute is answered 429 with `Retry-After` (seconds until its oldest failure is a minute old)
  *before* any hashing, so guessing costs the server a dict lookup, not 70 ms of CPU.
- Other addresses are never slowed, and a request without any credential costs nothing and is
  not counted (it gets its 401).
- A password already verified since the process started passes even from a throttled address (the
  remembered success is a SHA-256 lookup, no PBKDF2): an admin's open portal keeps working while a
  guesser behind the same NAT address waits. A first login from a throttled address waits too.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Callable

from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse

from nxg_mqtt.errors import RateLimitedError
from nxg_mqtt.ratelimit import FailureThrottle
from nxg_mqtt.services import credentials
from nxg_mqtt.store import Store

ADMIN_PASSWORD_KEY = "admin_password_hash"  # the key nxg_mqtt.cli writes
_CACHE_LIMIT = 1024


class LoginThrottled(RateLimitedError):
    """Too many wrong passwords from one address: answered 429 with `Retry-After`."""

    def __init__(self, retry_after_s: float) -> None:
        self.retry_after_s = max(1, math.ceil(retry_after_s))
        super().__init__(f"too many wrong passwords from this address: retry in {self.retry_after_s} s")

    def response(self) -> JSONResponse:
        return JSONResponse({"error": self.message}, status_code=429, headers={"Retry-After": str(self.retry_after_s)})


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
    def __init__(
        self, store: Store, failures_per_minute: int = 10, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._store = store
        self._good: set[str] = set()
        self._throttle = FailureThrottle(failures_per_minute)
        self._clock = clock
        self.hashes = 0  # PBKDF2 checks run (observable: a throttled guess must not add one)

    async def check(self, candidate: str | None, source: str = "") -> bool:
        """True for the admin password; LoginThrottled if `source` is over its failure limit."""
        if not candidate:
            return False
        stored = await self._store.kv.get(ADMIN_PASSWORD_KEY)
        if not stored:
            return False
        key = hashlib.sha256(f"{stored}\x00{candidate}".encode("utf-8", "surrogateescape")).hexdigest()
        if key in self._good:
            return True
        wait = self._throttle.retry_after(source, self._clock())
        if wait is not None:
            raise LoginThrottled(wait)
        self.hashes += 1
        if not await asyncio.to_thread(credentials.verify_password, stored, candidate):
            self._throttle.fail(source, self._clock())
            return False
        if len(self._good) >= _CACHE_LIMIT:
            self._good.clear()
        self._good.add(key)
        return True

    async def allowed(self, conn: HTTPConnection, *, allow_query: bool = False) -> bool:
        """Whether the request carries the admin password; LoginThrottled (429) for a throttled address."""
        source = conn.client.host if conn.client else ""
        return await self.check(credential_from(conn, allow_query=allow_query), source)
