"""The history writer: one batch = one call on a dedicated thread with its own SQLite connection.

Under saturation the event loop runs long iterations, and every `await` on aiosqlite costs one
of them; a batch written through it (BEGIN, INSERT…, UPDATE, COMMIT) waited several. Here the
whole batch runs on the writer thread and the loop waits once.

The batch goes to SQLite as one JSON array expanded by `json_each`, not by `executemany`:
CPython releases the GIL around every `sqlite3_step`, and with the event loop busy each
re-acquisition waits out a 5 ms switch interval, so a row-at-a-time insert of thousands of rows
crawled. One statement takes the GIL twice per batch.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from nxg_mqtt.models import ConnectionClosed, ConnectionOpened, HistoryEntry, OnlineChanged, PresenceOp, now_ms


class HistoryWriter:
    def __init__(self, path: Path, tenant_id: str) -> None:
        self._path = path
        self._tenant = tenant_id
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nxg-history")
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        # created on the writer thread, used only there
        if self._conn is None:
            conn = sqlite3.connect(self._path, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=5000")
            self._conn = conn
        return self._conn

    def _write(self, entries: Sequence[HistoryEntry], last_seen: dict[str, int], ops: Sequence[PresenceOp]) -> int:
        conn = self._connection()
        stored_at = now_ms()
        rows = json.dumps(
            [[e.serial, e.type.value, e.ts, e.device_ts, json.dumps(e.body, separators=(",", ":"))] for e in entries],
            separators=(",", ":"),
        )
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "INSERT INTO messages (tenant_id, serial, type, ts, device_ts, stored_at, body)"
                " SELECT ?, value ->> 0, value ->> 1, value ->> 2, value ->> 3, ?, value ->> 4 FROM json_each(?)",
                (self._tenant, stored_at, rows),
            )
            if last_seen:
                conn.execute(
                    "UPDATE devices SET last_seen = MAX(COALESCE(devices.last_seen, 0), seen.value)"
                    " FROM json_each(?) AS seen WHERE devices.tenant_id = ? AND devices.serial = seen.key",
                    (json.dumps(last_seen), self._tenant),
                )
            if ops:
                self._presence(conn, ops)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return stored_at

    def _presence(self, conn: sqlite3.Connection, ops: Sequence[PresenceOp]) -> None:
        """Connection log entries and online flags, three statements whatever the batch size.

        Opens go in before closes (a session may start and end within one batch); a close names
        its entry by (serial, connected_at), so the order between sessions does not matter; for
        the online flag only each device's last change counts.
        """
        opened = [[o.serial, o.transport, o.remote, o.connected_at] for o in ops if isinstance(o, ConnectionOpened)]
        closed = [[o.serial, o.connected_at, o.ended_at, o.reason] for o in ops if isinstance(o, ConnectionClosed)]
        online: dict[str, list[object]] = {}
        for o in ops:
            if isinstance(o, OnlineChanged):
                online[o.serial] = [o.serial, int(o.online), o.ts]
        if opened:
            conn.execute(
                "INSERT INTO connections (tenant_id, serial, transport, remote, connected_at)"
                " SELECT ?, value ->> 0, value ->> 1, value ->> 2, value ->> 3 FROM json_each(?)",
                (self._tenant, json.dumps(opened)),
            )
        if closed:
            conn.execute(
                "UPDATE connections SET ended_at = c.value ->> 2, reason = c.value ->> 3 FROM json_each(?) AS c"
                " WHERE connections.tenant_id = ? AND connections.serial = c.value ->> 0"
                " AND connections.connected_at = c.value ->> 1 AND connections.ended_at IS NULL",
                (json.dumps(closed), self._tenant),
            )
        if online:
            conn.execute(
                "UPDATE devices SET online = o.value ->> 1,"
                " last_seen = MAX(COALESCE(devices.last_seen, 0), o.value ->> 2) FROM json_each(?) AS o"
                " WHERE devices.tenant_id = ? AND devices.serial = o.value ->> 0",
                (json.dumps(list(online.values())), self._tenant),
            )

    async def write(
        self, entries: Sequence[HistoryEntry], last_seen: dict[str, int], ops: Sequence[PresenceOp] = ()
    ) -> int:
        """Append `entries`, raise devices' last_seen and apply presence changes, in one transaction;
        returns stored_at."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._write, entries, last_seen, ops)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._close)
        self._executor.shutdown(wait=True)
