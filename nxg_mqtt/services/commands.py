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

The hot path touches the shared aiosqlite connection not at all: the device comes from a cache
of known, unrevoked devices (dropped on reset, regenerate and delete, here or in another process
via its signal), the manifest from `ManifestService`'s compiled cache, and a command's writes
(the row, its audit entry, and `dispatched` when it goes straight out) are one operation of the
group-committing `CommandWriter`, which re-checks the device and the queue bound in SQL. A
command for a ready device with nothing queued is stored `dispatched` and published right after
the commit; anything else is stored `queued` and leaves through `dispatch_queued`, in order. An
ack closes the command it names from memory (the dispatched ones are held with their deadline)
through the same writer.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from nxg_mqtt import messages
from nxg_mqtt.entropy import random_bytes
from nxg_mqtt.errors import (
    CommandRejected,
    DeviceNotFound,
    DryRunRequired,
    NxgError,
    QueueFullError,
    RateLimitedError,
    StoreError,
    ValidationError,
)
from nxg_mqtt.listeners import notify_all
from nxg_mqtt.models import Command, CommandStatus, Counters, Device, HistoryEntry, history_ts, now_ms
from nxg_mqtt.protocol import InternalAction, MessageType, RevokeReason, Schema, SignalKind
from nxg_mqtt.ratelimit import SlidingWindow
from nxg_mqtt.services import Outbox
from nxg_mqtt.services.devices import DeviceService
from nxg_mqtt.services.ingest import IngestService
from nxg_mqtt.services.manifests import Capability, ManifestService
from nxg_mqtt.services.presence import PresenceService
from nxg_mqtt.settings import Settings
from nxg_mqtt.store import Store
from nxg_mqtt.store.commands_writer import DEVICE_NOT_FOUND, DEVICE_REVOKED, QUEUE_FULL
from nxg_mqtt.topics import Channel, device_topic

log = logging.getLogger(__name__)

CommandListener = Callable[[Command], Awaitable[None]]
# `submit(before_dispatch=…)`: runs once the command is committed, before it can reach the device
BeforeDispatch = Callable[[Command], Awaitable[None]]
DRY_RUN_TOKENS_MAX = 10_000  # outstanding tokens; the oldest go first beyond it
KNOWN_DEVICES_MAX = 100_000
# `submit_many` yields to the loop after this many publishes. Each command is two QoS 1 messages
# to every `nxg/#` subscriber (the bridge's own link among them: the command, its `dispatched`
# result); a burst of thousands in one loop pass fills such a session's in-flight window and queue
# (`session_queue_limit`) before it can acknowledge any, and the broker drops its messages (the
# device acks apps should see) and disconnects it. Slices let it read and acknowledge in between.
DISPATCH_SLICE = 64  # devices cached for the command path; the cache starts over beyond it


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
    return "c_" + random_bytes(8).hex()


def _command_ids(count: int) -> list[str]:
    """`count` ids like `new_command_id`'s, from one read of the system's random source."""
    raw = random_bytes(8 * count).hex()
    return ["c_" + raw[k : k + 16] for k in range(0, 16 * count, 16)]


_UNSEEN = object()  # `_check_shared`: no verdict yet for this capability definition


