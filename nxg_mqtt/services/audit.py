"""The audit log, for surfaces that record what they did and list what was done to a device."""

from __future__ import annotations

from typing import Any

from nxg_mqtt.models import now_ms
from nxg_mqtt.store import Store


class AuditLog:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def record(
        self, actor: str, action: str, target: str | None, detail: Any = None, outcome: str = "ok"
    ) -> None:
        """`outcome` is `ok` or the refusal's error code."""
        await self._store.audit.add(now_ms(), actor, action, target, detail, outcome)

    async def for_device(self, serial: str, limit: int = 1000) -> list[dict[str, Any]]:
        """Newest first: `{"id","ts","actor","action","target","outcome","detail"}`."""
        return await self._store.audit.recent(limit=limit, serial=serial)
