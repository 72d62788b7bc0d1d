"""Decoding one JSON text frame of the app and gateway WebSockets: the one place both read."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nxg_mqtt.errors import PayloadRejected
from nxg_mqtt.messages import load_json


def decode_frame(message: Mapping[str, Any], max_bytes: int) -> dict[str, Any]:
    """An ASGI `websocket.receive` → JSON object, or ValueError saying what is wrong.

    The JSON itself goes through the core's one decoder (`messages.load_json`): the same depth and
    number limits as device topics and REST bodies.
    """
    text = message.get("text")
    if text is None:
        if message.get("bytes") is not None:
            raise ValueError("binary frames are not supported: send JSON text")
        raise ValueError("empty frame")
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise ValueError(f"frame of {size} bytes exceeds the limit of {max_bytes} bytes")
    try:
        value = load_json(text, what="frame")
    except PayloadRejected as exc:
        raise ValueError(exc.message) from None
    if not isinstance(value, dict):
        raise ValueError("a message must be a JSON object")
    t = value.get("t")
    if not isinstance(t, str):
        raise ValueError('missing "t" (the message type)')
    return value
