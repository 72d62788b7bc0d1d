"""The plugin's blocking-call budget (`plugin_opt_auth_budget_ms`, `mosquitto/nxg_plugin.c`): a
flood of logins the plugin cannot answer itself is refused with 0x03 once Mosquitto's thread has
waited its budget for /mqtt/auth, without a call, while a device the credential table answers
still logs in; the budget refills with time. Real Mosquitto, the real plugin and serving process,
with the shipped configuration but a budget small enough to spend in a test."""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from pathlib import Path

import pytest

from nxg_mqtt.hooks import mosquitto
from nxg_mqtt.settings import Settings
from tests.mosquitto.test_credential_table import foreign_stack, pair
from tests.mqtt_client import Clients

SERVER_UNAVAILABLE = 3
NOT_AUTHORIZED = 5
BUDGET_MS = 0.05  # per second: less than one call (~0.1-4 ms each), so one call, then none for a second
FLOOD = 60


def budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, free_calls: int) -> None:
    """The shipped configuration with a budget small enough to spend in a test."""
    lines = mosquitto.TEMPLATE.read_text().splitlines()
    wanted = {"plugin_opt_auth_budget_ms": BUDGET_MS, "plugin_opt_auth_free_calls": free_calls}
    for key in wanted:
        assert any(line.startswith(key + " ") for line in lines), f"the shipped {key} line"
    changed = [next((f"{k} {v}" for k, v in wanted.items() if line.startswith(k + " ")), line) for line in lines]
    template = tmp_path / "mosquitto.conf"
    template.write_text("\n".join(changed) + "\n")
    monkeypatch.setattr(mosquitto, "TEMPLATE", template)


@pytest.fixture
def small_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    budget(tmp_path, monkeypatch, free_calls=0)


@pytest.fixture
def five_free_calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    budget(tmp_path, monkeypatch, free_calls=5)


def asked(counters: dict[str, int]) -> int:
    return counters["auth_allow"] + counters["auth_deny"]


async def test_a_flood_of_unknown_logins_is_refused_with_0x03_once_the_budget_is_spent(
    settings: Settings, paho: Clients, small_budget: None
) -> None:
    async with foreign_stack(settings) as (stack, http):
        await asyncio.sleep(1.1)  # the core's own login spent some: full again
        token = await pair(stack, http, "B1")
        await asyncio.sleep(1.1)
        before = asked(stack.hooks.counters)
        codes: Counter[int] = Counter()
        for i in range(FLOOD):
            # each a new user name and password: nothing the plugin could answer from what it holds
            codes[await paho(f"flood-{i}").connect(stack.mqtt_port, f"nobody-{i}", secrets.token_hex(8))] += 1
        assert set(codes) <= {SERVER_UNAVAILABLE, NOT_AUTHORIZED}, codes
        assert codes[SERVER_UNAVAILABLE] >= FLOOD // 2, codes  # one call a second, maybe two
        # every 0x05 was the core's answer to a call, and no 0x03 cost one
        assert asked(stack.hooks.counters) - before == codes[NOT_AUTHORIZED]
        # the core's own link is never refused by it (a flood must not keep the serving process
        # out); its user name with another password is budgeted like any other login
        assert await paho("core-2").connect(stack.mqtt_port, "bridge", settings.internal_secret) == 0
        assert await paho("fake-core").connect(stack.mqtt_port, "bridge", "not-the-secret") == SERVER_UNAVAILABLE
        # a device the credential table answers is not asked about, so never refused by the budget
        device = paho("B1")
        assert await device.connect(stack.mqtt_port, "B1", token) == 0
        await device.disconnect()
        # the budget refills: after a second, an unknown login is asked about again (0x05, not 0x03)
        await asyncio.sleep(1.1)
        again = asked(stack.hooks.counters)
        assert await paho("late").connect(stack.mqtt_port, "nobody-late", secrets.token_hex(8)) == NOT_AUTHORIZED
        assert asked(stack.hooks.counters) == again + 1


async def test_the_first_calls_of_a_second_are_made_whatever_the_budget_holds(
    settings: Settings, paho: Clients, five_free_calls: None
) -> None:
    """A short burst is not a flood: slow calls on a loaded machine must not refuse it."""
    async with foreign_stack(settings) as (stack, _http):
        await asyncio.sleep(1.1)  # a new one-second window starts at the next login
        before = asked(stack.hooks.counters)
        codes = [await paho(f"burst-{i}").connect(stack.mqtt_port, f"nobody-{i}", "x" * 16) for i in range(8)]
        # the bucket (0.05 ms) was spent by the first call; five went through all the same
        assert codes == [NOT_AUTHORIZED] * 5 + [SERVER_UNAVAILABLE] * 3, codes
        assert asked(stack.hooks.counters) - before == 5
