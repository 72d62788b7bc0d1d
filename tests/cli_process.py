"""`nxg-mqtt` commands as real child processes, for the tests that need the whole command: the
bound ports they print (port 0 is chosen by the process), `serve`'s banner and its JSON log lines."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from pathlib import Path
from typing import Any

CLI = [sys.executable, "-m", "nxg_mqtt.cli"]


async def start_cli(
    data: Path, *args: str, pattern: bytes, env: dict[str, str]
) -> tuple[asyncio.subprocess.Process, int]:
    """`nxg-mqtt ARGS --host 127.0.0.1 --data DATA` (stderr discarded); the port that `pattern`'s
    group reads from the first line it prints."""
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        *args,
        "--host",
        "127.0.0.1",
        "--data",
        str(data),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=env,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
    match = re.search(pattern, line)
    assert match, line
    return proc, int(match.group(1))


async def stop_cli(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM, and the process must exit 0 (a clean stop) within 10 s."""
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), timeout=10) == 0


async def read_until(stream: asyncio.StreamReader, needle: str, seen: list[str]) -> str:
    """The first line holding `needle`; every line read is appended to `seen` (shown if the
    stream ends first, so a server that died at start fails with its output, not a hang)."""
    while True:
        line = (await asyncio.wait_for(stream.readline(), timeout=30)).decode()
        assert line, "".join(seen)
        seen.append(line)
        if needle in line:
            return line


async def start_serve(*args: str) -> tuple[asyncio.subprocess.Process, str]:
    """`python -m nxg_mqtt serve ARGS` with stdout and stderr piped; returns the process and its
    banner (stdout up to the `Data` line, the last line before the admin password)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "nxg_mqtt",
        "serve",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    banner: list[str] = []
    await read_until(proc.stdout, "Data", banner)
    return proc, "".join(banner)


async def stop_serve(proc: asyncio.subprocess.Process, timeout: float = 15) -> str:
    """SIGTERM (a clean stop), then all of stderr, decoded."""
    proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), timeout=timeout)
    return err.decode()


def json_lines(text: str) -> list[dict[str, Any]]:
    """A `--log-format json` log: one JSON object per non-blank line."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]
