"""In-process fan-out of what the MQTT link receives.

Apps: each `/ws/app` socket owns an `AppFeed`, a bounded queue of JSON texts (`ws_queue_limit`).
A message is encoded once and offered to every feed; a feed that is full is marked overflowed
(its socket is closed with 1013 by its owner) and never slows the others. Every subscriber is a
plain callback, each call guarded: one that raises is logged and counted, the rest still run.

Scoped subscribers (an API key limited to some devices, a `/realtime` socket's subscriptions)
are indexed by serial, so a message costs them nothing unless it is about one of theirs. The
`/realtime` form (seed 001) is derived from the app message by `protocol.realtime_message` and
encoded once, straight into its WebSocket frame (`realtime_writer.text_frame`): every `/realtime`
subscriber of the device queues the same bytes.

Tenants (seed 002): an app socket sees only its tenant's devices. Tenant subscribers are indexed
by tenant, and a scoped subscriber of a tenant gets a device's messages only while the device is
that tenant's; the owner comes from `owner(serial)` (the core's in-memory map), and a device not
in it yet (created by another process) is looked up through `resolve` before its message is
delivered, never guessed. A message about a device the store does not hold (a test publishing
for a made-up serial, a foreign broker) belongs to nobody else, so the default tenant sees it,
as in the single-site system.

Gateway devices: a `/ws/gateway` socket attaches a sink for its serial; commands published on
`nxg/{S}/cmd` go to that sink only.

Presence: retained `nxg/{S}/presence` messages (replayed by the broker whenever the link
(re)subscribes) are *not* forwarded to apps: they describe the past, and an app that wants the
current state asks `GET /api/devices`. Only live presence changes become `device_online` /
`device_offline`.

The one `ts` (PROTOCOL §6): telemetry, status, events and acks arrive stamped by the broker's
ingest (`server_ts`, the value history stores); the hub carries that value and stamps nothing
itself. Only a broker that does not stamp (a foreign one) leaves the hub to use its own clock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Iterable
from typing import Any, Protocol, TypeVar

from bridge.realtime_writer import text_frame
from nxg_mqtt import messages
from nxg_mqtt.errors import PayloadRejected
from nxg_mqtt.listeners import call_all
from nxg_mqtt.models import Counters, now_ms
from nxg_mqtt.protocol import SERVER_TS, MessageType, app_message, presence_kind, realtime_message
from nxg_mqtt.topics import Channel, parse_device_topic

log = logging.getLogger(__name__)

Subscriber = Callable[[str], None]
FrameSubscriber = Callable[[bytes], None]  # a `/realtime` socket: one message's WebSocket frame
T = TypeVar("T")

# what `Hub.on_mqtt` acts on: device messages apps see, and commands for gateway devices. When the
# link feeds only the hub (`embedded`: the broker in this process, or the Mosquitto profile, whose
# MqttWorker has a link of its own) it subscribes to these only: `cmd/res`, `manifest`, `prop`, …
# stay off it (two of a command's four messages). `nxg-mqtt bridge` beside a broker process takes
# `nxg/#` (DeviceReplies reads property reports and proxy answers there).
HUB_CHANNELS = (Channel.TELEMETRY, Channel.STATUS, Channel.EVENT, Channel.ACK, Channel.PRESENCE, Channel.CMD)
HUB_SUBSCRIPTIONS = tuple((f"nxg/+/{channel.value}", 1) for channel in HUB_CHANNELS)
DeviceSink = Callable[[bytes], None]


class Owners(Protocol):
    """Who owns a device (the core's `TenantService`)."""

    default_id: str

    def cached_owner(self, serial: str) -> str | None: ...

    def known_absent(self, serial: str) -> bool: ...

    async def owner(self, serial: str) -> str | None: ...


class AppFeed:
    """One app socket's bounded queue; `overflowed` is set once, when a message did not fit."""

    def __init__(self, limit: int) -> None:
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize=max(1, limit))
        self.overflowed = asyncio.Event()
        self.dropped = 0

    def offer(self, text: str) -> None:
        if self.overflowed.is_set():
            self.dropped += 1
            return
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            self.dropped += 1
            self.overflowed.set()


