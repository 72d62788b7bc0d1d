"""The SQLite connection, its pragmas and the versioned migrations.

aiosqlite runs every statement on its own thread, so no query ever blocks the event loop. The one
exception is `read_now`: a read by primary key on the loop itself, for the lookups a CONNECT storm
makes by the hundred (a device's token), through a read-only connection that never waits (WAL
readers do not wait for writers; if it would wait, the caller goes through the thread instead).
Migrations are numbered; `PRAGMA user_version` records the last one applied, and a database
newer than this code is refused rather than guessed at.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

from nxg_mqtt.errors import StoreError

MIGRATIONS: list[str] = [
    # 1: devices, history, commands, connection log, audit, cross-process signals, key/values
    """
    CREATE TABLE devices (
        tenant_id   TEXT NOT NULL,
        serial      TEXT NOT NULL COLLATE NOCASE,
        name        TEXT,
        code        TEXT NOT NULL,
        token_hash  TEXT,
        paired      INTEGER NOT NULL DEFAULT 0,
        online      INTEGER NOT NULL DEFAULT 0,
        last_seen   INTEGER,
        created_at  INTEGER NOT NULL,
        revoked     INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (tenant_id, serial)
    );
    CREATE UNIQUE INDEX devices_code ON devices (code);
    CREATE INDEX devices_token ON devices (token_hash);
    CREATE TABLE messages (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant_id   TEXT NOT NULL,
        serial      TEXT NOT NULL,
        type        TEXT NOT NULL,
        ts          INTEGER NOT NULL,
        device_ts   INTEGER,
        stored_at   INTEGER NOT NULL,
        body        TEXT NOT NULL
    );
    CREATE INDEX messages_device ON messages (tenant_id, serial, type, ts);
    CREATE INDEX messages_time ON messages (tenant_id, ts);
    CREATE TABLE commands (
        id            TEXT PRIMARY KEY,
        tenant_id     TEXT NOT NULL,
        serial        TEXT NOT NULL,
        target        TEXT,
        action        TEXT NOT NULL,
        params        TEXT NOT NULL,
        ref           TEXT,
        source        TEXT NOT NULL,
        status        TEXT NOT NULL,
        error         TEXT,
        result        TEXT,
        created_at    INTEGER NOT NULL,
        dispatched_at INTEGER,
        finished_at   INTEGER,
        expires_at    INTEGER NOT NULL
    );
    CREATE INDEX commands_open ON commands (tenant_id, serial, status, created_at);
    CREATE TABLE connections (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant_id    TEXT NOT NULL,
        serial       TEXT NOT NULL,
        transport    TEXT NOT NULL,
        remote       TEXT,
        connected_at INTEGER NOT NULL,
        ended_at     INTEGER,
        reason       TEXT
    );
    CREATE INDEX connections_device ON connections (tenant_id, serial, connected_at);
    CREATE TABLE audit (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant_id TEXT NOT NULL,
        ts        INTEGER NOT NULL,
        actor     TEXT NOT NULL,
        action    TEXT NOT NULL,
        serial    TEXT,
        detail    TEXT
    );
    CREATE TABLE signals (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant_id  TEXT NOT NULL,
        kind       TEXT NOT NULL,
        serial     TEXT,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE kv (
        tenant_id TEXT NOT NULL,
        key       TEXT NOT NULL,
        value     TEXT NOT NULL,
        PRIMARY KEY (tenant_id, key)
    );
    """,
    # 2: a signal's reason (a revocation's RevokeReason) in its own column, not inside `kind`
    """
    ALTER TABLE signals ADD COLUMN reason TEXT;
    """,
    # 3: the expiry sweep finds due queued commands by index, never reading the whole queue
    """
    CREATE INDEX commands_expiry ON commands (tenant_id, expires_at) WHERE status = 'queued';
    """,
    # 4: device manifests, every version kept (the newest is the one commands are checked against)
    """
    CREATE TABLE manifests (
        tenant_id   TEXT NOT NULL,
        serial      TEXT NOT NULL COLLATE NOCASE,
        version     INTEGER NOT NULL,
        body        TEXT NOT NULL,
        source      TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        PRIMARY KEY (tenant_id, serial, version)
    );
    """,
    # 5: API keys, stored as SHA-256 of the key;
    # `devices` is a JSON array of serials, NULL for every device. The audit log gains an outcome.
    """
    CREATE TABLE api_keys (
        id           TEXT PRIMARY KEY,
        tenant_id    TEXT NOT NULL,
        name         TEXT NOT NULL,
        prefix       TEXT NOT NULL,
        key_hash     TEXT NOT NULL UNIQUE,
        role         TEXT NOT NULL,
        scopes       TEXT NOT NULL,
        devices      TEXT,
        created_at   INTEGER NOT NULL,
        last_used_at INTEGER,
        revoked_at   INTEGER
    );
    ALTER TABLE audit ADD COLUMN outcome TEXT;
    CREATE INDEX audit_serial ON audit (tenant_id, serial, id);
    """,
    # 6: tenants (seed 002). The `tenant_id` columns of migrations 1-5 are the data directory's
    # partition (`settings.tenant_id`); the tenant that OWNS a device or an API key is its
    # `owner_tenant`, NULL meaning the default tenant (every row written before tenants existed,
    # and whatever the CLI creates). Serials stay unique across tenants: topics are `nxg/{S}/...`.
    # In the new tables `tenant_id` is the owner (they have no partition: one site, many tenants).
    """
    CREATE TABLE tenants (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL,
        slug        TEXT NOT NULL UNIQUE,
        created_at  INTEGER NOT NULL
    );
    ALTER TABLE devices ADD COLUMN owner_tenant TEXT;
    ALTER TABLE devices ADD COLUMN device_type TEXT;
    ALTER TABLE devices ADD COLUMN home_id TEXT;
    ALTER TABLE devices ADD COLUMN room_id TEXT;
    ALTER TABLE devices ADD COLUMN key_version INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX devices_owner ON devices (owner_tenant, created_at);
    ALTER TABLE api_keys ADD COLUMN owner_tenant TEXT;
    CREATE TABLE device_keys (
        tenant_id   TEXT NOT NULL,
        serial      TEXT NOT NULL COLLATE NOCASE,
        version     INTEGER NOT NULL,
        created_at  INTEGER NOT NULL,
        retired_at  INTEGER,
        reason      TEXT,
        PRIMARY KEY (serial, version)
    );
    CREATE TABLE homes (
        id          TEXT PRIMARY KEY,
        tenant_id   TEXT NOT NULL,
        name        TEXT NOT NULL,
        timezone    TEXT NOT NULL,
        created_at  INTEGER NOT NULL
    );
    CREATE INDEX homes_tenant ON homes (tenant_id, created_at);
    CREATE TABLE rooms (
        id          TEXT PRIMARY KEY,
        tenant_id   TEXT NOT NULL,
        home_id     TEXT NOT NULL REFERENCES homes (id) ON DELETE CASCADE,
        name        TEXT NOT NULL,
        created_at  INTEGER NOT NULL
    );
    CREATE INDEX rooms_home ON rooms (home_id, created_at);
    CREATE TABLE device_groups (
        tenant_id   TEXT NOT NULL,
        slug        TEXT NOT NULL,
        name        TEXT NOT NULL,
        description TEXT,
        created_at  INTEGER NOT NULL,
        PRIMARY KEY (tenant_id, slug)
    );
    CREATE TABLE group_members (
        tenant_id   TEXT NOT NULL,
        slug        TEXT NOT NULL,
        serial      TEXT NOT NULL COLLATE NOCASE,
        PRIMARY KEY (tenant_id, slug, serial)
    );
    CREATE INDEX group_members_serial ON group_members (serial);
    """,
    # 7: seed 003: device properties (compare-and-swap versions), device certificates (mTLS by
    # fingerprint), a device's identity fingerprint, and connections named by id and cluster node
    """
    CREATE TABLE device_properties (
        tenant_id   TEXT NOT NULL,
        serial      TEXT NOT NULL COLLATE NOCASE,
        name        TEXT NOT NULL,
        value       TEXT NOT NULL,
        protected   INTEGER NOT NULL DEFAULT 0,
        version     INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL,
        PRIMARY KEY (tenant_id, serial, name)
    );
    CREATE TABLE device_certificates (
        id          TEXT PRIMARY KEY,
        tenant_id   TEXT NOT NULL,
        serial      TEXT NOT NULL COLLATE NOCASE,
        fingerprint TEXT NOT NULL,
        status      TEXT NOT NULL,
        first_seen  INTEGER NOT NULL,
        UNIQUE (tenant_id, serial, fingerprint)
    );
    CREATE INDEX device_certificates_fingerprint ON device_certificates (tenant_id, fingerprint);
    ALTER TABLE devices ADD COLUMN fingerprint TEXT;
    CREATE UNIQUE INDEX devices_fingerprint ON devices (tenant_id, fingerprint) WHERE fingerprint IS NOT NULL;
    ALTER TABLE connections ADD COLUMN connection_id TEXT;
    ALTER TABLE connections ADD COLUMN node_id TEXT;
    CREATE UNIQUE INDEX connections_id ON connections (tenant_id, connection_id) WHERE connection_id IS NOT NULL;
    """,
    # 8: firmware releases (the binary is a file in the data directory, named by the release id)
    # and each device's rollout state, derived from the `_ota` command and the device's events
    # (`tenant_id` is the owner tenant, as in the other tables newer than tenants; see migration 6)
    """
    CREATE TABLE firmware_releases (
        id          TEXT PRIMARY KEY,
        tenant_id   TEXT NOT NULL,
        device_type TEXT NOT NULL,
        version     TEXT NOT NULL,
        checksum    TEXT NOT NULL,
        size        INTEGER NOT NULL,
        filename    TEXT,
        created_at  INTEGER NOT NULL,
        created_by  TEXT NOT NULL,
        released_at INTEGER,
        target_all  INTEGER NOT NULL DEFAULT 0,
        UNIQUE (tenant_id, device_type, version)
    );
    CREATE TABLE firmware_rollouts (
        tenant_id   TEXT NOT NULL,
        release_id  TEXT NOT NULL REFERENCES firmware_releases (id) ON DELETE CASCADE,
        serial      TEXT NOT NULL COLLATE NOCASE,
        state       TEXT NOT NULL,
        command_id  TEXT,
        progress    INTEGER,
        error       TEXT,
        updated_at  INTEGER NOT NULL,
        PRIMARY KEY (release_id, serial)
    );
    CREATE INDEX firmware_rollouts_device ON firmware_rollouts (tenant_id, serial);
    CREATE INDEX firmware_rollouts_command ON firmware_rollouts (command_id);
    """,
]


class Database:
    """One aiosqlite connection; statements are serialised on its thread.

    Reads go through `fetchone`/`fetchall`, which execute and fetch in ONE call on that thread.
    A cursor held open across awaits would keep a read transaction open while other tasks
    write on the same connection; once the history writer (its own connection) commits, such an
    upgrade fails at once with "database is locked" instead of waiting (a stale WAL snapshot).
    """

    def __init__(self, conn: aiosqlite.Connection, reader: sqlite3.Connection | None = None) -> None:
        self.conn = conn
        self._reader = reader

    def read_now(self, sql: str, params: Sequence[object] = ()) -> list[sqlite3.Row] | None:
        """The rows of a short read, run on the calling thread (the event loop) at once; None when
        it would have to wait (a lock) or no reader is open: then use `fetchall`.

        Each statement round trip to the database thread wakes that thread and then the loop, and
        hands the GIL back and forth (the CONNECT storm bench: 50–90 µs more process CPU per
        CONNECT than reading here). A primary-key read is short and, in WAL mode, never waits
        for a writer. `fetchall` runs the statement to its end, so no read transaction stays open."""
        reader = self._reader
        if reader is None:
            return None
        try:
            return reader.execute(sql, params).fetchall()
        except sqlite3.Error:
            # busy or locked (busy timeout 0: never wait on the loop), or called from another
            # thread than the one that opened the store: the database thread answers (or raises)
            return None

    async def fetchone_now(self, sql: str, params: Sequence[object] = ()) -> sqlite3.Row | None:
        """`fetchone`, read on the calling thread when it can (`read_now`), else by the database
        thread (it would have waited for a lock): for the reads every CONNECT makes."""
        rows = self.read_now(sql, params)
        if rows is None:
            return await self.fetchone(sql, params)
        return rows[0] if rows else None

    async def fetchall(self, sql: str, params: Sequence[object] = ()) -> list[aiosqlite.Row]:
        return list(await self.conn.execute_fetchall(sql, params))

    async def fetchone(self, sql: str, params: Sequence[object] = ()) -> aiosqlite.Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def migrate(self) -> int:
        async with self.conn.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        version = int(row[0]) if row else 0
        if version > len(MIGRATIONS):
            raise StoreError(f"database schema version {version} is newer than this code ({len(MIGRATIONS)})")
        for number in range(version, len(MIGRATIONS)):
            await self.conn.executescript(
                "BEGIN;\n" + MIGRATIONS[number] + f"\nPRAGMA user_version = {number + 1};\nCOMMIT;"
            )
        return len(MIGRATIONS)


@asynccontextmanager
async def open_database(path: Path) -> AsyncIterator[Database]:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = await aiosqlite.connect(path, isolation_level=None)
    try:
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=NORMAL")
        await conn.execute("PRAGMA foreign_keys=ON")
        # another process (the CLI) may write while the server runs
        await conn.execute("PRAGMA busy_timeout=5000")
        conn.row_factory = aiosqlite.Row
        await Database(conn).migrate()
        # opened after the migrations (and WAL mode): read-only, and it never waits for a lock
        reader = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            reader.execute("PRAGMA query_only=1")
            reader.row_factory = sqlite3.Row
            yield Database(conn, reader)
        finally:
            reader.close()
    finally:
        await conn.close()
