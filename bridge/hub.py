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
import json
import logging
from collections.abc import Callable, Collection, Iterable
from typing import Any, TypeVar

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
DeviceSink = Callable[[bytes], None]


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
    def __init__(self, queue_limit: int, max_payload_bytes: int = 16 * 1024) -> None:
        self._queue_limit = queue_limit
        self._max_payload_bytes = max_payload_bytes
        self._subscribers: list[Subscriber] = []
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

    def subscribe_devices(self, serials: Iterable[str], callback: Subscriber) -> Callable[[], None]:
        """Call `callback(json_text)` for the app messages of `serials` only; returns the
        unsubscribe function."""
        return _index(self._scoped, serials, callback)

    def subscribe_realtime(self, serials: Iterable[str], callback: FrameSubscriber) -> Callable[[], None]:
        """Call `callback(frame)` with the seed 001 form (`protocol.realtime_message`) of the
        messages of `serials`, as a WebSocket text frame; returns the unsubscribe function."""
        return _index(self._realtime, serials, callback)

    def open_feed(self, devices: Collection[str] | None = None) -> tuple[AppFeed, Callable[[], None]]:
        """A feed of every device's messages, or of `devices` only (an API key's device scope)."""
        feed = AppFeed(self._queue_limit)
        if devices is None:
            return feed, self.subscribe(feed.offer)
        return feed, self.subscribe_devices(devices, feed.offer)

    @property
    def app_count(self) -> int:
        return len(self._subscribers) + sum(len(v) for v in self._scoped.values())

    def attach_device(self, serial: str, sink: DeviceSink) -> Callable[[], None]:
        """Route `nxg/{serial}/cmd` to `sink` (the newest socket of that serial wins)."""
        self._sinks[serial] = sink

        def detach() -> None:
            if self._sinks.get(serial) is sink:
                del self._sinks[serial]

        return detach

    # ---- fan-out --------------------------------------------------------------------------------

    def broadcast(self, message: dict[str, Any]) -> None:
        """Encode once per form; offer to every-device subscribers and to those of its serial."""
        serial = message.get("serial")
        scoped = self._scoped.get(serial) if isinstance(serial, str) else None
        failed = 0
        if self._subscribers or scoped:
            text = json.dumps(message, separators=(",", ":"))
            self.counters.add("app_messages")
            failed += call_all(self._subscribers, text, log=log, what="an app subscriber")
            if scoped:
                failed += call_all(scoped, text, log=log, what="an app subscriber")
        realtime = self._realtime.get(serial) if isinstance(serial, str) else None
        if realtime:
            converted = realtime_message(message)
            if converted is not None:
                frame = text_frame(json.dumps(converted, separators=(",", ":")).encode())
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
        if not (self._subscribers or serial in self._scoped or serial in self._realtime):
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


def _index(index: dict[str, list[T]], serials: Iterable[str], callback: T) -> Callable[[], None]:
    chosen = list(dict.fromkeys(serials))
    for serial in chosen:
        index.setdefault(serial, []).append(callback)

    def unsubscribe() -> None:
        for serial in chosen:
            listeners = index.get(serial)
            if listeners is not None and callback in listeners:
                listeners.remove(callback)
                if not listeners:
                    del index[serial]

    return unsubscribe


def _stamp_of(value: dict[str, Any], key: str) -> int:
    """The server's stamp under `key`, removed from `value`; this process's clock if there is none."""
    at = value.pop(key, None)
    return at if isinstance(at, int) and not isinstance(at, bool) else now_ms()


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)
