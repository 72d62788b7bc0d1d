"""The command writer: concurrent operations share one transaction, each gets its own verdict
(the device re-checked in SQL, the queue bound counted with the commands of the same batch), a
closed command cannot be closed twice, a failed batch fails its operations and the writer goes
on, and its lookups search by index."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from nxg_mqtt.errors import StoreError
from nxg_mqtt.models import Command, CommandStatus, HistoryEntry
from nxg_mqtt.protocol import MessageType
from nxg_mqtt.store import Store, open_store
from nxg_mqtt.store.commands_writer import DEVICE_NOT_FOUND, DEVICE_REVOKED, FINISH, LAST_SEEN, LOOKUP, QUEUE_FULL

_ids = iter(range(10**6))


def command(serial: str, status: CommandStatus = CommandStatus.QUEUED) -> Command:
    return Command(
        id=f"c_{next(_ids):04d}",
        serial=serial,
        action="light_on",
        target=None,
        params={"brightness": 1},
        status=status,
        created_at=1000,
        expires_at=10**13,
        dispatched_at=1000 if status is CommandStatus.DISPATCHED else None,
    )


async def device(store: Store, serial: str) -> None:
    assert await store.devices.insert(serial, None, f"code-{serial}", 1)


async def test_concurrent_inserts_are_one_batch_each_with_its_verdict(tmp_path: Path) -> None:
    async with open_store(tmp_path / "nxg.sqlite3") as store:
        await device(store, "Lamp1")
        await device(store, "gone")
        await store.db.conn.execute("UPDATE devices SET revoked = 1 WHERE serial = 'gone'")
        writer = store.command_writer
        batches = writer.batches
        commands = [command("lamp1"), command("LAMP1"), command("lamp1"), command("ghost"), command("gone")]
        verdicts = await asyncio.gather(*(writer.insert(c, 2, "tester", {"id": c.id}) for c in commands))
        # the canonical serial for the first two, then the bound (2 open) counted within the batch
        assert verdicts == ["Lamp1", "Lamp1", QUEUE_FULL, DEVICE_NOT_FOUND, DEVICE_REVOKED]
        assert writer.batches == batches + 1
        rows = await store.db.fetchall("SELECT id, serial, status FROM commands ORDER BY id")
        assert [(r["id"], r["serial"], r["status"]) for r in rows] == [
            (commands[0].id, "Lamp1", "queued"),
            (commands[1].id, "Lamp1", "queued"),
        ]
        audit = await store.audit.recent()
        assert sorted(a["detail"]["id"] for a in audit) == sorted([commands[0].id, commands[1].id])
        assert all(a["actor"] == "tester" and a["outcome"] == "ok" and a["target"] == "Lamp1" for a in audit)
        # a later batch counts what the earlier one stored
        assert await writer.insert(command("lamp1"), 2, "tester", {}) == QUEUE_FULL
        assert await writer.insert(command("lamp1"), 0, "tester", {}) == "Lamp1"  # 0: no bound


async def test_an_accepted_command_is_committed_when_insert_returns(tmp_path: Path) -> None:
    path = tmp_path / "nxg.sqlite3"
    async with open_store(path) as store:
        await device(store, "S1")
        sent = command("S1", CommandStatus.DISPATCHED)
        assert await store.command_writer.insert(sent, 10, "tester", {}) == "S1"
        other = sqlite3.connect(path)  # another connection: only committed rows are visible to it
        row = other.execute("SELECT status, dispatched_at FROM commands WHERE id = ?", (sent.id,)).fetchone()
        other.close()
        assert row == ("dispatched", 1000)


async def test_finish_closes_once(tmp_path: Path) -> None:
    async with open_store(tmp_path / "nxg.sqlite3") as store:
        await device(store, "S1")
        writer = store.command_writer
        first, second = command("S1", CommandStatus.DISPATCHED), command("S1", CommandStatus.DISPATCHED)
        for c in (first, second):
            assert await writer.insert(c, 0, "tester", {}) == "S1"
        closed = await asyncio.gather(
            writer.finish(first.id, CommandStatus.ACKED, 2000, result={"level": 1}),
            writer.finish(first.id, CommandStatus.FAILED, 2001, error="late"),  # same batch: the first counts
            writer.finish(second.id, CommandStatus.FAILED, 2002, error="jammed"),
            writer.finish("c_unknown", CommandStatus.ACKED, 2003),
        )
        assert list(closed) == [True, False, True, False]
        assert not await writer.finish(second.id, CommandStatus.ACKED, 2004)  # a replay, later
        got = await store.commands.get(first.id)
        assert got is not None and got.status is CommandStatus.ACKED and got.result == {"level": 1}
        assert got.finished_at == 2000 and got.error is None
        got = await store.commands.get(second.id)
        assert got is not None and got.status is CommandStatus.FAILED and got.error == "jammed"


async def test_a_failed_batch_fails_its_operations_and_the_writer_goes_on(tmp_path: Path) -> None:
    async with open_store(tmp_path / "nxg.sqlite3") as store:
        await device(store, "S1")
        writer = store.command_writer
        await store.db.conn.execute("ALTER TABLE commands RENAME TO commands_away")
        try:
            results = await asyncio.gather(
                writer.insert(command("S1"), 0, "tester", {}),
                writer.audit(1, "tester", "command", "S1", {"x": 1}, "ok"),
                return_exceptions=True,
            )
            assert all(isinstance(r, StoreError) for r in results), results
        finally:
            await store.db.conn.execute("ALTER TABLE commands_away RENAME TO commands")
        assert await store.audit.recent() == []  # rolled back with the insert
        assert await writer.insert(command("S1"), 0, "tester", {}) == "S1"


async def test_a_batch_that_finds_the_lock_taken_waits_off_the_event_loop(tmp_path: Path) -> None:
    path = tmp_path / "nxg.sqlite3"
    async with open_store(path) as store:
        await device(store, "S1")
        writer = store.command_writer
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another writer (the CLI, the history writer) holds the lock
        try:
            pending = asyncio.create_task(writer.insert(command("S1"), 0, "tester", {}))
            ticks = 0
            for _ in range(20):  # the loop keeps turning meanwhile
                await asyncio.sleep(0.01)
                ticks += 1
            assert not pending.done() and ticks == 20
        finally:
            other.execute("COMMIT")
            other.close()
        assert await pending == "S1"
        assert writer.deferred == 1
        assert await writer.insert(command("S1"), 0, "tester", {}) == "S1"  # back on the fast path
        assert writer.deferred == 1


@pytest.mark.parametrize(
    ("statement", "params", "index"),
    [
        pytest.param(
            LOOKUP, ("default", '["S1","S2"]'), "sqlite_autoindex_devices_1 (tenant_id=? AND serial=?)", id="lookup"
        ),
        pytest.param(LOOKUP, ("default", '["S1","S2"]'), "commands_open (tenant_id=? AND serial=?", id="lookup-count"),
        pytest.param(
            FINISH, ("acked", 1, None, None, "c_1", "default"), "sqlite_autoindex_commands_1 (id=?)", id="finish"
        ),
        pytest.param(
            LAST_SEEN, (1, "default", "S1"), "sqlite_autoindex_devices_1 (tenant_id=? AND serial=?)", id="last-seen"
        ),
    ],
)
async def test_writer_statements_search_by_index(
    tmp_path: Path, statement: str, params: tuple[object, ...], index: str
) -> None:
    db_path = tmp_path / "nxg.sqlite3"
    async with open_store(db_path):
        pass  # migrated
    conn = sqlite3.connect(db_path)
    plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + statement, params)]
    conn.close()
    # only the batch itself (json_each, alias j) is walked; every table is searched by index
    assert not any(step.startswith("SCAN ") and not step.startswith("SCAN j ") for step in plan), plan
    assert any(index in step for step in plan), plan


async def test_insert_many_is_one_transaction_with_its_audit_rows(tmp_path: Path) -> None:
    async with open_store(tmp_path / "nxg.sqlite3") as store:
        for serial in ("a", "b"):
            await device(store, serial)
        writer = store.command_writer
        batches = writer.batches
        commands = [command("a"), command("B"), command("a"), command("ghost")]
        refusal = (1000, "tester", "command", "c", {"error": "x"}, "ACTION_NOT_IN_MANIFEST")
        verdicts = await writer.insert_many([(c, 1, "tester", {"id": c.id}) for c in commands], [refusal])
        # each insert its own verdict; the bound (1 open) counts this batch's earlier command of "a"
        assert verdicts == ["a", "b", QUEUE_FULL, DEVICE_NOT_FOUND]
        assert writer.batches == batches + 1
        rows = await store.db.fetchall("SELECT id, serial FROM commands ORDER BY id")
        assert [(r["id"], r["serial"]) for r in rows] == [(commands[0].id, "a"), (commands[1].id, "b")]
        audit = await store.audit.recent()
        assert sorted((a["target"], a["outcome"]) for a in audit) == [
            ("a", "ok"),
            ("b", "ok"),
            ("c", "ACTION_NOT_IN_MANIFEST"),
        ]


def ack(serial: str, command_id: str, ts: int, *, again: bool = False) -> HistoryEntry:
    return HistoryEntry(serial, MessageType.ACK, ts, {"t": "ack", "id": command_id, "ok": True}, redelivered=again)


async def test_a_command_and_its_ack_are_history_in_the_same_transactions(tmp_path: Path) -> None:
    """The `cmd` row commits with the command (none for a refused one), the `ack` row with the close
    (and without one: an unknown id, a replay), a redelivered ack once; the ack moves `last_seen`
    forward only."""
    path = tmp_path / "nxg.sqlite3"
    async with open_store(path) as store:
        await device(store, "S1")
        writer = store.command_writer
        sent, refused = command("S1", CommandStatus.DISPATCHED), command("ghost")
        verdicts = await asyncio.gather(writer.insert(sent, 0, "t", {}), writer.insert(refused, 0, "t", {}))
        assert list(verdicts) == ["S1", DEVICE_NOT_FOUND]
        other = sqlite3.connect(path)  # committed rows only

        def history() -> list[tuple[str, int, str]]:
            rows = other.execute("SELECT type, ts, json_extract(body, '$.id') FROM messages ORDER BY id").fetchall()
            return [tuple(r) for r in rows]

        def last_seen() -> int | None:
            row = other.execute("SELECT last_seen FROM devices WHERE serial = 'S1'").fetchone()
            return None if row is None or row[0] is None else int(row[0])

        try:
            assert history() == [("cmd", 1000, sent.id)]
            assert await writer.finish(sent.id, CommandStatus.ACKED, 5000, ack=ack("S1", sent.id, 5000))
            assert history()[-1] == ("ack", 5000, sent.id) and last_seen() == 5000
            # a replay closes nothing and is history all the same; an older one leaves last_seen
            assert not await writer.finish(sent.id, CommandStatus.ACKED, 4000, ack=ack("S1", sent.id, 4000))
            await writer.history(ack("S1", "c_unknown", 6000))
            assert history()[-2:] == [("ack", 4000, sent.id), ("ack", 6000, "c_unknown")] and last_seen() == 6000
            # the broker's second delivery of a stored ack adds nothing; of one never stored, one row
            await writer.history(ack("S1", "c_unknown", 6000, again=True))
            await writer.history(ack("S1", "c_other", 7000, again=True))
            assert [r for r in history() if r[0] == "ack"][-2:] == [
                ("ack", 6000, "c_unknown"),
                ("ack", 7000, "c_other"),
            ]
        finally:
            other.close()
