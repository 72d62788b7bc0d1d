"""Changes made by another process (the CLI on the same data directory) reach live sessions.

The CLI writes a `signals` row next to its change; a server polls for new rows every
`signal_poll_s` (250 ms by default), so a reset from the CLI disconnects the device within 1 s,
and a key revoked or rotated from the CLI is forgotten and its sessions closed as quickly.

The process that runs the broker handles every kind. A bridge run on its own (`nxg-mqtt bridge`
next to `nxg-mqtt broker` on the same data directory) watches too, for `BRIDGE_KINDS` only: its
WebSockets (and gateway devices) live in its process, so a key revoked or a device reset by the
CLI or by the broker's process must reach them there; commands stay the broker process's job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nxg_mqtt.models import now_ms
from nxg_mqtt.protocol import SignalKind
from nxg_mqtt.services.admin import AdminCredentials
from nxg_mqtt.services.api_keys import ApiKeyService
from nxg_mqtt.services.commands import CommandService
from nxg_mqtt.services.devices import DeviceService
from nxg_mqtt.store import Store

log = logging.getLogger(__name__)

ALL_KINDS = frozenset(SignalKind)
BRIDGE_KINDS = frozenset({SignalKind.KEY_REVOKED, SignalKind.REVOKED, SignalKind.ADMIN_PASSWORD})


class SignalWatcher:
    def __init__(
        self,
        store: Store,
        devices: DeviceService,
        commands: CommandService,
        poll_s: float,
        keys: ApiKeyService | None = None,
        kinds: frozenset[SignalKind] = ALL_KINDS,
        admin: AdminCredentials | None = None,
    ) -> None:
        self._store = store
        self._admin = admin
        self._keys = keys
        self._devices = devices
        self._commands = commands
        self._poll_s = poll_s
        self._kinds = kinds
        self._last_id = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        self._last_id = await self._store.signals.last_id()
        await self._store.signals.prune(now_ms() - 3600_000)
        self._task = asyncio.create_task(self._run(), name="nxg-signals")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def poll(self) -> int:
        handled = 0
        for signal in await self._store.signals.since(self._last_id):
            self._last_id = signal.id
            if signal.id in self._devices.own_signal_ids:
                self._devices.own_signal_ids.discard(signal.id)
                continue
            if signal.kind not in self._kinds:
                continue
            if signal.kind is SignalKind.ADMIN_PASSWORD:
                if self._admin is not None:
                    self._admin.forget(signal.id)
                handled += 1
                continue
            if signal.serial is None:
                continue
            if signal.kind is SignalKind.KEY_REVOKED:
                # our own revocations were forgotten already; forgetting twice is harmless
                if self._keys is not None:
                    await self._keys.forget(signal.serial)
            elif signal.kind is SignalKind.REVOKED and signal.reason is not None:
                await self._devices.notify_revoked(signal.serial, signal.reason)
            elif signal.kind is SignalKind.COMMAND:
                self._commands.note_queued(signal.serial)
                await self._commands.dispatch_queued(signal.serial)
            handled += 1
        return handled

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._poll_s)
            try:
                await self.poll()
            except Exception:
                log.exception("polling signals failed")
