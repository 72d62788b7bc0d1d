"""The history writer's set-based statements are probed by index: their cost follows the batch,
not the number of devices or connection log entries (a full scan per batch row made a shutdown
with 5,000 sessions take longer than 15 s)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from nxg_mqtt.store import open_store
from nxg_mqtt.store.batch import STAGING, UPDATE_CLOSED, UPDATE_LAST_SEEN, UPDATE_ONLINE


@pytest.mark.parametrize("statement", [UPDATE_LAST_SEEN, UPDATE_CLOSED, UPDATE_ONLINE])
async def test_staged_updates_search_by_index(tmp_path: Path, statement: str) -> None:
    db_path = tmp_path / "nxg.sqlite3"
    async with open_store(db_path):
        pass  # migrated
    conn = sqlite3.connect(db_path)
    conn.executescript(STAGING)
    plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + statement, ("default",))]
    conn.close()
    for table in ("devices", "connections"):
        assert not any(step.startswith(f"SCAN {table}") for step in plan), plan
        if table in statement.split("SET")[0]:
            assert any(step.startswith(f"SEARCH {table}") and "serial=?" in step for step in plan), plan
    # the staging table is what gets walked
    assert any(step.startswith(("SCAN seen", "SCAN o", "SCAN c")) for step in plan), plan


async def test_a_redelivered_message_is_stored_once(tmp_path: Path) -> None:
    """A broker's redelivery (DUP) of a committed message adds nothing; one that was never
    committed, or differs in ts or body, is stored; a first delivery is never probed."""
    from nxg_mqtt.models import HistoryEntry
    from nxg_mqtt.protocol import MessageType

    def entry(ts: int, n: int, *, again: bool) -> HistoryEntry:
        return HistoryEntry("d", MessageType.TELEMETRY, ts, {"t": "telemetry", "n": n}, redelivered=again)

    async with open_store(tmp_path / "nxg.sqlite3") as store:
        await store.history_writer.write([entry(1, 1, again=False), entry(2, 2, again=False)], {})
        await store.history_writer.write(
            [entry(1, 1, again=True), entry(2, 9, again=True), entry(3, 3, again=True), entry(3, 3, again=True)], {}
        )
        await store.history_writer.write([entry(1, 1, again=False)], {})  # not a DUP: a device's repeat
        stored = sorted((e.ts, e.body["n"]) for e in await store.messages.query("d", limit=100))
    assert stored == [(1, 1), (1, 1), (2, 2), (2, 9), (3, 3)]
