"""Screenshot of the developer portal with live traffic, for the README: docs/portal.png.

    .venv/bin/python scripts/screenshot.py [output.png]

Starts `nxg-mqtt serve` on free ports in a temporary directory, opens the portal in Debian's
Chromium (headless), connects with the admin password, registers a device, pairs the gateway
simulator with its code, sends telemetry and status, and a command that the simulator acks.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.bridge.portal_browser import chromium, open_page, serve

PASSWORD = "screenshot-pw"


async def shoot(portal: str, out: Path) -> None:
    async with chromium() as browser, open_page(browser, width=1280, height=900) as page:
        await page.goto(portal)
        await page.get_by_label("Password or API key").fill(PASSWORD)
        await page.get_by_role("button", name="Connect", exact=True).click()
        await page.locator("#conn-status", has_text="Connected").wait_for()
        await page.fill("#reg-serial", "esp32-kitchen")
        await page.click("#register button[type=submit]")
        await page.locator("#reg-out-code").filter(has_text="-").wait_for()
        await page.click("#sim-go")
        await page.locator("#sim-status", has_text="Connected").wait_for()
        for temp in (21.8, 22.1, 22.5):
            await page.fill("#sim-body", f'{{"temp": {temp}, "hum": 41}}')
            await page.click("#sim-send-btn")
        await page.select_option("#sim-kind", "status")
        await page.click("#sim-send-btn")
        await page.click("#cmd-send")
        await page.locator("#cmd-result", has_text='"t":"ack"').wait_for()
        await page.locator("#live-app .rows li").first.click()
        await page.evaluate("window.scrollTo(0, 0)")  # the header is sticky
        out.parent.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(out), full_page=True)


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/portal.png")
    with tempfile.TemporaryDirectory() as data, serve(Path(data), PASSWORD) as server:
        asyncio.run(shoot(server.portal, out))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
