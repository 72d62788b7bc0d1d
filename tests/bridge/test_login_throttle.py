"""Wrong admin passwords are limited per source address before any hashing (issue 7).

A guesser on 127.0.0.2 gets 429 with Retry-After once over the limit, and its refused guesses run
no PBKDF2; 127.0.0.1 logs in meanwhile, on REST and on WebSocket upgrades alike.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from nxg_mqtt.ratelimit import FailureThrottle
from tests.bridge.helpers import Stack, open_stack, still_open
from tests.factories import PASSWORD, make_settings

LIMIT = 3
GUESSER = "127.0.0.2"


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with open_stack(make_settings(tmp_path, admin_failures_per_minute=LIMIT)) as value:
        yield value


def client_from(stack: Stack, address: str, password: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=stack.base,
        transport=httpx.AsyncHTTPTransport(local_address=address),
        headers={"Authorization": f"Bearer {password}"},
    )


async def test_rest_guessing_is_429_before_hashing_and_others_log_in(stack: Stack) -> None:
    auth = stack.bridge.state.auth
    async with client_from(stack, GUESSER, "guess") as guesser, client_from(stack, "127.0.0.2", PASSWORD) as same:
        for _ in range(LIMIT):
            assert (await guesser.get("/api/devices")).status_code == 401
        hashed = auth.hashes
        for _ in range(20):
            refused = await guesser.get("/api/devices")
            assert refused.status_code == 429
            assert 1 <= int(refused.headers["Retry-After"]) <= 60
            assert "too many wrong passwords" in refused.json()["error"]
        assert auth.hashes == hashed  # not one PBKDF2 for the refused guesses
        # the right password from the throttled address, never verified before: waits too
        assert (await same.get("/api/devices")).status_code == 429
        # another address is not slowed, and logs in
        async with client_from(stack, "127.0.0.1", PASSWORD) as admin:
            assert (await admin.get("/api/devices")).status_code == 200
        async with client_from(stack, "127.0.0.1", "typo") as other:
            assert (await other.get("/api/devices")).status_code == 401  # a plain 401, not 429
        # once verified, the password passes from the throttled address too (a SHA-256 lookup)
        assert (await same.get("/api/devices")).status_code == 200
        assert (await guesser.get("/api/devices")).status_code == 429


async def test_requests_without_a_credential_are_not_counted(stack: Stack) -> None:
    async with httpx.AsyncClient(
        base_url=stack.base, transport=httpx.AsyncHTTPTransport(local_address=GUESSER)
    ) as anonymous:
        for _ in range(LIMIT * 3):
            assert (await anonymous.get("/api/devices")).status_code == 401
    async with client_from(stack, GUESSER, PASSWORD) as admin:
        assert (await admin.get("/api/devices")).status_code == 200


async def test_websocket_upgrade_guessing_is_429(stack: Stack) -> None:
    for _ in range(LIMIT):
        with pytest.raises(InvalidStatus) as refused:
            await connect(stack.ws_url("/ws/app?token=guess"), local_addr=(GUESSER, 0))
        assert refused.value.response.status_code == 401
    hashed = stack.bridge.state.auth.hashes
    for query in ("?token=guess", f"?token={PASSWORD}"):
        with pytest.raises(InvalidStatus) as refused:
            await connect(stack.ws_url("/ws/app" + query), local_addr=(GUESSER, 0))
        assert refused.value.response.status_code == 429
        assert int(refused.value.response.headers["Retry-After"]) >= 1
    assert stack.bridge.state.auth.hashes == hashed
    # REST counts the same failures: the address is throttled there too
    async with client_from(stack, GUESSER, "guess") as guesser:
        assert (await guesser.get("/api/devices")).status_code == 429
    ws = await connect(stack.ws_url(f"/ws/app?token={PASSWORD}"), local_addr=("127.0.0.1", 0))
    await still_open(ws)
    await ws.close()


def test_throttle_window_slides() -> None:
    throttle = FailureThrottle(limit=2, window_s=60)
    assert throttle.retry_after("a", 0) is None
    throttle.fail("a", 0)
    throttle.fail("a", 10)
    assert throttle.retry_after("a", 10) == 50
    assert throttle.retry_after("b", 10) is None
    assert throttle.retry_after("a", 60.5) is None  # the first failure left the window: one more try
    throttle.fail("a", 61)
    assert throttle.retry_after("a", 61) == 9
    assert throttle.retry_after("a", 200) is None
    assert FailureThrottle(limit=0).retry_after("a", 0) is None
