"""A bridge on another broker (Mosquitto here) answers what devices send for an answer: property
reports on `nxg/{S}/prop/set` and proxy answers on `nxg/{S}/http/res` reach the same core
services as with the embedded broker."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from bridge.server import open_bridge
from nxg_mqtt.cli import ensure_admin_password
from nxg_mqtt.core import open_core
from tests.bridge.helpers import PASSWORD
from tests.factories import make_settings
from tests.mqtt_client import TestClient

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def mosquitto(directory: Path) -> Iterator[int]:
    if not Path(MOSQUITTO).exists():
        pytest.skip("mosquitto is not installed")
    port = free_port()
    conf = directory / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "mosquitto did not start"
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
async def external(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, int]]:
    settings = make_settings(tmp_path)
    with mosquitto(tmp_path) as port:
        async with open_core(settings, writer=True) as core:
            await ensure_admin_password(core)
            async with (
                open_bridge(settings, core, "127.0.0.1", port, embedded=False) as bridge,
                httpx.AsyncClient(
                    base_url=f"http://127.0.0.1:{bridge.http_port}",
                    headers={"Authorization": f"Bearer {PASSWORD}"},
                    timeout=5,
                ) as http,
            ):
                yield http, port


async def test_property_reports_and_proxy_answers_on_mosquitto(external: tuple[httpx.AsyncClient, int]) -> None:
    http, port = external
    assert (await http.post("/api/devices", json={"serial": "ext-1"})).status_code == 201
    device = TestClient("ext-1")
    try:
        assert await device.connect(port, "ext-1", "-") == 0  # Mosquitto here is open: the ACL is not under test
        for topic in ("nxg/ext-1/prop/res", "nxg/ext-1/http/req"):
            assert await device.subscribe(topic) == [1]
        await device.publish("nxg/ext-1/prop/set", json.dumps({"id": "r1", "name": "mode", "value": "eco"}))
        reply = await device.next_message()
        assert (reply.topic, json.loads(reply.payload)) == (
            "nxg/ext-1/prop/res",
            {"id": "r1", "result": "Set", "version": 1},
        )
        got = await http.post("/api/v1/actions/invoke/devices_GetProperty", json={"deviceId": "ext-1", "name": "mode"})
        assert (got.json()["value"], got.json()["version"]) == ("eco", 1)

        url = (
            await http.post("/api/v1/actions/invoke/devices_IssueHttpProxyToken", json={"deviceId": "ext-1"})
        ).json()["url"]

        async def serve_one() -> None:
            request = json.loads((await device.next_message()).payload)
            body = base64.b64encode(b"hello from ext-1").decode()
            await device.publish(
                "nxg/ext-1/http/res", json.dumps({"id": request["id"], "status": 200, "body_b64": body})
            )

        answering = asyncio.create_task(serve_one())
        async with httpx.AsyncClient(timeout=5) as browser:
            page = await browser.get(url)
        await answering
        assert page.status_code == 200 and page.content == b"hello from ext-1"
    finally:
        device.close()
