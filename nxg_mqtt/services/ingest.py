"""Ingest: device telemetry, status and events validated, then stored in bounded batches.

Entries wait at most `batch_window_ms` (or until `batch_max_rows` are pending) before one
transaction writes them; `close()` flushes what is pending, so a clean shutdown loses nothing.
Group commit: `committed()` hands out the future of the batch being gathered, resolved when that
batch has committed (or failed with StoreError), so the broker acknowledges a QoS 1 message only
once it is durable while still writing one transaction per window. A failed batch stays pending
and is retried; its waiters are failed, so their clients (never acknowledged) send again.
A payload that breaks its schema is dropped, counted by reason, and recorded as a `Warning`
event for that device (also published on `nxg/{S}/event`, so apps see why).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from nxg_mqtt import messages
from nxg_mqtt.errors import PayloadRejected, StoreError
from nxg_mqtt.metrics import BATCH_ROWS, WRITE_SECONDS, Buckets
from nxg_mqtt.models import Counters, HistoryEntry, PresenceOp, history_ts, now_ms
from nxg_mqtt.protocol import SENT_BY_DEVICE, MessageType, core_stamp
from nxg_mqtt.services import Publisher
from nxg_mqtt.settings import Settings
from nxg_mqtt.store import Store
from nxg_mqtt.topics import Channel, device_topic

log = logging.getLogger(__name__)

T = TypeVar("T")


class IngestService:
    def __init__(self, store: Store, settings: Settings, publisher: Publisher) -> None:
        self._store = store
        self._settings = settings
        self.publisher = publisher
        self._pending: list[HistoryEntry] = []
        self._ops: list[PresenceOp] = []  # connection log and online flags, written with the batch
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()
        self._closing = False
        self._committed: asyncio.Future[None] | None = None  # waiters on the batch being gathered
        self.rejected = Counters()
        self.stored = 0  # history rows written
        self.batch_rows = Buckets(BATCH_ROWS)  # rows per committed batch, and its write time
        self.write_seconds = Buckets(WRITE_SECONDS)
        self._observers: list[Callable[[HistoryEntry], None]] = []

    def observe(self, observer: Callable[[HistoryEntry], None]) -> None:
        """`observer(entry)` sees every accepted status and event (telemetry, the hot path, is not
        shown): it must be quick (hand the work to a task); an exception it raises is logged."""
        self._observers.append(observer)

    # ---- accepting -------------------------------------------------------------------------------

    def accept(
        self, serial: str, channel: Channel, raw: bytes, ts: int | None = None, *, redelivered: bool = False
    ) -> HistoryEntry:
        """Validate and queue one device payload (a kind of `protocol.DEVICE_DATA`), stamped with
        `ts` (the receive time, now if not given); PayloadRejected (already recorded) if it is bad.
        `redelivered`: a broker's second delivery (MQTT DUP), stored only if no row holds the same
        serial, type, ts and body (`HistoryEntry.redelivered`)."""
        kind = MessageType(channel.value)
        limit = self._settings.max_payload_bytes
        ts = ts or history_ts(serial)
        message = self.validated(
            serial, channel, lambda: messages.parse_device_message(kind.value, raw, limit), ts, redelivered=redelivered
        )
        body: dict[str, Any] = {"t": kind.value, **message.fields}
        entry = HistoryEntry(serial, kind, ts, body, message.device_ts, redelivered=redelivered)
        self.record(entry)
        if kind is not MessageType.TELEMETRY:
            for observer in self._observers:
                try:
                    observer(entry)
                except Exception:
                    log.exception("an ingest observer failed on %s from %s", kind.value, serial)
        return entry

    def validated(
        self, serial: str, topic_leaf: str, check: Callable[[], T], ts: int | None = None, *, redelivered: bool = False
    ) -> T:
        """What `check()` returns; a PayloadRejected it raises is recorded (`reject`, stamped `ts`)
        and re-raised.

        Every surface that validates a device payload goes through here, so a bad payload is
        counted and explained to the developer the same way whichever way it came in.
        """
        try:
            return check()
        except PayloadRejected as exc:
            self.reject(serial, exc, topic_leaf, ts, redelivered=redelivered)
            raise

    def reject(
        self, serial: str, exc: PayloadRejected, topic_leaf: str, ts: int | None = None, *, redelivered: bool = False
    ) -> HistoryEntry:
        """Count a rejected payload and record the Warning event the developer will look for.

        The Warning carries the bad message's receive stamp `ts`, so a broker's second delivery of
        the same bad message (`redelivered`, e.g. to the other serving process after a kill) is
        recognised by the history writer like a good one and stored once."""
        self.rejected.add(exc.code)
        body = {
            "t": MessageType.EVENT.value,
            "type": "payload_rejected",
            "severity": "Warning",
            "category": "protocol",
            "body": {"error": exc.message, "reason": exc.code, "channel": topic_leaf},
        }
        entry = HistoryEntry(serial, MessageType.EVENT, ts or history_ts(serial), body, redelivered=redelivered)
        self.record(entry)
        event = {k: v for k, v in body.items() if k != "t"}
        payload = core_stamp(json.dumps(event).encode(), entry.ts)  # apps see the ts history holds
        task = asyncio.get_running_loop().create_task(
            self.publisher.publish(device_topic(serial, Channel.EVENT), payload, qos=0, retain=False)
        )
        task.add_done_callback(_log_failure)
        return entry

    def record(self, entry: HistoryEntry) -> None:
        self._pending.append(entry)
        if len(self._pending) >= self._settings.batch_max_rows:
            self._wakeup.set()

    def commit_now(self) -> None:
        """Start the next commit without waiting out the window: for a caller whose acknowledgements
        wait on it while its sender will not send more (a broker's in-flight window is full)."""
        self._wakeup.set()

    def committed(self) -> asyncio.Future[None] | None:
        """A future resolved once everything recorded so far is committed; it fails (StoreError)
        if that batch's commit fails. None when this process runs no writer (nothing would commit
        before `close()`): acknowledge at once, as before."""
        if self._task is None:
            return None
        future = self._committed
        if future is None:
            future = self._committed = asyncio.get_running_loop().create_future()
            future.add_done_callback(_retrieve)
        return future

    def record_presence(self, op: PresenceOp) -> None:
        """A presence change, written with the next batch (a CONNECT storm costs no extra commits)."""
        self._ops.append(op)

    # ---- writing ---------------------------------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="nxg-ingest")

    async def _run(self) -> None:
        window = self._settings.batch_window_ms / 1000
        loop = asyncio.get_running_loop()
        next_prune = loop.time() + 60
        # stopped by a flag, never cancelled: a cancel landing between BEGIN and COMMIT would
        # leave the shared connection inside a transaction
        started = loop.time()
        while not self._closing:
            # windows start at a steady cadence, not a full window after the last write ended:
            # a QoS 1 message waits for its commit about half a window plus one write
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=max(0.0, started + window - loop.time()))
            self._wakeup.clear()
            started = loop.time()
            try:
                await self.flush()
                if loop.time() >= next_prune:
                    next_prune = loop.time() + 3600
                    await self.prune()
            except Exception:
                # the rows stay pending and are retried next window; never lose them silently
                log.exception("ingest flush failed; %d rows pending", len(self._pending))
                await asyncio.sleep(window)

    async def flush(self) -> int:
        async with self._flush_lock:
            done, self._committed = self._committed, None
            if not self._pending and not self._ops:
                _resolve(done)
                return 0
            batch, self._pending = self._pending, []
            ops, self._ops = self._ops, []
            last_seen: dict[str, int] = {}
            for entry in batch:
                if entry.type in SENT_BY_DEVICE and entry.ts > last_seen.get(entry.serial, 0):
                    last_seen[entry.serial] = entry.ts
            started = time.perf_counter()
            try:
                await self._store.history_writer.write(batch, last_seen, ops)
            except BaseException as exc:
                self._pending[:0] = batch
                self._ops[:0] = ops
                _resolve(done, StoreError(f"history commit failed: {exc!r}"))
                raise
            self.stored += len(batch)
            self.batch_rows.observe(len(batch))
            self.write_seconds.observe(time.perf_counter() - started)
            _resolve(done)
            return len(batch)

    async def prune(self) -> int:
        """History older than the retention setting goes (hourly in a serving process)."""
        days = self._settings.history_retention_days
        if days <= 0:
            return 0
        removed = await self._store.messages.prune(now_ms() - days * 86_400_000)
        if removed:
            log.info("retention: removed %d messages older than %d days", removed, days)
        return removed

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._wakeup.set()
            await self._task
            self._task = None
        await self.flush()


def _resolve(future: asyncio.Future[None] | None, error: BaseException | None = None) -> None:
    if future is None or future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


def _retrieve(future: asyncio.Future[None]) -> None:
    # a batch nobody waited on (QoS 0 only) must not log "exception was never retrieved"
    if not future.cancelled():
        future.exception()


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("publishing a Warning event failed", exc_info=task.exception())
