"""Devices, pairing and login: the registry and every credential decision about devices.

Only wrong connection codes count as failed attempts (tokens are unguessable, and a stale token
is a normal event after a reset). Ten wrong codes in a minute from one source address lock that
address out of pairing for five minutes, on MQTT and `/ws/gateway` alike; a global cap on wrong
codes slows a distributed attack.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace

from nxg_mqtt.errors import (
    AuthError,
    ConflictError,
    DeviceNotFound,
    GatewayError,
    NxgError,
    RateLimitedError,
    ValidationError,
)
from nxg_mqtt.listeners import notify_all
from nxg_mqtt.models import ConnectionRecord, Device, now_ms
from nxg_mqtt.protocol import RevokeReason, SignalKind
from nxg_mqtt.ratelimit import Lockout, SlidingWindow
from nxg_mqtt.services import credentials
from nxg_mqtt.settings import Settings
from nxg_mqtt.store import Store
from nxg_mqtt.topics import RESERVED_SERIALS, SERIAL_RE

log = logging.getLogger(__name__)

# why a device's live sessions must end
RevokeListener = Callable[[str, RevokeReason], Awaitable[None]]
CredentialListener = Callable[[str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Paired:
    serial: str
    token: str


class DeviceService:
    def __init__(self, store: Store, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._settings = settings
        self._clock = clock
        self._lockout = Lockout(settings.pair_failures_per_minute, settings.pair_lockout_s)
        self._global_failures = SlidingWindow(settings.pair_global_failures_per_minute)
        self._revoke_listeners: list[RevokeListener] = []
        self._credential_listeners: list[CredentialListener] = []
        self.own_signal_ids: set[int] = set()
        # in the process that runs the broker, presence knows who is online now; the store's
        # flag follows within one ingest batch
        self.online_now: Callable[[str], bool] | None = None

    # ---- registry -------------------------------------------------------------------------------

    @asynccontextmanager
    async def _audited(self, actor: str, action: str, serial: str | None) -> AsyncIterator[None]:
        """A refused management action is audited too, with its error code as the outcome (the
        successful ones record themselves, with the stored spelling of the serial)."""
        try:
            yield
        except NxgError as exc:
            await self._store.audit.add(now_ms(), actor, action, serial or None, {"error": exc.message}, exc.code)
            raise

    async def create(
        self, serial: str | None = None, name: str | None = None, actor: str = "admin", tenant: str | None = None
    ) -> Device:
        """A device of `tenant` (default: the default tenant) to pair with its connection code."""
        async with self._audited(actor, "device.create", serial if isinstance(serial, str) else None):
            return await self._create(serial, name, actor, tenant)

    async def _create(self, serial: str | None, name: str | None, actor: str, tenant: str | None) -> Device:
        serial = (serial or "").strip()
        if name is not None and (not isinstance(name, str) or len(name) > 200):
            raise ValidationError("name must be a string of at most 200 characters")
        generated = not serial
        for _attempt in range(8):
            candidate = credentials.new_serial() if generated else serial
            if not generated:
                if not SERIAL_RE.match(candidate):
                    raise ValidationError(
                        "serial must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'", code="INVALID_SERIAL"
                    )
                if candidate.lower() in RESERVED_SERIALS:
                    raise ValidationError(f"serial {candidate!r} is reserved", code="INVALID_SERIAL")
            if await self._store.devices.insert(candidate, name, credentials.new_code(), now_ms(), tenant=tenant):
                await self._store.audit.add(now_ms(), actor, "device.create", candidate)
                return await self.get(candidate)
            if not generated and await self._store.devices.get(candidate) is not None:
                raise ConflictError(f"device {candidate} already exists")
        raise ConflictError("could not allocate a unique serial or code")  # pragma: no cover - 40 bits

    async def create_with_fingerprint(
        self, fingerprint: str, actor: str = "admin", tenant: str | None = None
    ) -> Device:
        """A device known by the fingerprint of its key or certificate (seed 003's `devices_Create`);
        its serial is generated. ConflictError when another device has that fingerprint."""
        async with self._audited(actor, "device.create", None):
            if not isinstance(fingerprint, str) or not 1 <= len(fingerprint) <= 256:
                raise ValidationError("fingerprint must be a string of 1 to 256 characters")
            if await self._store.devices.by_fingerprint(fingerprint) is not None:
                raise ConflictError("a device with this fingerprint exists already")
            device = await self._create(None, None, actor, tenant)
            if not await self._store.devices.set_fingerprint(device.serial, fingerprint):
                await self._store.devices.delete(device.serial)  # lost a race to the same fingerprint
                raise ConflictError("a device with this fingerprint exists already")
        return device

    async def fingerprint(self, serial: str) -> str | None:
        return await self._store.devices.fingerprint(serial)

    async def get(self, serial: str) -> Device:
        device = await self._store.devices.get(serial)
        if device is None:
            raise DeviceNotFound(serial)
        return self._live(device)

    async def list(self) -> list[Device]:
        return [self._live(d) for d in await self._store.devices.all()]

    def _live(self, device: Device) -> Device:
        if self.online_now is None:
            return device
        online = self.online_now(device.serial)
        return device if online == device.online else replace(device, online=online)

    async def connections(self, serial: str, limit: int = 10) -> Sequence[ConnectionRecord]:
        """The device's connection log, newest first."""
        return await self._store.connections.for_device(serial, limit=limit)

    async def code(self, serial: str) -> str:
        return credentials.format_code((await self.get(serial)).code)

    async def reset(self, serial: str, actor: str = "admin") -> Device:
        """Invalidate the token; the connection code stays valid."""
        async with self._audited(actor, "device.reset", serial):
            device = await self.get(serial)
        await self._store.devices.set_token(device.serial, None, paired=False)
        await self._store.audit.add(now_ms(), actor, "device.reset", device.serial)
        await self._revoked(device.serial, RevokeReason.RESET)
        return await self.get(device.serial)

    async def regenerate(self, serial: str, actor: str = "admin") -> Device:
        """A new connection code; the old code and the token stop working."""
        async with self._audited(actor, "device.regenerate", serial):
            device = await self.get(serial)
        for _attempt in range(8):
            if await self._store.devices.set_code(device.serial, credentials.new_code()):
                break
        await self._store.audit.add(now_ms(), actor, "device.regenerate", device.serial)
        await self._revoked(device.serial, RevokeReason.REGENERATE)
        return await self.get(device.serial)

    async def delete(self, serial: str, actor: str = "admin") -> None:
        async with self._audited(actor, "device.delete", serial):
            device = await self.get(serial)
        async with self._store.transaction():
            await self._store.devices.delete(device.serial)
            await self._store.messages.delete_device(device.serial)
            await self._store.commands.delete_device(device.serial)
            await self._store.manifests.delete_device(device.serial)
            await self._store.connections.delete_device(device.serial)
            await self._store.device_keys.delete_device(device.serial)
            await self._store.groups.delete_device(device.serial)
            await self._store.properties.delete_device(device.serial)
            await self._store.certificates.delete_device(device.serial)
        await self._store.audit.add(now_ms(), actor, "device.delete", device.serial)
        await self._revoked(device.serial, RevokeReason.DELETE)

    async def set_name(self, serial: str, name: str | None, actor: str = "admin") -> None:
        async with self._audited(actor, "device.set_name", serial):
            if name is not None and (not isinstance(name, str) or len(name) > 200):
                raise ValidationError("name must be a string of at most 200 characters")
            device = await self.get(serial)
        await self._store.devices.set_name(device.serial, name)
        await self._store.audit.add(now_ms(), actor, "device.set_name", device.serial, {"name": name})

    # ---- live-session revocation ------------------------------------------------------------------

    def on_revoked(self, listener: RevokeListener) -> None:
        """`listener(serial, why)` runs when a device's sessions must end (reset/regenerate/delete)."""
        self._revoke_listeners.append(listener)

    def on_credentials(self, listener: CredentialListener) -> None:
        """`listener(serial)` runs when a device got a new token (paired, registered, rotated),
        before the token is handed out. A token that stops working is a revocation (`on_revoked`)."""
        self._credential_listeners.append(listener)

    async def credentials_issued(self, serial: str) -> None:
        """Before a new token is handed out: every listener has taken it, else `GatewayError` and
        the token must not be handed out. The Mosquitto plugin refuses a listed device's other
        tokens itself (`nxg_mqtt.hooks.credentials`), so it must hold the new hash before the
        device can present the token."""
        failed = await notify_all(self._credential_listeners, serial, log=log, what=f"credential listener for {serial}")
        if failed:
            raise GatewayError("the MQTT broker did not take the new credential; try again")

    async def end_sessions(self, serial: str, why: RevokeReason) -> None:
        """The device's live sessions end within 1 s, in this process and (by signal) in others,
        without touching its token (a rotated secret, a revoked certificate)."""
        await self._revoked(serial, why)

    async def _revoked(self, serial: str, why: RevokeReason) -> None:
        # other processes (a server, when this is the CLI) learn of it through a signal
        self.own_signal_ids.add(await self._store.signals.emit(SignalKind.REVOKED, serial, now_ms(), why))
        await self.notify_revoked(serial, why)

    async def notify_revoked(self, serial: str, why: RevokeReason) -> None:
        await notify_all(self._revoke_listeners, serial, why, log=log, what=f"revocation listener for {serial}")

    # ---- pairing --------------------------------------------------------------------------------

    def pairing_locked(self, source: str) -> bool:
        return self.pairing_locked_for(source) > 0

    def pairing_locked_for(self, source: str) -> float:
        """Seconds during which pairing from `source` is refused whatever the code (0: it is not).
        Both locks refuse on their own, so it is the later of the two ends."""
        now = self._clock()
        return max(self._lockout.locked_for(source, now), self._global_failures.retry_after("*", now))

    async def resolve_code(self, code: str, source: str) -> Device:
        """The device a connection code belongs to; counts a wrong code against `source`."""
        locked_for = self.pairing_locked_for(source)
        if locked_for > 0:
            raise RateLimitedError(
                "too many wrong connection codes; pairing is locked for a while", retry_after=locked_for
            )
        canonical = credentials.normalize_code(code or "")
        device = await self._store.devices.by_code(canonical) if canonical else None
        if device is not None and device.revoked:
            # seed 002's revoke: the code is right, but the device may not log in by any means
            raise AuthError("device is revoked", code="DEVICE_REVOKED")
        if device is None:
            now = self._clock()
            self._global_failures.hit("*", now)
            if self._lockout.fail(source, now):
                log.warning("pairing locked for %s after repeated wrong codes", source, extra={"peer": source})
            raise AuthError("invalid connection code", code="INVALID_CODE")
        return device

    async def complete_pairing(self, serial: str, code: str, source: str) -> Paired:
        """Issue a fresh token to a device whose code was checked; any older token stops working."""
        canonical = credentials.normalize_code(code)
        device = await self._store.devices.get(serial)
        if device is None or canonical is None or device.code != canonical or device.revoked:
            # regenerated or deleted between CONNECT and the request
            raise AuthError("invalid connection code", code="INVALID_CODE")
        token = credentials.new_token()
        was_paired = device.paired
        await self._store.devices.set_token(device.serial, credentials.token_hash(token), paired=True)
        await self._store.audit.add(now_ms(), f"device:{device.serial}", "device.pair", device.serial, source)
        await self.credentials_issued(device.serial)
        if was_paired:
            # the previous token is dead: a session still using it ends like after a reset
            await self._revoked(device.serial, RevokeReason.REPAIRED)
        return Paired(device.serial, token)

    async def pair(self, code: str, source: str) -> Paired:
        device = await self.resolve_code(code, source)
        return await self.complete_pairing(device.serial, device.code, source)

    # ---- login ----------------------------------------------------------------------------------

    async def authenticate(self, serial: str, token: str) -> str | None:
        """The canonical serial if `token` is the device's current token, else None (auth_reset_required)."""
        if not serial or not token:
            return None
        found = await self._store.devices.token_hash(serial)
        if found is None:
            return None
        canonical, stored, revoked = found
        if revoked or stored is None or not credentials.tokens_equal(stored, token):
            return None
        return str(canonical)

    async def authenticate_token(self, token: str) -> str | None:
        """Login by token alone (`/ws/gateway` `{"t":"auth","token"}`); the serial is looked up."""
        if not token:
            return None
        return await self._store.devices.serial_by_token_hash(credentials.token_hash(token))
