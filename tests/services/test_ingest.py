"""Ingest: history retention, Warnings of redelivered bad payloads."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nxg_mqtt.errors import PayloadRejected
from nxg_mqtt.models import HistoryEntry, MessageType, now_ms
from nxg_mqtt.services import NullPublisher
from nxg_mqtt.services.ingest import IngestService
from nxg_mqtt.settings import Settings
from nxg_mqtt.store import Store, open_store
from nxg_mqtt.topics import Channel


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


@pytest.mark.parametrize(
    "payload", [b"{not json", b'{"t":"telemetry","temp":"hot","extra":' + b"[" * 200 + b"]" * 200 + b"}"]
)
async def test_a_redelivered_bad_payload_records_one_warning(store: Store, payload: bytes) -> None:
    """A broker's second delivery (DUP) of a bad message carries the first one's receive stamp:
    its Warning is recognised like a redelivered good message and stored once, while a new bad
    message with another stamp gets its own."""
    ingest = IngestService(store, Settings(), NullPublisher())
    stamp = now_ms() - 5_000
    for ts, dup in ((stamp, False), (stamp, True), (stamp + 1, False)):
        with pytest.raises(PayloadRejected):
            ingest.accept("d1", Channel.TELEMETRY, payload, ts, redelivered=dup)
        await ingest.flush()
    warnings = [e for e in await store.messages.query("d1") if e.body.get("type") == "payload_rejected"]
    assert sorted(e.ts for e in warnings) == [stamp, stamp + 1]
    assert all(e.body["severity"] == "Warning" for e in warnings)
    assert sum(ingest.rejected.values.values()) == 3  # every delivery counts: the counter is of payloads received
