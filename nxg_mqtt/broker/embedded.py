"""The embedded broker as the product runs it: the engine, NXG's plugins, and the core wired up."""

from __future__ import annotations

import functools
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from nxg_mqtt.broker.metrics import broker_source
from nxg_mqtt.broker.plugins import nxg_plugins
from nxg_mqtt.broker.server import NxgBroker
from nxg_mqtt.core import Core

# Allocations that survive (a CONNECT storm's sessions, connections, tasks) trigger full cyclic
# collections that scan every object of the process: 26–58 ms with the default thresholds during
# the storm benchmark, a stall for every client. Objects alive once the broker has started (modules,
# schemas, the core) are frozen out of those scans, and the youngest generation is collected less
# often (one large young collection costs about what one small one does).
GC_THRESHOLDS = (50_000, 20, 20)


@functools.cache
def tune_gc() -> None:
    """Once per process, by the serving entry points (`nxg-mqtt serve`, `nxg-mqtt broker`): the broker
    is that process's main work from here on. Not done by `open_broker`: a library context manager
    must not change how the interpreter that embeds it (a test run, another program) collects."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


@asynccontextmanager
async def open_broker(core: Core) -> AsyncIterator[NxgBroker]:
    """Start the broker on `core.settings` ports; the core publishes through it while it runs."""
    async with NxgBroker(core.settings, nxg_plugins(core)) as broker:
        disconnect = core.outbox.connect(broker)
        unregister = core.metrics.add_source(lambda: broker_source(broker))
        try:
            yield broker
        finally:
            unregister()
            disconnect()
