"""Helpers for the portal's browser tests: `nxg-mqtt serve` on port 0 and Debian's Chromium.

Playwright drives the system Chromium (`apt-get install chromium`, see scripts/setup.sh); it never
downloads a browser. Both are shared with scripts/screenshot.py.
"""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from playwright.async_api import Browser, Page, async_playwright

CHROMIUM = os.environ.get("NXG_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
START_S = 30.0
CLI = [sys.executable, "-m", "nxg_mqtt.cli"]


@dataclass
class Server:
    proc: subprocess.Popen[str]
    portal: str  # http://127.0.0.1:<port>/
    mqtt_port: int
    banner: list[str] = field(default_factory=list)

    @property
    def http_port(self) -> int:
        return int(self.portal.rsplit(":", 1)[1].strip("/"))


@contextmanager
def serve(data: Path, password: str, http_port: int = 0, *extra: str) -> Iterator[Server]:
    """`nxg-mqtt serve` on port 0 (MQTT; HTTP unless given; no MQTT/WebSocket): yields once its banner is out."""
    ports = ["--host", "127.0.0.1", "--mqtt-port", "0", "--http-port", str(http_port), "--no-ws"]
    proc = subprocess.Popen(
        [*CLI, "serve", *ports, *extra, "--admin-password", password, "--data", str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    reader: threading.Thread | None = None
    try:
        assert proc.stdout is not None
        # a reader thread: select() cannot see lines already in the pipe's text buffer
        lines: queue.Queue[str] = queue.Queue()
        stdout = proc.stdout

        def read() -> None:
            for line in stdout:
                lines.put(line)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        banner: list[str] = []
        deadline = time.monotonic() + START_S
        while not any(line.strip().startswith("Admin password") for line in banner):
            try:
                banner.append(lines.get(timeout=max(0.01, deadline - time.monotonic())).rstrip("\n"))
            except queue.Empty:
                raise AssertionError(f"nxg-mqtt serve did not print its banner: {banner}") from None
        text = "\n".join(banner)
        portal = re.search(r"Portal\s+(http://\S+/)", text)
        mqtt = re.search(r"MQTT\s+mqtt://\S+:(\d+)", text)
        assert portal and mqtt, text
        yield Server(proc, portal.group(1), int(mqtt.group(1)), banner)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            if reader is not None:
                reader.join(5)  # it ends at EOF, once the process has gone
            proc.stdout.close()


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@asynccontextmanager
async def open_page(browser: Browser, *, width: int = 1280, height: int = 900) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": width, "height": height}, accept_downloads=True)
    page = await context.new_page()
    page.set_default_timeout(5000)
    try:
        yield page
    finally:
        await context.close()


@asynccontextmanager
async def screenshot_on_failure(page: Page, directory: Path) -> AsyncIterator[None]:
    """On any exception inside, save the page to `directory/failure.png` (the test's tmp dir)."""
    try:
        yield
    except BaseException:
        try:
            await page.screenshot(path=str(directory / "failure.png"), full_page=True, timeout=5000)
            print(f"screenshot of the failing page: {directory / 'failure.png'}", file=sys.stderr)
        except Exception as exc:  # the screenshot must never hide the test's own failure
            print(f"could not take a screenshot: {exc}", file=sys.stderr)
        raise
