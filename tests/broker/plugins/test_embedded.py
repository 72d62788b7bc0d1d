"""The embedded broker as the product runs it: process settings the serving entry points make once."""

from __future__ import annotations

import gc
import json
import subprocess
import sys

from nxg_mqtt.broker.embedded import GC_THRESHOLDS
from tests.broker.plugins.helpers import Stack


def test_serving_freezes_startup_objects_out_of_full_collections() -> None:
    """A CONNECT storm must not pay for full scans of everything loaded at startup (the storm bench:
    26–58 ms stalls per full collection before)."""
    code = (
        "import gc, json; from nxg_mqtt.broker.embedded import tune_gc; tune_gc();"
        " print(json.dumps([gc.get_freeze_count(), gc.get_threshold()]))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    frozen, thresholds = json.loads(out)
    assert frozen > 0
    assert tuple(thresholds) == GC_THRESHOLDS


async def test_open_broker_leaves_the_embedding_process_alone(stack: Stack) -> None:
    """Only `nxg-mqtt serve` / `broker` tune the collector; a test run or a program embedding the broker
    keeps its own (a frozen, lazily collecting test process let leaked sockets surface in later tests)."""
    assert stack.broker.mqtt_port
    assert gc.get_threshold() != GC_THRESHOLDS
