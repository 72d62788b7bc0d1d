"""The one way a socket handler runs its concurrent parts: until the first ends, then cancel the rest."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from starlette.websockets import WebSocketDisconnect

log = logging.getLogger(__name__)


async def first_completed(label: str, *coroutines: Coroutine[Any, Any, Any]) -> None:
    """Run the coroutines as tasks until one ends; cancel and reap the others, logging real failures."""
    tasks = [asyncio.create_task(c) for c in coroutines]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except (asyncio.CancelledError, WebSocketDisconnect):
                pass
            except Exception:
                log.exception("%s failed", label)
