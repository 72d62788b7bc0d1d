"""Audit entries, cross-process signals and small key/values (the admin password hash)."""

from __future__ import annotations

import json
from typing import Any

from nxg_mqtt.models import Signal
from nxg_mqtt.protocol import RevokeReason, SignalKind
from nxg_mqtt.store.db import Database


class AuditRepository:
    def __init__(self, db: Database, tenant_id: str) -> None:
        self._db = db
        self._tenant = tenant_id

    async def add(
        self, ts: int, actor: str, action: str, serial: str | None, detail: Any = None, outcome: str = "ok"
    ) -> None:
        """`serial` is the target: a device's serial, or an API key's id for `key.*` actions."""
        await self._db.conn.execute(
            "INSERT INTO audit (tenant_id, ts, actor, action, serial, detail, outcome) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (self._tenant, ts, actor, action, serial, json.dumps(detail) if detail is not None else None, outcome),
        )

    async def recent(self, limit: int = 100, serial: str | None = None) -> list[dict[str, Any]]:
        """Newest first; only entries whose target is `serial` when given."""
        where, params = ("AND serial = ?", [serial]) if serial is not None else ("", [])
        rows = await self._db.fetchall(
            "SELECT id, ts, actor, action, serial AS target, outcome, detail FROM audit"
            f" WHERE tenant_id = ? {where} ORDER BY id DESC LIMIT ?",
            (self._tenant, *params, limit),
        )
        return [{**dict(r), "detail": json.loads(r["detail"]) if r["detail"] is not None else None} for r in rows]


class SignalRepository:
    def __init__(self, db: Database, tenant_id: str) -> None:
        self._db = db
        self._tenant = tenant_id

    async def emit(self, kind: SignalKind, serial: str | None, ts: int, reason: RevokeReason | None = None) -> int:
        """Insert a signal; its id (the row's own, not MAX(id): another process may write too)."""
        cursor = await self._db.conn.execute(
            "INSERT INTO signals (tenant_id, kind, serial, created_at, reason) VALUES (?, ?, ?, ?, ?)",
            (self._tenant, kind.value, serial, ts, None if reason is None else reason.value),
        )
        return int(cursor.lastrowid or 0)

    async def last_id(self) -> int:
        row = await self._db.fetchone("SELECT COALESCE(MAX(id), 0) FROM signals")
        return int(row[0]) if row else 0

    async def since(self, last_id: int) -> list[Signal]:
        rows = await self._db.fetchall(
            "SELECT id, kind, serial, reason FROM signals WHERE tenant_id = ? AND id > ? ORDER BY id",
            (self._tenant, last_id),
        )
        signals = []
        for r in rows:
            try:
                kind = SignalKind(r["kind"])
                reason = None if r["reason"] is None else RevokeReason(r["reason"])
            except ValueError:
                continue  # written by a newer version: not ours to act on
            signals.append(Signal(r["id"], kind, r["serial"], reason))
        return signals

    async def prune(self, older_than_ms: int) -> None:
        await self._db.conn.execute("DELETE FROM signals WHERE created_at < ?", (older_than_ms,))


class KeyValueRepository:
    def __init__(self, db: Database, tenant_id: str) -> None:
        self._db = db
        self._tenant = tenant_id

    async def get(self, key: str) -> str | None:
        row = await self._db.fetchone("SELECT value FROM kv WHERE tenant_id = ? AND key = ?", (self._tenant, key))
        return str(row[0]) if row else None

    async def set(self, key: str, value: str) -> None:
        await self._db.conn.execute(
            "INSERT INTO kv (tenant_id, key, value) VALUES (?, ?, ?)"
            " ON CONFLICT (tenant_id, key) DO UPDATE SET value = excluded.value",
            (self._tenant, key, value),
        )
