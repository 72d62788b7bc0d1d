"""Many tasks reading and writing through the shared connection while the history writer commits
on its own: every statement waits its turn, none fails with "database is locked"."""

from __future__ import annotations

import asyncio
from pathlib import Path

from nxg_mqtt.models import HistoryEntry, MessageType
from nxg_mqtt.protocol import SignalKind
from nxg_mqtt.store import open_store


async def test_reads_and_writes_interleave_with_history_batches(tmp_path: Path) -> None:
    async with open_store(tmp_path / "nxg.sqlite3") as store:
        serials = [f"d{n}" for n in range(100)]
        for n, serial in enumerate(serials):
            assert await store.devices.insert(serial, None, f"{n:08d}", 1)

        async def login_then_presence(serial: str) -> None:
            for ts in range(20):
                assert await store.devices.token_hash(serial) is not None
                await store.devices.set_token(serial, f"hash-{ts}", paired=True)
                await store.signals.emit(SignalKind.COMMAND, serial, ts)

        async def history() -> None:
            for batch in range(30):
                await asyncio.sleep(0.005)
                entries = [
                    HistoryEntry(serial, MessageType.TELEMETRY, batch, {"t": "telemetry", "n": batch})
                    for serial in serials
                ]
                await store.history_writer.write(entries, {s: batch for s in serials})

        await asyncio.gather(history(), *(login_then_presence(s) for s in serials))
        assert len(await store.messages.query(limit=5000)) == 3000
        assert len(await store.signals.since(0)) == 100 * 20
