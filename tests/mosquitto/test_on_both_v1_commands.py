"""`tests/bridge/test_v1_commands.py`, collected again here so that it runs on both brokers (this
directory's `stack` fixture: `[embedded]` and `[mosquitto]`)."""

from __future__ import annotations

from tests.bridge.test_v1_commands import *  # noqa: F403
