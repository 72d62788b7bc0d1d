"""History queries: what `/api/history` and `nxg-mqtt history` list, newest first, in pages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nxg_mqtt.protocol import MessageType
from nxg_mqtt.services.devices import DeviceService
from nxg_mqtt.store import Store


@dataclass(frozen=True, slots=True)
class HistoryPage:
    messages: list[dict[str, Any]]  # each the object `/ws/app` delivers (`protocol.app_message`)
    next_before: int | None  # the `before` of the next page; None when this one was the last


class HistoryService:
    def __init__(self, store: Store, devices: DeviceService) -> None:
        self._store = store
        self._devices = devices

    async def query(
        self, serial: str | None, type: MessageType | None, limit: int, before: int | None = None
    ) -> HistoryPage:
        """One page; an unknown serial is DeviceNotFound (404), as everywhere else."""
        if serial is not None:
            serial = (await self._devices.get(serial)).serial
        entries = await self._store.messages.query(serial, type, limit, before)
        next_before = entries[-1].ts if entries and len(entries) == limit else None
        return HistoryPage([e.app_message() for e in entries], next_before)
