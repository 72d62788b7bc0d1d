"""`tests/bridge/test_api_keys.py`, collected again here so that it runs on both brokers (this
directory's `stack` fixture: `[embedded]` and `[mosquitto]`)."""

from __future__ import annotations

from tests.bridge.test_api_keys import *  # noqa: F403
