"""Point lookups asked for while one is in flight are answered together, by one query.

Every statement is a round trip to the database thread: a future, a wake-up of that thread, a
wake-up of the event loop when it is done, and the GIL handed back and forth in between. A
CONNECT storm asks for hundreds of device tokens within a fraction of a second; one round trip
each keeps the loop busy with handoffs (and the other clients waiting behind them). Here the first
lookup goes out at once (in the next loop pass) and every key asked for while it runs rides on the
next query: the batch grows with the load and no lookup waits for a timer.

    tokens = Coalesced(fetch_many)  # fetch_many(keys) -> {key: value} for the keys that exist
    value = await tokens.get(key)  # None for a key the fetch did not return

The database stays the only truth: nothing is cached, each answer is read after it was asked for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

MAX_BATCH = 256  # keys per query: far below SQLite's bound on parameters, a short statement


class Coalesced(Generic[K, V]):
    def __init__(self, fetch: Callable[[list[K]], Awaitable[dict[K, V]]], max_batch: int = MAX_BATCH) -> None:
        self._fetch = fetch
        self._max_batch = max_batch
        # each caller has its own future: one caller cancelled (its connection closed) leaves
        # the others of the same key waiting
        self._waiting: dict[K, list[asyncio.Future[V | None]]] = {}
        self._runner: asyncio.Task[None] | None = None

    async def get(self, key: K) -> V | None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[V | None] = loop.create_future()
        self._waiting.setdefault(key, []).append(future)
        if self._runner is None:
            self._runner = loop.create_task(self._run())
        return await future

    async def _run(self) -> None:
        try:
            while self._waiting:
                keys = list(self._waiting)[: self._max_batch]
                batch = {key: self._waiting.pop(key) for key in keys}
                try:
                    found = await self._fetch(keys)
                except asyncio.CancelledError:
                    # the loop is shutting down: nobody waits forever for an answer
                    for futures in (*batch.values(), *self._waiting.values()):
                        for future in futures:
                            future.cancel()
                    self._waiting.clear()
                    raise
                except Exception as exc:
                    for futures in batch.values():
                        for future in futures:
                            if not future.done():
                                future.set_exception(exc)
                    continue
                for key, futures in batch.items():
                    value = found.get(key)
                    for future in futures:
                        if not future.done():
                            future.set_result(value)
        finally:
            self._runner = None
