"""The history writer's set-based statements are probed by index: their cost follows the batch,
not the number of devices or connection log entries (a full scan per batch row made a shutdown
with 5,000 sessions take longer than 15 s)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

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


TRICKY_BODIES: list[dict[str, Any]] = [
    {"t": "telemetry", "temp": 21.5, "tiny": 1e-07, "huge": 1e300, "neg": -0.0, "big": 12345678901234567890},
    {"t": "event", "text": 'é ☃ \U0001f600 "quoted" back\\slash\nline\u2028sep\x00nul', "n": {"a": [1, None, True]}},
    {"t": "status"},
]


async def test_a_body_is_stored_as_python_writes_it(tmp_path: Path) -> None:
    """The batch hands SQLite each body as a JSON value and SQLite writes its text: the same text as
    `json.dumps(body, separators=(",", ":"))`, which the redelivery check compares against, so a
    redelivered copy of any of them is still recognised."""
    import json

    from nxg_mqtt.models import HistoryEntry
    from nxg_mqtt.protocol import MessageType

    def entries(*, again: bool) -> list[HistoryEntry]:
        return [
            HistoryEntry("d", MessageType.TELEMETRY, 10 + i, body, redelivered=again)
            for i, body in enumerate(TRICKY_BODIES)
        ]

    async with open_store(tmp_path / "nxg.sqlite3") as store:
        await store.history_writer.write(entries(again=False), {})
        await store.history_writer.write(entries(again=True), {})
    conn = sqlite3.connect(tmp_path / "nxg.sqlite3")
    stored = [row[0] for row in conn.execute("SELECT body FROM messages WHERE serial = 'd' ORDER BY ts")]
    conn.close()
    assert stored == [json.dumps(body, separators=(",", ":")) for body in TRICKY_BODIES]


async def test_a_batch_with_a_nan_is_stored_as_before(tmp_path: Path) -> None:
    """NaN is not JSON (SQLite refuses it): such a batch is written with each body a Python string,
    every row of it, as before."""
    import json

    from nxg_mqtt.models import HistoryEntry
    from nxg_mqtt.protocol import MessageType

    bodies: list[dict[str, object]] = [{"t": "cmd", "params": {"x": float("nan")}}, {"t": "cmd", "n": 1}]
    async with open_store(tmp_path / "nxg.sqlite3") as store:
        await store.history_writer.write(
            [HistoryEntry("d", MessageType.CMD, 10 + i, body) for i, body in enumerate(bodies)], {}
        )
    conn = sqlite3.connect(tmp_path / "nxg.sqlite3")
    stored = [row[0] for row in conn.execute("SELECT body FROM messages WHERE serial = 'd' ORDER BY ts")]
    conn.close()
    assert stored == [json.dumps(body, separators=(",", ":")) for body in bodies]
