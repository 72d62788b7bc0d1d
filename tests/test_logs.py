"""`--log-format json`: every line of a running server's log is one JSON object (uvicorn's too),
and the access log never shows a credential from the query string."""

from __future__ import annotations

import asyncio
import io
import logging
import re
import sys
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from nxg_mqtt import logs
from nxg_mqtt.logs import TextFormatter
from tests.cli_process import json_lines, start_serve, stop_serve
from tests.mqtt_client import TestClient


async def test_json_logs_with_a_redacted_access_log(tmp_path: Path) -> None:
    proc, banner = await start_serve(
        *("--host", "127.0.0.1", "--mqtt-port", "0", "--no-ws", "--http-port", "0", "--data", str(tmp_path)),
        *("--log-format", "json", "--log-level", "info"),
    )
    match = re.search(r"HTTP +http://127\.0\.0\.1:(\d+)/", banner)
    assert match, banner
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{match.group(1)}", timeout=5) as http:
        assert (await http.get("/health/live?token=s3cret-token&api_key=k3y&x=1")).status_code == 200
    await asyncio.sleep(0.3)
    err = await stop_serve(proc)
    assert await proc.wait() == 0
    lines = json_lines(err)
    assert lines and all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    access = [line for line in lines if line["logger"] == "uvicorn.access"]
    assert access and "/health/live?token=***&api_key=***&x=1" in access[0]["message"]
    assert "s3cret" not in err and "k3y" not in err


async def test_json_lines_carry_context_and_a_refused_upgrade_is_one_line(tmp_path: Path) -> None:
    """A real server: a refused CONNECT's line has the client id, peer and CONNACK code as keys; a
    refused WebSocket upgrade is logged once, with its reason, and its credential never shows."""
    proc, banner = await start_serve(
        *("--host", "127.0.0.1", "--mqtt-port", "0", "--no-ws", "--http-port", "0", "--data", str(tmp_path)),
        *("--log-format", "json", "--log-level", "info"),
    )
    mqtt_port = re.search(r"mqtt://127\.0\.0\.1:(\d+)", banner)
    http = re.search(r"HTTP +http://(127\.0\.0\.1:\d+)/", banner)
    assert mqtt_port and http, banner
    try:
        intruder = TestClient("log-dev-1")
        assert await intruder.connect(int(mqtt_port.group(1)), "log-dev-1", "not-the-token") == 5
        intruder.close()
        for path in ("/ws/app?token=s3cret-token", "/no-such-socket"):
            with pytest.raises(InvalidStatus):
                async with connect(f"ws://{http.group(1)}{path}", open_timeout=5):
                    pass
        await asyncio.sleep(0.3)
    finally:
        text = await stop_serve(proc)
    lines = json_lines(text)
    refused = [line for line in lines if "CONNECT refused" in line["message"]]
    assert len(refused) == 1, refused
    assert refused[0]["client_id"] == "log-dev-1" and refused[0]["connack"] == 5
    assert refused[0]["peer"].startswith("127.0.0.1:") and refused[0]["reason"] == "auth_reset_required"
    app = [line for line in lines if "/ws/app" in line["message"]]
    assert len(app) == 1, app  # one line, not uvicorn's three
    assert app[0]["status"] == 401 and app[0]["path"] == "/ws/app?token=***" and "unauthorized" in app[0]["reason"]
    assert app[0]["peer"].startswith("127.0.0.1:")
    missing = [line for line in lines if "/no-such-socket" in line["message"]]
    assert len(missing) == 1 and missing[0]["status"] == 403 and "no WebSocket route" in missing[0]["reason"]
    assert "without completing handshake" not in text and "connection rejected" not in text
    assert "s3cret" not in text


def test_text_lines_append_the_context() -> None:
    record = logging.LogRecord("nxg_mqtt.broker", logging.INFO, __file__, 1, "CONNECT refused", None, None)
    record.__dict__.update(client_id="dev-1", connack=5)
    line = TextFormatter().format(record)
    assert line.endswith("nxg_mqtt.broker: CONNECT refused client_id=dev-1 connack=5")


def test_the_log_handler_follows_stderr_when_it_is_swapped_or_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CLI run in-process (or any caller swapping stderr) must not leave the root handler bound
    to a stream that is closed later: every record after would be a "Logging error"."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    first, second = io.StringIO(), io.StringIO()
    try:
        monkeypatch.setattr("sys.stderr", first)
        logs.configure("info", "text")
        logging.getLogger("nxg_mqtt.test").info("one")
        assert first.getvalue().rstrip().endswith("one")
        first.close()
        monkeypatch.setattr("sys.stderr", second)
        logging.getLogger("nxg_mqtt.test").info("two")
        out = second.getvalue()
        assert "Logging error" not in out and out.rstrip().endswith("two"), out
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def test_text_lines_format_the_time_as_logging_does() -> None:
    """The time is formatted once per second (`TextFormatter.formatTime`): the same text as
    logging's own Formatter for every record, across second boundaries and out of order."""
    ours, stock = TextFormatter(), logging.Formatter(logs.TEXT_FORMAT)
    base = 1_790_000_000.0
    for created in [base + 0.999, base + 1.0, base + 0.5, base + 3600.25, base - 86400.001, base + 1.0]:
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
        record.created, record.msecs = created, (created - int(created)) * 1000
        assert ours.format(record) == stock.format(record)


def test_text_lines_are_the_stock_format_plus_context() -> None:
    """`TextFormatter.format` writes TEXT_FORMAT itself: the stock Formatter's text, with and without
    arguments, an exception or a stack, then the context fields."""
    ours, stock = TextFormatter(), logging.Formatter(logs.TEXT_FORMAT)
    try:
        raise ValueError("boom")
    except ValueError:
        exc_info = sys.exc_info()
    cases = [
        ("%s %s %s request_id=%s", ("POST", "/api/v1/x", 202, "r-1"), None, None),
        ("plain 100%", None, None, None),
        ("failed %d", (3,), exc_info, None),
        ("with a stack", None, None, "Stack (most recent call last):\n  here"),
    ]
    for msg, args, exc, stack in cases:
        record = logging.LogRecord("bridge.requests", logging.WARNING, __file__, 7, msg, args, exc, sinfo=stack)
        bare = logging.LogRecord("bridge.requests", logging.WARNING, __file__, 7, msg, args, exc, sinfo=stack)
        record.created = bare.created
        record.msecs = bare.msecs
        record.peer, record.status = "127.0.0.1:9", 202
        assert ours.format(record) == stock.format(bare) + " peer=127.0.0.1:9 status=202"
