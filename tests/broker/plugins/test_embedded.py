"""The embedded broker as the product runs it: process settings it makes once it has started."""

from __future__ import annotations

import gc

from nxg_mqtt.broker.embedded import GC_THRESHOLDS
from tests.broker.plugins.helpers import Stack


async def test_startup_objects_frozen_out_of_full_collections(stack: Stack) -> None:
    """A CONNECT storm must not pay for full scans of everything loaded at startup (the storm bench:
    26–58 ms stalls per full collection before)."""
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == GC_THRESHOLDS
    assert stack.broker.mqtt_port