class Hub:
    def __init__(
        self,
        queue_limit: int,
        max_payload_bytes: int = 16 * 1024,
        owners: Owners | None = None,
    ) -> None:
        self._queue_limit = queue_limit
        self._max_payload_bytes = max_payload_bytes
        self._owners = owners
        self._delivering: str | None = None  # the owner of the message being delivered
        self._resolving: set[asyncio.Task[None]] = set()
        self._waiting: dict[str, list[dict[str, Any]]] = {}  # serial → messages waiting for its owner
        self._subscribers: list[Subscriber] = []  # every device of every tenant (internal use)
        self._tenants: dict[str, list[Subscriber]] = {}  # tenant → subscribers of all its devices
        self._scoped: dict[str, list[Subscriber]] = {}  # serial → app subscribers of that device only
        self._realtime: dict[str, list[FrameSubscriber]] = {}  # serial → `/realtime` subscribers
        self._sinks: dict[str, DeviceSink] = {}
        self.counters = Counters()

    # ---- subscribers ----------------------------------------------------------------------------

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call `callback(json_text)` for every app message; returns the unsubscribe function."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def subscribe_tenant(self, tenant: str, callback: Subscriber) -> Callable[[], None]:
        """Call `callback(json_text)` for every app message of `tenant`'s devices."""
        self._tenants.setdefault(tenant, []).append(callback)

        def unsubscribe() -> None:
            listeners = self._tenants.get(tenant)
            if listeners is not None and callback in listeners:
                listeners.remove(callback)
                if not listeners:
                    del self._tenants[tenant]

        return unsubscribe

    def subscribe_devices(
        self, serials: Iterable[str], callback: Subscriber, *, tenant: str | None = None
    ) -> Callable[[], None]:
        """Call `callback(json_text)` for the app messages of `serials` only, and only while a
        device is `tenant`'s when given; returns the unsubscribe function."""
        return self._index(self._scoped, serials, callback, tenant)

    def subscribe_realtime(
        self, serials: Iterable[str], callback: FrameSubscriber, *, tenant: str | None = None
    ) -> Callable[[], None]:
        """Call `callback(frame)` with the seed 001 form (`protocol.realtime_message`) of the
        messages of `serials`, as a WebSocket text frame, and only while a device is `tenant`'s
        when given; returns the unsubscribe function."""
        return self._index(self._realtime, serials, callback, tenant)

    def _index(
        self,
        index: dict[str, list[Callable[[T], None]]],
        serials: Iterable[str],
        callback: Callable[[T], None],
        tenant: str | None,
    ) -> Callable[[], None]:
        added: list[tuple[str, Callable[[T], None]]] = []
        for serial in dict.fromkeys(serials):
            listener = callback if tenant is None else self._owned(tenant, callback)
            index.setdefault(serial, []).append(listener)
            added.append((serial, listener))

        def unsubscribe() -> None:
            for serial, listener in added:
                listeners = index.get(serial)
                if listeners is not None and listener in listeners:
                    listeners.remove(listener)
                    if not listeners:
                        del index[serial]

        return unsubscribe

    def _owned(self, tenant: str, callback: Callable[[T], None]) -> Callable[[T], None]:
        def listener(value: T) -> None:
            if self._delivering == tenant:
                callback(value)

        return listener

    def open_feed(
        self, devices: Collection[str] | None = None, tenant: str | None = None
    ) -> tuple[AppFeed, Callable[[], None]]:
        """A feed of every device's messages (of `tenant`'s, when given), or of `devices` only
        (an API key's device scope)."""
        feed = AppFeed(self._queue_limit)
        if devices is None:
            if tenant is None:
                return feed, self.subscribe(feed.offer)
            return feed, self.subscribe_tenant(tenant, feed.offer)
        return feed, self.subscribe_devices(devices, feed.offer, tenant=tenant)

    @property
    def app_count(self) -> int:
        return (
            len(self._subscribers)
            + sum(len(v) for v in self._tenants.values())
            + sum(len(v) for v in self._scoped.values())
        )

    def attach_device(self, serial: str, sink: DeviceSink) -> Callable[[], None]:
        """Route `nxg/{serial}/cmd` to `sink` (the newest socket of that serial wins)."""
        self._sinks[serial] = sink

        def detach() -> None:
            if self._sinks.get(serial) is sink:
                del self._sinks[serial]

        return detach

    # ---- fan-out --------------------------------------------------------------------------------

    def broadcast(self, message: dict[str, Any]) -> None:
        """Encode once per form; offer to every-device subscribers, to its tenant's and to those
        of its serial. A device whose owner is not known yet is looked up first."""
        serial = message.get("serial")
        owners = self._owners
        if owners is None or not isinstance(serial, str):
            self._deliver(message, None)
            return
        waiting = self._waiting.get(serial)
        if waiting is not None:  # its owner is being looked up: keep the order
            waiting.append(message)
            return
        owner = owners.cached_owner(serial)
        wanted = bool(self._tenants) or serial in self._scoped or serial in self._realtime
        if owner is None and wanted and not owners.known_absent(serial):
            self._waiting[serial] = [message]
            task = asyncio.get_running_loop().create_task(self._resolved(owners, serial))
            self._resolving.add(task)
            task.add_done_callback(self._resolving.discard)
            return
        self._deliver(message, owner or owners.default_id)

    async def _resolved(self, owners: Owners, serial: str) -> None:
        """Look the owner up once, then deliver what waited for it, in order."""
        owner: str | None = None
        try:
            owner = await owners.owner(serial) or owners.default_id
        except Exception:
            log.exception("looking up the tenant of %s failed", serial)  # delivered to nobody, not to a wrong tenant
        finally:
            waiting = self._waiting.pop(serial, [])
        if owner is not None:
            for message in waiting:
                self._deliver(message, owner)

    def _deliver(self, message: dict[str, Any], owner: str | None) -> None:
        self._delivering = owner
        try:
            self._deliver_to(message, owner)
        finally:
            self._delivering = None

    def _deliver_to(self, message: dict[str, Any], owner: str | None) -> None:
        serial = message.get("serial")
        scoped = self._scoped.get(serial) if isinstance(serial, str) else None
        tenants = self._tenants.get(owner) if owner is not None else None
        failed = 0
        if self._subscribers or scoped or tenants:
            text = messages.compact(message)
            self.counters.add("app_messages")
            failed += call_all(self._subscribers, text, log=log, what="an app subscriber")
            if tenants:
                failed += call_all(tenants, text, log=log, what="an app subscriber")
            if scoped:
                failed += call_all(scoped, text, log=log, what="an app subscriber")
        realtime = self._realtime.get(serial) if isinstance(serial, str) else None
        if realtime:
            converted = realtime_message(message)
            if converted is not None:
                frame = text_frame(messages.compact(converted).encode())
                self.counters.add("realtime_messages")
                failed += call_all(realtime, frame, log=log, what="a realtime subscriber")
        if failed:
            self.counters.add("subscriber_errors", failed)

    def on_mqtt(self, topic: str, payload: bytes, retain: bool) -> None:
        """The link's message handler: MQTT message → app message (or device command)."""
        parsed = parse_device_topic(topic)
        if parsed is None:
            return
        serial, channel = parsed.serial, parsed.channel
        if channel is Channel.CMD:
            sink = self._sinks.get(serial)
            if sink is not None and call_all((sink,), payload, log=log, what=f"the gateway sink of {serial}"):
                self.counters.add("subscriber_errors")
            return
        if not (self._subscribers or self._tenants or serial in self._scoped or serial in self._realtime):
            return
        message = self.app_message(serial, channel, payload, retain)
        if message is not None:
            self.broadcast(message)

    def app_message(self, serial: str, channel: Channel, payload: bytes, retain: bool) -> dict[str, Any] | None:
        """The flat `/ws/app` object for one MQTT message, None for what apps do not see."""
        try:
            if channel in (Channel.TELEMETRY, Channel.STATUS):
                value = messages.decode_object(payload, self._max_payload_bytes)
                ts = _stamp_of(value, SERVER_TS)
                # the broker validated it; checking again keeps foreign brokers honest, and is cheap
                parsed = messages.device_message(channel.value, value)
                return app_message(serial, channel, ts, parsed.fields, parsed.device_ts)
            if channel in (Channel.EVENT, Channel.ACK):
                value = messages.decode_object(payload, self._max_payload_bytes)
                ts = _stamp_of(value, SERVER_TS)
                device_ts = value.get("ts")
                if channel is not Channel.EVENT or not isinstance(device_ts, int | float) or device_ts < 0:
                    device_ts = None
                return app_message(serial, MessageType(channel.value), ts, value, _int(device_ts))
            if channel is Channel.PRESENCE:
                if retain or not payload:
                    return None
                value = messages.decode_object(payload, self._max_payload_bytes)
                kind = presence_kind(value.get("online") is True)
                return app_message(serial, kind, _stamp_of(value, "ts"), {})
        except PayloadRejected as exc:
            self.counters.add("invalid_" + channel.value)
            log.debug("dropping an invalid %s message of %s: %s", channel.value, serial, exc.message)
        return None


def _stamp_of(value: dict[str, Any], key: str) -> int:
    """The server's stamp under `key`, removed from `value`; this process's clock if there is none."""
    at = value.pop(key, None)
    return at if isinstance(at, int) and not isinstance(at, bool) else now_ms()


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)
