"""NXG-specific helpers: provisioning paired devices, reading stored telemetry from SQLite.

`nxg_mqtt` is imported lazily (importlib) so the rest of the bench runs, and type-checks, even
when the NXG broker is not there yet or its internals change.
"""

from __future__ import annotations

import importlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from bench.common import Cred, percentile, run_async

CREDS_FILE = "bench-devices.json"


def serials(count: int, prefix: str = "bench") -> list[str]:
    return [f"{prefix}-{i:05d}" for i in range(count)]


async def _provision(data_dir: Path, wanted: list[str], on_progress: Any = None) -> list[Cred]:
    settings_mod = importlib.import_module("nxg_mqtt.settings")
    core_mod = importlib.import_module("nxg_mqtt.core")
    settings = settings_mod.Settings(data_dir=data_dir)
    out: list[Cred] = []
    async with core_mod.open_core(settings) as core:
        for i, serial in enumerate(wanted):
            device = await core.devices.create(serial=serial, name=None)
            paired = await core.devices.pair(device.code, source="bench")
            out.append(Cred(paired.serial, paired.serial, paired.token))
            if on_progress is not None and i % 100 == 99:
                on_progress(i + 1)
    return out


def load_creds(data_dir: Path) -> dict[str, Cred]:
    path = data_dir / CREDS_FILE
    if not path.exists():
        return {}
    raw = json.loads(path.read_text())
    return {d["serial"]: Cred(d["serial"], d["serial"], d["token"]) for d in raw}


def save_creds(data_dir: Path, creds: dict[str, Cred]) -> None:
    path = data_dir / CREDS_FILE
    rows = [{"serial": c.client_id, "token": c.password} for c in creds.values()]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(rows))
    tmp.replace(path)


def provision(data_dir: Path, wanted: list[str], on_progress: Any = None) -> list[Cred]:
    """Paired creds for `wanted` serials, creating (and remembering in a JSON file) missing ones."""
    data_dir.mkdir(parents=True, exist_ok=True)
    known = load_creds(data_dir)
    missing = [s for s in wanted if s not in known]
    if missing:
        for cred in run_async(_provision(data_dir, missing, on_progress)):
            known[cred.client_id] = cred
        save_creds(data_dir, known)
    return [known[s] for s in wanted]


class Store:
    """Read-only view of the broker's SQLite store (WAL, so readable while the broker writes)."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path

    def _query(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        for attempt in range(5):
            try:
                con = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=5.0)
                try:
                    return con.execute(sql, params).fetchall()
                finally:
                    con.close()
            except sqlite3.OperationalError:
                if attempt == 4:
                    raise
                time.sleep(0.2)
        return []

    def count_stored(self, t0_ms: float, t1_ms: float) -> int:
        rows = self._query(
            "SELECT COUNT(*) FROM messages WHERE type = 'telemetry' AND stored_at >= ? AND stored_at < ?",
            (int(t0_ms), int(t1_ms)),
        )
        return int(rows[0][0]) if rows else 0

    def store_latency(self, t0_ms: float, t1_ms: float) -> tuple[int, float, float, float]:
        """(rows, p50, p99, max) of stored_at − device_ts for rows sent within [t0, t1)."""
        rows = self._query(
            "SELECT stored_at - device_ts FROM messages WHERE type = 'telemetry' AND device_ts >= ? AND device_ts < ?",
            (int(t0_ms), int(t1_ms)),
        )
        lat = sorted(float(r[0]) for r in rows if r[0] is not None)
        if not lat:
            return 0, float("nan"), float("nan"), float("nan")
        return len(lat), percentile(lat, 50), percentile(lat, 99), lat[-1]