class CommandService:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        devices: DeviceService,
        presence: PresenceService,
        ingest: IngestService,
        publisher: Outbox,
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
        self._writer = store.command_writer
        # dispatched commands awaiting their ack: id → (the command, loop time of its timeout)
        self._deadlines: dict[str, tuple[Command, float]] = {}
        # serial (lower case) → a known, unrevoked device; the writer re-checks in SQL, so a stale
        # entry can only reorder which refusal a command gets, never let one through
        self._known: dict[str, Device] = {}
        # per tenant: commands past the rate check, not yet committed or refused
        self._storing: collections.Counter[str] = collections.Counter()
        self._dispatch_locks: dict[str, asyncio.Lock] = {}
        self._listeners: list[CommandListener] = []
        # in the serving process: devices that may have queued commands, so that the usual
        # subscribe (nothing queued) costs no query; None = unknown, always look
        self._queued: set[str] | None = None
        self._task: asyncio.Task[None] | None = None
        self.counters = Counters()
        presence.on_ready(self.dispatch_queued)
        devices.on_revoked(self._forget_device)

    def on_change(self, listener: CommandListener) -> None:
        self._listeners.append(listener)

    # ---- submitting ------------------------------------------------------------------------------

    async def check(
        self, serial: str, action: str, target: str | None, params: dict[str, Any] | None, *, fresh: bool = False
    ) -> tuple[Device, dict[str, Any], Capability | None]:
        """Every check a command passes before it is stored: (the device, the params,
        the manifest capability or None); DeviceNotFound or CommandRejected otherwise.
        `fresh`: the device is read from the store, not the cache (nothing re-checks it later)."""
        cached = not fresh and serial.lower() in self._known
        device = await self._device(serial) if not fresh else await self._devices.get(serial)
        try:
            if device.revoked:
                raise CommandRejected("DEVICE_REVOKED", f"device {device.serial} is revoked")
            request: dict[str, Any] = {"action": action, "params": {} if params is None else params}
            if target is not None:
                request["target"] = target
            messages.check_command_request(request)
            capability = await self.manifests.check_command(device.serial, action, target, request["params"])
        except NxgError:
            if cached:
                # refused on a cached device: a device gone or revoked since must say so first
                self._known.pop(serial.lower(), None)
                await self.check(serial, action, target, params, fresh=True)
            raise
        return device, request["params"], capability

    async def _device(self, serial: str) -> Device:
        key = serial.lower()
        device = self._known.get(key)
        if device is None:
            device = await self._devices.get(serial)
            if not device.revoked:
                if len(self._known) >= KNOWN_DEVICES_MAX:
                    self._known.clear()
                self._known[key] = device
        return device

    async def _forget_device(self, serial: str, why: RevokeReason) -> None:
        self._known.pop(serial.lower(), None)

    async def dry_run(
        self, serial: str, action: str, target: str | None = None, params: dict[str, Any] | None = None
    ) -> DryRun:
        """Validate only; nothing is stored or sent. A critical action gets its confirm token."""
        device, params, capability = await self.check(serial, action, target, params, fresh=True)
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
        before_dispatch: BeforeDispatch | None = None,
        internal: bool = False,
    ) -> Command:
        """Validate, commit, then dispatch (or queue). `dispatch=False` leaves it to the server
        process (the CLI writes the record and signals the server). A critical action without
        `confirmed` raises DryRunRequired with its token (`confirm` sends it). Every attempt,
        accepted or refused, goes to the audit log under `actor` (default: the source).
        `before_dispatch(command)` runs after the commit and before the command can reach the
        device (an app hears its id before the device's ack can arrive). `internal=True` is the
        server's own protocol-internal command (`protocol.InternalAction`, e.g. `_ota` from the
        firmware service): no surface passes it, so apps still get RESTRICTED_ACTION; it skips the
        request schema, the manifest and the rate limit."""
        try:
            return await self._submit(
                serial,
                action,
                target,
                params,
                ref,
                source,
                dispatch,
                confirmed,
                actor or source,
                before_dispatch,
                internal,
            )
        except NxgError as exc:
            detail = {"action": action, "source": source, "error": exc.message}
            try:
                await self._writer.audit(now_ms(), actor or source, "command", serial, detail, outcome=exc.code)
            except StoreError:
                log.exception("auditing a refused command failed")  # the refusal itself still stands
            raise

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
        actor: str,
        before_dispatch: BeforeDispatch | None,
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
        rate_limit = 0 if internal else self._settings.command_rate_limit
        tenant = device.tenant
        # per tenant (PROTOCOL §6); commands being stored count too: concurrent submits (a pipelined
        # /ws/app socket, parallel REST requests) must not all pass the check before the first is recorded
        if rate_limit > 0 and self._rate.count(tenant, loop_now) + self._storing[tenant] >= rate_limit:
            raise RateLimitedError(
                f"more than {self._settings.command_rate_limit} commands a minute",
                retry_after=self._rate.retry_after(device.tenant, loop_now),
            )
        created = history_ts(device.serial)  # the ts of its `cmd` history row
        # straight out: the device is ready and nothing of it waits in the queue (order kept)
        direct = dispatch and self._direct(device.serial)
        command = Command(
            id=new_command_id(),
            serial=device.serial,
            action=action,
            target=target,
            params=request["params"],
            status=CommandStatus.DISPATCHED if direct else CommandStatus.QUEUED,
            created_at=created,
            expires_at=created + int(self._settings.command_ttl_s * 1000),
            source=source,
            ref=ref,
            dispatched_at=created if direct else None,
        )
        limit = self._settings.command_queue_limit
        detail = {"action": action, "source": source, "id": command.id}
        self._storing[tenant] += 1
        try:
            stored = await self._writer.insert(command, limit, actor, detail)
        except StoreError as exc:
            # nothing was stored: the requester hears it (PROTOCOL §4 GATEWAY_ERROR, 502), no silent loss
            log.error("storing a command for %s failed: %s", device.serial, exc.message)
            raise CommandRejected("GATEWAY_ERROR", "the command could not be stored; nothing was sent") from exc
        finally:
            self._storing[tenant] -= 1
        command = self._stored(command, limit, stored)
        if not internal:
            self._rate.hit(tenant, loop_now)  # refused commands do not count
        if before_dispatch is not None:
            await before_dispatch(command)
        if direct:
            return await self._publish(command)
        if dispatch:
            self.note_queued(command.serial)
            sent: dict[str, Command] = {}
            await self.dispatch_queued(command.serial, sent)
            return sent.get(command.id, command)
        await self._store.signals.emit(SignalKind.COMMAND, command.serial, now_ms())
        return command

    async def submit_many(
        self,
        serials: Sequence[str],
        action: str,
        target: str | None = None,
        params: dict[str, Any] | None = None,
        *,
        source: str = "api",
        dispatch: bool = True,
        actor: str | None = None,
    ) -> list[Command | NxgError]:
        """One command to many devices (a room or group fan-out): per device, in the order given,
        the stored Command or the NxgError that refused it, exactly as `submit` would have (same
        checks, codes and audit entries); one device's refusal never touches another's command.

        What `submit` does per command is done once for the lot: the request schema is checked
        once, the manifest check once per distinct capability definition (the same `paramSchema`,
        targets and safety class give the same verdict; a refusal is re-run for each device so
        that its message names it), the rate limit (PROTOCOL §6, per tenant, every device's
        command counts as one) admits the first devices that fit and refuses the rest, and every
        insert and audit row goes to the writer at once, so they share one transaction in which
        each device's queue bound is still checked. The commands that go straight out are then
        published in one pass (the broker routes from memory: nothing is awaited per command);
        queued ones are drained per device, concurrently."""
        who = actor or source
        outcomes: list[Command | NxgError | None] = [None] * len(serials)
        checked: list[tuple[int, Device, Capability | None]] = []
        request: dict[str, Any] = {"action": action, "params": {} if params is None else params}
        if target is not None:
            request["target"] = target
        schema_error: NxgError | None = None
        try:
            messages.check_command_request(request)
        except NxgError as exc:
            schema_error = exc
        verdicts: dict[Any, Capability | NxgError | None] = {}
        for i, serial in enumerate(serials):
            cached = serial.lower() in self._known
            try:
                device = await self._device(serial)
                if device.revoked:
                    raise CommandRejected("DEVICE_REVOKED", f"device {device.serial} is revoked")
                if schema_error is not None:
                    raise schema_error
                capability = await self._check_shared(device.serial, action, target, request["params"], verdicts)
            except NxgError as exc:
                outcomes[i] = await self._refused_fresh(serial, exc) if cached else exc
                continue
            if capability is not None and capability.critical:
                issued = self._issue(device.serial, action, target, request["params"], True)
                assert issued.token is not None
                outcomes[i] = DryRunRequired(issued.token)
                continue
            checked.append((i, device, capability))
        loop_now = asyncio.get_running_loop().time()
        rate_limit = self._settings.command_rate_limit
        room: dict[str, int] = {}  # per tenant: commands the rate limit still admits
        ttl_ms = int(self._settings.command_ttl_s * 1000)
        to_store: list[tuple[int, Command]] = []
        tenants: collections.Counter[str] = collections.Counter()
        for (i, device, _capability), command_id in zip(checked, _command_ids(len(checked)), strict=True):
            tenant = device.tenant
            if rate_limit > 0:
                if tenant not in room:
                    room[tenant] = rate_limit - self._rate.count(tenant, loop_now) - self._storing[tenant]
                if room[tenant] <= 0:
                    outcomes[i] = RateLimitedError(
                        f"more than {rate_limit} commands a minute",
                        retry_after=self._rate.retry_after(tenant, loop_now),
                    )
                    continue
                room[tenant] -= 1
            tenants[tenant] += 1
            direct = dispatch and self._direct(device.serial)
            created = history_ts(device.serial)  # the ts of its `cmd` history row
            command = Command(
                id=command_id,
                serial=device.serial,
                action=action,
                target=target,
                params=request["params"],
                status=CommandStatus.DISPATCHED if direct else CommandStatus.QUEUED,
                created_at=created,
                expires_at=created + ttl_ms,
                source=source,
                ref=None,
                dispatched_at=created if direct else None,
            )
            to_store.append((i, command))
        tenant_of = {i: device.tenant for i, device, _ in checked}
        limit = self._settings.command_queue_limit
        # the refusals so far are audited in the inserts' transaction
        refusals = [
            (now_ms(), who, "command", serials[i], self._refusal_detail(action, source, o), o.code)
            for i, o in enumerate(outcomes)
            if isinstance(o, NxgError)
        ]
        inserts = [(c, limit, who, {"action": action, "source": source, "id": c.id}) for _, c in to_store]
        self._storing.update(tenants)
        try:
            stored: list[str | NxgError] = list(await self._writer.insert_many(inserts, refusals))
        except StoreError as exc:
            log.error("storing %d commands of a fan-out failed: %s", len(to_store), exc.message)
            gateway = CommandRejected("GATEWAY_ERROR", "the command could not be stored; nothing was sent")
            stored = [gateway] * len(to_store)
        finally:
            self._storing.subtract(tenants)
        ready: list[Command] = []
        late: list[tuple[int, NxgError]] = []
        for (i, command), result in zip(to_store, stored, strict=True):
            try:
                accepted = self._stored(command, limit, result)
            except NxgError as exc:
                outcomes[i] = exc
                late.append((i, exc))
                continue
            self._rate.hit(tenant_of[i], loop_now)  # refused commands do not count
            outcomes[i] = accepted
            ready.append(accepted)
        if late:  # refused by the writer's own checks: audited after, as `submit` does
            try:
                rows = [
                    (now_ms(), who, "command", serials[i], self._refusal_detail(action, source, e), e.code)
                    for i, e in late
                ]
                await self._writer.insert_many([], rows)
            except StoreError:
                log.exception("auditing refused commands failed")
        queued: dict[str, Command] = {}
        for n, command in enumerate(ready, start=1):
            if command.status is CommandStatus.DISPATCHED:
                await self._publish(command)  # the broker routes from memory: no I/O awaited per command
                if n % DISPATCH_SLICE == 0:
                    await asyncio.sleep(0)
            elif dispatch:
                self.note_queued(command.serial)
                queued[command.id] = command
        if queued:
            # each device drains its own queue (store reads), all devices at once
            sent: dict[str, Command] = {}
            await asyncio.gather(*(self.dispatch_queued(s, sent) for s in {c.serial for c in queued.values()}))
            for i, outcome in enumerate(outcomes):
                if isinstance(outcome, Command) and outcome.id in sent:
                    outcomes[i] = sent[outcome.id]
        elif not dispatch:
            for serial in {c.serial for c in ready}:
                await self._store.signals.emit(SignalKind.COMMAND, serial, now_ms())
        final: list[Command | NxgError] = []
        for outcome in outcomes:
            assert outcome is not None
            final.append(outcome)
        return final

    @staticmethod
    def _refusal_detail(action: str, source: str, exc: NxgError) -> dict[str, Any]:
        return {"action": action, "source": source, "error": exc.message}

    async def _refused_fresh(self, serial: str, exc: NxgError) -> NxgError:
        """A refusal of a cached device: a device gone or revoked since must say so first."""
        self._known.pop(serial.lower(), None)
        try:
            device = await self._devices.get(serial)
        except NxgError as gone:
            return gone
        if device.revoked:
            return CommandRejected("DEVICE_REVOKED", f"device {device.serial} is revoked")
        return exc

    async def _check_shared(
        self,
        serial: str,
        action: str,
        target: str | None,
        params: dict[str, Any],
        verdicts: dict[Any, Capability | NxgError | None],
    ) -> Capability | None:
        """`manifests.check_command`, run once per distinct capability definition: devices whose
        manifests declare `action` alike (targets, safety class, `paramSchema`) share a verdict.
        A refusal is re-run per device, so that its message names that device."""
        compiled = await self.manifests.compiled(serial)
        key: Any
        if compiled is None:
            key = None
        else:
            capability = compiled.capabilities.get(action)
            if capability is None:
                key = ("missing",)
            else:
                schema = capability.params.schema if capability.params is not None else None
                key = (capability.targets, capability.safety_class, json.dumps(schema, sort_keys=True))
        verdict = verdicts.get(key, _UNSEEN)
        if verdict is _UNSEEN:
            try:
                verdict = await self.manifests.check_command(serial, action, target, params)
            except NxgError as exc:
                verdict = exc
            verdicts[key] = verdict
            if isinstance(verdict, NxgError):
                raise verdict
            return verdict
        if isinstance(verdict, NxgError):
            return await self.manifests.check_command(serial, action, target, params)  # raises, naming `serial`
        # a shared capability: the same action, with this device's own targets and output schema
        return compiled.capabilities[action] if compiled is not None else None

    def _stored(self, command: Command, limit: int, stored: str | NxgError) -> Command:
        """What the writer said of an insert, as the command stored or the error refusing it."""
        if isinstance(stored, NxgError):
            raise stored
        if stored == QUEUE_FULL:
            self.counters.add("queue_full")
            raise QueueFullError(
                f"device {command.serial} already has {limit} commands waiting (queued or unacknowledged);"
                " try again once it has taken some"
            )
        if stored in (DEVICE_NOT_FOUND, DEVICE_REVOKED):  # changed by another process meanwhile
            self._known.pop(command.serial.lower(), None)
            if stored == DEVICE_NOT_FOUND:
                raise DeviceNotFound(command.serial)
            raise CommandRejected("DEVICE_REVOKED", f"device {command.serial} is revoked")
        return command if stored == command.serial else replace(command, serial=stored)

    def _direct(self, serial: str) -> bool:
        """Whether a new command for `serial` may skip the queue: this process knows the queue
        (`start` ran), none of the device's commands wait in it or are being drained, and it is ready."""
        return (
            self._queued is not None
            and serial not in self._queued
            and serial not in self._dispatch_locks
            and self._presence.is_ready(serial)
        )

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
                dispatched = replace(command, status=CommandStatus.DISPATCHED, dispatched_at=ts)
                if out is not None:
                    out[command.id] = dispatched
                await self._publish(dispatched)
                sent += 1
            if drained and self._queued is not None:
                self._queued.discard(serial)
        if not lock.locked():
            self._dispatch_locks.pop(serial, None)
        return sent

    async def _publish(self, command: Command) -> Command:
        """Send a command already stored as `dispatched`: its ack deadline, the PUBLISH, the change."""
        deadline = asyncio.get_running_loop().time() + self._settings.command_ack_timeout_s
        self._deadlines[command.id] = (command, deadline)
        await self.publisher.publish(
            device_topic(command.serial, Channel.CMD),
            messages.compact(command.device_message()).encode(),
            qos=1,
        )
        self.counters.add("dispatched")
        await self._changed(command.id, command)
        return command

    # ---- acks ------------------------------------------------------------------------------------

    async def on_ack(
        self, serial: str, raw: bytes, ts: int | None = None, *, redelivered: bool = False
    ) -> Command | None:
        """A device's ack; returns the closed command, None for a replay or an unknown id.
        `redelivered`: a broker's second delivery (MQTT DUP), stored once like any device payload
        (`HistoryEntry.redelivered`), its Warning too if it is bad; closing is idempotent anyway."""
        limit = self._settings.max_payload_bytes
        ts = ts or history_ts(serial)
        value = self._ingest.validated(serial, Channel.ACK, lambda: _ack(raw, limit), ts, redelivered=redelivered)
        # stored by the command writer, with the close it causes (`CommandWriter.finish`)
        ack = HistoryEntry(serial, MessageType.ACK, ts, {"t": MessageType.ACK.value, **value}, redelivered=redelivered)
        held = self._deadlines.get(value["id"])
        command = held[0] if held is not None else await self._store.commands.get(value["id"])
        if command is None or command.serial.lower() != serial.lower():
            self.counters.add("ack_unknown")
            await self._writer.history(ack)
            return None
        status = CommandStatus.ACKED if value["ok"] else CommandStatus.FAILED
        error = value.get("error")
        if value["ok"] and "result" in value and not command.status.final:
            broken = await self.manifests.check_result(command.serial, command.action, value["result"])
            if broken is not None:
                status, error = CommandStatus.FAILED, broken
                self.counters.add("result_invalid")
        closed = await self._writer.finish(command.id, status, ts, error=error, result=value.get("result"), ack=ack)
        self._deadlines.pop(command.id, None)
        if not closed:
            self.counters.add("ack_replayed")
            return None
        self.counters.add(status.value)
        result = value.get("result")
        return await self._changed(command.id, command.closed(status, ts, error, result))

    # ---- timeouts and expiry ---------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._queued = await self._store.commands.serials_with_queued()
        for command in await self._store.commands.with_status(CommandStatus.DISPATCHED):
            # dispatched before a restart: the ack may still come; give it a full timeout
            self._deadlines[command.id] = (command, loop.time() + self._settings.command_ack_timeout_s)
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
                for command_id, (_command, deadline) in list(self._deadlines.items()):
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
        topic = device_topic(command.serial, Channel.CMD_RES)
        try:
            # every command's every change goes out (PROTOCOL §2: readers of `S` follow them there),
            # but on the embedded broker with no subscriber for it there is nothing to build or route
            if self.publisher.wanted(topic):
                result: dict[str, Any] = {"id": command.id, "status": command.status.value}
                if command.ref is not None:
                    result["ref"] = command.ref
                if command.error is not None:
                    result["error"] = command.error
                await self.publisher.publish(topic, json.dumps(result).encode(), qos=1)
        except Exception:
            log.exception(
                "publishing the result of %s failed",
                command.id,
                extra={"command_id": command.id, "serial": command.serial},
            )
        await notify_all(self._listeners, command, log=log, what="command listener")
        return command


def _ack(raw: bytes, limit: int) -> dict[str, Any]:
    value = messages.decode_object(raw, limit)
    if not messages.plain_ack(value):
        messages.validate(Schema.ACK, value)
    return value
