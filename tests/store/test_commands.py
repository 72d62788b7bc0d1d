"""The command store's queue queries are answered by index: the expiry sweep and the start-up
scan touch only queued rows (a sweep that loaded every queued command every 5 s cost hundreds of
MB and CPU spikes with 16,000 of them), and the per-device bound is counted from an index."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from nxg_mqtt.store import open_store
from nxg_mqtt.store.commands import COUNT_OPEN, DUE, EXPIRE_DUE, SERIALS_WITH_QUEUED


@pytest.mark.parametrize(
    ("statement", "params", "index"),
    [
        pytest.param(DUE, ("default", 0, 10), "commands_expiry (tenant_id=? AND expires_at<?)", id="due"),
        pytest.param(
            EXPIRE_DUE, (0, "e", "default", 0, 10), "commands_expiry (tenant_id=? AND expires_at<?)", id="expire"
        ),
        pytest.param(SERIALS_WITH_QUEUED, ("default",), "commands_expiry", id="serials"),
        pytest.param(
            COUNT_OPEN, ("default", "S1"), "COVERING INDEX commands_open (tenant_id=? AND serial=?", id="count"
        ),
    ],
)
async def test_queue_queries_search_by_index(
    tmp_path: Path, statement: str, params: tuple[object, ...], index: str
) -> None:
    db_path = tmp_path / "nxg.sqlite3"
    async with open_store(db_path):
        pass  # migrated
    conn = sqlite3.connect(db_path)
    plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + statement, params)]
    conn.close()
    assert not any(step.startswith("SCAN commands") for step in plan), plan
    assert any(step.startswith("SEARCH commands") and index in step for step in plan), plan
