"""The per-device command bound on every surface that creates commands, as users reach them: the
`nxg-mqtt cmd` CLI (exit code 75 and a QUEUE_FULL error) and `/ws/app` of a real `nxg-mqtt serve`
process started with `--command-queue-limit` ({"t":"error","code":"QUEUE_FULL"})."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from websockets.asyncio.client import connect

CLI = [sys.executable, "-m", "nxg_mqtt.cli"]


def _cli(data: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args, "--data", str(data)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **(env or {})},
    )


def test_cli_cmd_refuses_beyond_the_queue_limit(tmp_path: Path) -> None:
    assert _cli(tmp_path, "device", "create", "--serial", "cq-1").returncode == 0
    limit = {"NXG_COMMAND_QUEUE_LIMIT": "2"}
    for _ in range(2):
        done = _cli(tmp_path, "cmd", "cq-1", "--action", "open", env=limit)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["status"] == "queued"
    refused = _cli(tmp_path, "cmd", "cq-1", "--action", "open", env=limit)
    assert refused.returncode == 75, refused.stderr  # EX_TEMPFAIL: try again later
    error = json.loads(refused.stderr.strip().splitlines()[-1])
    assert error["code"] == "QUEUE_FULL" and "cq-1" in error["error"]
    # the default (1,000) lets the next one in
    assert _cli(tmp_path, "cmd", "cq-1", "--action", "open").returncode == 0


async def test_ws_app_answers_queue_full(tmp_path: Path) -> None:
    assert _cli(tmp_path, "device", "create", "--serial", "cq-2").returncode == 0
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "serve",
        "--host",
        "127.0.0.1",
        "--mqtt-port",
        "0",
        "--no-ws",
        "--http-port",
        "0",
        "--admin-password",
        "pw",
        "--command-queue-limit",
        "2",
        "--data",
        str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    try:
        port = None
        async with asyncio.timeout(30):
            while port is None:
                line = await proc.stdout.readline()
                assert line, "serve exited before listening"
                match = re.search(rb"HTTP\s+http://[^\s:]+:(\d+)", line)
                port = int(match.group(1)) if match else None
        async with connect(f"ws://127.0.0.1:{port}/ws/app?token=pw") as app:
            replies = []
            for ref in ("a", "b", "c"):
                await app.send(json.dumps({"t": "cmd", "serial": "cq-2", "action": "open", "ref": ref}))
                async with asyncio.timeout(5):
                    while True:
                        reply = json.loads(await app.recv())
                        if reply.get("ref") == ref:
                            replies.append(reply)
                            break
        assert [r["t"] for r in replies] == ["cmd_accepted", "cmd_accepted", "error"]
        assert replies[2]["code"] == "QUEUE_FULL" and "cq-2" in replies[2]["error"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), timeout=15) == 0
