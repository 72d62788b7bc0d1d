"""Calling every listener of an event, each call guarded (STYLE: Home Assistant's callbacks).

One listener that raises is logged and counted; the others still run. Every fan-out in the core
and the bridge goes through these two functions.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable


async def notify_all(
    listeners: Iterable[Callable[..., Awaitable[object]]], *args: object, log: logging.Logger, what: str
) -> int:
    """Await `listener(*args)` for each (a snapshot: listeners may (un)register meanwhile); the failures."""
    failed = 0
    for listener in list(listeners):
        try:
            await listener(*args)
        except Exception:
            failed += 1
            log.exception("%s failed", what)
    return failed


def call_all(listeners: Iterable[Callable[..., object]], *args: object, log: logging.Logger, what: str) -> int:
    """`notify_all` for plain callbacks (the hub's fan-out runs on the link's reader turn)."""
    failed = 0
    for listener in list(listeners):
        try:
            listener(*args)
        except Exception:
            failed += 1
            log.exception("%s failed", what)
    return failed
