"""`--log-format json`: every line of a running server's log is one JSON object (uvicorn's too),
and the access log never shows a credential from the query string."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from pathlib import Path

import httpx


async def test_json_logs_with_a_redacted_access_log(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "nxg_mqtt",
        "serve",
        *("--host", "127.0.0.1", "--mqtt-port", "0", "--no-ws", "--http-port", "0", "--data", str(tmp_path)),
        *("--log-format", "json", "--log-level", "info"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    banner = ""
    while "Data" not in banner:
        banner += (await asyncio.wait_for(proc.stdout.readline(), timeout=30)).decode()
    match = re.search(r"HTTP +http://127\.0\.0\.1:(\d+)/", banner)
    assert match, banner
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{match.group(1)}", timeout=5) as http:
        assert (await http.get("/health/live?token=s3cret-token&api_key=k3y&x=1")).status_code == 200
    await asyncio.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), timeout=15)
    assert await proc.wait() == 0
    lines = [json.loads(line) for line in err.decode().splitlines() if line.strip()]
    assert lines and all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    access = [line for line in lines if line["logger"] == "uvicorn.access"]
    assert access and "/health/live?token=***&api_key=***&x=1" in access[0]["message"]
    assert "s3cret" not in err.decode() and "k3y" not in err.decode()
