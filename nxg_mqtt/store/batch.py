"""The history writer: one batch = one call on a dedicated thread with its own SQLite connection.

Under saturation the event loop runs long iterations, and every `await` on aiosqlite costs one
of them; a batch written through it (BEGIN, INSERT…, UPDATE, COMMIT) waited several. Here the
whole batch runs on the writer thread and the loop waits once.

The batch goes to SQLite as one JSON array expanded by `json_each`, not by `executemany`:
CPython releases the GIL around every `sqlite3_step`, and with the event loop busy each
re-acquisition waits out a 5 ms switch interval, so a row-at-a-time insert of thousands of rows
crawled. One statement takes the GIL twice per batch.

Each row's body travels inside that array as a JSON value and SQLite writes its text (`value -> 4`,
minified exactly as `json.dumps(body, separators=(",", ":"))` would write it): a `json.dumps` per
row, and the escaping of its result as a string inside the array, cost the event loop's thread
~5 µs of GIL per row (~9 % of the serving process at saturation on Mosquitto), while SQLite
renders it with the GIL released. A batch with a NaN or Infinity somewhere (not JSON, so SQLite
would refuse the array; device data refuses them, an app's command parameters might not) is
written the old way, each body a string made by Python.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from nxg_mqtt.messages import compact
from nxg_mqtt.models import ConnectionClosed, ConnectionOpened, HistoryEntry, OnlineChanged, PresenceOp, now_ms

# staging tables: joining a json_each() directly in UPDATE … FROM defeats the indexes (every
# device row compared with every batch row); a real table is probed by index
STAGING = (
    "CREATE TEMP TABLE seen (serial TEXT PRIMARY KEY, ts INTEGER);"
    "CREATE TEMP TABLE closed (serial TEXT, connected_at INTEGER, ended_at INTEGER, reason TEXT,"
    " PRIMARY KEY (serial, connected_at));"
    "CREATE TEMP TABLE online (serial TEXT PRIMARY KEY, online INTEGER, ts INTEGER);"
)
UPDATE_LAST_SEEN = (
    "UPDATE devices SET last_seen = MAX(COALESCE(devices.last_seen, 0), seen.ts)"
    " FROM temp.seen AS seen WHERE devices.tenant_id = ? AND devices.serial = seen.serial"
)
# CROSS JOIN fixes the loop order (the few closes outside, the log probed by index); left to
# itself the planner walks the whole log once per close
UPDATE_CLOSED = (
    "UPDATE connections SET (ended_at, reason) = (SELECT c.ended_at, c.reason FROM temp.closed AS c"
    " WHERE c.serial = connections.serial AND c.connected_at = connections.connected_at)"
    " WHERE rowid IN (SELECT connections.rowid FROM temp.closed AS c CROSS JOIN connections"
    " WHERE connections.tenant_id = ? AND connections.serial = c.serial"
    " AND connections.connected_at = c.connected_at AND connections.ended_at IS NULL)"
)
UPDATE_ONLINE = (
    "UPDATE devices SET online = o.online, last_seen = MAX(COALESCE(devices.last_seen, 0), o.ts)"
    " FROM temp.online AS o WHERE devices.tenant_id = ? AND devices.serial = o.serial"
)
# a history row, in the column order every writer of `messages` gives its values in
INSERT_MESSAGE = "INSERT INTO messages (tenant_id, serial, type, ts, device_ts, stored_at, body)"
# a redelivered message: the broker's receive stamp (ts) and the body identify it
INSERT_UNLESS_STORED = (
    INSERT_MESSAGE + " SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7 WHERE NOT EXISTS (SELECT 1 FROM messages"
    " WHERE tenant_id = ?1 AND serial = ?2 AND type = ?3 AND ts = ?4 AND body = ?7)"
)


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
            conn.executescript(STAGING)
            self._conn = conn
        return self._conn

    def _write(self, entries: Sequence[HistoryEntry], last_seen: dict[str, int], ops: Sequence[PresenceOp]) -> int:
        conn = self._connection()
        stored_at = now_ms()
        fresh = [e for e in entries if not e.redelivered]
        try:
            rows = json.dumps(
                [[e.serial, e.type.value, e.ts, e.device_ts, e.body] for e in fresh],
                separators=(",", ":"),
                allow_nan=False,
            )
            body = "value -> 4"  # the body's JSON text
        except ValueError:
            rows = json.dumps(
                [[e.serial, e.type.value, e.ts, e.device_ts, compact(e.body)] for e in fresh],
                separators=(",", ":"),
            )
            body = "value ->> 4"  # a string holding it
        again = [
            (
                self._tenant,
                e.serial,
                e.type.value,
                e.ts,
                e.device_ts,
                stored_at,
                compact(e.body),
            )
            for e in entries
            if e.redelivered
        ]
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                INSERT_MESSAGE
                + f" SELECT ?, value ->> 0, value ->> 1, value ->> 2, value ->> 3, ?, {body} FROM json_each(?)",
                (self._tenant, stored_at, rows),
            )
            if again:
                # row by row (rare: only after a serving process resumed its session), each one
                # probing the (tenant, serial, type, ts) index and seeing the rows written before it
                conn.executemany(INSERT_UNLESS_STORED, again)
            if last_seen:
                conn.execute("INSERT INTO temp.seen SELECT key, value FROM json_each(?)", (json.dumps(last_seen),))
                conn.execute(UPDATE_LAST_SEEN, (self._tenant,))
                conn.execute("DELETE FROM temp.seen")
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
                "INSERT OR REPLACE INTO temp.closed"
                " SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3 FROM json_each(?)",
                (json.dumps(closed),),
            )
            conn.execute(UPDATE_CLOSED, (self._tenant,))
            conn.execute("DELETE FROM temp.closed")
        if online:
            conn.execute(
                "INSERT INTO temp.online SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(?)",
                (json.dumps(list(online.values())),),
            )
            conn.execute(UPDATE_ONLINE, (self._tenant,))
            conn.execute("DELETE FROM temp.online")

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
