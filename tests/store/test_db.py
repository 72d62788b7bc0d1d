"""The SQLite store: WAL, versioned migrations, tenant on every row, refusing a newer schema."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiosqlite
import pytest

from nxg_mqtt.errors import StoreError
from nxg_mqtt.models import HistoryEntry, MessageType
from nxg_mqtt.store import Database, open_store
from nxg_mqtt.store.db import MIGRATIONS
from nxg_mqtt.store.devices import DeviceRepository


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


async def test_read_now_reads_committed_rows_on_the_loop_and_holds_no_read_transaction(tmp_path: Path) -> None:
    """A device's token is read on the event loop (`read_now`): it sees each write once committed,
    and leaves no read transaction open behind it (a stale snapshot, and a WAL that could never be
    checkpointed)."""
    async with open_store(tmp_path / "nxg.sqlite3") as store:
        assert await store.devices.insert("Dev-1", None, "AAAAAAAA", 1)
        await store.devices.set_token("Dev-1", "hash-1", paired=True)
        sql = "SELECT serial, token_hash FROM devices WHERE serial = ?"
        rows = store.db.read_now(sql, ("dev-1",))
        assert rows is not None and [tuple(row) for row in rows] == [("Dev-1", "hash-1")]
        assert await store.devices.token_hash("DEV-1") == ("Dev-1", "hash-1", False)
        async with store.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)") as cur:
            checkpoint = await cur.fetchone()
        assert checkpoint is not None and checkpoint[0] == 0, "a reader still holds a snapshot"
        await store.devices.set_token("Dev-1", "hash-2", paired=True)
        assert await store.devices.token_hash("dev-1") == ("Dev-1", "hash-2", False)
        assert await store.devices.token_hash("nobody") is None


class _LockedReader(sqlite3.Connection):
    """A reader that finds the database locked, as SQLite reports it (another process holding it
    in exclusive locking mode, a WAL recovery): every statement fails with SQLITE_BUSY at once."""

    def execute(self, sql: str, parameters: object = (), /) -> sqlite3.Cursor:
        raise sqlite3.OperationalError("database is locked")


async def test_a_token_read_that_would_wait_goes_through_the_database_thread(tmp_path: Path) -> None:
    """The loop never waits for a lock: `read_now` answers None and the lookup takes the database
    thread (which may wait), with the same answer."""
    path = tmp_path / "nxg.sqlite3"
    async with open_store(path) as store:
        assert await store.devices.insert("d1", None, "AAAAAAAA", 1)
        await store.devices.set_token("d1", "h", paired=True)
        locked = sqlite3.connect(path, timeout=0, isolation_level=None, factory=_LockedReader)
        try:
            db = Database(store.db.conn, locked)
            assert db.read_now("SELECT token_hash FROM devices WHERE serial = ?", ("d1",)) is None
            assert await DeviceRepository(db, store.tenant_id).token_hash("D1") == ("d1", "h", False)
            assert await DeviceRepository(Database(store.db.conn), store.tenant_id).token_hash("d1") == (
                "d1",
                "h",
                False,
            )
        finally:
            locked.close()
