"""The HTTP proxy to devices: `/proxy/{jwt}/…` carried over `nxg/{S}/http/req` → `http/res`,
refusals for bad and expired tokens (401, or the token's redirect), a silent device (504), and
body limits both ways. The device here is paho; tests/firmware has the C host client's page."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path

import httpx
import jwt

from nxg_mqtt.services.device_tokens import ALGORITHM, ISSUER
from tests.bridge.helpers import Stack, open_stack
from tests.bridge.v1.helpers import ok, online_device
from tests.factories import make_settings
from tests.mqtt_client import Clients, TestClient


async def answer_requests(device: TestClient, serial: str, count: int) -> list[dict[str, object]]:
    """Play a device's web server: answer `count` requests, each with what it was asked."""
    seen: list[dict[str, object]] = []
    while len(seen) < count:
        message = await device.next_message()
        if message.topic != f"nxg/{serial}/http/req":
            continue
        request = json.loads(message.payload)
        seen.append(request)
        body = json.dumps({"you_asked": request["path"], "method": request["method"]}).encode()
        answer = {
            "id": request["id"],
            "status": 200 if request["path"] != "/missing" else 404,
            "headers": {"content-type": "application/json", "x-device": serial},
            "body_b64": base64.b64encode(body).decode(),
        }
        await device.publish(f"nxg/{serial}/http/res", json.dumps(answer))
    return seen


async def test_proxy_carries_requests_to_the_device(stack: Stack, paho: Clients) -> None:
    device, _ = await online_device(stack, paho, "px-d")
    assert await device.subscribe("nxg/px-d/http/req") == [1]
    issued = await ok(stack, "devices_IssueHttpProxyToken", {"deviceId": "px-d", "port": 8080})
    worker = asyncio.create_task(answer_requests(device, "px-d", 3))
    async with httpx.AsyncClient(timeout=5) as browser:  # no credential: the token is the credential
        page = await browser.get(issued["url"] + "status?x=1", headers={"X-Trace": "t1"})
        posted = await browser.post(issued["url"] + "form", content=b"a=1")
        missing = await browser.get(issued["url"] + "missing")
    seen = await asyncio.wait_for(worker, 5)
    assert page.status_code == 200 and page.json() == {"you_asked": "/status?x=1", "method": "GET"}
    assert page.headers["x-device"] == "px-d" and page.headers["content-type"] == "application/json"
    assert posted.json()["method"] == "POST" and missing.status_code == 404
    first = seen[0]
    assert first["port"] == 8080 and first["body_b64"] == ""
    headers = first["headers"]
    assert isinstance(headers, dict) and headers["x-trace"] == "t1" and "host" not in headers
    assert base64.b64decode(str(seen[1]["body_b64"])) == b"a=1"


async def test_bad_and_expired_tokens(stack: Stack) -> None:
    await stack.create_device("px-e")
    device = await stack.core.devices.get("px-e")
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": "px-e", "tid": "default", "typ": "http_proxy", "dct": device.created_at}
    expired = jwt.encode({**claims, "iat": now - 60, "exp": now - 1, "port": 80}, stack.core.tokens.key, ALGORITHM)
    with_redirect = jwt.encode(
        {**claims, "iat": now - 60, "exp": now - 1, "redirect": "https://example.com/login"},
        stack.core.tokens.key,
        ALGORITHM,
    )
    device_token = (await ok(stack, "devices_IssueDeviceToken", {"deviceId": "px-e"}))["jwt"]
    async with httpx.AsyncClient(base_url=stack.base, timeout=5, follow_redirects=False) as browser:
        for token in (expired, "garbage", device_token):
            refused = await browser.get(f"/proxy/{token}/")
            assert refused.status_code == 401 and refused.json() == {"error": "invalid or expired proxy token"}
        redirected = await browser.get(f"/proxy/{with_redirect}/page")
        assert redirected.status_code == 302 and redirected.headers["location"] == "https://example.com/login"
        # a token that is not ours never chooses the redirect
        foreign = jwt.encode(
            {**claims, "iat": now, "exp": now - 1, "redirect": "https://evil.example"}, "k" * 32, "HS256"
        )
        assert (await browser.get(f"/proxy/{foreign}/")).status_code == 401


async def test_silent_device_is_504_and_bodies_are_limited(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, proxy_timeout_s=0.5, proxy_max_body_bytes=1024)
    async with open_stack(settings) as stack:
        clients = Clients()
        try:
            device, _ = await online_device(stack, clients, "px-s")
            assert await device.subscribe("nxg/px-s/http/req") == [1]
            url = (await ok(stack, "devices_IssueHttpProxyToken", {"deviceId": "px-s"}))["url"]
            async with httpx.AsyncClient(timeout=5) as browser:
                started = time.monotonic()
                silent = await browser.get(url)
                assert silent.status_code == 504 and time.monotonic() - started < 2.0
                assert (await browser.post(url, content=b"x" * 1025)).status_code == 413
                request = json.loads((await device.next_message()).payload)  # the one that timed out
                assert request["method"] == "GET"

                async def too_big() -> None:
                    message = await device.next_message()
                    req = json.loads(message.payload)
                    big = base64.b64encode(b"y" * 1025).decode()
                    await device.publish(
                        "nxg/px-s/http/res", json.dumps({"id": req["id"], "status": 200, "body_b64": big})
                    )

                task = asyncio.create_task(too_big())
                answer = await browser.get(url)
                await task
                assert answer.status_code == 502 and "larger than 1024" in answer.json()["error"]
        finally:
            await clients.close_all()
