"""Fixtures: the embedded broker with NXG's plugins and a real core on port 0."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.broker.plugins.helpers import STACK_OVERRIDES, Stack, open_stack
from tests.factories import make_settings


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with open_stack(make_settings(tmp_path, **STACK_OVERRIDES)) as value:
        yield value
