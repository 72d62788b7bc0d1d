"""The SQLite store: WAL, versioned migrations, tenant on every row, refusing a newer schema."""

from __future__ import annotations

from pathlib import Path

import aiosqlite
import pytest

from nxg_mqtt.errors import StoreError
from nxg_mqtt.models import HistoryEntry, MessageType
from nxg_mqtt.store import open_store
from nxg_mqtt.store.db import MIGRATIONS


async def test_migrations_are_versioned_and_idempotent(tmp_path: Path) -> None:
    db_path = tmp_path / "nxg.sqlite3"
    async with open_store(db_path) as store:
        async with store.db.conn.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        assert row is not None and row[0] == len(MIGRATIONS)
        async with store.db.conn.execute("PRAGMA journal_mode") as cur:
            mode = await cur.fetchone()
        assert mode is not None and mode[0] == "wal"
    async with open_store(db_path) as store:  # opening again applies nothing twice
        assert await store.devices.count() == 0


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    db_path = tmp_path / "nxg.sqlite3"
    async with open_store(db_path):
        pass
    async with aiosqlite.connect(db_path) as conn:
        await conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
        await conn.commit()
    with pytest.raises(StoreError, match="newer"):
        async with open_store(db_path):
            pass


async def test_every_table_has_a_tenant(tmp_path: Path) -> None:
    async with open_store(tmp_path / "nxg.sqlite3") as store:
        async with store.db.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'") as cur:
            tables = [r[0] for r in await cur.fetchall() if not r[0].startswith("sqlite_")]
        for table in tables:
            if table == "tenants":
                continue  # its `id` is the tenant id
            async with store.db.conn.execute(f"PRAGMA table_info({table})") as cur:
                columns = {r[1] for r in await cur.fetchall()}
            assert "tenant_id" in columns, table


async def test_tenants_do_not_see_each_other(tmp_path: Path) -> None:
    db_path = tmp_path / "nxg.sqlite3"
    async with open_store(db_path, "t1") as one:
        assert await one.devices.insert("same", None, "AAAAAAAA", 1)
        await one.history_writer.write([HistoryEntry("same", MessageType.TELEMETRY, 5, {"t": "telemetry"})], {})
    async with open_store(db_path, "t2") as two:
        assert await two.devices.get("same") is None
        assert await two.messages.query("same") == []


async def test_serials_are_unique_case_insensitively(tmp_path: Path) -> None:
    async with open_store(tmp_path / "nxg.sqlite3") as store:
        assert await store.devices.insert("Dev", None, "AAAAAAAA", 1)
        assert not await store.devices.insert("dev", None, "BBBBBBBB", 1)


async def test_history_pages_newest_first(tmp_path: Path) -> None:
    async with open_store(tmp_path / "nxg.sqlite3") as store:
        entries = [HistoryEntry("d", MessageType.TELEMETRY, ts, {"t": "telemetry", "n": ts}) for ts in range(1, 8)]
        await store.history_writer.write(entries, {})
        page = await store.messages.query("d", limit=3)
        assert [e.ts for e in page] == [7, 6, 5]
        older = await store.messages.query("d", limit=3, before=page[-1].ts)
        assert [e.ts for e in older] == [4, 3, 2]
