"""The admin credential (seed 000): set, generated on first start, checked.

The stored hash is PBKDF2 (about 0.1 s per check), so a check runs in a thread and a successful
one is remembered in memory, keyed by SHA-256 of (stored hash, candidate): changing the password
(`serve --admin-password`) changes the stored hash and so forgets every remembered success.
Failures are never cached, so a wrong password costs a full PBKDF2 every time; that is why wrong
passwords are limited per source address (`admin_failures_per_minute`, default 10):

- Each wrong password from an address counts. An address with that many failures within the last
  minute is refused with `LoginThrottled` (429 with `Retry-After`: seconds until its oldest failure
  is a minute old) *before* any hashing, so guessing costs the server a dict lookup, not 70 ms of CPU.
- Other addresses are never slowed, and a request without any credential costs nothing and is
  not counted.
- A password already verified since the process started passes even from a throttled address (the
  remembered success is a SHA-256 lookup, no PBKDF2): an admin's open portal keeps working while a
  guesser behind the same NAT address waits. A first login from a throttled address waits too.

The stored hash itself is kept in memory after its first read, so a request with the password
costs no store round trip. A change made here replaces it at once; a change made by another
process on the same data directory (`nxg-mqtt broker --admin-password` beside a running bridge)
writes an `admin_password` signal, and the watcher's `forget()` makes the next check read again.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import secrets
import time
from collections.abc import Callable

from nxg_mqtt.errors import RateLimitedError
from nxg_mqtt.models import now_ms
from nxg_mqtt.protocol import SignalKind
from nxg_mqtt.ratelimit import FailureThrottle
from nxg_mqtt.services import credentials
from nxg_mqtt.store import Store

ADMIN_PASSWORD_KEY = "admin_password_hash"
_CACHE_LIMIT = 1024


class LoginThrottled(RateLimitedError):
    """Too many wrong passwords from one address: answered 429 with `Retry-After`."""

    def __init__(self, retry_after_s: float) -> None:
        self.retry_after_s = max(1, math.ceil(retry_after_s))
        super().__init__(
            f"too many wrong passwords from this address: retry in {self.retry_after_s} s",
            retry_after=self.retry_after_s,
        )


class AdminCredentials:
    def __init__(
        self, store: Store, failures_per_minute: int = 10, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._store = store
        self._good: set[str] = set()
        self._stored: str | None = None  # the stored hash once read (None: read it on the next check)
        self._generation = 0  # bumped by forget(): a read that started before it is not kept
        self.own_signal_ids: set[int] = set()
        self._throttle = FailureThrottle(failures_per_minute)
        self._clock = clock
        self.hashes = 0  # PBKDF2 checks run (observable: a throttled guess must not add one)

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
        self._stored = stored
        # other processes on this data directory drop their copy (SignalWatcher → forget)
        self.own_signal_ids.add(await self._store.signals.emit(SignalKind.ADMIN_PASSWORD, None, now_ms()))

    def forget(self, signal_id: int | None = None) -> None:
        """Read the stored hash again on the next check: another process changed it (the
        watcher's `signal_id`; this process's own change is already applied and is skipped)."""
        if signal_id in self.own_signal_ids:
            self.own_signal_ids.discard(signal_id)
            return
        self._stored = None
        self._generation += 1

    async def configured(self) -> bool:
        """Whether a password is stored (also the health check's round trip to the store)."""
        return await self._store.kv.get(ADMIN_PASSWORD_KEY) is not None

    async def check(self, candidate: str | None, source: str = "") -> bool:
        """True for the admin password; LoginThrottled if `source` is over its failure limit."""
        if not candidate:
            return False
        stored = self._stored
        if stored is None:
            generation = self._generation
            stored = await self._store.kv.get(ADMIN_PASSWORD_KEY)
            if generation == self._generation:
                self._stored = stored
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
