"""The one task that writes `/realtime` messages to every socket (see `RealtimeWriter`)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bridge.ws_realtime import RealtimeSession


class RealtimeWriter:
    """One task sends what the hub queued for every `/realtime` socket, socket after socket.

    With a thousand sockets each getting a few messages a second, a task per socket would wake
    once per message; here one wake-up per batch serves them all. A send to a socket whose
    transport is not paused completes without waiting, so the loop never blocks on one client;
    a socket that is paused gets a task of its own until its queue is empty (and is closed with
    1013 if the queue overflows meanwhile).
    """

    def __init__(self) -> None:
        self._dirty: dict[RealtimeSession, None] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._slow: set[asyncio.Task[None]] = set()

    def mark(self, session: RealtimeSession) -> None:
        self._dirty[session] = None
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="nxg-realtime-writer")
        self._wake.set()

    async def close(self) -> None:
        for task in [self._task, *self._slow]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            dirty, self._dirty = self._dirty, {}
            for session in dirty:
                if session.ended or session.slow:
                    continue
                if not session.writable():
                    session.slow = True
                    task = asyncio.get_running_loop().create_task(session.drain_slow())
                    self._slow.add(task)
                    task.add_done_callback(self._slow.discard)
                    continue
                pending, send = session.pending, session.ws.send_text
                try:
                    while pending:
                        await send(pending.popleft())
                except Exception:
                    session.ended = True  # the socket went away; its handler cleans up
