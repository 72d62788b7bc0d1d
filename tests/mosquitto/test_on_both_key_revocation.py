"""`tests/bridge/test_key_revocation.py`, collected again here so that it runs on both brokers (this
directory's `stack` fixture: `[embedded]` and `[mosquitto]`)."""

from __future__ import annotations

from tests.bridge.test_key_revocation import *  # noqa: F403
