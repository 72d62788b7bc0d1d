"""Presence: who is online, on which transport, since when; the connection log; retained presence.

A device is online from its first authenticated connection until its last one ends. A takeover
(a second connection with the same serial) closes the first session's log entry but publishes
no offline/online pair, so apps never see a flicker.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from nxg_mqtt.listeners import notify_all
from nxg_mqtt.models import ConnectionClosed, ConnectionOpened, HistoryEntry, OnlineChanged, history_ts, now_ms
from nxg_mqtt.protocol import CloseReason, MessageType, presence_kind
from nxg_mqtt.services import Publisher
from nxg_mqtt.services.ingest import IngestService
from nxg_mqtt.store import Store
from nxg_mqtt.topics import Channel, device_topic

log = logging.getLogger(__name__)

ReadyListener = Callable[[str], Awaitable[object]]


@dataclass(slots=True)
class Online:
    transport: str
    since: int  # with the serial, names the connection log entry
    cmd_ready: bool = False
    handed_over: bool = False  # its connection was taken over; the new one is on its way


@dataclass(frozen=True, slots=True)
class PresenceChange:
    """One connect (`online`) or disconnect, as `PresenceService.apply` takes them."""

    serial: str
    online: bool
    transport: str
    remote: str | None = None  # a connect's peer address
    reason: str = CloseReason.DISCONNECTED  # a disconnect's
    # when it happened, if the broker stamped it as it stamps the device's messages (Mosquitto's
    # plugin): history then orders it among them; None: now, by this process's clock
    ts: int | None = None


class PresenceService:
    def __init__(self, store: Store, ingest: IngestService, publisher: Publisher) -> None:
        self._store = store
        self._ingest = ingest
        self.publisher = publisher
        self._online: dict[str, Online] = {}
        self._ready_listeners: list[ReadyListener] = []

    def online_count(self) -> int:
        return len(self._online)

    def is_online(self, serial: str) -> bool:
        return serial in self._online

    def is_ready(self, serial: str) -> bool:
        """Online and subscribed to its command topic: a command published now reaches it."""
        online = self._online.get(serial)
        return online is not None and online.cmd_ready

    def on_ready(self, listener: ReadyListener) -> None:
        self._ready_listeners.append(listener)

    async def recover(self) -> None:
        """At start-up nobody is connected yet: close what a crashed process left open."""
        ts = now_ms()
        for serial in await self._store.devices.mark_all_offline(ts):
            await self._publish(serial, False, ts)
        await self._store.connections.close_dangling(ts, CloseReason.SERVER_SHUTDOWN)

    async def connected(self, serial: str, transport: str, remote: str | None) -> None:
        ts = self._opened(serial, transport, remote)
        if ts is not None:
            await self._publish(serial, True, ts)

    async def disconnected(self, serial: str, reason: str, transport: str | None = None) -> None:
        ts = self._closed(serial, reason, transport)
        if ts is not None:
            await self._publish(serial, False, ts)

    async def apply(self, changes: Sequence[PresenceChange]) -> None:
        """Several connects and disconnects, in order, as `connected`/`disconnected` one by one
        would, but their retained presence messages go out together: written in order on one
        link, acknowledged side by side (a CONNECT storm's hundreds of reports cost one round
        trip through the broker, not one each, and the broker reads them in a few large reads)."""
        published: list[tuple[str, bool, int]] = []
        for change in changes:
            if change.online:
                ts = self._opened(change.serial, change.transport, change.remote, change.ts)
            else:
                ts = self._closed(change.serial, change.reason, change.transport, change.ts)
            if ts is not None:
                published.append((change.serial, change.online, ts))
        if len(published) == 1:
            await self._publish(*published[0])
        elif published:
            # gather starts them in this order, and each writes before its first wait
            await asyncio.gather(*(self._publish(serial, online, ts) for serial, online, ts in published))

    def _opened(self, serial: str, transport: str, remote: str | None, at: int | None = None) -> int | None:
        """The state and the journal of a connect; the ts to publish `online` with, if any."""
        ts = at or history_ts(serial)
        journal = self._ingest.record_presence
        journal(ConnectionOpened(serial, transport, remote, ts))
        previous = self._online.get(serial)
        self._online[serial] = Online(transport, ts)
        if previous is not None:
            # a takeover: the device never went offline, so nothing is published
            if not previous.handed_over:
                journal(ConnectionClosed(serial, previous.since, ts, CloseReason.TAKEN_OVER))
            return None
        journal(OnlineChanged(serial, True, ts))
        return ts

    def _closed(self, serial: str, reason: str, transport: str | None, at: int | None = None) -> int | None:
        """The state and the journal of a disconnect; the ts to publish `offline` with, if any."""
        online = self._online.get(serial)
        if online is None or (transport is not None and online.transport != transport):
            return None
        ts = at or history_ts(serial)
        journal = self._ingest.record_presence
        journal(ConnectionClosed(serial, online.since, ts, reason))
        if reason == CloseReason.TAKEN_OVER:
            # the new session's `connected` follows and keeps the device online
            online.handed_over = True
            online.cmd_ready = False
            return None
        del self._online[serial]
        journal(OnlineChanged(serial, False, ts))
        return ts

    async def subscribed_commands(self, serial: str) -> None:
        online = self._online.get(serial)
        if online is None:
            return
        online.cmd_ready = True
        await notify_all(self._ready_listeners, serial, log=log, what=f"command-ready listener for {serial}")

    def unsubscribed_commands(self, serial: str) -> None:
        online = self._online.get(serial)
        if online is not None:
            online.cmd_ready = False

    async def _publish(self, serial: str, online: bool, ts: int) -> None:
        self._ingest.record(HistoryEntry(serial, MessageType.PRESENCE, ts, {"t": presence_kind(online).value}))
        payload = json.dumps({"online": online, "ts": ts}).encode()
        try:
            await self.publisher.publish(device_topic(serial, Channel.PRESENCE), payload, qos=1, retain=True)
        except Exception:
            log.exception("publishing presence of %s failed", serial)

    async def forget(self, serial: str) -> None:
        """A deleted device: its retained presence is cleared."""
        self._online.pop(serial, None)
        await self.publisher.publish(device_topic(serial, Channel.PRESENCE), b"", qos=0, retain=True)
