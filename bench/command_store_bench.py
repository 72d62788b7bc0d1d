"""The command store alone: what a command costs the database, without HTTP, MQTT or noise.

    .venv/bin/python -m bench.command_store_bench [--commands 20000] [--devices 1000] [--inflight 32]

A real store (`open_core` on a temporary data directory, `--devices` devices) and its command
writer, as `serve` runs it: `--inflight` commands at a time, each stored (the command, its audit
entry and its `cmd` history row) then closed by an ack (the close, the `ack` history row, the
device's `last_seen`), each in the group-commit batches the writer forms. Prints the process's CPU
time per command and the bytes it wrote per command (`/proc/self/io` write_bytes: the WAL frames
of every page a transaction dirtied, and any checkpoint). On a shared machine this is steadier
than the end-to-end `commands_bench`: it shows what a change to the command rows or their indexes
costs (issue 9: README Performance has what it measured of time-ordered command ids).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from pathlib import Path


def _written() -> int:
    with open("/proc/self/io") as io:
        return next(int(line.split()[1]) for line in io if line.startswith("write_bytes"))


async def run(commands: int, devices: int, inflight: int) -> dict[str, float]:
    from nxg_mqtt.core import open_core
    from nxg_mqtt.models import Command, CommandStatus, HistoryEntry, MessageType, now_ms
    from nxg_mqtt.services.commands import new_command_id
    from nxg_mqtt.settings import Settings

    with tempfile.TemporaryDirectory() as directory:
        async with open_core(Settings(data_dir=Path(directory))) as core:
            serials = [(await core.devices.create(f"sb{i:05d}", actor="bench")).serial for i in range(devices)]
            writer = core.store.command_writer
            slots = asyncio.Semaphore(inflight)
            closed = 0

            async def one() -> None:
                nonlocal closed
                async with slots:
                    serial = random.choice(serials)
                    command_id = new_command_id()
                    now = now_ms()
                    command = Command(
                        id=command_id,
                        serial=serial,
                        action="light_on",
                        target=None,
                        params={"brightness": 40},
                        status=CommandStatus.DISPATCHED,
                        created_at=now,
                        expires_at=now + 60_000,
                        source="rest",
                        ref=None,
                        dispatched_at=now,
                    )
                    stored = await writer.insert(command, 1000, "bench", {"action": "light_on", "source": "rest"})
                    if stored != serial:
                        raise RuntimeError(f"command for {serial} not stored: {stored}")
                    # the device's round trip, uneven, so that closes and inserts share transactions as
                    # in `serve` (an even one kept every command in step: batches all inserts or all closes)
                    await asyncio.sleep(random.uniform(0.001, 0.003))
                    ack = HistoryEntry(serial, MessageType.ACK, now + 1, {"t": "ack", "id": command_id, "ok": True})
                    done = await writer.finish(command_id, CommandStatus.ACKED, now + 1, result={"r": 1}, ack=ack)
                    closed += done  # not `closed += await …`: that reads `closed` before the wait

            written, cpu = _written(), time.process_time()
            await asyncio.gather(*(one() for _ in range(commands)))
            return {
                "cpu_us": (time.process_time() - cpu) / commands * 1e6,
                "written_kb": (_written() - written) / commands / 1024,
                "per_batch": writer.ops / max(writer.batches, 1),
                "closed": closed,
            }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=20_000)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--inflight", type=int, default=32)
    args = parser.parse_args()
    result = asyncio.run(run(args.commands, args.devices, args.inflight))
    print(
        f"{args.commands:,} commands over {args.devices:,} devices, {args.inflight} in flight: "
        f"CPU {result['cpu_us']:.0f} µs/command, written {result['written_kb']:.1f} KB/command, "
        f"{result['per_batch']:.1f} operations per transaction"
    )


if __name__ == "__main__":
    main()
