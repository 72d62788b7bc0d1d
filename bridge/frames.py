"""Decoding one JSON text frame of the app and gateway WebSockets: the one place both read."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def decode_frame(message: Mapping[str, Any], max_bytes: int) -> dict[str, Any]:
    """An ASGI `websocket.receive` → JSON object, or ValueError saying what is wrong."""
    text = message.get("text")
    if text is None:
        if message.get("bytes") is not None:
            raise ValueError("binary frames are not supported: send JSON text")
        raise ValueError("empty frame")
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise ValueError(f"frame of {size} bytes exceeds the limit of {max_bytes} bytes")
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError("a message must be a JSON object")
    t = value.get("t")
    if not isinstance(t, str):
        raise ValueError('missing "t" (the message type)')
    return value
