"""Handshake admission: a CONNECT storm cannot fill whole event-loop passes with handshakes.

A handshake costs the loop far more than a PUBLISH: the CONNECT (session, credentials, the CONNACK
and the connected hooks: presence, journal, retained presence), then the client's first packet
(its SUBSCRIBE: ACL, hooks). A device's token is read on the loop (`Database.read_now`), so a
CONNECT runs in one piece, and a loop pass would run every CONNECT that arrived in its poll before
the PUBLISHes that became readable with them: established sessions' telemetry would wait for the
storm. Both steps first take a turn here: at most `per_pass` steps run per loop pass, in arrival
order, and the others wait for the following passes. Each pass polls the sockets again, so
established sessions' traffic goes on between the handshakes. A loop without a storm admits at
once (no suspension).
"""

from __future__ import annotations

import asyncio
from collections import deque

# a handshake step costs 0.1–0.5 ms of loop CPU. Storms of 500 (loop CPU between two 1 ms ticks):
# the longest 4.0–4.7 ms with 4 per pass, 4.8 ms with 8, 7.7 ms with 16, 16–23 ms without a gate
STEPS_PER_PASS = 4


class HandshakeGate:
    __slots__ = ("_loop", "_scheduled", "_used", "_waiters", "per_pass")

    def __init__(self, per_pass: int = STEPS_PER_PASS) -> None:
        if per_pass < 1:
            raise ValueError("per_pass must be at least 1")
        self.per_pass = per_pass
        self._loop: asyncio.AbstractEventLoop | None = None
        self._used = 0  # steps let in since the last pass boundary
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._scheduled = False

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def turn(self) -> None:
        """Return once this handshake step may run (at once while the pass has room)."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        if self._used < self.per_pass and not self._waiters:
            self._used += 1
            self._schedule(loop)
            return
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        self._schedule(loop)
        try:
            await waiter
        except asyncio.CancelledError:
            # the connection went away while waiting: its place goes to the next one
            if waiter.done() and not waiter.cancelled():
                self._used -= 1
            raise

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._next_pass)

    def _next_pass(self) -> None:
        """A new loop pass: a fresh budget, spent on the longest waiting steps first (they run in
        the pass after this one, ahead of what that pass's poll finds ready)."""
        self._scheduled = False
        self._used = 0
        waiters = self._waiters
        while waiters and self._used < self.per_pass:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self._used += 1
        if waiters or self._used:
            loop = self._loop
            assert loop is not None
            self._schedule(loop)
