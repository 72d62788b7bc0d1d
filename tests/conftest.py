"""Fixtures for the whole suite: test settings, and paho clients closed at teardown."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nxg_mqtt.settings import Settings
from tests.factories import make_settings
from tests.mqtt_client import Clients


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--broker",
        choices=("embedded", "mosquitto"),
        help="run the two-broker tests (tests/mosquitto) on this broker only (default: both)",
    )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """`make_settings(tmp_path)`: the defaults every stack in the suite starts from."""
    return make_settings(tmp_path)


@pytest.fixture
async def paho() -> AsyncIterator[Clients]:
    """A factory of `TestClient`s: `paho("id", clean_session=False)`; all closed at teardown."""
    clients = Clients()
    yield clients
    await clients.close_all()
