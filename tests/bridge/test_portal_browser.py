"""The developer portal in a real browser (issue 11): Debian's Chromium driven by Playwright,
against `nxg-mqtt serve` on port 0. Each test saves `failure.png` in its tmp dir when it fails."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Page, expect

from tests.bridge.portal_browser import Server, chromium, open_page, screenshot_on_failure, serve
from tests.mqtt_client import TestClient, pair_over_mqtt

PASSWORD = "portal-pw"
WAIT_MS = 5000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # pings every second: the simulator must answer them (and is closed after 3 s if it does not)
    with serve(
        tmp_path_factory.mktemp("portal-data"), PASSWORD, 0, "--ws-ping-interval", "1", "--ws-pong-timeout", "3"
    ) as value:
        yield value


@pytest.fixture
async def rest(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {PASSWORD}"}
    async with httpx.AsyncClient(base_url=server.portal.rstrip("/"), headers=headers, timeout=5.0) as client:
        yield client


@asynccontextmanager
async def portal(server: Server, tmp_path: Path, *, width: int = 1280) -> AsyncIterator[Page]:
    async with (
        chromium() as browser,
        open_page(browser, width=width) as page,
        screenshot_on_failure(page, tmp_path),
    ):
        await page.goto(server.portal)
        yield page


async def connect(page: Page, credential: str = PASSWORD) -> None:
    await page.get_by_label("Password or API key").fill(credential)
    await page.get_by_role("button", name="Connect", exact=True).click()


async def connected(page: Page) -> None:
    await connect(page)
    await expect(page.locator("#conn-status")).to_have_text("Connected", timeout=WAIT_MS)


async def register(page: Page, serial: str) -> str:
    await page.get_by_label("Serial (optional)").fill(serial)
    await page.get_by_role("button", name="Register device").click()
    await expect(page.locator("#reg-out-serial")).to_have_text(serial)
    code = await page.locator("#reg-out-code").text_content()
    assert code
    return code


def test_serve_prints_the_portal_url_first(server: Server) -> None:
    urls = [line for line in server.banner if "://" in line]
    assert urls[0].split()[0] == "Portal" and urls[0].split()[1] == server.portal


async def test_wrong_credential_shows_the_error_then_the_password_connects(
    server: Server, rest: httpx.AsyncClient, tmp_path: Path
) -> None:
    refused = (await rest.get("/api/devices", headers={"Authorization": "Bearer wrong"})).json()["error"]
    async with portal(server, tmp_path) as page:
        assert await page.title() == "NXG Developer Portal"
        await connect(page, "wrong")
        await expect(page.locator("#login-error")).to_have_text(refused)
        await expect(page.locator("#conn-status")).not_to_have_text("Connected")
        await expect(page.locator("#live-app")).to_have_text("Waiting for messages…")
        assert await page.evaluate("sessionStorage.length") == 0

        await connected(page)
        await expect(page.locator("#login-error")).to_have_text("")
        assert await page.evaluate("sessionStorage.getItem('nxg.credential')") == PASSWORD
        assert await page.context.cookies() == [] and PASSWORD not in page.url
        await page.reload()  # the tab keeps its credential for the session
        await expect(page.locator("#conn-status")).to_have_text("Connected", timeout=WAIT_MS)
        # the REST table is generated from the app's routes
        await expect(page.locator("#rest-table tbody tr").first).to_contain_text("/api/devices")
        await expect(page.locator("#code-c")).to_contain_text("nxg_client")
        await expect(page.locator("#code-ts")).to_contain_text("/ws/app")


async def test_register_a_device_and_download_its_config_h(
    server: Server, rest: httpx.AsyncClient, tmp_path: Path
) -> None:
    async with portal(server, tmp_path) as page:
        await connected(page)
        code = await register(page, "Portal-Reg")
        assert (await rest.get("/api/devices/Portal-Reg/code")).json()["code"] == code
        async with page.expect_download() as info:
            await page.get_by_role("button", name="Download config.h").click()
        download = await info.value
        assert download.suggested_filename == "config.h"
        saved = tmp_path / "config.h"
        await download.save_as(saved)
        assert saved.read_text() == (await rest.get("/api/devices/Portal-Reg/config.h")).text
        assert f'#define NXG_CONNECTION_CODE   "{code}"' in saved.read_text()


async def test_simulator_pairs_sends_telemetry_and_acks_a_command_from_the_form(
    server: Server, rest: httpx.AsyncClient, tmp_path: Path
) -> None:
    async with portal(server, tmp_path) as page:
        await connected(page)
        await register(page, "Portal-Sim")
        sim_status = page.locator("#sim-status")
        await expect(sim_status).to_have_text("Disconnected")
        await page.get_by_role("button", name="Connect simulator").click()  # the code is filled in
        await expect(sim_status).to_contain_text("Connected", timeout=WAIT_MS)
        devices = page.locator("#live-devices")
        await expect(devices).to_contain_text('"t":"device_online","serial":"Portal-Sim"')
        assert (await rest.get("/api/devices/Portal-Sim")).json()["online"] is True

        await page.get_by_label("Fields (JSON)").fill('{"temp": 23.75}')
        await page.get_by_role("button", name="Send", exact=True).click()
        for pane in (devices, page.locator("#live-app")):
            await expect(
                pane.locator("li", has_text='"serial":"Portal-Sim"').filter(has_text='"temp":23.75')
            ).to_have_count(1)

        await expect(page.get_by_label("Serial", exact=True)).to_have_value("Portal-Sim")
        await page.get_by_label("Action").fill("open")
        await page.get_by_role("button", name="Send command").click()
        result = page.locator("#cmd-result")
        await expect(result).to_contain_text('"t":"cmd_accepted"', timeout=WAIT_MS)
        await expect(result).to_contain_text('"t":"ack"', timeout=WAIT_MS)
        command_id = json.loads(
            next(line[2:] for line in (await result.inner_text()).splitlines() if "cmd_accepted" in line)
        )["id"]
        log = page.locator("#sim-log")
        await expect(log.locator("li", has_text='← {"t":"cmd"').filter(has_text=command_id)).to_have_count(1)
        await expect(log.locator("li", has_text='→ {"t":"ack"').filter(has_text=command_id)).to_have_count(1)
        await expect(log.locator("li", has_text='→ {"t":"pong"}').first).to_be_visible(timeout=WAIT_MS)
        ack = page.locator("#live-app li", has_text='"t":"ack"').filter(has_text=command_id)
        await expect(ack).to_have_count(1)
        await ack.locator("button").click()  # its full JSON
        detail = json.loads(await page.locator("#app-detail").inner_text())
        assert detail["t"] == "ack" and detail["id"] == command_id and detail["serial"] == "Portal-Sim"

        # a refused command shows the server's error
        await page.get_by_label("Serial", exact=True).fill("Portal-Nobody")
        await page.get_by_role("button", name="Send command").click()
        await expect(result).to_contain_text('"code":"DEVICE_NOT_FOUND"', timeout=WAIT_MS)

        # later connects authenticate with the token that pairing stored
        await page.get_by_role("button", name="Disconnect").click()
        await expect(sim_status).to_have_text("Disconnected")
        await page.get_by_label("Connection code").fill("")
        assert await page.get_by_label("or token").input_value()
        await page.get_by_role("button", name="Connect simulator").click()
        await expect(log.locator("li", has_text='← {"t":"auth_ok"')).to_have_count(1, timeout=WAIT_MS)
        await expect(sim_status).to_contain_text("Connected")


async def _mqtt_device(server: Server, rest: httpx.AsyncClient, serial: str) -> TestClient:
    code = (await rest.post("/api/devices", json={"serial": serial})).json()["code"]
    token = (await pair_over_mqtt(server.mqtt_port, code, "p-" + serial))["token"]
    device = TestClient(serial)
    assert await device.connect(server.mqtt_port, serial, token) == 0
    return device


async def test_a_real_mqtt_devices_telemetry_appears_and_its_strings_stay_text(
    server: Server, rest: httpx.AsyncClient, tmp_path: Path
) -> None:
    async with portal(server, tmp_path) as page:
        await connected(page)
        device = await _mqtt_device(server, rest, "Portal-Mqtt")
        try:
            await device.publish("nxg/Portal-Mqtt/telemetry", '{"temp": 19.25}')
            await device.publish("nxg/Portal-Mqtt/status", '{"note": "<img src=x id=pwned>"}')
            devices = page.locator("#live-devices")
            await expect(devices.locator("li", has_text='"temp":19.25')).to_have_count(1, timeout=WAIT_MS)
            await expect(devices).to_contain_text("<img src=x id=pwned>", timeout=WAIT_MS)
            assert await page.locator("#pwned").count() == 0
            await devices.locator("li", has_text='"temp":19.25').locator("button").click()
            detail = json.loads(await page.locator("#device-detail").inner_text())
            assert detail == {**detail, "t": "telemetry", "serial": "Portal-Mqtt", "temp": 19.25}
        finally:
            device.close()


async def test_a_burst_of_500_messages_keeps_the_page_responsive(
    server: Server, rest: httpx.AsyncClient, tmp_path: Path
) -> None:
    async with portal(server, tmp_path) as page:
        await connected(page)
        device = await _mqtt_device(server, rest, "Portal-Burst")
        app = page.locator("#live-app")
        try:
            for i in range(500):
                device.publish_nowait("nxg/Portal-Burst/telemetry", json.dumps({"n": i}))
            # mid-burst: a control answers its click within 1 s (rows move as they arrive, so not a row)
            started = time.monotonic()
            await page.get_by_label("Message").select_option("status", timeout=1000)
            await expect(page.get_by_label("Fields (JSON)")).to_have_value('{"door1": "closed"}', timeout=1000)
            assert time.monotonic() - started < 1.0
            await expect(app).to_have_attribute("data-received", "501", timeout=10_000)  # + device_online
            await expect(app.locator("li").first).to_contain_text('"n":499')
            await app.locator("li button").first.click()
            assert json.loads(await page.locator("#app-detail").inner_text())["n"] == 499
            assert await app.locator("li").count() <= 200  # the oldest are dropped
        finally:
            device.close()


async def test_readable_at_phone_width_with_a_label_on_every_control(server: Server, tmp_path: Path) -> None:
    async with portal(server, tmp_path, width=390) as page:
        assert await page.evaluate("document.documentElement.scrollWidth") <= 390
        unlabelled = await page.evaluate(
            """[...document.querySelectorAll('input, select, button')]
                 .filter(el => !(el.labels && el.labels.length))
                 .filter(el => !el.textContent.trim() && !el.getAttribute('aria-label'))
                 .map(el => el.id || el.outerHTML)"""
        )
        assert unlabelled == []


async def test_the_app_socket_reconnects_with_backoff_and_says_so(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with serve(data, PASSWORD) as first:
        port = first.http_port
        async with chromium() as browser, open_page(browser) as page, screenshot_on_failure(page, tmp_path):
            await page.goto(first.portal)
            await connected(page)
            first.proc.terminate()
            first.proc.wait(10)
            status = page.locator("#conn-status")
            await expect(status).to_contain_text("reconnecting in", timeout=WAIT_MS)
            with serve(data, PASSWORD, http_port=port):  # the same address, back again
                await expect(status).to_have_text("Connected", timeout=20_000)
