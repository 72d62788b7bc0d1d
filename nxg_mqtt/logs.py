"""Log output for the whole process (ours, uvicorn's, websockets'): text or one JSON object a line.

JSON lines carry time, level, logger, message, and any context a call passes with `extra=`
(`client_id`, `serial`, `peer`, `connack`, `reason`, `command_id`, `path`, `status`) as keys of
their own; text lines append it as `key=value`.

uvicorn's WebSocket lines are tidied (`WebSocketUpgrades`): a refused upgrade is one line. The app
logs the refusals it makes itself, with the reason (bridge/ws_app.py `admit`), so uvicorn's own
three lines for them go (`"WebSocket /path" 401`, the `websockets` library's `connection rejected`,
and the `ASGI callable returned without completing handshake` error that a denial response
provokes); an upgrade closed before the handshake (no route at that path) becomes one line with
that reason. Credentials in a WebSocket URL's query (`?token=`, `?api_key=`) are never printed.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from datetime import UTC, datetime
from typing import TextIO

CONTEXT = ("client_id", "serial", "peer", "connack", "reason", "command_id", "path", "status")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def context_of(record: logging.LogRecord) -> dict[str, object]:
    """The context fields a log call passed with `extra=` (those not None)."""
    return {key: value for key in CONTEXT if (value := record.__dict__.get(key)) is not None}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(context_of(record))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self._second: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """Formatter's own text, with the date and time formatted once per second, not per line
        (a busy bridge writes an access line per request)."""
        if datefmt is not None or self.default_msec_format is None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        cached = self._second  # one read: records come from several threads
        if cached[0] != second:
            cached = self._second = (second, time.strftime(self.default_time_format, self.converter(record.created)))
        return self.default_msec_format % (cached[1], record.msecs)

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info or record.exc_text or record.stack_info:
            text = super().format(record)
        else:
            # TEXT_FORMAT written out, the same text: Formatter.format's generic path (a %-format
            # over the record's __dict__, the exception checks) was most of an access line's cost,
            # and a REST request writes one (about 3-5 % of a REST command's CPU with the record)
            record.message = record.getMessage()
            record.asctime = self.formatTime(record)
            text = f"{record.asctime} {record.levelname} {record.name}: {record.message}"
        context = context_of(record)
        return text + "".join(f" {key}={value}" for key, value in context.items()) if context else text


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is when a record is emitted, not the stream that was current
    when logging was configured (as `logging.lastResort` does): a process that swaps or closes
    stderr later (a test runner capturing each test, a daemon redirecting it) keeps its log lines
    instead of "I/O operation on closed file" for every record after."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass  # StreamHandler's constructor and setStream assign it; stderr is always looked up


def configure(level: str, fmt: str) -> None:
    """One handler on the root logger; uvicorn's loggers propagate to it (bridge/server.py)."""
    handler = StderrHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("uvicorn.access").addFilter(RedactAccess())
    upgrades = logging.getLogger("uvicorn.error")
    for old in [f for f in upgrades.filters if isinstance(f, WebSocketUpgrades)]:
        upgrades.removeFilter(old)
    upgrades.addFilter(WebSocketUpgrades())


_SECRET_PARAMS = re.compile(r"((?:^|[?&])(?:token|api_key|apikey|password|access_token|key)=)[^&\s]*", re.IGNORECASE)


def redact(path: str) -> str:
    """A request path with the values of credential query parameters replaced by `***`."""
    return _SECRET_PARAMS.sub(r"\1***", path)


class RedactAccess(logging.Filter):
    """uvicorn's access log (`client, method, path, version, status`) without credentials in the path."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            record.args = (args[0], args[1], redact(args[2]), args[3], args[4])
        return True


# uvicorn's (websockets-sansio) WebSocket lines, by their format strings
_WS_LINE = '%s - "WebSocket %s" %d'
_WS_CLOSED_BEFORE_ACCEPT = '%s - "WebSocket %s" 403'
_WS_ACCEPTED = '%s - "WebSocket %s" [accepted]'
_WS_REJECTED = "connection rejected (%d %s)"
_NO_HANDSHAKE = "ASGI callable returned without completing handshake."


class WebSocketUpgrades(logging.Filter):
    """On `uvicorn.error`: one line per refused upgrade, credentials redacted (module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self._denials = 0  # denial responses whose "without completing handshake" error is due

    def filter(self, record: logging.LogRecord) -> bool:
        msg, args = record.msg, record.args
        if msg == _WS_LINE and isinstance(args, tuple) and len(args) == 3:
            self._denials += 1  # a denial response the app sent, and logged with its reason
            return False
        if msg == _WS_REJECTED:
            return False
        if msg == _NO_HANDSHAKE and self._denials:
            self._denials -= 1
            return False
        if msg in (_WS_CLOSED_BEFORE_ACCEPT, _WS_ACCEPTED) and isinstance(args, tuple) and len(args) == 2:
            peer, path = args[0], redact(str(args[1]))
            if msg == _WS_ACCEPTED:
                record.args = (peer, path)
                return True
            record.msg, record.args = "WebSocket upgrade refused: %s %s", (403, path)
            record.__dict__.update(
                peer=peer, path=path, status=403, reason="closed before the handshake (no WebSocket route here)"
            )
        return True
