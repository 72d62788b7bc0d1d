"""API keys (PROTOCOL §5, §6): created, listed, revoked, rotated, and checked on every surface.

A key is `nxg_` + 32 random bytes, url-safe base64 (256 bits). Only its SHA-256 is stored: for a
random 256-bit secret a fast hash is enough (nothing to brute-force, unlike a password), and it
makes the check cheap. The plain key is returned once, by `create` and `rotate`.

The check costs no database round trip on the hot path: a key once found is remembered in memory
by its hash. The memory is forgotten for a key the moment it is revoked or rotated here, and
within `signal_poll_s` when another process (the CLI) did it: that process writes a
`key_revoked` signal, the server's signal watcher calls `forget()`. A lookup that raced with a
revocation does not refill the cache (a generation counter). Revocation listeners (the broker's
auth plugin, the bridge's socket registry) close the key's live sessions.

`last_used_at` is written behind: at most once a minute per key, off the request path.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from nxg_mqtt.errors import ForbiddenError, NotFoundError, NxgError, ValidationError
from nxg_mqtt.listeners import notify_all
from nxg_mqtt.models import ApiKey, now_ms
from nxg_mqtt.protocol import ROLE_SCOPES, KeyRole, Scope, SignalKind
from nxg_mqtt.store import Store
from nxg_mqtt.topics import SERIAL_RE

log = logging.getLogger(__name__)

KEY_PREFIX = "nxg_"
_PREFIX_LEN = 12  # "nxg_" + 8 characters: enough to tell keys apart in a list
_CACHE_LIMIT = 10_000
_TOUCH_EVERY_MS = 60_000

KeyRevokedListener = Callable[[str], Awaitable[None]]


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def looks_like_key(candidate: str) -> bool:
    return candidate.startswith(KEY_PREFIX)


class ApiKeyService:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._cache: dict[str, ApiKey] = {}  # key hash → key
        self._generation = 0
        self._touched: dict[str, int] = {}  # key id → last_used_at written
        self._listeners: list[KeyRevokedListener] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.lookups = 0  # store round trips made by check() (observable: a cached check adds none)

    def on_revoked(self, listener: KeyRevokedListener) -> None:
        """`listener(key_id)` after a key was revoked or rotated (here or, via signals, elsewhere)."""
        self._listeners.append(listener)

    # ---- management -----------------------------------------------------------------------------

    @asynccontextmanager
    async def _audited(self, actor: str, action: str, target: Any) -> AsyncIterator[None]:
        """A refused key action is audited too, with its error code as the outcome."""
        try:
            yield
        except NxgError as exc:
            target = target if isinstance(target, str) else None
            await self._store.audit.add(now_ms(), actor, action, target, {"error": exc.message}, exc.code)
            raise

    async def create(
        self,
        name: Any,
        role: Any = KeyRole.USER.value,
        scopes: Any = None,
        devices: Any = None,
        *,
        actor: str = "admin",
        within: ApiKey | None = None,
        tenant: str | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key and its plain secret (shown once). `within`: the key creating it, whose
        scopes and device scope the new key may not exceed. `tenant`: its owner (default: the
        default tenant)."""
        async with self._audited(actor, "key.create", None):
            return await self._create(name, role, scopes, devices, actor, within, tenant or self._store.tenant_id)

    async def _create(
        self, name: Any, role: Any, scopes: Any, devices: Any, actor: str, within: ApiKey | None, tenant: str
    ) -> tuple[ApiKey, str]:
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise ValidationError("name must be a non-empty string of at most 200 characters")
        try:
            key_role = KeyRole(role)
        except ValueError:
            raise ValidationError("role must be one of admin, user, viewer") from None
        allowed = ROLE_SCOPES[key_role]
        if scopes is None:
            chosen = sorted(allowed)
        else:
            if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
                raise ValidationError("scopes must be an array of strings")
            unknown = [s for s in scopes if s not in Scope.__members__.values()]
            if unknown:
                raise ValidationError(f"unknown scopes: {', '.join(unknown)}")
            beyond = [s for s in scopes if s not in allowed]
            if beyond:
                raise ValidationError(f"role {key_role} cannot hold {', '.join(beyond)}")
            chosen = sorted(set(scopes))
        serials = _device_scope(devices)
        if within is not None:
            if any(s not in within.scopes for s in chosen):
                raise ForbiddenError("a key cannot create a key with scopes it does not hold")
            if within.devices is not None and (serials is None or any(s not in within.devices for s in serials)):
                raise ForbiddenError("a key cannot create a key for devices outside its own scope")
        secret = new_key()
        key = ApiKey(
            id="key_" + secrets.token_hex(8),
            name=name.strip(),
            prefix=secret[:_PREFIX_LEN],
            role=key_role.value,
            scopes=tuple(chosen),
            devices=serials,
            created_at=now_ms(),
            tenant=tenant,
        )
        await self._store.api_keys.insert(key, key_hash(secret))
        await self._audit(actor, "key.create", key.id, {"name": key.name, "role": key.role})
        return key, secret

    async def list(self, tenant: str | None = None) -> list[ApiKey]:
        """Every key, or those `tenant` owns."""
        return await self._store.api_keys.list(tenant)

    async def get(self, key_id: Any) -> ApiKey:
        key = await self._store.api_keys.get(key_id) if isinstance(key_id, str) else None
        if key is None:
            raise NotFoundError(f"API key not found: {key_id}", code="KEY_NOT_FOUND")
        return key

    async def revoke(self, key_id: Any, *, actor: str = "admin") -> ApiKey:
        async with self._audited(actor, "key.revoke", key_id):
            key = await self.get(key_id)
        if key.revoked_at is None:
            await self._store.api_keys.revoke(key.id, now_ms())
        await self._audit(actor, "key.revoke", key.id)
        await self._changed(key.id)
        return await self.get(key.id)

    async def rotate(self, key_id: Any, *, actor: str = "admin") -> tuple[ApiKey, str]:
        async with self._audited(actor, "key.rotate", key_id):
            key = await self.get(key_id)
            if key.revoked_at is not None:
                raise ValidationError("a revoked key cannot be rotated", code="KEY_REVOKED")
        secret = new_key()
        await self._store.api_keys.rehash(key.id, key_hash(secret), secret[:_PREFIX_LEN])
        await self._audit(actor, "key.rotate", key.id)
        await self._changed(key.id)
        return await self.get(key.id), secret

    # ---- the check ------------------------------------------------------------------------------

    async def check(self, candidate: str | None) -> ApiKey | None:
        """The live key `candidate` is, or None. Cached: no store round trip once seen."""
        if not candidate or not looks_like_key(candidate):
            return None
        digest = key_hash(candidate)
        key = self._cache.get(digest)
        if key is None:
            generation = self._generation
            self.lookups += 1
            key = await self._store.api_keys.by_hash(digest)
            if key is None or key.revoked_at is not None:
                return None
            if generation == self._generation:
                if len(self._cache) >= _CACHE_LIMIT:
                    self._cache.clear()
                self._cache[digest] = key
        self._touch(key.id)
        return key

    async def still_valid(self, key_id: str) -> bool:
        """Whether `key_id` is a live key (a cached one costs nothing)."""
        if any(k.id == key_id for k in self._cache.values()):
            return True
        key = await self._store.api_keys.get(key_id)
        return key is not None and key.revoked_at is None

    async def forget(self, key_id: str) -> None:
        """Drop `key_id` from memory and close its live sessions (a revocation seen via signals)."""
        self._generation += 1
        for digest in [d for d, k in self._cache.items() if k.id == key_id]:
            del self._cache[digest]
        await notify_all(self._listeners, key_id, log=log, what="an API key revocation listener")

    async def _changed(self, key_id: str) -> None:
        await self._store.signals.emit(SignalKind.KEY_REVOKED, key_id, now_ms())
        await self.forget(key_id)

    def _touch(self, key_id: str) -> None:
        now = now_ms()
        if now - self._touched.get(key_id, 0) < _TOUCH_EVERY_MS:
            return
        self._touched[key_id] = now
        try:
            task = asyncio.get_running_loop().create_task(self._store.api_keys.touch(key_id, now))
        except RuntimeError:  # pragma: no cover - no loop: nothing to write behind
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _audit(self, actor: str, action: str, target: str, detail: Any = None) -> None:
        await self._store.audit.add(now_ms(), actor, action, target, detail)


def _device_scope(devices: Any) -> tuple[str, ...] | None:
    if devices is None:
        return None
    if not isinstance(devices, list) or not all(isinstance(s, str) for s in devices):
        raise ValidationError("devices must be an array of serials (omit it for every device)")
    bad = [s for s in devices if not SERIAL_RE.match(s)]
    if bad:
        raise ValidationError(f"invalid serials: {', '.join(bad[:5])}")
    return tuple(dict.fromkeys(devices))
