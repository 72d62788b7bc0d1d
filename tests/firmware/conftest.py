"""Fixtures of the firmware tests: the host client built once per module (ASan + UBSan) and a real
`nxg-mqtt serve` per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.firmware.helpers import Server, build_host_client


@pytest.fixture(scope="module")
def binary() -> Path:
    return build_host_client()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    server = Server(tmp_path / "data")
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
