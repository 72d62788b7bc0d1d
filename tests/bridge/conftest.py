"""Fixtures: the whole stack (core + embedded broker + bridge) in-process on port 0."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.bridge.helpers import Stack, make_settings, open_stack


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with open_stack(make_settings(tmp_path)) as value:
        yield value
