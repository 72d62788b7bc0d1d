"""The open WebSockets of each API key, so a revocation or rotation closes them at once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

Closer = Callable[[], Awaitable[None]]


class LiveSockets:
    """The open WebSockets of each API key, closed when the key is revoked or rotated."""

    def __init__(self) -> None:
        self._by_key: dict[str, set[Closer]] = {}

    def add(self, key_id: str | None, close: Closer) -> Callable[[], None]:
        if key_id is None:
            return lambda: None
        self._by_key.setdefault(key_id, set()).add(close)

        def remove() -> None:
            closers = self._by_key.get(key_id)
            if closers is not None:
                closers.discard(close)
                if not closers:
                    del self._by_key[key_id]

        return remove

    def count(self, key_id: str) -> int:
        return len(self._by_key.get(key_id, ()))

    async def revoked(self, key_id: str) -> None:
        for close in list(self._by_key.pop(key_id, ())):
            await close()
