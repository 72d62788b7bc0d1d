"""Property benchmark (seed 003's actions): get and set per second, and compare-and-swap under
concurrent writers with no lost update.

    .venv/bin/python -m bench.properties_bench [--writers 10] [--duration 5] [--json out.json]

Runs `nxg-mqtt serve` as a subprocess on a temporary data directory; the load comes from this
process over kept-alive HTTP/1.1 connections (one per worker, `bench.commands_bench.Http`: a
client cheap enough that the server is what is measured) to
`POST /api/v1/actions/invoke/devices_*`. Phases, each `--duration` seconds, `--writers` workers:

- **rest-get**: `GET /api/devices/{S}` (seed 000): the cost of any authenticated request through
  the bridge that reads one row, the baseline for reads;
- **get**: `devices_GetProperty` of one property;
- **set**: `devices_SetProperty` without `expectedVersion` on one property (the baseline for writes);
- **cas**: every writer loops read-version → `devices_SetProperty` with `expectedVersion`; on
  `VersionConflict` it takes `currentVersion` and tries again. Counted: `Set` answers and
  conflicts. No lost update means the property's final version is its version before the phase
  plus the number of `Set` answers, checked at the end;
- **cas-own**: the same with each writer on its own property (no contention: the cost of CAS alone).

Figures are given with ratios to the same run's baselines (`rest-get` for reads, `set` for
writes), as the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.bridge_bench import HOST, PASSWORD
from bench.commands_bench import Http

INVOKE = "/api/v1/actions/invoke/"
SERIAL = "bench-prop"


def start_server(data_dir: Path) -> tuple[subprocess.Popen[str], int]:
    cmd = [sys.executable, "-m", "nxg_mqtt.cli", "serve", "--data", str(data_dir), "--host", HOST]
    cmd += ["--mqtt-port", "0", "--http-port", "0", "--ws-port", "off", "--admin-password", PASSWORD]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("nxg-mqtt serve exited during start-up")
        if found := re.search(r"http://[^:]+:(\d+)", line):
            return proc, int(found.group(1))
    raise RuntimeError("nxg-mqtt serve did not print its HTTP port")


async def call(http: Http, action: str, body: dict[str, Any]) -> dict[str, Any]:
    status, value = await http.post(INVOKE + action, body)
    if status != 200:
        raise RuntimeError(f"{action}: {status} {value}")
    assert isinstance(value, dict)
    return value


async def version(http: Http, name: str) -> int:
    found = await call(http, "devices_GetProperty", {"deviceId": SERIAL, "name": name})
    return int(found["version"]) if found["result"] == "Found" else 0


async def phase(port: int, writers: int, duration: float, kind: str) -> dict[str, Any]:
    clients = [await Http.open(port, 1) for _ in range(writers)]
    names = [f"own-{i}" if kind == "cas-own" else "shared" for i in range(writers)]
    before = {name: await version(clients[0], name) for name in set(names)}
    stop_at = time.monotonic() + duration
    counts = {"ok": 0, "conflicts": 0}

    async def worker(index: int) -> None:
        http, name = clients[index], names[index]
        known = await version(http, name) if kind.startswith("cas") else 0
        while time.monotonic() < stop_at:
            if kind == "rest-get":
                status, _ = await http.post(f"/api/devices/{SERIAL}", None, method="GET")
                assert status == 200
                counts["ok"] += 1
                continue
            if kind == "get":
                await call(http, "devices_GetProperty", {"deviceId": SERIAL, "name": name})
                counts["ok"] += 1
                continue
            body: dict[str, Any] = {"deviceId": SERIAL, "name": name, "value": {"writer": index, "n": counts["ok"]}}
            if kind.startswith("cas"):
                body["expectedVersion"] = known
            answer = await call(http, "devices_SetProperty", body)
            if answer["result"] == "Set":
                counts["ok"] += 1
                known += 1  # a CAS that succeeded moved the version by exactly one
            elif answer["result"] == "VersionConflict":
                counts["conflicts"] += 1
                known = int(answer["currentVersion"])
            else:
                raise RuntimeError(f"unexpected answer {answer}")

    started = time.monotonic()
    await asyncio.gather(*(worker(i) for i in range(writers)))
    elapsed = time.monotonic() - started
    after = {name: await version(clients[0], name) for name in set(names)}
    for http in clients:
        http.close()
    result: dict[str, Any] = {
        "phase": kind,
        "ok": counts["ok"],
        "per_s": counts["ok"] / elapsed,
        "conflicts": counts["conflicts"],
        "attempts_per_s": (counts["ok"] + counts["conflicts"]) / elapsed,
    }
    if kind not in ("get", "rest-get"):
        written = sum(after[n] - before[n] for n in after)
        result["versions_moved"] = written
        result["lost_updates"] = counts["ok"] - written
    return result


async def run(port: int, writers: int, duration: float) -> list[dict[str, Any]]:
    http = await Http.open(port, 1)
    status, body = await http.post("/api/devices", {"serial": SERIAL})
    assert status == 201, body
    await call(http, "devices_SetProperty", {"deviceId": SERIAL, "name": "shared", "value": 0})
    http.close()
    results = []
    for kind in ("rest-get", "get", "set", "cas", "cas-own"):
        results.append(await phase(port, writers, duration, kind))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writers", type=int, default=10)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nxg-prop-bench-") as tmp:
        proc, port = start_server(Path(tmp))
        try:
            results = asyncio.run(run(port, args.writers, args.duration))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    rest = next(r for r in results if r["phase"] == "rest-get")["per_s"]
    sets = next(r for r in results if r["phase"] == "set")["per_s"]
    print(f"{args.writers} workers, {args.duration:g} s per phase; ratio: reads / rest-get, writes / set (this run)")
    print(f"{'phase':8} {'ok/s':>8} {'ratio':>6} {'conflicts':>9} {'attempts/s':>10} {'lost':>5}")
    for r in results:
        lost = r.get("lost_updates", "-")
        print(
            f"{r['phase']:8} {r['per_s']:8.0f} {r['per_s'] / (rest if r['phase'].endswith('get') else sets):6.2f}"
            f" {r['conflicts']:9d}"
            f" {r['attempts_per_s']:10.0f} {lost!s:>5}"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    if any(r.get("lost_updates", 0) != 0 for r in results):
        raise SystemExit("lost updates: the final version differs from the number of successful sets")


if __name__ == "__main__":
    main()
