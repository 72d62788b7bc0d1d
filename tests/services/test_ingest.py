"""Ingest: history retention."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nxg_mqtt.models import HistoryEntry, MessageType, now_ms
from nxg_mqtt.services import NullPublisher
from nxg_mqtt.services.ingest import IngestService
from nxg_mqtt.settings import Settings
from nxg_mqtt.store import Store, open_store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with open_store(tmp_path / "nxg.sqlite3") as s:
        yield s


async def test_history_retention(store: Store) -> None:
    ingest = IngestService(store, Settings(history_retention_days=1), NullPublisher())
    old, fresh = now_ms() - 2 * 86_400_000, now_ms()
    await store.history_writer.write(
        [HistoryEntry("d", MessageType.TELEMETRY, ts, {"t": "telemetry"}) for ts in (old, fresh)], {}
    )
    assert await ingest.prune() == 1
    assert [e.ts for e in await store.messages.query("d")] == [fresh]
