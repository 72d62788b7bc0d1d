"""`tests/bridge/test_ws_gateway.py`, collected again here so that it runs on both brokers (this
directory's `stack` fixture: `[embedded]` and `[mosquitto]`)."""

from __future__ import annotations

from tests.bridge.test_ws_gateway import *  # noqa: F403
