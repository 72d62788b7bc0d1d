"""Queued commands for offline devices: the server's RSS and CPU, and what an expiry sweep costs.

    .venv/bin/python -m bench.command_queue                          # this checkout
    git archive <commit> nxg_mqtt schemas | tar -x -C /tmp/base
    .venv/bin/python -m bench.command_queue --baseline /tmp/base     # and an older build, same session

Per build: a fresh data dir with `--devices` devices (never connected) and `--commands` queued
commands spread evenly over them (`--params-bytes` of params each, written by that build's own
store code), then `nxg-mqtt broker` is started on it and watched for `--watch` s (the expiry sweep
runs every 5 s): RSS after start and at its peak, CPU over the watch and its worst 0.5 s sample.

Then the two sweeps are timed in this process on the same database (median of `--repeat`):
*load all* (what the sweep did: every queued command read and decoded, then filtered by TTL) and
*indexed* (this checkout: the due ones only, through the partial index `commands_expiry`; none is
due here, which is the common case).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
QUEUE = """
import asyncio, sys, secrets
from pathlib import Path
from nxg_mqtt.core import open_core
from nxg_mqtt.models import Command, CommandStatus, now_ms
from nxg_mqtt.settings import Settings
async def main(d, devices, commands, pad):
    async with open_core(Settings(data_dir=Path(d))) as core:
        serials = [(await core.devices.create(f"cq-{i:04d}")).serial for i in range(devices)]
        created = now_ms()
        await core.store.db.conn.execute("BEGIN")
        for n in range(commands):
            await core.store.commands.insert(Command(
                id="c_" + secrets.token_hex(8), serial=serials[n % devices], action="set",
                target=None, params={"pad": "x" * pad}, status=CommandStatus.QUEUED,
                created_at=created + n, expires_at=created + 86_400_000, source="bench", ref=None))
        await core.store.db.conn.execute("COMMIT")
asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
"""


def watch(source: Path, data: Path, seconds: float) -> dict[str, float]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nxg_mqtt.cli",
            "broker",
            "--host",
            "127.0.0.1",
            "--mqtt-port",
            "0",
            "--data",
            str(data),
        ],
        cwd=source,  # sys.path[0]: that build's nxg_mqtt
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "mqtt://" not in line:
            raise RuntimeError(f"the broker did not start: {line!r}")
        ps = psutil.Process(proc.pid)
        rss_start = ps.memory_info().rss
        cpu0 = sum(ps.cpu_times()[:2])
        peak, worst = rss_start, 0.0
        t0 = last_t = time.monotonic()
        last_cpu = cpu0
        while (now := time.monotonic()) - t0 < seconds:
            time.sleep(0.5)
            now = time.monotonic()
            cpu = sum(ps.cpu_times()[:2])
            worst = max(worst, (cpu - last_cpu) / (now - last_t) * 100)
            last_t, last_cpu = now, cpu
            peak = max(peak, ps.memory_info().rss)
        return {
            "rss_start_mb": rss_start / 2**20,
            "rss_peak_mb": peak / 2**20,
            "cpu_pct": (last_cpu - cpu0) / (last_t - t0) * 100,
            "cpu_worst_pct": worst,
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


async def sweeps(data: Path, repeat: int) -> dict[str, float]:
    from nxg_mqtt.models import CommandStatus, now_ms
    from nxg_mqtt.settings import Settings
    from nxg_mqtt.store import open_store

    async with open_store(Settings(data_dir=data).db_path) as store:
        commands = store.commands
        old: list[float] = []
        new: list[float] = []
        # the indexed sweeps first: garbage from a load-all sweep would be collected in the next call
        for _ in range(repeat):
            t = time.perf_counter()
            assert await commands.expire_due(now_ms(), "expired in the queue") == []
            new.append((time.perf_counter() - t) * 1000)
        for _ in range(repeat):
            t = time.perf_counter()
            due = [c for c in await commands.with_status(CommandStatus.QUEUED) if c.expires_at <= now_ms()]
            old.append((time.perf_counter() - t) * 1000)
            assert not due
    return {"sweep_load_all_ms": statistics.median(old), "sweep_indexed_ms": statistics.median(new)}


def run(source: Path, args: argparse.Namespace) -> dict[str, float]:
    data = Path(tempfile.mkdtemp(prefix="nxg-cq-"))
    try:
        subprocess.run(
            [sys.executable, "-c", QUEUE, str(data), str(args.devices), str(args.commands), str(args.params_bytes)],
            cwd=source,
            check=True,
            timeout=600,
        )
        figures = watch(source, data, args.watch)
        figures.update(asyncio.run(sweeps(data, args.repeat)))
        return figures
    finally:
        shutil.rmtree(data, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.command_queue", description=__doc__.split("\n\n")[0])
    p.add_argument("--devices", type=int, default=100)
    p.add_argument("--commands", type=int, default=10_000)
    p.add_argument("--params-bytes", type=int, default=1000, help="size of each command's params")
    p.add_argument("--watch", type=float, default=12.0, help="seconds the started server is watched")
    p.add_argument("--repeat", type=int, default=10, help="sweeps timed per kind")
    p.add_argument("--baseline", type=Path, help="a directory holding another build's nxg_mqtt package")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    variants = [("this checkout", ROOT)]
    if args.baseline is not None:
        variants.append((f"baseline ({args.baseline})", args.baseline.resolve()))
    print(f"{args.commands:,} queued commands over {args.devices} offline devices, {args.params_bytes} B params")
    print("build | RSS start / peak MB | CPU % (worst 0.5 s) | sweep: load all / indexed ms")
    results = []
    for name, source in variants:
        f = run(source, args)
        results.append({"build": name, **f})
        print(
            f"{name} | {f['rss_start_mb']:.0f} / {f['rss_peak_mb']:.0f} | {f['cpu_pct']:.1f} ({f['cpu_worst_pct']:.0f})"
            f" | {f['sweep_load_all_ms']:.1f} / {f['sweep_indexed_ms']:.2f}",
            flush=True,
        )
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
