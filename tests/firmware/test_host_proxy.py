"""The host firmware client's page through the server's HTTP proxy (seed 003's proxy tokens): a
real `nxg-mqtt serve`, the C client under ASan + UBSan, a token from devices_IssueHttpProxyToken,
and `GET /` answered by the device with its status; an expired token is refused."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from tests.firmware.helpers import PASSWORD, Device, Server


async def test_proxy_fetches_the_host_clients_page(binary: Path, server: Server, tmp_path: Path) -> None:
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{server.http_port}", headers={"Authorization": f"Bearer {PASSWORD}"}, timeout=10
    ) as http:
        code = (await http.post("/api/devices", json={"serial": "fw-page"})).json()["code"]
        args = ["--host", "127.0.0.1", "--port", str(server.mqtt_port), "--code", code,
                "--store", str(tmp_path / "token"), "--interval-ms", "60000"]  # fmt: skip
        device = Device(binary, args)
        try:
            await device.start()
            await device.wait_line("^connected$")
            invoke = "/api/v1/actions/invoke/"
            issued = await http.post(invoke + "devices_IssueHttpProxyToken", json={"deviceId": "fw-page"})
            url = issued.json()["url"]
            short = await http.post(
                invoke + "devices_IssueHttpProxyToken", json={"deviceId": "fw-page", "validForSecs": 1}
            )
            async with httpx.AsyncClient(timeout=10) as browser:  # the token is the only credential
                page = await browser.get(url)
                assert page.status_code == 200, page.text
                assert page.headers["content-type"] == "application/json"
                status = page.json()
                assert (status["serial"], status["state"], status["turn1"], status["led"]) == (
                    "fw-page",
                    "online",
                    "closed",
                    "off",
                )
                assert isinstance(status["uptime_s"], int)
                assert (await browser.get(url + "nothing-here")).status_code == 404
                await asyncio.sleep(2.1)  # the short token expires
                expired = await browser.get(short.json()["url"])
                assert expired.status_code == 401
        finally:
            code_, stderr = await device.stop()
            assert code_ == 0, stderr
            assert "runtime error" not in stderr and "Sanitizer" not in stderr, stderr
