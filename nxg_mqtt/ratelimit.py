"""Sliding-window counters and lockouts, keyed by a string (source address, tenant, …).

Pure and synchronous: callers pass `now` (monotonic seconds) so tests need no clock tricks.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class SlidingWindow:
    """At most `limit` events per `window_s` per key; `limit <= 0` disables the check."""

    limit: int
    window_s: float = 60.0
    _events: dict[str, deque[float]] = field(default_factory=dict)

    def _trim(self, key: str, now: float) -> deque[float]:
        events = self._events.get(key)
        if events is None:
            events = self._events[key] = deque()
        horizon = now - self.window_s
        while events and events[0] <= horizon:
            events.popleft()
        return events

    def count(self, key: str, now: float) -> int:
        return len(self._trim(key, now))

    def allow(self, key: str, now: float) -> bool:
        """True if one more event fits; does not record it."""
        return self.limit <= 0 or self.count(key, now) < self.limit

    def retry_after(self, key: str, now: float) -> float:
        """Seconds until one more event fits (0 if it fits now)."""
        events = self._trim(key, now)
        if self.limit <= 0 or len(events) < self.limit:
            return 0.0
        return max(0.0, events[len(events) - self.limit] + self.window_s - now)

    def hit(self, key: str, now: float) -> int:
        """Record one event; return the count inside the window."""
        events = self._trim(key, now)
        events.append(now)
        if len(self._events) > 10_000:
            self._forget_idle(now)
        return len(events)

    def _forget_idle(self, now: float) -> None:
        # bound memory under a spray of source addresses
        for key in [k for k, ev in self._events.items() if not ev or ev[-1] <= now - self.window_s]:
            del self._events[key]


@dataclass
class Lockout:
    """Failures per key; `threshold` failures within the window lock the key for `lock_s`."""

    threshold: int
    lock_s: float
    window_s: float = 60.0
    _failures: SlidingWindow = field(init=False)
    _locked_until: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._failures = SlidingWindow(self.threshold, self.window_s)

    def locked(self, key: str, now: float) -> bool:
        until = self._locked_until.get(key)
        if until is None:
            return False
        if now >= until:
            del self._locked_until[key]
            return False
        return True

    def locked_for(self, key: str, now: float) -> float:
        """Seconds until `key` is no longer locked (0 if it is not locked)."""
        return self._locked_until[key] - now if self.locked(key, now) else 0.0

    def fail(self, key: str, now: float) -> bool:
        """Record a failure; True if the key is now locked."""
        if self.threshold > 0 and self._failures.hit(key, now) >= self.threshold:
            self._locked_until[key] = now + self.lock_s
            return True
        return False


@dataclass
class FailureThrottle:
    """Failed attempts per key (a source address); at `limit` failures within `window_s` the key is
    refused until the oldest of them leaves the window, so it gets at most `limit` tries a window.

    Made to run *before* an expensive check (a PBKDF2 hash): `retry_after` is a dict lookup and
    records nothing, and a refused attempt is not a failure (it cost nothing). Keys that are not
    failing cost no memory. `limit <= 0` disables it.
    """

    limit: int
    window_s: float = 60.0
    _failures: dict[str, deque[float]] = field(default_factory=dict)

    def retry_after(self, key: str, now: float) -> float | None:
        """None if the key may try; else the seconds until it may."""
        events = self._failures.get(key)
        if self.limit <= 0 or events is None:
            return None
        horizon = now - self.window_s
        while events and events[0] <= horizon:
            events.popleft()
        if not events:
            del self._failures[key]
            return None
        if len(events) < self.limit:
            return None
        return events[-self.limit] + self.window_s - now

    def fail(self, key: str, now: float) -> None:
        if self.limit <= 0:
            return
        events = self._failures.setdefault(key, deque(maxlen=self.limit))
        events.append(now)
        if len(self._failures) > 10_000:
            # bound memory under a spray of source addresses
            horizon = now - self.window_s
            for idle in [k for k, ev in self._failures.items() if not ev or ev[-1] <= horizon]:
                del self._failures[idle]
