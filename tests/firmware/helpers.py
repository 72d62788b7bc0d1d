"""The firmware's host client (`nxg-device`) and a real `nxg-mqtt serve` process, as a user runs them."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIRMWARE = ROOT / "firmware"
CLI = [sys.executable, "-m", "nxg_mqtt.cli"]
PASSWORD = "fw-admin-pw"


def build_host_client() -> Path:
    """`make -C firmware SANITIZE=1 host`: the host client under ASan + UBSan (any finding aborts it).

    Under a lock: the suite runs over several pytest-xdist workers, and two `make`s writing the
    same objects at once would hand one of them a half-written binary."""
    (FIRMWARE / "build").mkdir(exist_ok=True)
    with (FIRMWARE / "build" / ".host.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = subprocess.run(
            ["make", "-C", str(FIRMWARE), "SANITIZE=1", "host"], capture_output=True, text=True, timeout=300
        )
    assert done.returncode == 0, done.stdout + done.stderr
    binary = FIRMWARE / "build" / "sanitize" / "nxg-device"
    assert binary.exists()
    return binary


@dataclass
class Server:
    """`nxg-mqtt serve` on port 0 (or the ports of an earlier run, to restart in place)."""

    data: Path
    mqtt_port: int = 0
    http_port: int = 0
    proc: asyncio.subprocess.Process | None = None
    started_at: float = 0.0  # when the process was started
    ready_at: float = 0.0  # when it printed its banner (the broker listens a little earlier)
    extra: list[str] = field(default_factory=list)  # more `serve` flags

    async def start(self) -> None:
        self.started_at = time.monotonic()
        self.proc = await asyncio.create_subprocess_exec(
            *CLI,
            "serve",
            "--host",
            "127.0.0.1",
            "--mqtt-port",
            str(self.mqtt_port),
            "--ws-port",
            "0",
            "--http-port",
            str(self.http_port),
            "--admin-password",
            PASSWORD,
            "--ws-ping-interval",
            "1",
            "--ws-pong-timeout",
            "3",
            "--data",
            str(self.data),
            *self.extra,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert self.proc.stdout is not None
        ports: dict[str, int] = {}
        async with asyncio.timeout(30):
            while len(ports) < 2:
                line = (await self.proc.stdout.readline()).decode()
                assert line, "serve exited before listening"
                match = re.search(r"^\s+(MQTT|HTTP)\s+\w+://[^\s:]+:(\d+)", line)
                if match:
                    ports[match.group(1)] = int(match.group(2))
        self.mqtt_port, self.http_port = ports["MQTT"], ports["HTTP"]
        self.ready_at = time.monotonic()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(self.proc.wait(), timeout=15) == 0
        self.proc = None


@dataclass
class Device:
    """One run of `nxg-device`; its stdout lines are collected with their arrival time."""

    binary: Path
    args: list[str]
    proc: asyncio.subprocess.Process | None = None
    lines: list[tuple[float, str]] = field(default_factory=list)
    _reader: asyncio.Task[None] | None = None
    _stderr: asyncio.Task[bytes] | None = None

    async def start(self) -> None:
        self.lines = []
        self.proc = await asyncio.create_subprocess_exec(
            str(self.binary), *self.args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        self._reader = asyncio.create_task(self._read())
        assert self.proc.stderr is not None
        self._stderr = asyncio.create_task(self.proc.stderr.read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.lines.append((time.monotonic(), line.decode().rstrip("\n")))

    def count(self, pattern: str, since: int = 0) -> int:
        return sum(1 for _, line in self.lines[since:] if re.search(pattern, line))

    async def wait_line(self, pattern: str, since: int = 0, within_s: float = 15.0) -> tuple[int, float]:
        """Index and arrival time of the first line at or after `since` matching `pattern`."""
        async with asyncio.timeout(within_s):
            while True:
                for index in range(since, len(self.lines)):
                    at, line = self.lines[index]
                    if re.search(pattern, line):
                        return index, at
                assert self.proc is not None
                assert self.proc.returncode is None, f"nxg-device exited: {self.text()}"
                await asyncio.sleep(0.02)

    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)

    async def stop(self) -> tuple[int, str]:
        """SIGTERM; its exit code and stderr (where the sanitizers would report)."""
        assert self.proc is not None and self._reader is not None and self._stderr is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.proc.wait(), timeout=15)
        await asyncio.wait_for(self._reader, timeout=5)
        stderr = (await asyncio.wait_for(self._stderr, timeout=5)).decode(errors="replace")
        return code, stderr

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        for task in (self._reader, self._stderr):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
