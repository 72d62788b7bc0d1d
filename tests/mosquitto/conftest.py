"""The `stack` fixture on both brokers: the embedded one and Mosquitto with the NXG plugin.

Every test in this directory that takes `stack` runs twice, `[embedded]` and `[mosquitto]`; the
Mosquitto stack is the product's own (`nxg_mqtt.hooks.stack.open_foreign_stack`, what
`nxg-mqtt serve --broker mosquitto` runs), on port 0 like every other stack. `stack.broker` is
the engine for `embedded` and only its ports (`mqtt_port`, `ws_port`) for `mosquitto`: tests here
reach the broker over the network only. `pytest --broker mosquitto` (or `embedded`) runs one.
"""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from nxg_mqtt.hooks.mosquitto import PLUGIN, ROOT
from nxg_mqtt.hooks.stack import ForeignStack, open_foreign_stack
from nxg_mqtt.settings import Settings
from tests.bridge.helpers import PASSWORD, WAIT_S, Stack, open_stack

BROKERS = ("embedded", "mosquitto")


@dataclass(frozen=True, slots=True)
class BrokerPorts:
    mqtt_port: int
    ws_port: int | None


def mosquitto_ready() -> str | None:
    """Why the Mosquitto profile cannot run here, or None."""
    if not Path(Settings().mosquitto_bin).exists():
        return "Mosquitto is not installed (scripts/setup.sh --with-tests installs it)"
    if not PLUGIN.exists() and subprocess.run(["make", "-s", "-C", str(ROOT / "mosquitto")]).returncode != 0:
        return "mosquitto/nxg_plugin.so could not be built (mosquitto-dev missing?)"
    return None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "broker_kind" in metafunc.fixturenames:
        chosen = metafunc.config.getoption("--broker", default=None)
        metafunc.parametrize("broker_kind", [chosen] if chosen else list(BROKERS))


@pytest.fixture
async def stack(broker_kind: str, settings: Settings) -> AsyncIterator[Stack]:
    async with open_broker_stack(broker_kind, settings) as opened:
        yield opened


def open_broker_stack(kind: str, settings: Settings) -> Any:
    if kind == "embedded":
        return open_stack(settings)
    return _mosquitto_stack(settings)


@asynccontextmanager
async def foreign_with_http(settings: Settings) -> AsyncIterator[tuple[ForeignStack, httpx.AsyncClient]]:
    """Mosquitto, the plugin and a serving process, with an admin HTTP client for its bridge."""
    why = mosquitto_ready()
    if why:
        pytest.skip(why)
    async with (
        open_foreign_stack(settings) as foreign,
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{foreign.bridge.http_port}",
            headers={"Authorization": f"Bearer {PASSWORD}"},
            timeout=WAIT_S,
        ) as http,
    ):
        yield foreign, http


@asynccontextmanager
async def _mosquitto_stack(settings: Settings) -> AsyncIterator[Stack]:
    async with foreign_with_http(settings) as (foreign, http):
        ports = BrokerPorts(foreign.mqtt_port, foreign.ws_port)
        yield Stack(foreign.core, cast(Any, ports), foreign.bridge, http)


# bridge tests that drive the embedded engine itself (close it, publish through it): embedded only
ENGINE_ONLY = {
    "test_health_reports_a_lost_broker",
    "test_slow_subscriber_is_closed_1013_and_never_delays_a_fast_one",
    "test_a_message_the_broker_link_cannot_take_is_answered_not_delivered",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # a collected-again module's tests that open their own embedded stack run in tests/bridge already
    twice = [
        i
        for i in items
        if i.path.name.startswith("test_on_both_") and "broker_kind" not in getattr(i, "fixturenames", ())
    ]
    if twice:
        config.hook.pytest_deselected(items=twice)
        items[:] = [i for i in items if i not in twice]
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is None or callspec.params.get("broker_kind") != "mosquitto":
            continue
        name = item.name.split("[", 1)[0]
        if name in ENGINE_ONLY:
            item.add_marker(pytest.mark.skip(reason="drives the embedded engine directly"))
