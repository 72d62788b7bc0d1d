"""`tests/bridge/test_one_ts.py`, collected again here so that it runs on both brokers (this
directory's `stack` fixture: `[embedded]` and `[mosquitto]`)."""

from __future__ import annotations

from tests.bridge.test_one_ts import *  # noqa: F403
