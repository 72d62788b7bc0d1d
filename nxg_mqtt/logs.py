"""Log output for the whole process (ours, uvicorn's, websockets'): text or one JSON object a line.

JSON lines carry time, level, logger, message, and any context a call passes with `extra=`
(`client_id`, `serial`, `peer`, `connack`, `reason`, `command_id`).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

CONTEXT = ("client_id", "serial", "peer", "connack", "reason", "command_id")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in CONTEXT:
            if (value := record.__dict__.get(key)) is not None:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure(level: str, fmt: str) -> None:
    """One handler on the root logger; uvicorn's loggers propagate to it (bridge/server.py)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("uvicorn.access").addFilter(RedactAccess())


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
