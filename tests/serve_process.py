"""`nxg-mqtt serve` as a real child process, for the tests that need the whole command: its banner
(the bound ports are printed there, port 0 is chosen by the process) and its JSON log lines."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from typing import Any


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
