"""Broker fixtures: our engine on port 0, and the two-broker fixture for amqtt regression tests.

A regression test takes `any_broker`, parametrized with `broker_clients.both(reason)`: it runs
against NxgBroker, and against plain amqtt 0.12.1 marked `xfail(strict=True)` — so the suite keeps
proving each amqtt defect exists there and is fixed here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from amqtt.broker import Broker

from nxg_mqtt.broker.server import NxgBroker
from nxg_mqtt.settings import Settings
from tests.broker.broker_clients import BrokerUnderTest
from tests.factories import BROKER_SETTINGS


@contextlib.asynccontextmanager
async def plain_amqtt() -> AsyncIterator[int]:
    config = {
        "listeners": {"default": {"type": "tcp", "bind": "127.0.0.1:0"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }
    broker = Broker(config)
    await broker.start()
    try:
        sockets = broker._servers["default"].instance.sockets
        yield int(sockets[0].getsockname()[1])
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(broker.shutdown(), 5.0)


@pytest.fixture
def engine_settings() -> Settings:
    """Override in a test module to run `engine` with other settings."""
    return BROKER_SETTINGS


@pytest.fixture
async def engine(engine_settings: Settings) -> AsyncIterator[NxgBroker]:
    async with NxgBroker(engine_settings) as running:
        yield running


@pytest.fixture
async def any_broker(request: pytest.FixtureRequest) -> AsyncIterator[BrokerUnderTest]:
    if request.param == "nxg":
        async with NxgBroker(replace(BROKER_SETTINGS)) as running:
            yield BrokerUnderTest("nxg", running.mqtt_port, running)
    else:
        async with plain_amqtt() as port:
            yield BrokerUnderTest("amqtt", port)
