"""The embedded broker as the product runs it: the engine, NXG's plugins, and the core wired up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from nxg_mqtt.broker.plugins import nxg_plugins
from nxg_mqtt.broker.server import NxgBroker
from nxg_mqtt.core import Core


@asynccontextmanager
async def open_broker(core: Core) -> AsyncIterator[NxgBroker]:
    """Start the broker on `core.settings` ports; the core publishes through it while it runs."""
    async with NxgBroker(core.settings, nxg_plugins(core)) as broker:
        disconnect = core.outbox.connect(broker)
        try:
            yield broker
        finally:
            disconnect()
