"""Core services: plain async Python that knows nothing of amqtt or Starlette."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

MessageHandler = Callable[[str, bytes, bool], None]  # (topic, payload, retain)


class Publisher(Protocol):
    """Where the core publishes server messages (presence, commands, pairing replies).

    The embedded broker (`NxgBroker.publish`) and the bridge's MQTT link both fit.
    """

    async def publish(self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False) -> int: ...


@runtime_checkable
class InProcess(Protocol):
    """A Publisher that also delivers to subscribers in its own process (`NxgBroker.attach`)."""

    def attach(self, filters: Sequence[str], handler: MessageHandler) -> Callable[[], None]: ...

    def wanted(self, topic: str) -> bool: ...


class NullPublisher:
    """Used by processes without a broker (the CLI): changes reach servers through signals."""

    async def publish(self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False) -> int:
        return 0


class Outbox:
    """The core's one Publisher, given to every service when the core is built.

    Where its messages go is the transport's business: the embedded broker, or a bridge's MQTT
    link against a separate broker, connects itself for as long as it runs (`connect` returns
    the disconnect). With nothing connected (the CLI, or between a broker's stop and start)
    messages go nowhere, and other processes learn of changes through signals.

    In-process subscribers (`subscribe`, the bridge's hub beside the embedded broker) are attached
    to every target that can deliver in-process, and again to the next one after a broker restart;
    between a stop and a start they hear nothing, as an MQTT link that is down would.
    """

    def __init__(self) -> None:
        self._target: Publisher = NullPublisher()
        # the target again when it delivers in-process, decided once at `connect`: a runtime
        # Protocol check costs microseconds, and `wanted` runs twice per command
        self._in_process: InProcess | None = None
        self._subscribers: list[tuple[tuple[str, ...], MessageHandler]] = []
        self._detach: dict[int, Callable[[], None]] = {}  # id of a subscriber entry → its detach

    @property
    def in_process(self) -> bool:
        """Whether the connected target delivers to `subscribe`rs (the embedded broker does)."""
        return self._in_process is not None

    def wanted(self, topic: str) -> bool:
        """False only when the target knows that nobody would receive a message on `topic` now
        (the embedded broker): the caller may skip building it. An MQTT link cannot know: True."""
        in_process = self._in_process
        return True if in_process is None else in_process.wanted(topic)

    def connect(self, target: Publisher) -> Callable[[], None]:
        self._detach_all()
        self._target = target
        self._in_process = target if isinstance(target, InProcess) else None
        for entry in self._subscribers:
            self._attach(entry)

        def disconnect() -> None:
            if self._target is target:
                self._detach_all()
                self._target = NullPublisher()
                self._in_process = None

        return disconnect

    def subscribe(self, filters: Sequence[str], handler: MessageHandler) -> Callable[[], None]:
        """Hand `handler` every message on `filters` routed by this process's broker, now and after
        every reconnect; returns the unsubscribe."""
        entry = (tuple(filters), handler)
        self._subscribers.append(entry)
        self._attach(entry)

        def unsubscribe() -> None:
            self._subscribers = [other for other in self._subscribers if other is not entry]
            detach = self._detach.pop(id(entry), None)
            if detach is not None:
                detach()

        return unsubscribe

    def _attach(self, entry: tuple[tuple[str, ...], MessageHandler]) -> None:
        if self._in_process is not None:
            self._detach[id(entry)] = self._in_process.attach(entry[0], entry[1])

    def _detach_all(self) -> None:
        detaches, self._detach = self._detach, {}
        for detach in detaches.values():
            detach()

    async def publish(self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False) -> int:
        return await self._target.publish(topic, payload, qos=qos, retain=retain)
