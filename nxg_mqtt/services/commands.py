"""Commands: committed before anything is acknowledged, dispatched at QoS 1, closed by the ack.

Lifecycle: `queued` (device offline or not subscribed) → `dispatched` → `acked` | `failed`
(the device said ok=false) | `timeout` (no ack within the ack timeout), or `expired` (TTL in the
queue). Queued commands go out in creation order when the device subscribes to `nxg/{S}/cmd`.
Every change is published on `nxg/{S}/cmd/res`.

Bounded: a device has at most `command_queue_limit` open (queued or dispatched) commands; beyond
that `submit` refuses with QUEUE_FULL (429), so an offline device or one that never acks cannot
grow the store, the dispatch at its next subscribe, or `_deadlines` without bound. The expiry
sweep asks the store for what is due (an indexed query), never for the whole queue.

Validated on every path (REST, `/ws/app`, `nxg/{S}/cmd/req`, the CLI, batch, intent) by `check`:
the request schema, then the device's manifest (`ManifestService.check_command`), before anything
is stored; a refusal is a CommandRejected with its PROTOCOL §4 code. A critical action is stored
only through `confirm` with the token its dry run (or its first, refused, attempt) handed out:
single use, bound to the device, action, target and params, valid `dry_run_token_s` (60 s). An ack's
`result` that breaks the action's `outputSchema` closes the command `failed` with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from nxg_mqtt import messages
from nxg_mqtt.errors import (
    CommandRejected,
    DryRunRequired,
    NxgError,
    QueueFullError,
    RateLimitedError,
    ValidationError,
)
from nxg_mqtt.listeners import notify_all
from nxg_mqtt.models import Command, CommandStatus, Counters, Device, HistoryEntry, now_ms
from nxg_mqtt.protocol import InternalAction, MessageType, Schema, SignalKind
from nxg_mqtt.ratelimit import SlidingWindow
from nxg_mqtt.services import Publisher
from nxg_mqtt.services.devices import DeviceService
from nxg_mqtt.services.ingest import IngestService
from nxg_mqtt.services.manifests import Capability, ManifestService
from nxg_mqtt.services.presence import PresenceService
from nxg_mqtt.settings import Settings
from nxg_mqtt.store import Store
from nxg_mqtt.topics import Channel, device_topic

log = logging.getLogger(__name__)

CommandListener = Callable[[Command], Awaitable[None]]
DRY_RUN_TOKENS_MAX = 10_000  # outstanding tokens; the oldest go first beyond it


@dataclass(frozen=True, slots=True)
class DryRun:
    """A validated command that was not sent; `token` (critical actions) confirms it."""

    serial: str
    action: str
    target: str | None
    params: dict[str, Any]
    critical: bool
    token: str | None
    expires_at: float  # loop time


class DryRunTokenInvalid(CommandRejected):
    """A confirm with a token that is unknown, used, expired or issued for another device."""

    def __init__(self, message: str) -> None:
        super().__init__("DRY_RUN_TOKEN_INVALID", message)


def new_command_id() -> str:
    return "c_" + secrets.token_hex(8)


class CommandService:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        devices: DeviceService,
        presence: PresenceService,
        ingest: IngestService,
        publisher: Publisher,
        manifests: ManifestService,
    ) -> None:
        self.manifests = manifests
        self._tokens: dict[str, DryRun] = {}
        self._store = store
        self._settings = settings
        self._devices = devices
        self._presence = presence
        self._ingest = ingest
        self.publisher = publisher
        self._rate = SlidingWindow(settings.command_rate_limit)
        self._deadlines: dict[str, tuple[str, float]] = {}  # id → (serial, loop time of timeout)
        self._dispatch_locks: dict[str, asyncio.Lock] = {}
        self._listeners: list[CommandListener] = []
        # in the serving process: devices that may have queued commands, so that the usual
        # subscribe (nothing queued) costs no query; None = unknown, always look
        self._queued: set[str] | None = None
        self._task: asyncio.Task[None] | None = None
        self.counters = Counters()
        presence.on_ready(self.dispatch_queued)

    def on_change(self, listener: CommandListener) -> None:
        self._listeners.append(listener)

    # ---- submitting ------------------------------------------------------------------------------

    async def check(
        self, serial: str, action: str, target: str | None, params: dict[str, Any] | None
    ) -> tuple[Device, dict[str, Any], Capability | None]:
        """Every check a command passes before it is stored: (the device, the params,
        the manifest capability or None); DeviceNotFound or CommandRejected otherwise."""
        device = await self._devices.get(serial)
        if device.revoked:
            raise CommandRejected("DEVICE_REVOKED", f"device {device.serial} is revoked")
        request: dict[str, Any] = {"action": action, "params": {} if params is None else params}
        if target is not None:
            request["target"] = target
        messages.check_command_request(request)
        capability = await self.manifests.check_command(device.serial, action, target, request["params"])
        return device, request["params"], capability

    async def dry_run(
        self, serial: str, action: str, target: str | None = None, params: dict[str, Any] | None = None
    ) -> DryRun:
        """Validate only; nothing is stored or sent. A critical action gets its confirm token."""
        device, params, capability = await self.check(serial, action, target, params)
        critical = capability is not None and capability.critical
        return self._issue(device.serial, action, target, params, critical)

    def _issue(self, serial: str, action: str, target: str | None, params: dict[str, Any], critical: bool) -> DryRun:
        now = asyncio.get_running_loop().time()
        # expired tokens are kept a while so that a late confirm hears "expired", not "unknown"
        for old in [t for t, d in self._tokens.items() if d.expires_at + 600 <= now]:
            del self._tokens[old]
        while len(self._tokens) >= DRY_RUN_TOKENS_MAX:
            del self._tokens[next(iter(self._tokens))]
        token = str(uuid.uuid4()) if critical else None
        issued = DryRun(serial, action, target, params, critical, token, now + self._settings.dry_run_token_s)
        if token is not None:
            self._tokens[token] = issued
        return issued

    async def confirm(
        self, serial: str, token: str, *, source: str = "api", dispatch: bool = True, actor: str | None = None
    ) -> Command:
        """Send the command a dry run validated: the token is used up, whatever follows."""
        issued = self._tokens.get(token)
        if issued is None:
            raise DryRunTokenInvalid("dry_run_token is unknown or already used")
        if issued.serial.lower() != serial.lower():
            raise DryRunTokenInvalid(f"dry_run_token was issued for another device, not {serial}")
        del self._tokens[token]
        if issued.expires_at <= asyncio.get_running_loop().time():
            raise DryRunTokenInvalid(f"dry_run_token expired (valid {self._settings.dry_run_token_s:g} s)")
        return await self.submit(
            issued.serial,
            issued.action,
            issued.target,
            issued.params,
            source=source,
            dispatch=dispatch,
            confirmed=True,
            actor=actor,
        )

    async def submit(
        self,
        serial: str,
        action: str,
        target: str | None = None,
        params: dict[str, Any] | None = None,
        ref: str | None = None,
        source: str = "api",
        dispatch: bool = True,
        confirmed: bool = False,
        actor: str | None = None,
        internal: bool = False,
    ) -> Command:
        """Validate, commit, then dispatch (or queue). `dispatch=False` leaves it to the server
        process (the CLI writes the record and signals the server). A critical action without
        `confirmed` raises DryRunRequired with its token (`confirm` sends it). Every attempt,
        accepted or refused, goes to the audit log under `actor` (default: the source).
        `internal=True` is the server's own protocol-internal command (`protocol.InternalAction`,
        e.g. `_ota` from the firmware service): no surface passes it, so apps still get
        RESTRICTED_ACTION; it skips the request schema, the manifest and the rate limit."""
        try:
            command = await self._submit(serial, action, target, params, ref, source, dispatch, confirmed, internal)
        except NxgError as exc:
            detail = {"action": action, "source": source, "error": exc.message}
            await self._store.audit.add(now_ms(), actor or source, "command", serial, detail, outcome=exc.code)
            raise
        detail = {"action": action, "source": source, "id": command.id}
        await self._store.audit.add(now_ms(), actor or source, "command", command.serial, detail)
        return command

    async def _submit(
        self,
        serial: str,
        action: str,
        target: str | None,
        params: dict[str, Any] | None,
        ref: str | None,
        source: str,
        dispatch: bool,
        confirmed: bool,
        internal: bool = False,
    ) -> Command:
        if internal:
            device, checked_params, capability = await self._internal(serial, action, params)
        else:
            device, checked_params, capability = await self.check(serial, action, target, params)
        if capability is not None and capability.critical and not confirmed:
            issued = self._issue(device.serial, action, target, checked_params, True)
            assert issued.token is not None
            raise DryRunRequired(issued.token)
        request: dict[str, Any] = {"params": checked_params}
        loop_now = asyncio.get_running_loop().time()
        if not internal and not self._rate.allow(self._store.tenant_id, loop_now):
            limited = RateLimitedError(
                f"more than {self._settings.command_rate_limit} commands a minute", code="RATE_LIMIT_EXCEEDED"
            )
            limited.retry_after = self._rate.retry_after(self._store.tenant_id, loop_now)
            raise limited
        created = now_ms()
        command = Command(
            id=new_command_id(),
            serial=device.serial,
            action=action,
            target=target,
            params=request["params"],
            status=CommandStatus.QUEUED,
            created_at=created,
            expires_at=created + int(self._settings.command_ttl_s * 1000),
            source=source,
            ref=ref,
        )
        limit = self._settings.command_queue_limit
        if not await self._store.commands.insert(command, limit):
            self.counters.add("queue_full")
            raise QueueFullError(
                f"device {device.serial} already has {limit} commands waiting (queued or unacknowledged);"
                " try again once it has taken some"
            )
        if not internal:
            self._rate.hit(self._store.tenant_id, loop_now)  # refused commands do not count
        self._ingest.record(HistoryEntry(device.serial, MessageType.CMD, created, command.device_message()))
        if dispatch:
            self.note_queued(device.serial)
            sent: dict[str, Command] = {}
            await self.dispatch_queued(device.serial, sent)
            return sent.get(command.id, command)
        await self._store.signals.emit(SignalKind.COMMAND, device.serial, now_ms())
        return command

    async def _internal(
        self, serial: str, action: str, params: dict[str, Any] | None
    ) -> tuple[Device, dict[str, Any], Capability | None]:
        if action not in {a.value for a in InternalAction}:
            raise CommandRejected("RESTRICTED_ACTION", f"{action!r} is not a protocol-internal action")
        device = await self._devices.get(serial)
        if device.revoked:
            raise CommandRejected("DEVICE_REVOKED", f"device {device.serial} is revoked")
        return device, params or {}, None

    async def page(self, serial: str, limit: int = 50, before: int | None = None) -> tuple[list[Command], int | None]:
        """A device's commands, newest first, and the cursor of the next page (None: no more)."""
        if not 1 <= limit <= 500:
            raise ValidationError("limit must be between 1 and 500")
        device = await self._devices.get(serial)
        return await self._store.commands.page(device.serial, limit, before)

    async def get(self, command_id: str) -> Command | None:
        return await self._store.commands.get(command_id)

    # ---- dispatching -----------------------------------------------------------------------------

    def note_queued(self, serial: str) -> None:
        """A command for `serial` was queued (here, or by another process that signalled it)."""
        if self._queued is not None:
            self._queued.add(serial)

    async def dispatch_queued(self, serial: str, out: dict[str, Command] | None = None) -> int:
        """Send every queued command of a ready device, oldest first; `out` collects them as sent."""
        if not self._presence.is_ready(serial):
            return 0
        if self._queued is not None and serial not in self._queued:
            return 0
        lock = self._dispatch_locks.setdefault(serial, asyncio.Lock())
        sent = 0
        async with lock:
            drained = True
            for command in await self._store.commands.open_for(serial):
                if command.expires_at <= now_ms():
                    await self._finish(command, CommandStatus.EXPIRED, error="expired in the queue")
                    continue
                if not self._presence.is_ready(serial):
                    drained = False
                    break
                ts = now_ms()
                await self._store.commands.mark_dispatched(command.id, ts)
                self._deadlines[command.id] = (
                    serial,
                    asyncio.get_running_loop().time() + self._settings.command_ack_timeout_s,
                )
                await self.publisher.publish(
                    device_topic(serial, Channel.CMD),
                    json.dumps(command.device_message(), separators=(",", ":")).encode(),
                    qos=1,
                )
                self.counters.add("dispatched")
                sent += 1
                dispatched = replace(command, status=CommandStatus.DISPATCHED, dispatched_at=ts)
                if out is not None:
                    out[command.id] = dispatched
                await self._changed(command.id, dispatched)
            if drained and self._queued is not None:
                self._queued.discard(serial)
        if not lock.locked():
            self._dispatch_locks.pop(serial, None)
        return sent

    # ---- acks ------------------------------------------------------------------------------------

    async def on_ack(self, serial: str, raw: bytes, ts: int | None = None) -> Command | None:
        """A device's ack; returns the closed command, None for a replay or an unknown id."""
        limit = self._settings.max_payload_bytes
        value = self._ingest.validated(serial, Channel.ACK, lambda: _ack(raw, limit))
        ts = ts or now_ms()
        self._ingest.record(HistoryEntry(serial, MessageType.ACK, ts, {"t": MessageType.ACK.value, **value}))
        command = await self._store.commands.get(value["id"])
        if command is None or command.serial.lower() != serial.lower():
            self.counters.add("ack_unknown")
            return None
        status = CommandStatus.ACKED if value["ok"] else CommandStatus.FAILED
        error = value.get("error")
        if value["ok"] and "result" in value and not command.status.final:
            broken = await self.manifests.check_result(command.serial, command.action, value["result"])
            if broken is not None:
                status, error = CommandStatus.FAILED, broken
                self.counters.add("result_invalid")
        closed = await self._store.commands.finish(command.id, status, ts, error=error, result=value.get("result"))
        self._deadlines.pop(command.id, None)
        if not closed:
            self.counters.add("ack_replayed")
            return None
        self.counters.add(status.value)
        result = value.get("result")
        return await self._changed(
            command.id, replace(command, status=status, finished_at=ts, error=error, result=result)
        )

    # ---- timeouts and expiry ---------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._queued = await self._store.commands.serials_with_queued()
        for command in await self._store.commands.with_status(CommandStatus.DISPATCHED):
            # dispatched before a restart: the ack may still come; give it a full timeout
            self._deadlines[command.id] = (command.serial, loop.time() + self._settings.command_ack_timeout_s)
        self._task = asyncio.create_task(self._sweep(), name="nxg-command-sweep")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        ticks = 0
        while True:
            await asyncio.sleep(0.2)
            ticks += 1
            try:
                now = loop.time()
                for command_id, (_serial, deadline) in list(self._deadlines.items()):
                    if deadline <= now:
                        del self._deadlines[command_id]
                        command = await self._store.commands.get(command_id)
                        if command is not None:
                            await self._finish(command, CommandStatus.TIMEOUT, error="no ack from the device")
                if ticks % 25 == 0:
                    await self.expire()
            except Exception:
                log.exception("command sweep failed")

    async def expire(self, batch: int = 1000) -> int:
        """Expire the queued commands whose TTL has passed, `batch` at a time; how many."""
        total = 0
        while True:
            ids = await self._store.commands.expire_due(now_ms(), "expired in the queue", batch)
            for command_id in ids:
                self.counters.add(CommandStatus.EXPIRED.value)
                await self._changed(command_id)
            total += len(ids)
            if len(ids) < batch:
                return total

    async def _finish(self, command: Command, status: CommandStatus, error: str | None = None) -> None:
        if await self._store.commands.finish(command.id, status, now_ms(), error=error):
            self.counters.add(status.value)
            await self._changed(command.id)

    async def _changed(self, command_id: str, known: Command | None = None) -> Command | None:
        """Publish a command's new state on `cmd/res` and tell the listeners; `known` is that state
        when the caller just wrote it (no read back on the hot path)."""
        command = known if known is not None else await self._store.commands.get(command_id)
        if command is None:
            return None
        result: dict[str, Any] = {"id": command.id, "status": command.status.value}
        if command.ref is not None:
            result["ref"] = command.ref
        if command.error is not None:
            result["error"] = command.error
        try:
            await self.publisher.publish(
                device_topic(command.serial, Channel.CMD_RES), json.dumps(result).encode(), qos=1
            )
        except Exception:
            log.exception("publishing the result of %s failed", command.id)
        await notify_all(self._listeners, command, log=log, what="command listener")
        return command


def _ack(raw: bytes, limit: int) -> dict[str, Any]:
    value = messages.decode_object(raw, limit)
    messages.validate(Schema.ACK, value)
    return value
