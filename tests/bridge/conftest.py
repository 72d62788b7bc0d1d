"""Fixtures: the whole stack (core + embedded broker + bridge) in-process on port 0."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from nxg_mqtt.settings import Settings
from tests.bridge.helpers import Stack, open_stack


@pytest.fixture
async def stack(settings: Settings) -> AsyncIterator[Stack]:
    async with open_stack(settings) as value:
        yield value
