"""`tests/bridge/test_realtime.py`, collected again here so that it runs on both brokers (this
directory's `stack` fixture: `[embedded]` and `[mosquitto]`)."""

from __future__ import annotations

from tests.bridge.test_realtime import *  # noqa: F403
