"""Every `/api/v1` response carries `X-API-Version: 1`, `X-Protocol-Version` and `X-Request-ID`
(the caller's, or a new UUID), also in the log line of the request; other paths carry none."""

from __future__ import annotations

import logging
import uuid

import httpx
import pytest

from bridge.v1.headers import ApiHeaders
from bridge.v1.system import PROTOCOL
from tests.bridge.helpers import Stack


async def test_api_v1_headers_on_success_and_error(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bridge.requests")
    async with httpx.AsyncClient(base_url=stack.base) as anonymous:
        responses = [
            await stack.http.get("/api/v1/version"),
            await stack.http.get("/api/v1/devices"),
            await anonymous.get("/api/v1/devices"),  # 401
            await stack.http.get("/api/v1/no/such/path"),  # 404
            await stack.http.post("/api/v1/homes", json={}),  # 400
        ]
    for response in responses:
        assert response.headers["X-API-Version"] == "1"
        assert response.headers["X-Protocol-Version"] == PROTOCOL
        assert uuid.UUID(response.headers["X-Request-ID"])
    assert len({r.headers["X-Request-ID"] for r in responses}) == len(responses)
    echoed = await stack.http.get("/api/v1/devices", headers={"X-Request-ID": "trace-42.a:b"})
    assert echoed.headers["X-Request-ID"] == "trace-42.a:b"
    assert any(
        "request_id=trace-42.a:b" in r.getMessage() and "/api/v1/devices" in r.getMessage() for r in caplog.records
    )
    # a request id that could forge a header or a log line is replaced, not echoed
    forged = await stack.http.get("/api/v1/devices", headers={"X-Request-ID": "x" * 300})
    assert uuid.UUID(forged.headers["X-Request-ID"])
    other = await stack.http.get("/api/devices")
    assert "X-API-Version" not in other.headers and "X-Request-ID" not in other.headers


async def test_an_api_v1_request_is_one_access_line(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    """Its `bridge.requests` line (peer, path with the query redacted, status, request id) stands
    for uvicorn's access line, which other paths keep."""
    caplog.set_level(logging.INFO)
    await stack.http.get("/api/v1/devices?token=s3cret&limit=2", headers={"X-Request-ID": "one-line"})
    await stack.http.get("/health?token=s3cret")
    served = [r for r in caplog.records if r.name != "httpx"]  # the client's own log
    api = [r for r in served if "/api/v1/devices" in r.getMessage()]
    assert [r.name for r in api] == ["bridge.requests"]
    assert api[0].getMessage() == "GET /api/v1/devices?token=***&limit=2 200 request_id=one-line"
    assert str(api[0].__dict__["peer"]).startswith("127.0.0.1:")
    health = [r for r in served if "/health" in r.getMessage()]
    assert [r.name for r in health] == ["uvicorn.access"]  # redacted by serve's logging (tests/test_logs.py)
    assert not any("s3cret" in r.getMessage() for r in api)


async def test_uvicorn_builds_no_access_record_for_an_api_v1_request(stack: Stack) -> None:
    """Not built and then dropped by `OneAccessLine`: never built (`one_write(logs_itself=…)`)."""
    seen: list[str] = []

    def count(record: logging.LogRecord) -> bool:
        seen.append(record.getMessage())
        return True

    access = logging.getLogger("uvicorn.access")
    access.filters.insert(0, count)
    try:
        await stack.http.get("/api/v1/devices")
        await stack.http.get("/health")
    finally:
        access.removeFilter(count)
    assert len(seen) == 1 and "/health" in seen[0]


@pytest.mark.parametrize("own", [[], [(b"x-request-id", b"the-handlers")], [(b"content-type", b"text/plain")]])
async def test_the_headers_replace_a_handlers_own_once(own: list[tuple[bytes, bytes]]) -> None:
    sent: list[dict[str, object]] = []

    async def app(scope: object, receive: object, send: object) -> None:
        assert callable(send)
        await send({"type": "http.response.start", "status": 200, "headers": list(own)})

    async def collect(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {"type": "http", "path": "/api/v1/x", "method": "GET", "headers": [(b"x-request-id", b"given-1")]}
    await ApiHeaders(app)(scope, None, collect)  # type: ignore[arg-type]
    headers = sent[0]["headers"]
    assert isinstance(headers, list)
    names = [name for name, _ in headers]
    assert names.count(b"x-request-id") == names.count(b"x-api-version") == names.count(b"x-protocol-version") == 1
    assert (b"x-request-id", b"given-1") in headers and (b"x-api-version", b"1") in headers
    assert (b"x-protocol-version", PROTOCOL.encode()) in headers
    assert len(headers) == 3 + sum(name != b"x-request-id" for name, _ in own)
